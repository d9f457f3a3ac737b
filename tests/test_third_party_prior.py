"""A working third-party prior, found through its entry point: it passes the prior
contract and restores images from Python and from ``dgp-tool restore``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dgp_toolkit
from dgp_toolkit.registry import get_registry
from dgp_toolkit.testing import PriorContract

pytestmark = pytest.mark.usefixtures("one_thread")

TOY_SOURCE = (Path(__file__).with_name("toy_prior.py")).read_text()


@pytest.fixture
def toy(plugin_dist):
    """``dgp-toolkit-toy`` installed: entry point ``toy`` -> module ``dgp_toy_prior``."""
    return plugin_dist("dgp-toolkit-toy", entry_points={"toy": "dgp_toy_prior"},
                       modules={"dgp_toy_prior": TOY_SOURCE}, version="0.3.0")


class TestToyPrior(PriorContract):
    factory = staticmethod(lambda **options: get_registry().create("prior", "toy", **options))
    options = {"device": "cpu", "seed": 1}
    registered_name = "toy"

    @pytest.fixture(autouse=True)
    def _installed(self, toy):
        """Every contract test runs with the distribution installed."""


def test_plugins_lists_the_prior(dgp, toy):
    result = dgp("plugins", "--json")
    assert result.exit_code == 0 and result.stderr == ""
    (row,) = [row for row in json.loads(result.stdout) if row["entry_point"] == "toy"]
    assert row["distribution"] == "dgp-toolkit-toy" and row["version"] == "0.3.0" and row["error"] is None
    assert row["registers"]["priors"] == ["toy"]


def test_python_restore_with_the_prior(toy, tiny_files):
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    result = dgp_toolkit.restore(image, ["blur"], "toy", preset=str(tiny_files[1]), simulate=True, label="square")
    assert result.image.size == (32, 32)
    restored = np.asarray(result.image, dtype=np.float64)
    assert np.isfinite(restored).all() and restored.std() > 0
    assert np.isfinite(result.metrics["result"]["psnr"])
    assert result.config["prior"]["name"] == "toy"


def test_cli_restore_with_the_prior(dgp, toy, tiny_files, tmp_path):
    source = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(source)
    result = dgp("restore", "--prior", "toy", "--preset", str(tiny_files[1]), "--degrade", "noise",
                 str(source), "-o", str(tmp_path / "out"), "--quiet")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "in_restored.png").is_file()
    run = json.loads((tmp_path / "out" / "in_run.json").read_text())
    assert "toy" in json.dumps(run["prior"])
