"""training/gpu_chunk.sh, the prepared GPU training chunk, run here on the CPU with a tiny
width and a few seconds: it trains, exports, and its parts reassemble into a prior that
loads and matches its checksum (so that a session lent a GPU can spend its minutes on it)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10" / "test_dev_jpeg.npz"


@pytest.mark.skipif(not DATA.exists() or shutil.which("split") is None, reason="needs ../shared and coreutils")
def test_the_gpu_chunk_script_trains_exports_and_splits_a_prior_that_reassembles(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "DEVICE": "cpu", "G_CH": "8", "MINUTES": "0.05", "DATA": str(DATA),
           "RUN": str(tmp_path / "run"), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "training" / "gpu_chunk.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    parts = sorted(out.glob("prior.safetensors.part*"))
    assert parts and all(p.stat().st_size <= 15 * 2**20 for p in parts)
    whole = b"".join(p.read_bytes() for p in parts)
    digest, name = (out / "prior.sha256").read_text().split()
    assert name == "prior.safetensors" and hashlib.sha256(whole).hexdigest() == digest
    (tmp_path / "prior.safetensors").write_bytes(whole)

    from dgp_toolkit.priors import load_prior

    prior = load_prior("biggan", weights=tmp_path / "prior.safetensors", device="cpu")
    assert prior.G.config.G_ch == 8 and prior.n_classes == 10
    assert (out / "history.json").exists() and '"stopped": "time"' in (out / "train.log").read_text()
