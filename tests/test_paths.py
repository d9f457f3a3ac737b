"""``dgp_toolkit.paths`` (input and output checks made before any work) and
``dgp_toolkit.cli.signals`` (SIGTERM handled as Ctrl-C), with their docstring examples."""

from __future__ import annotations

import doctest
import importlib
import os
import signal
import socket

import pytest

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.paths import (
    check_input_file,
    check_output_file,
    check_output_folder,
    input_file_problem,
    new_file_mode,
)


@pytest.mark.parametrize("name", ["dgp_toolkit.paths", "dgp_toolkit.cli.signals"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------- inputs
def test_only_regular_files_are_inputs_and_nothing_is_opened(tmp_path, fifo):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "folder").mkdir()
    pipe = fifo("pipe.png")
    (tmp_path / "link.png").symlink_to(pipe)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.png"))
    try:
        problems = {name: input_file_problem(tmp_path / name, "an image file")
                    for name in ("a.png", "folder", "pipe.png", "link.png", "sock.png", "missing.png",
                                 "a.png/inside.png")}
    finally:
        sock.close()
    assert problems == {
        "a.png": None,
        "folder": "is a folder, not an image file",
        "pipe.png": "is a named pipe (FIFO), not an image file",
        "link.png": "is a named pipe (FIFO), not an image file",  # links are followed
        "sock.png": "is a socket, not an image file",
        "missing.png": "no such file",
        "a.png/inside.png": "no such file (a folder on its path is a file)",
    }
    assert check_input_file(tmp_path / "a.png") == tmp_path / "a.png"
    with pytest.raises(DGPUsageError, match=r"pipe.png: is a named pipe \(FIFO\), not a regular file$"):
        check_input_file(pipe)


# ----------------------------------------------------------------------------- outputs
def test_output_folders_are_checked_and_not_created(tmp_path):
    (tmp_path / "taken").write_text("x")
    check_output_folder(tmp_path / "new" / "deeper", "--output")
    assert not (tmp_path / "new").exists()
    with pytest.raises(DGPUsageError, match="--output .*taken: exists and is not a folder; give a folder"):
        check_output_folder(tmp_path / "taken", "--output")
    with pytest.raises(DGPUsageError, match="taken is a file, so the folder .*taken/sub cannot be created"):
        check_output_folder(tmp_path / "taken" / "sub", "--output")


def test_output_files_are_checked_and_nothing_is_created(tmp_path, fifo):
    (tmp_path / "old.json").write_text("[]")
    (tmp_path / "in.png").write_text("input")
    (tmp_path / "taken").write_text("x")
    (tmp_path / "folder").mkdir()
    fifo("pipe.json")
    assert check_output_file(tmp_path / "new" / "m.json", "--metrics") == tmp_path / "new" / "m.json"
    assert check_output_file(tmp_path / "old.json", overwrite=True) == tmp_path / "old.json"
    refused = {
        "old.json": "--metrics {}: already exists; pass --overwrite to replace it",
        "in.png": "--metrics {}: refusing to overwrite an input; choose another output",
        "folder": "--metrics {}: is a folder; give a file name",
        "pipe.json": "--metrics {}: is a named pipe (FIFO); give a file name",
        "taken/m.json": "--metrics {}: " + f"{tmp_path / 'taken'} is a file, not a folder",
    }
    for name, message in refused.items():
        path = tmp_path / name
        with pytest.raises(DGPUsageError) as info:
            check_output_file(path, "--metrics", overwrite=name != "old.json", protect=[tmp_path / "in.png"])
        assert str(info.value) == message.format(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "in.png", "old.json", "pipe.json", "taken"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_new_files_get_the_mode_open_gives_them(tmp_path, umask):
    previous = os.umask(umask)
    try:
        mode = new_file_mode()
        (tmp_path / "plain").write_text("x")
        assert os.umask(umask) == umask  # the umask is left as it was
    finally:
        os.umask(previous)
    assert mode == (tmp_path / "plain").stat().st_mode & 0o777 == 0o666 & ~umask


# ----------------------------------------------------------------------------- SIGTERM
def test_sigterm_raises_terminated_inside_the_block_only():
    from dgp_toolkit.cli.signals import SIGTERM_EXIT_CODE, Terminated, sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt():
        with pytest.raises(Terminated) as info:
            os.kill(os.getpid(), signal.SIGTERM)
    assert isinstance(info.value, KeyboardInterrupt)  # every Ctrl-C clean-up runs for it
    assert signal.getsignal(signal.SIGTERM) is before and SIGTERM_EXIT_CODE == 143
