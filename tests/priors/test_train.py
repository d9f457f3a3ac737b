"""Training a prior: exact resumption, data loading, the train-prior command (tiny configs)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.priors.biggan.datasets import load_dataset
from dgp_toolkit.priors.biggan.train import Trainer, TrainSettings

TINY = dict(G_ch=8, D_ch=8, dim_z=20, shared_dim=16, batch_size=4, ema_start=2, ema_decay=0.9,
            precision="float32", checkpoint_every=2, sample_every=3)


@pytest.fixture
def folder_dataset(tmp_path):
    """A class-per-subfolder data set of 3 classes, non-square images of mixed formats."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for c, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir(parents=True)
        for i in range(4):
            arr = rng.integers(0, 60, (40, 48, 3), dtype=np.uint8)
            arr[..., c] += 180
            Image.fromarray(arr).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def _weights(trainer):
    return {f"{n}.{k}": v for n in ("G", "D", "G_ema") for k, v in getattr(trainer, n).state_dict().items()}


def test_folder_dataset_is_fitted_and_labelled(folder_dataset):
    ds = load_dataset(folder_dataset, 32)
    assert ds.images.shape == (12, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.class_names == ["blue", "green", "red"]
    # "red" images are class 2 and have a strong red channel.
    red = ds.images[ds.labels == 2].float()
    assert red[:, 0].mean() > red[:, 1].mean() + 100


def test_bad_data_paths_are_clear(tmp_path):
    with pytest.raises(DGPUsageError, match="not found"):
        load_dataset(tmp_path / "nope.npz", 32)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DGPUsageError, match="npz"):
        load_dataset(tmp_path / "x.txt", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DGPUsageError, match="subfolder"):
        load_dataset(tmp_path / "empty", 32)


def test_resumed_run_equals_uninterrupted_run(folder_dataset, tmp_path):
    ds = load_dataset(folder_dataset, 32)
    straight = Trainer(TrainSettings(**TINY), ds)
    straight.train(5)
    first = Trainer(TrainSettings(**TINY), ds)
    first.train(2, checkpoint_path=tmp_path / "c.pt")
    resumed = Trainer(TrainSettings(**TINY), ds)
    resumed.load_checkpoint(tmp_path / "c.pt")
    assert resumed.step == 2
    resumed.train(5)
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # and training really changed the weights
    assert not torch.equal(first.G.linear.weight, straight.G.linear.weight)


def test_losses_finite_and_checkpoint_refuses_other_architecture(folder_dataset, tmp_path):
    ds = load_dataset(folder_dataset, 32)
    t = Trainer(TrainSettings(**TINY), ds)
    t.train(3, checkpoint_path=tmp_path / "c.pt")
    assert all(np.isfinite([r["d_real"], r["d_fake"], r["g"]]).all() for r in t.history)
    other = Trainer(TrainSettings(**{**TINY, "G_ch": 16}), ds)
    with pytest.raises(DGPUsageError, match="architecture"):
        other.load_checkpoint(tmp_path / "c.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DGPUsageError, match="checkpoint"):
        t.load_checkpoint(tmp_path / "junk.pt")


def test_train_prior_command_stops_on_time_and_resumes(folder_dataset, tmp_path):
    from dgp_toolkit.cli import make_cli

    out = tmp_path / "run"
    args = ["train-prior", str(folder_dataset), "-o", str(out), "--g-ch", "8", "--d-ch", "8",
            "--dim-z", "20", "--shared-dim", "16", "--batch-size", "4", "--quiet",
            "--checkpoint-every", "2", "--sample-every", "2"]
    r = CliRunner().invoke(make_cli(), args + ["--iterations", "2"])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout.strip().splitlines()[-1])
    assert first["step"] == 2 and first["stopped"] == "done"
    assert (out / "checkpoint.pt").exists() and (out / "prior.safetensors").exists()
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["samples_0000002.png"]
    r = CliRunner().invoke(make_cli(), args + ["--iterations", "4"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["step"] == 4
    assert "resumed from" in r.stderr
    from safetensors import safe_open

    with safe_open(str(out / "prior.safetensors"), "pt") as f:
        meta = f.metadata()
        keys = list(f.keys())
    assert json.loads(meta["class_names"]) == ["blue", "green", "red"]
    assert any(k.startswith("G.") for k in keys) and any(k.startswith("D.") for k in keys)


TRAIN_ARGS = ["--g-ch", "8", "--d-ch", "8", "--dim-z", "20", "--shared-dim", "16", "--batch-size", "4",
              "--quiet", "--checkpoint-every", "2", "--sample-every", "2", "--iterations", "2"]


@pytest.mark.parametrize("taken, words", [
    # found when the first sample grid or checkpoint was written, after training steps
    ("samples", "--out run/samples: exists and is not a folder"),
    ("prior.safetensors", "--out run/prior.safetensors: is a folder"),
    # torch.load on a pipe blocked for ever
    ("checkpoint.pt", "--out run/checkpoint.pt: is a named pipe (FIFO)"),
])
def test_train_prior_checks_its_run_folder_before_any_work(folder_dataset, tmp_path, monkeypatch, fifo, taken,
                                                           words):
    from dgp_toolkit.cli import make_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    {"samples": lambda: (tmp_path / "run" / "samples").write_text("x"),
     "prior.safetensors": lambda: (tmp_path / "run" / "prior.safetensors").mkdir(),
     "checkpoint.pt": lambda: fifo("run/checkpoint.pt")}[taken]()
    r = CliRunner().invoke(make_cli(), ["train-prior", str(folder_dataset), "-o", "run", *TRAIN_ARGS])
    assert r.exit_code == 2 and words in r.stderr, r.output
    assert "data:" not in r.stderr  # before the data set was decoded
    assert [p.name for p in (tmp_path / "run").iterdir()] == [taken]


def test_train_prior_refuses_pipes_as_data_and_skips_them_in_class_folders(folder_dataset, tmp_path, fifo):
    from dgp_toolkit.cli import make_cli

    with pytest.raises(DGPUsageError, match="data.npz: is a named pipe"):
        load_dataset(fifo("data.npz"), 32)
    fifo("data/red/pipe.png")
    assert len(load_dataset(folder_dataset, 32)) == 12
    r = CliRunner().invoke(make_cli(), ["train-prior", str(folder_dataset), "-o", str(tmp_path / "run"), *TRAIN_ARGS])
    assert r.exit_code == 0, r.output
    # prior.safetensors was 0600 (safetensors' own mode) beside 0644 files
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir() if p.is_file()}
    umask = os.umask(0)
    os.umask(umask)
    assert modes == dict.fromkeys(["checkpoint.pt", "history.json", "prior.safetensors"], 0o666 & ~umask)


def test_compact_checkpoint_resumes_exactly(folder_dataset, tmp_path):
    from dgp_toolkit.priors.biggan.train import compact_checkpoint

    ds = load_dataset(folder_dataset, 32)
    straight = Trainer(TrainSettings(**TINY), ds)
    straight.train(4)
    first = Trainer(TrainSettings(**TINY), ds)
    first.train(2)
    full = first.state()
    full["opt_g"], full["opt_d"] = first.opt_g.state_dict(), first.opt_d.state_dict()  # the old, full form
    torch.save(full, tmp_path / "c.pt")
    big = (tmp_path / "c.pt").stat().st_size
    compact_checkpoint(tmp_path / "c.pt")
    assert (tmp_path / "c.pt").stat().st_size < 0.9 * big
    resumed = Trainer(TrainSettings(**TINY), ds)
    resumed.load_checkpoint(tmp_path / "c.pt")
    resumed.train(4)
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_export_is_byte_for_byte_reproducible_across_processes_and_threads(folder_dataset, tmp_path):
    """The same checkpoint exports to the same bytes (the model card's sha256 holds)."""
    import hashlib
    import subprocess
    import sys

    ds = load_dataset(folder_dataset, 32)
    t = Trainer(TrainSettings(**TINY), ds)
    t.train(2, checkpoint_path=tmp_path / "c.pt")
    code = ("import sys, torch; torch.set_num_threads(int(sys.argv[1])); "
            "from dgp_toolkit.priors.biggan.train import export_checkpoint; "
            "export_checkpoint(sys.argv[2], sys.argv[3], recalibrate_batches=3, batch_size=4)")
    digests = set()
    for k, threads in enumerate((1, 2, 2)):  # separate processes: hash-map order differs between them
        out = tmp_path / f"p{k}.safetensors"
        subprocess.run([sys.executable, "-c", code, str(threads), str(tmp_path / "c.pt"), str(out)], check=True)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1
    from safetensors.torch import load_file

    assert load_file(str(tmp_path / "p0.safetensors")).keys()  # still a valid safetensors file


def test_bf16_fast_path_keeps_losses_finite_and_samples_close_to_float32(folder_dataset):
    """bf16 autocast + channels-last (the fast path on AMX CPUs) trains the same model: from
    the same seed, a few iterations give finite losses and nearly the same samples."""
    ds = load_dataset(folder_dataset, 32)
    runs = {}
    for precision in ("float32", "bf16"):
        t = Trainer(TrainSettings(**{**TINY, "precision": precision, "ema_start": 100}), ds)
        assert t.precision == precision
        t.train(4)
        assert all(np.isfinite([r["d_real"], r["d_fake"], r["g"]]).all() for r in t.history)
        runs[precision] = t
    a = runs["float32"].sample_grid_tensor(per_class=2)
    b = runs["bf16"].sample_grid_tensor(per_class=2)
    assert b.dtype == torch.float32 and b.shape == a.shape
    spread = a.std().item()
    assert (a - b).abs().mean().item() < 0.1 * spread, ((a - b).abs().mean().item(), spread)
    # the weights stay float32 under autocast
    assert all(p.dtype == torch.float32 for p in runs["bf16"].G.parameters())


@pytest.mark.parametrize("option, value", [("--lr-g", "nan"), ("--lr-d", "-1e-4"), ("--max-minutes", "nan"),
                                           ("--ortho", "inf")])
def test_train_prior_refuses_non_finite_or_negative_numbers_before_anything_runs(folder_dataset, tmp_path,
                                                                                 option, value):
    # --max-minutes nan passed a FloatRange and then never stopped; --lr-g nan trained to NaN.
    from dgp_toolkit.cli import make_cli

    r = CliRunner().invoke(make_cli(), ["train-prior", str(folder_dataset), "-o", str(tmp_path / "run"),
                                        option, value, "--quiet"])
    assert r.exit_code == 2 and f"Invalid value for '{option}': '{value}' is not a finite number" in r.stderr
    assert not (tmp_path / "run").exists()


def test_settings_refuse_bad_learning_rates_from_python_too():
    for bad in (dict(lr_g=float("nan")), dict(lr_d=0.0), dict(ortho=-1.0), dict(ema_decay=float("nan"))):
        with pytest.raises(DGPUsageError, match="must be"):
            TrainSettings(**{**TINY, **bad}).validate()


def test_an_attention_resolution_no_block_has_is_refused_before_the_data_loads(tmp_path):
    # --attn 99 used to train without any attention, silently.
    from dgp_toolkit.cli import make_cli

    r = CliRunner().invoke(make_cli(), ["train-prior", str(tmp_path / "no-such-data"), "-o", str(tmp_path / "run"),
                                        "--attn", "99", "--quiet"])
    assert r.exit_code == 2
    assert "--attn 99: a 32-px BigGAN has no block at 99 px; choose from 8_16_32 (or 0 for none)" in r.stderr
    TrainSettings(**{**TINY, "G_attn": "16", "D_attn": "16"}).validate()
