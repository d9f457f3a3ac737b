"""``benchmarks/inpainting_diagnostics.py``: the harmonic fill and the Poisson blend it scores."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from dgp_toolkit.plugins.degradations.mask import Mask
from tiny import benchmark_module


@pytest.fixture(scope="module")
def diag():
    yield benchmark_module("inpainting_diagnostics", "inpainting_diagnostics_benchmark")
    sys.modules.pop("inpainting_diagnostics_benchmark", None)


def test_harmonic_fill_reproduces_a_linear_ramp_and_leaves_known_pixels(diag):
    missing = Mask().missing(32, 32)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    ramp = np.stack([0.2 + 0.5 * xx, 0.3 * yy + 0.1 * xx, np.full_like(xx, 0.7)], axis=-1)
    holed = np.where(missing[..., None], 0.0, ramp)
    filled = diag.harmonic_fill(holed, missing)
    np.testing.assert_allclose(filled, ramp, atol=1e-12)  # a linear function is harmonic
    assert np.array_equal(filled[~missing], holed[~missing])


def test_report_poisson_blend_removes_an_offset_of_the_fill(diag, tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.uniform(-0.6, 0.6, (1, 3, 32, 32)).astype(np.float32)
    raw = clean + 0.2  # the right content, too bright everywhere: the blend takes the border's level
    np.savez(tmp_path / "007.npz", clean=clean, x0=np.zeros_like(clean), raw=raw,
             snaps=np.stack([raw] * 5), label=3, cls=3)
    result = diag.report(tmp_path)
    row = result["rows"][0]
    assert row["position"] == 7 and len(row["stages"]) == 5
    assert row["poisson"] > 60 > row["dgp"] + 20  # the offset costs the plain fill ~20 dB
    assert result["summary"]["n"] == 1 and result["summary"]["stage_means"][2] == pytest.approx(row["dgp"])
