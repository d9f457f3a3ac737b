"""Checks of the files a command reads and writes, made before any work.

Inputs must be regular files: opening a named pipe (FIFO) blocks until something writes
to it, and a device such as ``/dev/zero`` never ends, so :func:`check_input_file` looks
at ``os.stat`` first and opens nothing. Outputs are checked without creating anything:
:func:`check_output_folder` that a folder exists or can be created and written to,
:func:`check_output_file` that a file can be written there and is neither an input nor
an existing file (unless ``overwrite``). Folders are created later, by the writes
themselves (:func:`dgp_toolkit.images.write_atomic`), once every check has passed.

New files get the mode an ordinary ``open()`` would give them (:func:`new_file_mode`,
``0o644`` under the usual umask ``022``), whichever library wrote them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from dgp_toolkit.errors import DGPUsageError

__all__ = ["same_file", "check_input_file", "check_output_file", "check_output_folder", "input_file_problem",
           "new_file_mode"]

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def input_file_problem(path: str | os.PathLike, what: str = "a regular file") -> str | None:
    """Why ``path`` cannot be read as ``what`` (``None`` when it is a regular file).

    Follows symbolic links, and never opens the file.

    >>> input_file_problem("/dev/null", "an image file")
    'is a character device, not an image file'
    >>> input_file_problem("no/such.png")
    'no such file'
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except NotADirectoryError:
        return "no such file (a folder on its path is a file)"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return f"is a folder, not {what}"
    if not stat.S_ISREG(mode):
        return f"is {_kind(mode)}, not {what}"
    return None


def check_input_file(path: str | os.PathLike, what: str = "a regular file") -> Path:
    """``path`` if it is a regular file; else :class:`DGPUsageError` ``"<path>: <why>"``."""
    problem = input_file_problem(path, what)
    if problem is not None:
        raise DGPUsageError(f"{path}: {problem}")
    return Path(path)


def check_output_folder(folder: str | os.PathLike, option: str) -> None:
    """Raise :class:`DGPUsageError` unless ``folder`` is, or can be created as, a writable folder.

    ``option`` (``"--output"``) starts the message. Nothing is created.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DGPUsageError(f"{option} {folder}: exists and is not a folder; give a folder")
    problem = _folder_problem(folder)
    if problem is not None:
        raise DGPUsageError(f"{option} {folder}: {problem}")


def _folder_problem(folder: Path) -> str | None:
    """Why files cannot be written into ``folder``, created where missing (``None``: they can)."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        if probe == folder:
            return f"{probe} is a file, not a folder"
        return f"{probe} is a file, so the folder {folder} cannot be created"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"cannot write to {probe} (permission denied)"
    return None


def check_output_file(path: str | os.PathLike, option: str = "", *, overwrite: bool = False,
                      protect: Iterable[str | os.PathLike] = ()) -> Path:
    """``path`` if a file can be written there; else :class:`DGPUsageError` naming ``option``.

    Refused: one of the inputs in ``protect``; a folder; an existing file unless
    ``overwrite``; an existing pipe, device or socket (``--overwrite`` would replace it
    by a file); a path whose folder cannot be created or written. Nothing is created.

    >>> check_output_file("/dev/null", "--metrics", overwrite=True)
    Traceback (most recent call last):
    ...
    dgp_toolkit.errors.DGPUsageError: --metrics /dev/null: is a character device; give a file name
    """
    path = Path(path)
    where = f"{option} {path}" if option else str(path)
    for source in protect:
        if same_file(path, Path(source)):
            raise DGPUsageError(f"{where}: refusing to overwrite an input; choose another output")
    if path.is_dir():
        raise DGPUsageError(f"{where}: is a folder; give a file name")
    if path.exists():
        if not path.is_file():
            raise DGPUsageError(f"{where}: is {_kind(path.stat().st_mode)}; give a file name")
        if not overwrite:
            raise DGPUsageError(f"{where}: already exists; pass --overwrite to replace it")
    problem = _folder_problem(path.parent)
    if problem is not None:
        raise DGPUsageError(f"{where}: {problem}")
    return path


def same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name the same file (by inode when both exist, else by resolved path)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def new_file_mode() -> int:
    """The permission bits ``open()`` gives a new file: ``0o666`` less the process's umask.

    Temporary files (``tempfile.mkstemp``) and some writers (safetensors) create files
    ``0o600``; a file renamed into place gets this mode instead, like any other output.
    """
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return 0o666 & ~mask
