"""``benchmarks/runs_study.py``: the mean of the first k single runs is what ``restore(seed=0,
runs=k)`` returns, scored the same way."""

from __future__ import annotations

import pytest
import torch

from tiny import benchmark_module
from test_quality_benchmark import scene

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def study():
    return benchmark_module("runs_study")


@pytest.mark.parametrize("task", ["super-resolution", "colorization"])
def test_means_of_single_runs_are_restore_with_runs(study, tiny_biggan, task):
    from dgp_toolkit.restoration import load_input, restore_input

    quality = benchmark_module("quality")
    study._CTX = quality.Context(quality.Settings(iterations_scale=0.005, select_num=2, check_every=1))
    clean = scene()
    runs = [study._run({"task": task, "clean": clean.numpy(), "position": 0, "seed": s, "precision": "float32"})
            for s in range(3)]
    setup = study._CTX.setup(task, "dgp")
    means = study.score_means(setup, clean[None], runs)
    assert len(means) == 3 and means[0] == pytest.approx(runs[0]["psnr"], abs=1e-6)
    for k in (2, 3):
        direct = restore_input(setup, load_input(clean), simulate=True, seed=0, runs=k, snapshot_stages=False,
                               precision="float32", iterations_scale=0.005)
        assert means[k - 1] == pytest.approx(direct.metrics["result"]["psnr"], abs=1e-4)


def test_a_diverged_run_is_left_out_as_restore_leaves_it_out(study, tiny_biggan):
    quality = benchmark_module("quality")
    study._CTX = quality.Context(quality.Settings(iterations_scale=0.005, select_num=2, check_every=1))
    clean = scene()
    setup = study._CTX.setup("super-resolution", "dgp")
    good = {"raw": clean[None].numpy(), "loss": 0.001, "stopped": "done"}
    bad = {"raw": torch.ones(1, 3, 32, 32).numpy(), "loss": 0.5, "stopped": "done"}
    means = study.score_means(setup, clean[None], [good, bad])
    assert means[1] == pytest.approx(means[0])  # the white image is not averaged in
    assert study.score_means(setup, clean[None], [bad, good])[1] == pytest.approx(means[0])


def test_denoising_is_refused(study):
    with pytest.raises(SystemExit):
        study.main(["--task", "denoising", "--n", "1"])
