"""Ranks: processes that restore one folder together, on one machine or several.

``torchrun --nnodes M --nproc-per-node K -m dgp_toolkit restore FOLDER -o OUT --resume``
starts M x K copies of the command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` (and ``TORCHELASTIC_*``) in their
environment; :meth:`Ranks.from_environ` reads them, so the command needs no extra flag.
``dgp-tool restore --workers N`` starts N local ranks the same way, through the same
elastic launcher (:func:`launch_local_ranks`, what ``torchrun --standalone
--nproc-per-node N`` does).

Each rank runs on its own device (``cuda:LOCAL_RANK`` where there are GPUs, else the CPU
with ``cores / local ranks`` threads), joins the process group (gloo on the CPU, NCCL on
CUDA), takes rank 0's plan of the folder (:func:`share_plan`) and restores its shard
(:func:`run_plan`, which also runs a plan in one process without ranks). Each
input's record goes to rank 0 as soon as it is done, through the rendezvous's key-value
store (:class:`StoreRecords`), not through one collective at the end: a rank that is
stopped (SIGTERM) or killed cannot take part in a collective, but the records it sent
before stay, and rank 0 reports them.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dgp_toolkit.errors import DGPError, DGPUsageError

__all__ = ["Ranks", "LocalRecords", "StoreRecords", "join", "share_plan", "leave", "run_plan", "launch_local_ranks"]

#: How long rank 0 waits for the other ranks' records once it is stopped (Ctrl-C, SIGTERM);
#: torchrun gives a stopped group 30 s before it kills it.
STOP_WAIT_S = 10.0


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the ranks of one run (torchrun's environment)."""

    rank: int
    world: int
    local_rank: int = 0
    local_world: int = 1
    restart: int = 0  # TORCHELASTIC_RESTART_COUNT: 0 on the first attempt
    max_restarts: int = 0
    run_id: str = "none"

    @classmethod
    def from_environ(cls, environ: Any = None) -> "Ranks | None":
        """The ranks torchrun describes in ``environ`` (default ``os.environ``); ``None``
        outside torchrun (no ``WORLD_SIZE``).

        >>> Ranks.from_environ({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
        Ranks(rank=3, world=4, local_rank=1, local_world=2, restart=0, max_restarts=0, run_id='none')
        """
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env:
            return None

        def number(name: str, default: int | None = None) -> int:
            value = env.get(name)
            if value is None and default is not None:
                return default
            try:
                return int(str(value))
            except ValueError:
                raise DGPUsageError(f"{name}={value!r} in the environment is not a whole number; start the "
                                    "ranks with torchrun (it sets RANK, WORLD_SIZE and LOCAL_RANK)") from None

        world, rank = number("WORLD_SIZE"), number("RANK")
        local_rank = number("LOCAL_RANK", rank)
        ranks = cls(rank=rank, world=world, local_rank=local_rank,
                    local_world=number("LOCAL_WORLD_SIZE", world), restart=number("TORCHELASTIC_RESTART_COUNT", 0),
                    max_restarts=number("TORCHELASTIC_MAX_RESTARTS", 0),
                    run_id=str(env.get("TORCHELASTIC_RUN_ID", "none")))
        if world < 1 or not 0 <= rank < world or not 0 <= local_rank < ranks.local_world:
            raise DGPUsageError(f"RANK={rank}, LOCAL_RANK={local_rank} and WORLD_SIZE={world} in the environment do "
                                "not fit together; start the ranks with torchrun")
        return ranks

    @property
    def last_attempt(self) -> bool:
        """No elastic restart follows if this attempt stops (the one that reports)."""
        return self.restart >= self.max_restarts

    def device(self, requested: str) -> str:
        """This rank's device: ``auto`` and ``cuda`` become ``cuda:LOCAL_RANK`` where there
        are GPUs (several ranks share one when there are more local ranks than GPUs); any
        other choice (``cpu``, ``cuda:1``) is kept."""
        import torch

        if requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return requested

    def threads(self) -> int:
        """Torch threads for a rank on the CPU: the cores shared among the local ranks."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cores // self.local_world)


# ----------------------------------------------------------------------------- records to rank 0
class LocalRecords:
    """The records of a run in one process (no ranks)."""

    def __init__(self) -> None:
        self.items: dict[int, tuple[dict[str, Any], int]] = {}

    def put(self, index: int, record: dict[str, Any], code: int) -> None:
        self.items[index] = (record, code)

    def count(self) -> int:
        return len(self.items)

    def close(self) -> None:
        pass

    def collect(self, timeout: float | None = None, poll: Callable[[], None] | None = None,
                ) -> dict[int, tuple[dict[str, Any], int]]:
        return dict(self.items)


class StoreRecords:
    """Every rank's records, sent to the rendezvous's key-value store as each input is done.

    ``put`` appends one JSON line to a key that all ranks share and counts it (rank 0's
    overall progress reads the count); ``close`` says this rank is through; rank 0's
    ``collect`` waits until every rank is (or ``timeout`` passes, when stopped) and reads
    the lines back. Keys are per run and per elastic attempt, so a restarted group starts
    afresh (its resumed inputs come from their ``NAME_run.json``).
    """

    def __init__(self, ranks: Ranks, store: Any) -> None:
        self.ranks, self.store = ranks, store
        self.prefix = f"dgp_toolkit/records/{ranks.run_id}/{ranks.restart}"

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def put(self, index: int, record: dict[str, Any], code: int) -> None:
        self.store.append(self._key("lines"), json.dumps([index, record, code], allow_nan=False) + "\n")
        self.store.add(self._key("count"), 1)

    def count(self) -> int:
        return int(self.store.add(self._key("count"), 0))

    def close(self) -> None:
        self.store.set(self._key(f"through/{self.ranks.rank}"), "1")

    def collect(self, timeout: float | None = None, poll: Callable[[], None] | None = None,
                ) -> dict[int, tuple[dict[str, Any], int]]:
        """Rank 0: every rank's records (``index -> (record, code)``), once all are through.

        Polls (rather than one blocking wait) so that Ctrl-C and SIGTERM reach this
        process while it waits; ``poll`` is called between polls (progress).
        """
        keys = [self._key(f"through/{r}") for r in range(self.ranks.world)]
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.store.check(keys):
            if deadline is not None and time.monotonic() > deadline:
                break
            if poll is not None:
                poll()
            time.sleep(0.2)
        if not self.store.check([self._key("lines")]):
            return {}
        items: dict[int, tuple[dict[str, Any], int]] = {}
        for line in self.store.get(self._key("lines")).decode("utf-8").splitlines():
            index, record, code = json.loads(line)
            items[int(index)] = (record, int(code))
        return items


# ----------------------------------------------------------------------------- the process group
def join(ranks: Ranks, device: Any) -> StoreRecords:
    """Join the process group (gloo on the CPU, NCCL on CUDA) and the rendezvous's store.

    On the CPU, sets this rank's torch threads (:meth:`Ranks.threads`).
    """
    import torch
    import torch.distributed as dist

    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise DGPUsageError(f"WORLD_SIZE is set but {name} is not; start the ranks with torchrun")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        torch.set_num_threads(ranks.threads())
        backend = "gloo"
    # The store torchrun's agent keeps for the run (or, launched by hand, rank 0's), and the
    # group's keys under a prefix of our own per attempt: through env:// the ranks of an
    # elastic restart read the previous attempt's gloo addresses and cannot connect (torch
    # 2.13: 4 restarts of 5 failed on 127.0.0.1; with this prefix 5 of 5 joined).
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    try:
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                              is_master=ranks.rank == 0 and not agent, wait_for_workers=False,
                              timeout=timedelta(minutes=30))
        group = dist.PrefixStore(f"dgp_toolkit/group/{ranks.run_id}/{ranks.restart}", store)
        dist.init_process_group(backend, store=group, rank=ranks.rank, world_size=ranks.world)
    except (RuntimeError, ValueError) as exc:
        raise DGPError(f"rank {ranks.rank} could not join the other ranks ({' '.join(str(exc).split())})") from None
    return StoreRecords(ranks, store)


def share_plan(plan: Any) -> Any:
    """Rank 0's plan of the folder, on every rank: made once, before any rank starts work,
    so every rank shards the same list (a rank that lists the folder later could see inputs
    that another has completed meanwhile)."""
    import torch.distributed as dist

    box = [plan]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def leave() -> None:
    """Leave the process group (end of the run)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- one process, or one rank
Lines = Callable[[list[tuple[str, str | None]]], None]


def run_plan(setup: Any, job: Any, plan: Any, *, ranks: Ranks | None = None, lines: Lines | None = None,
             progress: Callable[[Any], None] | None = None, count: Callable[[int], None] | None = None,
             stopped: Callable[[list[dict[str, Any]], list[int]], None] | None = None, hold: Any = None,
             ) -> tuple[list[dict[str, Any]], list[int]] | None:
    """Restore what ``plan`` (a :class:`~dgp_toolkit.batch.Plan`, for the
    :class:`~dgp_toolkit.batch.FolderJob` ``job``) has still to do: alone (``ranks``
    ``None``), or as one of :class:`Ranks` (this rank's :func:`~dgp_toolkit.batch.shard`
    of rank 0's plan).

    Returns every record and exit code in input order (the resumed inputs' too) where
    this process reports (alone, or rank 0); ``None`` on the other ranks. ``lines``
    gets each input's stderr lines, ``progress`` the engine's events; ``count`` (where
    this process reports) the number of inputs done on every rank so far.

    Ctrl-C or SIGTERM: the inputs in flight are reported ``interrupted``, every rank
    says it is through, and the reporting process hands the records it has (after
    waiting up to :data:`STOP_WAIT_S` for the other ranks') to
    ``stopped`` before the interrupt goes on; not when SIGTERM stops an attempt that an
    elastic restart will follow (the last attempt reports, once).
    """
    from dgp_toolkit.batch import merge_records, run_shard, shard
    from dgp_toolkit.cli.signals import Terminated

    if ranks is None:
        records: Any = LocalRecords()
        indices = plan.todo
    else:
        records = join(ranks, setup.prior.device)
        plan = share_plan(plan)
        indices = shard(plan.todo, ranks.rank, ranks.world)
    lead = ranks is None or ranks.rank == 0

    def report(index: int, record: dict[str, Any], code: int, text: list[tuple[str, str | None]]) -> None:
        records.put(index, record, code)
        if lines is not None:
            lines(text)
        if lead and count is not None:
            count(records.count())

    def poll() -> None:
        if count is not None:
            count(records.count())

    with _interrupt_once():  # the clean-up of a first Ctrl-C or SIGTERM is not cut short by a second
        try:
            run_shard(setup, job, plan, indices, report=report, progress=progress if lead else None, hold=hold)
            records.close()
            outcome = merge_records(plan, records.collect(poll=poll)) if lead else None
        except KeyboardInterrupt as exc:
            records.close()
            if lead and stopped is not None and (ranks is None or ranks.last_attempt
                                                 or not isinstance(exc, Terminated)):
                stopped(*merge_records(plan, records.collect(timeout=STOP_WAIT_S)))
            raise
    if ranks is not None:
        leave()
    return outcome


@contextlib.contextmanager
def _interrupt_once() -> Iterator[None]:
    """Within the block the first Ctrl-C or SIGTERM interrupts (SIGTERM as
    :class:`~dgp_toolkit.cli.signals.Terminated`) and later ones are ignored, so that the
    clean-up of the first (the records of the inputs in flight) is not cut short by the
    second that often follows: a terminal's Ctrl-C reaches every rank and torchrun forwards
    one too, and ``kill`` of a whole process group reaches the launcher, which forwards it."""
    import signal
    import threading

    from dgp_toolkit.cli.signals import INTERRUPT_SIGNALS, interrupt_for

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def interrupt(signum: int, frame: Any) -> None:
        if not seen:
            seen.append(signum)
            raise interrupt_for(signum)

    previous = {s: signal.signal(s, interrupt) for s in INTERRUPT_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# ----------------------------------------------------------------------------- --workers N
def _rank_entry(args: list[str]) -> int:
    """What each local rank of :func:`launch_local_ranks` runs: the same ``dgp-tool`` command.

    A run that is over (0, 2 or 3: its JSON is out) returns its exit code, so that the
    launcher collects it; any other exit (interrupted, a failure of the rank itself) stops
    the group, as under torchrun.
    """
    from dgp_toolkit.cli.app import main

    try:
        main(args)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if code not in (0, 2, 3):
            raise
        return code
    return 0


@contextlib.contextmanager
def _launcher_quiet() -> Iterator[None]:
    """The elastic agent's own log lines (rendezvous, "shutting down workers") off, and
    the signal handlers it installs put back afterwards."""
    import logging
    import signal

    loggers = [logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.multiprocessing")]
    levels = [logger.level for logger in loggers]
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)  # a failed rank is reported in one line, below
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def launch_local_ranks(n: int, args: list[str]) -> int:
    """Run ``dgp-tool ARGS`` as ``n`` ranks on this machine through torch.distributed's
    elastic launcher (``torchrun --standalone --nproc-per-node n``, in this process);
    return rank 0's exit code.

    No restarts: a rank that dies stops the others (their finished inputs stay whole) and
    this raises :class:`DGPError` saying how to finish with ``--resume``. Ctrl-C and
    SIGTERM reach every rank; they come back here as ``KeyboardInterrupt`` (SIGTERM: the
    ``Terminated`` of :mod:`dgp_toolkit.cli.signals`).
    """
    import signal
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n, run_id=f"dgp-{uuid.uuid4().hex[:12]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, start_method="spawn",
                          signals_to_handle="SIGINT,SIGTERM")
    with _launcher_quiet():
        try:
            return int(elastic_launch(config, _rank_entry)(list(args))[0])
        except SignalException as exc:
            if exc.sigval == signal.SIGINT:
                raise KeyboardInterrupt from None
            from dgp_toolkit.cli.signals import Terminated

            raise Terminated from None
        except ChildFailedError as exc:
            _raise_failed(exc.failures)


def _raise_failed(failures: dict[int, Any]) -> None:
    """Why the group stopped: interrupted (every failed rank exited 130 or 143: a Ctrl-C or
    SIGTERM that reached a rank alone), else a :class:`DGPError` naming the first rank that
    failed or died."""
    import signal

    died = {r: f for r, f in failures.items() if f.exitcode not in (130, 143)}
    if not died:
        if any(f.exitcode == 130 for f in failures.values()):
            raise KeyboardInterrupt
        from dgp_toolkit.cli.signals import Terminated

        raise Terminated
    rank = min(died)
    code = died[rank].exitcode
    if code < 0:
        how = f"was killed by {signal.Signals(-code).name}" + (" (out of memory?)" if code == -signal.SIGKILL else "")
    else:
        how = f"ended with exit code {code}"
    raise DGPError(f"worker {rank + 1} {how}; the other workers were stopped. The inputs finished so far are "
                   "whole: run the same command with --resume to restore the rest")
