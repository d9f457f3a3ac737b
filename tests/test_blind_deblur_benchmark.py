"""``benchmarks/blind_deblur.py``: its specs, resumable rows and table (the restorations
themselves need the engine's side of issue 28: that test runs once ``restore`` takes
``simulate_with``)."""

from __future__ import annotations

import inspect
import json
import sys

import pytest
import torch
from tiny import benchmark_module, needs_dev_split

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bench():
    yield benchmark_module("blind_deblur", "blind_deblur_benchmark")
    sys.modules.pop("blind_deblur_benchmark", None)


def row(sigma, method, index, psnr, fitted=None, low=False):
    return {"sigma": sigma, "method": method, "dev_index": index, "position": index, "psnr": psnr, "ssim": 0.5,
            "observation": {"psnr": 20.0, "ssim": 0.4}, "fitted_sigma": fitted, "at_lower_bound": low if fitted else None,
            "diverged": psnr < 15}


def test_every_blur_shares_one_kernel_and_only_sigma_differs(bench):
    assert bench.kernel_size([1, 2, 3], list(bench.METHODS)) == 25
    assert bench.kernel_size([1], ["true"]) == 5 and bench.kernel_size([1], ["blind", "true"]) == 17
    assert bench.specs_for(3.0, "double", 25) == ("blur:sigma=6,size=25", "blur:sigma=3,size=25")
    assert bench.specs_for(1.0, "blind", 25) == ("blur:sigma=auto,size=25", "blur:sigma=1,size=25")
    import dgp_toolkit
    from dgp_toolkit.learnable import learnable_specs

    blind, simulation = (dgp_toolkit.parse_degradation(s) for s in bench.specs_for(1.0, "blind", 25))
    assert [s.key for s in learnable_specs(blind)] == ["blur.sigma"] and learnable_specs(simulation) == []


def test_rows_resume_per_restoration(bench, tmp_path):
    path = tmp_path / "rows.jsonl"
    first, again, other = row(1.0, "blind", 4, 20.0, 1.1), row(1.0, "blind", 4, 21.0, 1.0), row(2.0, "true", 4, 19.0)
    path.write_text(json.dumps(first) + "\n" + json.dumps(other) + "\n" + json.dumps(again) + "\n{\"half")
    rows = bench.read_rows(path)
    assert [r["psnr"] for r in rows] == [19.0, 21.0]  # the later line wins; the cut line is ignored
    images = torch.zeros(2, 3, 32, 32)
    jobs = bench.plan_jobs(images, [4, 9], [0, 1], [1.0, 2.0], ["blind", "true"], {bench.row_key(r) for r in rows}, 10)
    assert [(j["position"], j["sigma"], j["method"], j["seed"]) for j in jobs] == [
        (0, 1.0, "true", 10), (0, 2.0, "blind", 10),
        (1, 1.0, "blind", 11), (1, 1.0, "true", 11), (1, 2.0, "blind", 11), (1, 2.0, "true", 11)]


def test_summary_pairs_with_the_true_sigma_fit_and_reports_the_fitted_sigma(bench):
    rows = [row(2.0, "true", i, 22.0 + i) for i in range(3)]
    rows += [row(2.0, "blind", i, 21.8 + i, fitted=f, low=f == 0.3) for i, f in enumerate([1.8, 2.3, 0.3])]
    rows += [row(2.0, "half", i, 20.0 + i) for i in range(3)]
    rows[-1]["diverged"] = True
    summary = bench.summarize(rows, [1.0, 2.0], ["blind", "true", "half"])
    assert list(summary) == ["2"]
    blind = summary["2"]["methods"]["blind"]
    assert blind["minus_true"][0] == pytest.approx(-0.2) and blind["minus_true"][2] == 3
    assert blind["fitted_sigma"][0] == pytest.approx(4.4 / 3)
    assert blind["abs_error"][0] == pytest.approx((0.2 + 0.3 + 1.7) / 3)
    assert blind["at_lower_bound"] == [1, 3]
    assert summary["2"]["methods"]["half"]["minus_true"][0] == pytest.approx(-2.0)
    assert "minus_true" not in summary["2"]["methods"]["true"]
    meta = {"command": "python benchmarks/blind_deblur.py", "date": "today", "machine": "m", "rows_done": 9,
            "rows_wanted": 18, "settings": {"prior": "biggan", "preset": None, "preset_digest": "abc",
                                            "iterations_scale": 1.0, "select_num": None, "precision": "float32",
                                            "kernel": 25}}
    table = bench.markdown(summary, meta)
    assert "**Partial: 9 of 18 restorations so far**" in table
    assert "| 2 | blind | sigma=auto | 22.80 ± " in table and "| 1 / 3 | 0 | 3 |" in table
    assert summary["2"]["methods"]["half"]["diverged"] == 1
    assert "| 2 | half | sigma=1 | 21.00 ± " in table and "| -2.00 ± 0.00 |" in table
    assert "sigma 2: blind within 0.5 dB of non-blind (-0.20 dB, N 3)" in table


@needs_dev_split
def test_main_checks_its_arguments_and_its_folder(bench, tiny_biggan, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        bench.main(["--methods", "blind,guess", "--out", str(tmp_path)])
    assert exited.value.code == 2 and "choose from blind, true, half, double" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        bench.main(["--report", "--out", str(tmp_path / "none")])
    assert exited.value.code == 2
    with pytest.raises(SystemExit):
        bench.main(["--sigmas", "0", "--out", str(tmp_path)])
    out = tmp_path / "run"
    assert bench.main(["--n", "2", "--limit", "0", "--select-num", "2", "--out", str(out)]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["kernel"] == 25 and settings["select_num"] == 2 and settings["preset_digest"]
    assert "**Partial: 0 of 24 restorations so far**" in (out / "blind_deblur.md").read_text()
    (out / "rows.jsonl").write_text("")
    with pytest.raises(SystemExit, match="holds rows made with other settings"):
        bench.main(["--n", "2", "--limit", "0", "--select-num", "3", "--out", str(out)])
    # a preset's wider range widens every kernel; one too wide for the images fails before any image
    from dgp_toolkit.errors import DGPUsageError
    from dgp_toolkit.presets import preset_text

    for high, kernel in ((7.0, 29), (20.0, None)):
        preset = tmp_path / f"wide{high:g}.toml"
        preset.write_text(preset_text("deblurring") + f"\n[learnable.blur.sigma]\nhigh = {high}\n")
        args = ["--n", "1", "--limit", "0", "--preset", str(preset), "--out", str(tmp_path / preset.stem)]
        if kernel is None:
            with pytest.raises(DGPUsageError, match="a 81x81 kernel .* needs images larger than 40 px per side"):
                bench.main(args)
        else:
            assert bench.main(args) == 0
            assert json.loads((tmp_path / preset.stem / "settings.json").read_text())["kernel"] == kernel


@pytest.mark.skipif("simulate_with" not in inspect.signature(__import__("dgp_toolkit").restore).parameters,
                    reason="restore() has no simulate_with yet (the engine's side of issue 28)")
def test_one_blind_and_one_non_blind_restoration_give_rows(bench, tiny_biggan, tmp_path):
    settings = bench.Settings(iterations_scale=0.02, select_num=2, check_every=1, kernel=25)
    ctx = bench.Context(settings)
    clean = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    blind = bench.evaluate(ctx, clean, sigma=2.0, method="blind", position=0, dev_index=5, label=1, seed=3)
    true = bench.evaluate(ctx, clean, sigma=2.0, method="true", position=0, dev_index=5, label=1, seed=3)
    assert blind["observation"] == true["observation"]  # the same simulated observation
    assert 0.3 <= blind["fitted_sigma"] <= 4.0 and true["fitted_sigma"] is None
    assert isinstance(blind["diverged"], bool) and blind["final_loss"] > 0
    assert blind["fitted_stages"] and len(blind["fitted_stages"]) == len(ctx.preset.schedule.stages)
    json.dumps(blind)
