"""``benchmarks/quality.py`` (one image, every task, a tiny random prior and a few steps) and
the ``dip`` prior it compares against."""

from __future__ import annotations

import json
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tiny import TINY, benchmark_module

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
METHOD_KEYS = {"psnr", "ssim", "seconds"}
GENERATIVE_KEYS = METHOD_KEYS | {"select_s", "optimize_s", "class", "steps", "stopped", "machine"}


@pytest.fixture(scope="module")
def quality():
    yield benchmark_module("quality", "quality_benchmark")
    sys.modules.pop("quality_benchmark", None)


def scene() -> torch.Tensor:
    """A deterministic 32-px picture with flat regions, edges and a smooth gradient, in [-1, 1]."""
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    img = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 + 0.3 * np.sin(3 * xx + 2 * yy)], axis=-1)
    img[6:20, 4:14] = (0.9, 0.2, 0.1)
    img[16:28, 18:29] = (0.1, 0.3, 0.8)
    return torch.from_numpy(img.clip(0, 1) * 2 - 1).permute(2, 0, 1).float()


@pytest.fixture
def context(quality, tiny_biggan):
    # 0.005 of each preset: one step per stage; DIP 200 * 0.005 = one step; two candidates.
    settings = quality.Settings(iterations_scale=0.005, select_num=2, dip_iterations=200, check_every=1)
    return quality.Context(settings)


def test_one_image_every_task_gives_a_complete_row(quality, context, tmp_path):
    for task in quality.TASKS:
        row = quality.evaluate_image(context, task, scene(), dev_index=7, label=3, position=0, seed=5,
                                     image_dir=tmp_path / "images")
        assert {"schema", "task", "degradation", "protocol", "position", "dev_index", "label", "seed",
                "scores", "presets"} == set(row)
        assert set(row["presets"]) == set(quality.GENERATIVE)
        assert (row["task"], row["dev_index"], row["label"], row["seed"]) == (task, 7, 3, 5)
        scores = row["scores"]
        assert set(scores) == set(quality.METHODS)
        assert set(scores["observation"]) == {"psnr", "ssim"}
        assert set(scores["classical"]) == METHOD_KEYS | {"method"}
        for method in quality.GENERATIVE:
            assert set(scores[method]) == GENERATIVE_KEYS, method
            assert scores[method]["stopped"] == "done" and scores[method]["steps"] >= 1
            assert math.isfinite(scores[method]["psnr"]) and -1 <= scores[method]["ssim"] <= 1
        assert scores["dip"]["steps"] == 1  # the scale applies to DIP's steps too
        json.dumps(row)  # JSON-able as it is
        obs, classical = scores["observation"], scores["classical"]
        if task == "colorization":  # the grey observation is the classical answer
            assert classical["psnr"] == pytest.approx(obs["psnr"], abs=1e-6)
        else:  # the hole filled, the image sharpened, the noise removed
            assert classical["psnr"] > obs["psnr"] + 0.3, (task, classical, obs)
        tiles = sorted(p.name for p in (tmp_path / "images" / task).iterdir())
        assert tiles == sorted(f"000_{m}.png" for m in ("clean",) + quality.METHODS)


def test_methods_select_what_runs_and_the_summary_follows(quality, tiny_biggan, tmp_path):
    settings = quality.Settings(iterations_scale=0.005, select_num=2, check_every=1, methods="dgp",
                                precision="bf16")
    ctx = quality.Context(settings)
    row = quality.evaluate_image(ctx, "denoising", scene(), dev_index=1, label=0, position=0, seed=1,
                                 image_dir=tmp_path / "images")
    assert set(row["scores"]) == {"observation", "classical", "dgp"}
    summary = quality.summarize([row], ["denoising"])
    assert set(summary["denoising"]) == {"observation", "classical", "dgp"}
    sheet = quality.write_sheet(tmp_path, [row], ["denoising"], 1)
    assert sheet is not None and sheet.exists()


def test_true_class_gives_each_image_its_label_and_keeps_old_folders_comparable(quality, tiny_biggan):
    rows = {}
    for true_class in (False, True):
        settings = quality.Settings(iterations_scale=0.005, select_num=4, check_every=1,
                                    methods="gan-inversion,dgp", true_class=true_class)
        ctx = quality.Context(settings)
        rows[true_class] = [quality.evaluate_image(ctx, "colorization", scene(), dev_index=k, label=k, position=k,
                                                   seed=k) for k in range(4)]
    for r in rows[True]:
        assert r["scores"]["dgp"]["class"] == r["scores"]["gan-inversion"]["class"] == r["label"]
    assert any(r["scores"]["dgp"]["class"] != r["label"] for r in rows[False])  # selection chose, 4 classes
    plain = dataclasses.asdict(quality.Settings())
    before = {k: v for k, v in plain.items() if k != "true_class"}  # a settings.json from before the option
    assert quality._comparable(before) == quality._comparable(plain)
    assert quality._comparable({**plain, "true_class": True}) != quality._comparable(plain)


def test_scores_are_those_of_restore_simulate(quality, context):
    """The benchmark's DGP score is what ``restore(..., simulate=True)`` reports."""
    from dgp_toolkit.restoration import restore

    row = quality.evaluate_image(context, "deblurring", scene(), dev_index=0, label=0, position=1, seed=2)
    setup = context.setup("deblurring", "dgp")
    direct = restore(scene(), ["blur"], prior=setup.prior, preset=setup.preset, simulate=True, seed=2,
                     iterations_scale=0.005, precision=context.settings.precision)
    assert row["scores"]["dgp"]["psnr"] == pytest.approx(direct.metrics["result"]["psnr"], abs=1e-9)
    assert row["scores"]["observation"]["psnr"] == pytest.approx(direct.metrics["observation"]["psnr"], abs=1e-9)


def test_rows_are_summarised_with_confidence_intervals(quality):
    rows = [{"task": "denoising", "scores": {m: {"psnr": 20.0 + k, "ssim": 0.5, "seconds": 1.0} for m in quality.METHODS}}
            for k in range(3)]
    summary = quality.summarize(rows, ["denoising", "inpainting"])
    assert list(summary) == ["denoising"]
    dgp = summary["denoising"]["dgp"]
    assert dgp["n"] == 3 and dgp["psnr_mean"] == pytest.approx(21.0)
    assert dgp["psnr_ci95"] == pytest.approx(4.303 * 1.0 / math.sqrt(3), rel=1e-3)  # t(0.975, 2) * sd / sqrt(n)
    assert quality.mean_ci([5.0]) == (5.0, None, 1)
    table = quality.markdown(summary, {"command": "x", "date": "d", "machine": "m", "workers": 1, "wall_s": 60, "compute_s": 90,
                                       "settings": {"prior": "biggan", "iterations_scale": 1, "select_num": None,
                                                    "dip_iterations": 1, "dip_lr": 1e-3}})
    assert "| denoising | dgp | 21.00 ± 2.48 | 21.00 | 0 / 3 | 0.500 ± 0.000 | 3 | 1.0 |" in table
    assert "| denoising | observation | **21.00 ± 2.48** |" in table  # a tie: the first best is bold
    assert "| classical: " in table and "| 21.00 |  | 0.500" in table  # no count against itself


def test_the_paired_count_and_median_read_each_image(quality):
    # dgp wins on one image by much, loses on one and ties one: the mean is higher, the count low.
    dgp, classical = [30.0, 19.0, 20.0 + 1e-6], [20.0, 20.0, 20.0]  # the last a tie in float noise
    rows = [{"task": "inpainting", "scores": {"classical": {"psnr": c, "ssim": 0.5}, "dgp": {"psnr": d, "ssim": 0.5}}}
            for d, c in zip(dgp, classical)]
    rows.append({"task": "inpainting", "scores": {"classical": {"psnr": 20.0, "ssim": 0.5}}})  # dgp not run yet
    out = quality.summarize(rows, ["inpainting"])["inpainting"]
    assert out["dgp"]["psnr_mean"] == pytest.approx(23.0, abs=1e-3)
    assert out["dgp"]["psnr_mean"] > out["classical"]["psnr_mean"]
    assert out["dgp"]["above_classical"] == [1, 3] and out["dgp"]["psnr_median"] == 20.0 + 1e-6
    assert out["classical"]["above_classical"] is None and out["classical"]["psnr_median"] == 20.0


def test_the_subset_is_class_balanced(quality):
    if not (ROOT.parent / "shared" / "data" / "cifar10" / "test_dev_jpeg.npz").exists():
        pytest.skip("the CIFAR-10 dev split is not here")
    images, indices, labels = quality.dev_subset(12)
    assert images.shape == (12, 3, 32, 32) and len(set(indices)) == 12
    assert labels[:10] == list(range(10)) and labels[10:] == [0, 1]


# ----------------------------------------------------------------------------- the dip prior
def test_dip_loads_a_random_generator_with_the_priors_architecture(tiny_biggan):
    from dgp_toolkit.priors import load_prior
    from dgp_toolkit.priors.dip import DIPPrior

    biggan, dip = load_prior("biggan"), load_prior("dip")
    assert isinstance(dip, DIPPrior) and dip.name == "dip" and dip.preset_family == "dip"
    assert dip.config == biggan.config == TINY.to_dict()
    g_dip, g_big = dip.G.state_dict(), biggan.G.state_dict()
    assert set(g_dip) == set(g_big)
    assert not torch.equal(g_dip["linear.weight"], g_big["linear.weight"])
    assert all(torch.equal(v, torch.zeros_like(v)) for k, v in g_dip.items() if k.endswith("stored_mean"))
    assert all(torch.equal(v, torch.ones_like(v)) for k, v in g_dip.items() if k.endswith("stored_var"))
    w = g_dip["blocks.0.0.conv1.weight"].reshape(g_dip["blocks.0.0.conv1.weight"].shape[0], -1)
    assert torch.allclose(w @ w.T, torch.eye(w.shape[0]), atol=1e-4)  # orthogonal rows
    again = load_prior("dip")  # seeded: the same network in every process
    assert all(torch.equal(v, again.G.state_dict()[k]) for k, v in g_dip.items())
    assert dip.describe()["family"] == "dip" and dip.describe()["seed"] == 0
    with torch.no_grad():
        x = dip.generate(dip.sample(2), [0, 1])
    assert x.shape == (2, 3, 32, 32) and 0.05 < float(x.std()) < 0.95  # neither flat nor saturated


def test_dip_restores_from_the_command_line_with_a_preset_file(dgp, tiny_biggan, tmp_path, monkeypatch):
    from dgp_toolkit.presets import load_preset
    from dgp_toolkit.priors.dip import dip_preset, write_dip_preset

    preset_file = write_dip_preset(tmp_path / "dip.toml", "deblurring", iterations=3, g_lr=1e-3)
    loaded = load_preset(preset_file)
    assert loaded.schedule == dip_preset("deblurring", iterations=3).schedule
    assert loaded.select_num == 1 and loaded.schedule.stages[0].z_lr == 0.0
    assert loaded.schedule.stages[0].weights == {"mse": 1.0}
    monkeypatch.chdir(tmp_path)
    Image.fromarray(((scene().permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)).save("a.png")
    result = dgp("restore", "a.png", "--prior", "dip", "--preset", str(preset_file), "--degrade", "blur",
                 "--simulate", "--device", "cpu", "-o", "out", "--quiet")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)[0]
    assert record["error"] is None and record["result"]["psnr"] > 0
    run_json = json.loads((tmp_path / "out" / "a_run.json").read_text())
    assert run_json["prior"]["family"] == "dip" and len(run_json["history"]) == 3
    # Without a preset file, the shipped dip preset for the task (MSE only, latent fixed) is used.
    builtin = dgp("restore", "a.png", "--prior", "dip", "--degrade", "blur", "-o", "out2", "--quiet",
                  "--device", "cpu", "--iterations-scale", "0.001")
    assert builtin.exit_code == 0, builtin.stderr
    shipped = json.loads((tmp_path / "out2" / "a_run.json").read_text())
    assert shipped["prior"]["family"] == "dip" and len(shipped["history"]) == 2


def test_dip_doctests():
    import doctest

    import dgp_toolkit.priors.dip as dip

    result = doctest.testmod(dip, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0


def test_dip_steps_per_task_unless_given(quality):
    per_task = quality.Context(quality.Settings())
    for task, steps in quality.DIP_ITERATIONS.items():
        assert per_task.preset(task, "dip").schedule.total_iterations == steps
    forced = quality.Context(quality.Settings(dip_iterations=300))
    assert {forced.preset(t, "dip").schedule.total_iterations for t in quality.TASKS} == {300}
    assert set(quality.DIP_ITERATIONS) == set(quality.TASKS)


def test_a_partial_run_says_so(quality, tmp_path):
    rows = [{"task": "denoising", "scores": {m: {"psnr": 20.0, "ssim": 0.5, "seconds": 1.0} for m in quality.METHODS}}]
    meta = {"command": "x", "date": "d", "machine": "m", "workers": 2, "wall_s": None, "compute_s": 90,
            "rows_done": 1, "rows_wanted": 500,
            "settings": {"prior": "biggan", "iterations_scale": 1, "select_num": None, "dip_iterations": None,
                         "dip_lr": 1e-3, "methods": "gan-inversion,dgp"}}
    table = quality.markdown(quality.summarize(rows, ["denoising"]), meta)
    assert "**Partial: 1 of 500 (task, image) rows so far**" in table
    assert "min wall" not in table and "DIP" not in table  # --report ran nothing; no DIP in the methods
    meta.update(rows_done=500, settings={**meta["settings"], "methods": "dip,dgp"})
    table = quality.markdown(quality.summarize(rows, ["denoising"]), meta)
    assert "Partial" not in table and "DIP steps per task colorization 2000" in table
    assert "computed on" not in table  # one machine (or none recorded): the header's line says it
    meta["row_machines"] = {"Xeon, 2 cores": 30, "EPYC, 2 cores": 10}
    table = quality.markdown(quality.summarize(rows, ["denoising"]), meta)
    assert "computed on Xeon, 2 cores (30); EPYC, 2 cores (10)" in table
    with pytest.raises(SystemExit) as err:  # nothing to report
        quality.main(["--report", "--out", str(tmp_path / "none")])
    assert err.value.code == 2


def test_a_zero_dip_step_count_is_refused(quality, tmp_path):
    with pytest.raises(SystemExit) as err:
        quality.main(["--dip-iterations", "0", "--out", str(tmp_path)])
    assert err.value.code == 2


def test_dip_settings_matter_only_when_dip_runs(quality):
    a = dataclasses.asdict(quality.Settings(methods="gan-inversion,dgp", dip_iterations=2000))
    b = dataclasses.asdict(quality.Settings(methods="gan-inversion,dgp"))
    assert quality._comparable(a) == quality._comparable(b)
    a["methods"] = b["methods"] = "gan-inversion,dip,dgp"
    assert quality._comparable(a) != quality._comparable(b)


def test_a_changed_preset_reruns_only_its_method_on_the_rows_there(quality, tiny_biggan, tmp_path, monkeypatch):
    if not (ROOT.parent / "shared" / "data" / "cifar10" / "test_dev_jpeg.npz").exists():
        pytest.skip("the CIFAR-10 dev split is not here")
    out = tmp_path / "q"
    args = ["--n", "1", "--tasks", "denoising", "--methods", "dip,dgp", "--iterations-scale", "0.005",
            "--select-num", "2", "--workers", "1", "--sheet-images", "0", "--out", str(out)]
    monkeypatch.setitem(quality.DIP_ITERATIONS, "denoising", 200)  # 1 step at this scale
    assert quality.main(args) == 0
    first = quality.read_rows(out / "rows.jsonl")
    assert len(first) == 1 and set(first[0]["presets"]) == {"dip", "dgp"}
    # A row from before rows recorded their presets takes the digests of the folder's preset
    # files (what it ran with): nothing reruns (the seconds are those of the first run).
    legacy = {k: v for k, v in first[0].items() if k != "presets"}
    (out / "rows.jsonl").write_text(json.dumps(legacy) + "\n")
    presets_before = {f.name: f.read_text() for f in (out / "presets").iterdir()}
    assert quality.main(args + ["--report"]) == 0  # reads only: a run may be appending to the rows
    assert (out / "rows.jsonl").read_text() == json.dumps(legacy) + "\n"
    assert {f.name: f.read_text() for f in (out / "presets").iterdir()} == presets_before
    assert "| denoising | dip |" in (out / "quality.md").read_text()
    assert quality.main(args) == 0
    assert quality.read_rows(out / "rows.jsonl") == first
    # DIP's preset changes: only DIP reruns on the row; DGP's scores stay as they were.
    monkeypatch.setitem(quality.DIP_ITERATIONS, "denoising", 400)
    assert quality.main(args + ["--report"]) == 0  # before the rerun, the table leaves the stale DIP out
    assert "| denoising | dip |" not in (out / "quality.md").read_text()
    assert "| denoising | dgp |" in (out / "quality.md").read_text()
    assert quality.main(args) == 0
    lines = (out / "rows.jsonl").read_text().splitlines()
    assert len(lines) == 1  # the merged row replaced the old one
    row = json.loads(lines[0])
    assert row["scores"]["dgp"] == first[0]["scores"]["dgp"]
    assert (first[0]["scores"]["dip"]["steps"], row["scores"]["dip"]["steps"]) == (1, 2)
    assert row["presets"]["dgp"] == first[0]["presets"]["dgp"]
    assert row["presets"]["dip"] != first[0]["presets"]["dip"]
    assert "| denoising | dip |" in (out / "quality.md").read_text()


def test_gan_inversion_gets_its_own_schedule_where_the_preset_is_a_short_fast_fit(quality):
    from dgp_toolkit.presets import load_preset

    ctx = quality.Context(quality.Settings(select_num=None))
    for task in quality.TASKS:
        gi, dgp = ctx.preset(task, "gan-inversion"), ctx.preset(task, "dgp")
        assert gi.schedule.name == "latent-only" and all(st.group_lr(0) == 0 for st in gi.schedule.stages)
        assert gi.select_num == dgp.select_num
        own = quality.GAN_INVERSION_PRESETS / f"gan-inversion-{task}.toml"
        expected = load_preset(own) if own.is_file() else load_preset(task, family="biggan-32")
        assert gi.schedule.total_iterations == expected.schedule.total_iterations
    assert ctx.preset("super-resolution", "gan-inversion").schedule.total_iterations == 1000
    assert ctx.preset("super-resolution", "dgp").schedule.total_iterations == 300
