"""SIGTERM handled as Ctrl-C.

torchrun, systemd, docker and batch schedulers stop a program with SIGTERM, whose default
action ends the process at once: no message, no JSON records, temporary files left
behind. Inside :func:`sigterm_as_interrupt` SIGTERM raises :class:`Terminated`, a
``KeyboardInterrupt``, so every clean-up written for Ctrl-C runs for it too (inputs in
flight are removed and reported ``interrupted``); the command then exits
:data:`SIGTERM_EXIT_CODE` (143, 128 + 15, what a shell reports for a process that
SIGTERM ended) instead of Ctrl-C's 130.

>>> import os, signal
>>> with sigterm_as_interrupt():
...     try:
...         os.kill(os.getpid(), signal.SIGTERM)
...     except Terminated:
...         print("cleaned up")
cleaned up
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

#: The exit code of a command stopped by SIGTERM.
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM
#: The signals that interrupt a command (what a hold on the writes must keep back).
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: raised where Ctrl-C's ``KeyboardInterrupt`` would be."""


def raise_terminated(signum: int = signal.SIGTERM, frame: Any = None) -> None:
    """A signal handler: raise :class:`Terminated`."""
    raise Terminated


def interrupt_for(signum: int) -> KeyboardInterrupt:
    """The exception that stands for an interrupting signal (SIGTERM: :class:`Terminated`)."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated`; the previous handler comes back after.

    Outside the main thread (where Python cannot set handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
