"""End to end on the shipped (embedded) prior: the README's main job, shortened."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "images" / "cifar_cat_300.png"


def test_embedded_prior_loads_without_shared_or_network(tmp_path):
    # A fresh interpreter, run from an unrelated folder: the package needs nothing beside itself.
    code = ("import dgp_toolkit, torch; p = dgp_toolkit.load_prior('biggan'); "
            "z = p.sample(2, generator=torch.Generator().manual_seed(0)); "
            "x = p.generate(z, ['cat', 'ship']); "
            "print(p.resolution, p.n_classes, p.dim_z, tuple(x.shape), p.class_names[3], len(p.features(x)))")
    env = {k: v for k, v in os.environ.items() if k != "DGP_TOOLKIT_EMBEDDED_WEIGHTS"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["32", "10", "128", "(2,", "3,", "32,", "32)", "cat", "5"]


@pytest.mark.slow
def test_quick_start_restore_command(tmp_path):
    from click.testing import CliRunner

    from dgp_toolkit.cli import make_cli

    r = CliRunner().invoke(make_cli(), ["restore", "--degrade", "blur", "--prior", "biggan", str(DEMO),
                                        "-o", str(tmp_path), "--iterations-scale", "0.01", "--quiet",
                                        "--simulate"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert rows[0]["error"] is None and rows[0]["preset"] == "deblurring"
    assert rows[0]["result"]["psnr"] > 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cifar_cat_300_observed.png", "cifar_cat_300_restored.png", "cifar_cat_300_run.json"]
