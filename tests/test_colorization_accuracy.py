"""``benchmarks/colorization_accuracy.py``: the paper's colorization criterion (a classifier's
accuracy) on the tiles of a ``quality.py --save-images`` run, with a tiny random prior."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from PIL import Image
from tiny import benchmark_module, needs_dev_split

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def modules():
    quality = benchmark_module("quality")
    accuracy = benchmark_module("colorization_accuracy", "colorization_accuracy_benchmark")
    yield quality, accuracy
    for name in ("quality", "colorization_accuracy_benchmark"):
        sys.modules.pop(name, None)


def test_wilson_interval_and_mcnemar(modules):
    _, acc = modules
    low, high = acc.wilson(81, 100)
    z = 1.959964
    for bound in (low, high):  # the Wilson bounds solve (k/n - p)^2 = z^2 p (1 - p) / n
        assert (0.81 - bound) ** 2 == pytest.approx(z * z * bound * (1 - bound) / 100, rel=1e-9)
    assert low < 0.81 < high and (round(low, 3), round(high, 3)) == (0.722, 0.875)
    assert acc.wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and acc.wilson(10, 10)[1] == pytest.approx(1.0)
    assert acc.mcnemar_p(0, 0) == 1.0
    assert acc.mcnemar_p(10, 0) == pytest.approx(2 * 0.5**10)


@needs_dev_split
def test_save_images_writes_every_tile_and_the_accuracy_is_scored_on_them(modules, tiny_biggan, tmp_path):
    quality, acc = modules
    out = tmp_path / "run"
    code = quality.main(["--tasks", "colorization", "--n", "3", "--methods", "gan-inversion,dgp", "--workers", "1",
                         "--iterations-scale", "0.005", "--select-num", "2", "--save-images", "--sheet-images", "1",
                         "--out", str(out)])
    assert code == 0
    tiles = sorted(p.name for p in (out / "images" / "colorization").iterdir())
    assert tiles == [f"{k:03d}_{name}.png" for k in range(3)
                     for name in sorted(["clean", "observation", "classical", "gan-inversion", "dgp"])]

    # Make image 1's DGP tile the clean image and its GAN-inversion tile the grey input: the raw
    # variants must then be scored exactly as those.
    folder = out / "images" / "colorization"
    shutil.copy(folder / "001_clean.png", folder / "001_dgp.png")
    shutil.copy(folder / "001_observation.png", folder / "001_gan-inversion.png")
    assert acc.main([str(out)]) == 0
    result = json.loads((out / "accuracy.json").read_text())
    assert result["n"] == 3 and len(result["labels"]) == 3
    m = result["methods"]
    assert set(m) == {"clean", "observation", "gan-inversion", "gan-inversion (raw)", "dgp", "dgp (raw)"}
    assert m["dgp (raw)"]["predictions"][1] == m["clean"]["predictions"][1]
    assert m["gan-inversion (raw)"]["predictions"][1] == m["observation"]["predictions"][1]
    for name, v in m.items():
        right = np.array(v["predictions"]) == np.array(result["labels"])
        assert v["correct"] == right.sum() and v["accuracy"] == pytest.approx(right.mean())
        assert 0 <= v["wilson95"][0] <= v["accuracy"] <= v["wilson95"][1] <= 1
        if name != "observation":
            grey = np.array(m["observation"]["predictions"]) == np.array(result["labels"])
            assert v["vs_observation"]["right_where_grey_wrong"] == (right & ~grey).sum()
            assert v["vs_observation"]["wrong_where_grey_right"] == (~right & grey).sum()
    assert 0.8 < result["dev_split"]["clean"] <= 1 and 0 < result["dev_split"]["grey"] <= 1
    assert m["observation"]["mean_chroma"] < 1.0 < m["clean"]["mean_chroma"]  # grey has no colour
    assert set(result["latent_selection"]) == {"gan-inversion", "dgp"}
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    for method, s in result["latent_selection"].items():
        true = [r["scores"][method]["class"] == r["label"] for r in rows]
        split = s["correct_by_selection"]
        assert s["chosen_class_is_true"] == split["class_true"]["n"] == sum(true)
        assert split["class_true"]["n"] + split["class_wrong"]["n"] == 3
        for name in ("clean", "observation", method):
            right = np.array(m[name]["predictions"]) == np.array(result["labels"])
            assert split["class_true"][name] == right[np.array(true)].sum()
            assert split["class_true"][name] + split["class_wrong"][name] == m[name]["correct"]
    assert "| grey input (observation) |" in (out / "accuracy.md").read_text()


def test_a_folder_without_tiles_is_refused_with_the_fix(modules, tmp_path):
    _, acc = modules
    with pytest.raises(SystemExit) as err:
        acc.main([str(tmp_path)])
    assert err.value.code == 2  # no rows.jsonl: argparse's usage error
    row = {"task": "colorization", "dev_index": 0, "position": 0, "label": 1,
           "scores": {"observation": {"psnr": 30.0, "ssim": 0.9}, "dgp": {"psnr": 25.0, "ssim": 0.9, "class": 1}}}
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "images" / "colorization").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "images" / "colorization" / "000_clean.png")
    with pytest.raises(SystemExit, match="rerun quality.py with --save-images"):
        acc.main([str(tmp_path)])
