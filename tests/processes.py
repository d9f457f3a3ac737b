"""Child processes of the tests: ``kill_tree`` ends a launcher with everything it started.

torchrun's agent (and ``restore --workers``, which runs the same agent) starts each rank in
a session of its own, out of reach of ``killpg`` on the launcher's group: a test that
fails half-way must find the ranks through their parents.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux ``/proc``; just ``pid`` elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything it started (the children first, so that none is
    re-parented away before it is found)."""
    for target in reversed(descendants(pid)):
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass
