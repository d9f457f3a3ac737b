"""``benchmarks/distributed.py``: the commands it times and the table it writes (the runs
themselves are what test_distributed.py tests; the benchmark was run at
``--iterations-scale 0.02`` on 4 images when it was written)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tiny import benchmark_module


@pytest.fixture(scope="module")
def bench():
    return benchmark_module("distributed")


def test_each_setting_is_the_command_a_user_runs(bench):
    args = argparse.Namespace(task="deblurring", iterations_scale=0.5, batch=0, gpus=4)
    one, n, _ = bench.command("one", Path("in"), Path("out"), args)
    assert one[1:] == ["-m", "dgp_toolkit", "restore", "in", "-o", "out", "--simulate", "--quiet", "--seed", "0",
                       "--iterations-scale", "0.5", "--degrade", "blur", "--device", "cpu"] and n == 1
    ranks, n, _ = bench.command("rank2", Path("in"), Path("out"), args)
    assert ranks[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"] and n == 2
    workers, n, _ = bench.command("workers2", Path("in"), Path("out"), args)
    assert workers[-2:] == ["--workers", "2"] and n == 2
    gpus, n, _ = bench.command("gpus", Path("in"), Path("out"), argparse.Namespace(**{**vars(args), "batch": 16}))
    assert gpus[5] == "4" and gpus[-4:] == ["--batch", "16", "--device", "auto"] and n == 4
    with pytest.raises(ValueError, match="unknown setting 'rank3'"):
        bench.command("rank3", Path("in"), Path("out"), args)


def test_the_table_compares_every_setting_with_one_process(bench):
    rows = [{"setting": s, "processes": p, "threads_each": t, "images": 8, "restored": r, "wall_s": w,
             "images_per_hour": 8 * 3600 / w, "mean_psnr": 20.0, "ratio": 100 / w}
            for s, p, t, r, w in [("one", 1, 2, 8, 100), ("rank2", 2, 1, 8, 80), ("workers2", 2, 1, 7, 90)]]
    text = bench.table({"command": "python benchmarks/distributed.py", "machine": "m", "date": "d",
                        "task": "super-resolution", "images": 8, "batch": 0, "iterations_scale": 1.0, "rows": rows})
    assert "| one process, every core | 1 x 2 | 100 | 288 | 1.00x | 20.00 |" in text
    assert "| torchrun, 2 ranks | 2 x 1 | 80 | 360 | 1.25x | 20.00 |" in text
    assert "| --workers 2 (2 local ranks) (7 of 8 restored) | 2 x 1 | 90 | 320 | 1.11x | 20.00 |" in text
    assert "quick look" not in text
