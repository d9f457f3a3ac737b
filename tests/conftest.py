"""Shared fixtures: a fresh plugin registry per test, fake plugin distributions, a CLI runner,
torch on one thread, the tiny prior (``tiny.py``) as files and as ``--prior biggan``."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass

import pytest

from dgp_toolkit.registry import reset_registry


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """Every test starts with no cached registry and none of the plugin switches set."""
    for name in ("STRICT_PLUGINS", "DISABLE_PLUGINS", "TRACE_PLUGINS", "DEBUG"):
        monkeypatch.delenv(f"DGP_TOOLKIT_{name}", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # rich tables in full width when captured
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    """Make an installed-looking distribution visible to ``importlib.metadata``.

    ``plugin_dist(name, entry_points={"ep": "module"}, modules={"module": "source"})``
    writes ``<name>-<version>.dist-info`` (METADATA + entry_points.txt) and the module
    files into a fresh folder on ``sys.path``; discovery is the real one. Modules
    imported from it are forgotten after the test.
    """
    before = set(sys.modules)

    def make(name, *, entry_points, modules=None, version="0.1.0"):
        site = tmp_path / f"site-{name}"
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[dgp_toolkit]\n{lines}")
        for module, source in (modules or {}).items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(site))
        return site

    yield make
    for module in set(sys.modules) - before:
        if not module.startswith(("dgp_toolkit", "torch", "kornia", "PIL", "numpy")):
            sys.modules.pop(module, None)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def dgp(capsys):
    """Run ``dgp-tool ARGS...`` in-process through the real entry point (``main``).

    Registry building, plugin warnings and the command all happen inside, so stderr
    holds everything the user would see.
    """
    from dgp_toolkit.cli import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        out, err = capsys.readouterr()
        code = exited.value.code
        return Result(code if isinstance(code, int) else (0 if code is None else 1), out, err)

    return run


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``).

    The tiny models gain nothing from more threads, and on a machine shared with other jobs
    extra threads oversubscribe it and make each step many times slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_preset_toml():
    """The text of ``tiny_files``' preset file; a module overrides this fixture to use another."""
    from tiny import RESTORE_PRESET_TOML

    return RESTORE_PRESET_TOML


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory, tiny_preset_toml):
    """``(weights, preset)``: the tiny prior as a prior file (CIFAR-10 class names) and a preset file."""
    from tiny import save_tiny_prior

    folder = tmp_path_factory.mktemp("tiny")
    weights = save_tiny_prior(folder / "tiny.safetensors")
    preset = folder / "tiny.toml"
    preset.write_text(tiny_preset_toml)
    return weights, preset


@pytest.fixture
def tiny_biggan(tiny_files, monkeypatch):
    """The tiny weights file as the embedded prior: what ``biggan`` (``--prior biggan``) loads."""
    from dgp_toolkit.priors.biggan.variants import ENV_EMBEDDED

    monkeypatch.setenv(ENV_EMBEDDED, str(tiny_files[0]))
    return tiny_files[0]


@pytest.fixture
def fifo(tmp_path):
    """``fifo(name)``: a named pipe in ``tmp_path``. A reader that opens it is not left blocked
    forever: after a few seconds a background thread writes junk into it (so code that opens
    it fails a test instead of hanging it)."""
    import os
    import threading
    import time

    made, stop = [], threading.Event()

    def feed() -> None:
        start = time.monotonic()
        while not stop.wait(0.05):
            if time.monotonic() - start < 3:
                continue
            for path in made:
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # fails while nobody reads
                except OSError:
                    continue
                with os.fdopen(fd, "wb") as handle:
                    handle.write(b"junk from the fifo fixture\n")

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()

    def make(name: str):
        path = tmp_path / name
        os.mkfifo(path)
        made.append(path)
        return path

    yield make
    stop.set()
    thread.join()
