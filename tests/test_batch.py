"""dgp_toolkit.batch and the pieces of dgp_toolkit.distributed that need no second process:
discovery, naming, the --resume rule, sharding, records through a real TCPStore, ranks
from torchrun's environment. The runs themselves: test_cli_restore.py (one process and
--workers) and test_distributed.py (torchrun)."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from dgp_toolkit.batch import (
    Entry,
    FolderJob,
    Plan,
    exit_code,
    expand_inputs,
    make_plan,
    merge_records,
    name_clash,
    planned_outputs,
    shard,
)
from dgp_toolkit.distributed import LocalRecords, Ranks, StoreRecords, _raise_failed
from dgp_toolkit.errors import DGPError, DGPUsageError

COMMAND = ("--degrade", "gray", "--prior", "biggan", "--preset", "tiny", "--seed", "0", "--device", "cpu",
           "--fit", "crop", "--precision", "auto")


def job(out: Path, **changes) -> FolderJob:
    return FolderJob(**{"out_dir": out, "options": None, "command": COMMAND, "resume": True, **changes})


def finished(out: Path, name: str, command: tuple[str, ...] = COMMAND, *, sheet: bool = False,
             seconds: float = 1.5) -> None:
    """What restore leaves for a complete input: its images and NAME_run.json (last)."""
    outputs = planned_outputs(out, name, sheet=sheet, full=False)
    out.mkdir(exist_ok=True)
    for key, path in outputs.items():
        if key != "run":
            path.write_bytes(b"png")
    run = {"degradations": ["gray"], "preset": {"name": "tiny"}, "class": {"index": 4}, "seconds": seconds,
           "metrics": {"observation": {"psnr": 20.0, "ssim": 0.5}, "result": {"psnr": None, "ssim": 0.9},
                       "protocol": "colorization"},
           "outputs": {k: str(v) for k, v in outputs.items()},
           "command": " ".join(["dgp-tool", "restore", f"photos/{name}.png", *command])}
    outputs["run"].write_text(json.dumps(run))


# ----------------------------------------------------------------------------- discovery and naming
def test_folders_expand_sorted_once_each_without_hidden_files_or_our_own_outputs(tmp_path):
    for name in ("b.png", "a.JPG", "c.webp", "notes.txt", ".hidden.png", "a_restored.png", "a_run.json"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"")
    entries = expand_inputs([tmp_path, tmp_path / "b.png", tmp_path / "missing.png"], tmp_path)
    assert [(e.path.name, e.error) for e in entries] == [
        ("a.JPG", None), ("b.png", None), ("c.webp", None), ("missing.png", None)]  # missing: an error when read
    other = expand_inputs([tmp_path], tmp_path / "out")  # elsewhere, a_restored.png is an input like any
    assert "a_restored.png" in [e.path.name for e in other]
    empty = expand_inputs([tmp_path / "sub" / ".."], tmp_path / "out")
    assert empty[0].error is None  # the parent again: it holds images
    (tmp_path / "nothing").mkdir()
    [none] = expand_inputs([tmp_path / "nothing"], tmp_path / "out")
    assert none.error.startswith(f"{tmp_path / 'nothing'}: no images in this folder")


def test_outputs_are_named_after_the_input_with_the_run_file_last(tmp_path):
    outputs = planned_outputs(tmp_path, "cat", sheet=True, full=True)
    assert [p.name for p in outputs.values()] == [
        "cat_restored.png", "cat_observed.png", "cat_sheet.png", "cat_restored_full.png", "cat_run.json"]
    assert name_clash([Entry(Path("x/a.png")), Entry(Path("b.png")), Entry(Path("y/a.jpg"))]).startswith(
        "x/a.png and y/a.jpg would both write a_restored.png")
    assert name_clash([Entry(Path("x/a.png")), Entry(Path("y/a.png"), "y/a.png: no such file")]) is None


# ----------------------------------------------------------------------------- sharding
@pytest.mark.parametrize("world", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [0, 1, 4, 9])
def test_shards_cover_every_input_once_in_order_and_differ_by_at_most_one(world, n):
    todo = [i * 3 for i in range(n)]  # indices with gaps, as after --resume
    shares = [shard(todo, rank, world) for rank in range(world)]
    assert sorted(i for share in shares for i in share) == todo
    assert all(share == sorted(share) for share in shares)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert shares == [shard(list(todo), rank, world) for rank in range(world)]  # the same on every call
    with pytest.raises(ValueError):
        shard(todo, world, world)


# ----------------------------------------------------------------------------- --resume
def test_resume_finds_complete_inputs_and_rebuilds_their_records(tmp_path):
    out = tmp_path / "out"
    finished(out, "a")
    finished(out, "b")
    (out / "b_observed.png").unlink()  # b stopped before it was whole: restore it again
    finished(out, "c")
    (out / "c_run.json").write_text("{not json")  # garbled: unfinished
    entries = [Entry(Path(f"photos/{n}.png")) for n in "abcd"] + [Entry(Path("gone.png"), "gone.png: no such file")]
    plan = make_plan(entries, job(out))
    assert plan.todo == [1, 2, 3, 4] and plan.replace == {1, 2, 3}
    assert plan.done == {0: {"input": "photos/a.png", "output": str(out / "a_restored.png"), "degradations": ["gray"],
                             "preset": "tiny", "class": 4, "seconds": 1.5,
                             "observation": {"psnr": 20.0, "ssim": 0.5}, "result": {"psnr": None, "ssim": 0.9},
                             "error": None}}
    assert make_plan(entries, job(out, resume=False)) == Plan(entries)  # without --resume: everything to do


def test_resume_wants_the_outputs_asked_for_now(tmp_path):
    out = tmp_path / "out"
    finished(out, "a")
    entries = [Entry(Path("photos/a.png"))]
    assert make_plan(entries, job(out, sheet=True)).todo == [0]  # no sheet yet: restore again
    assert make_plan(entries, job(out, save_state=tmp_path / "{name}.safetensors")).todo == [0]
    (tmp_path / "a.safetensors").write_bytes(b"state")
    assert make_plan(entries, job(out, save_state=tmp_path / "{name}.safetensors")).todo == []


def test_resume_refuses_results_of_another_command_but_not_of_another_device(tmp_path):
    out = tmp_path / "out"
    finished(out, "a", tuple(v if v != "cpu" else "cuda" for v in COMMAND))
    finished(out, "b", COMMAND[:-2] + ("--precision", "bf16"))
    entries = [Entry(Path("photos/a.png")), Entry(Path("photos/b.png"))]
    with pytest.raises(DGPUsageError, match=r"--resume: .*b_run.json was made by another command: --precision bf16 "
                                            r"there, --precision auto here; use the same options"):
        make_plan(entries, job(out))
    plan = make_plan(entries, job(out, overwrite=True))
    assert plan.todo == [1] and plan.replace == {1}


def test_records_merge_in_input_order_with_the_resumed_ones(tmp_path):
    entries = [Entry(Path(f"{n}.png")) for n in "abcd"]
    plan = Plan(entries, done={2: {"input": "c.png"}})
    records, codes = merge_records(plan, {3: ({"input": "d.png"}, 2), 0: ({"input": "a.png"}, 0)})
    assert [r["input"] for r in records] == ["a.png", "c.png", "d.png"] and codes == [0, 0, 2]
    assert exit_code([0, 0]) == 0 and exit_code([2]) == 2 and exit_code([1]) == 1 and exit_code([0, 1]) == 3


# ----------------------------------------------------------------------------- ranks
def test_ranks_come_from_torchruns_environment():
    assert Ranks.from_environ({}) is None
    ranks = Ranks.from_environ({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                                "TORCHELASTIC_RESTART_COUNT": "1", "TORCHELASTIC_MAX_RESTARTS": "2",
                                "TORCHELASTIC_RUN_ID": "photos"})
    assert (ranks.rank, ranks.world, ranks.local_rank, ranks.local_world, ranks.run_id) == (3, 4, 1, 2, "photos")
    assert not ranks.last_attempt and Ranks(0, 1, restart=2, max_restarts=2).last_attempt
    assert ranks.device("cpu") == "cpu" and ranks.threads() >= 1
    for bad in ({"WORLD_SIZE": "two", "RANK": "0"}, {"WORLD_SIZE": "2", "RANK": "2"}):
        with pytest.raises(DGPUsageError, match="start the ranks with torchrun"):
            Ranks.from_environ(bad)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_records_reach_rank_0_through_the_store_even_from_a_rank_that_stops():
    import torch.distributed as dist

    port = _free_port()
    server = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=20))
    client = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=20))
    rank0 = StoreRecords(Ranks(0, 2, run_id="t"), server)
    rank1 = StoreRecords(Ranks(1, 2, run_id="t"), client)
    rank1.put(1, {"input": "b.png", "error": None}, 0)
    rank0.put(0, {"input": "a.png", "error": "a.png: no such file"}, 2)
    assert rank0.count() == 2
    rank0.close()
    polls = []
    assert rank0.collect(timeout=0.5, poll=lambda: polls.append(1)) == {  # rank 1 is not through: what it sent
        0: ({"input": "a.png", "error": "a.png: no such file"}, 2), 1: ({"input": "b.png", "error": None}, 0)}
    assert polls
    rank1.put(3, {"input": "d.png", "error": "interrupted"}, 130)
    rank1.close()
    assert sorted(rank0.collect()) == [0, 1, 3]
    again = StoreRecords(Ranks(0, 2, restart=1, max_restarts=1, run_id="t"), server)
    assert again.count() == 0  # an elastic restart starts afresh
    local = LocalRecords()
    local.put(5, {"input": "f.png"}, 0)
    assert local.collect() == {5: ({"input": "f.png"}, 0)} and local.count() == 1


def test_a_group_that_stopped_says_why():
    def failures(**codes):
        return {int(rank[1:]): SimpleNamespace(exitcode=code) for rank, code in codes.items()}

    with pytest.raises(DGPError, match=r"worker 2 was killed by SIGKILL \(out of memory\?\); the other workers "
                                       r"were stopped. .* run the same command with --resume"):
        _raise_failed(failures(r0=143, r1=-9))
    with pytest.raises(DGPError, match="worker 1 ended with exit code 1;"):
        _raise_failed(failures(r0=1))
    with pytest.raises(KeyboardInterrupt) as stopped:
        _raise_failed(failures(r0=130, r1=143))
    assert type(stopped.value) is KeyboardInterrupt
    from dgp_toolkit.cli.signals import Terminated

    with pytest.raises(Terminated):
        _raise_failed(failures(r0=143))
