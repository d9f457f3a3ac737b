"""``dgp-tool jitter``, ``transfer``, ``morph`` and ``sample`` through the real entry point,
on a tiny random-weight BigGAN (as ``--prior biggan``) and a 9-step preset file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tiny import MANIPULATION_PRESET_TOML, WIDER, save_image, save_tiny_prior

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py, as are tiny_files and tiny_biggan


@pytest.fixture(scope="module")
def tiny_preset_toml():
    return MANIPULATION_PRESET_TOML


@pytest.fixture(scope="module")
def wider_file(tmp_path_factory):
    """Another prior (a wider latent) as a prior file."""
    return save_tiny_prior(tmp_path_factory.mktemp("wider") / "wider.safetensors", WIDER)


@pytest.fixture
def run(dgp, tiny_files, tiny_biggan, monkeypatch, tmp_path):
    """``dgp-tool COMMAND ARGS --device cpu`` with the tiny prior as ``biggan``, in ``tmp_path``;
    commands that reconstruct get ``--preset tiny.toml``."""
    monkeypatch.chdir(tmp_path)

    def command(name: str, *args: str, preset: bool = True):
        extra = ["--preset", str(tiny_files[1])] if preset and name != "sample" else []
        return dgp(name, *args, *extra, "--device", "cpu")

    return command


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def pixels(path: Path | str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


# ----------------------------------------------------------------------------- jitter
def test_jitter_writes_variations_a_sheet_and_a_state_that_reproduces_them(run, tmp_path):
    save_image(tmp_path / "cat.png")
    first = run("jitter", "cat.png", "--std", "0,0.5", "--count", "2", "--class", "cat",
                "--save-state", "cat.state.safetensors", "-o", "a")
    assert first.exit_code == 0, first.stderr
    record = json.loads(first.stdout)
    assert record["command"] == "jitter" and record["class"] == {"index": 3, "name": "cat"}
    assert record["stds"] == [0.0, 0.5] and record["state"] == "cat.state.safetensors"
    assert files(tmp_path / "a") == ["cat_jitter_sheet.png", "cat_jitter_std0.5_01.png", "cat_jitter_std0.5_02.png",
                                     "cat_jitter_std0_01.png", "cat_jitter_std0_02.png", "cat_reconstruction.png"]
    assert sorted(record["files"]) == sorted([str(Path("a") / n) for n in files(tmp_path / "a")]
                                             + ["cat.state.safetensors"])
    # std 0 is the reconstruction; std 0.5 is not.
    recon = pixels(tmp_path / "a" / "cat_reconstruction.png")
    assert np.array_equal(pixels(tmp_path / "a" / "cat_jitter_std0_01.png"), recon)
    assert not np.array_equal(pixels(tmp_path / "a" / "cat_jitter_std0.5_01.png"), recon)
    assert "cat.png: reconstructed in" in first.stderr
    sheet = Image.open(tmp_path / "a" / "cat_jitter_sheet.png")
    assert sheet.size[0] > 2 * 96 and sheet.size[1] > 3 * 96

    again = run("jitter", "--from-state", "cat.state.safetensors", "--std", "0,0.5", "--count", "2", "-o", "b")
    assert again.exit_code == 0, again.stderr
    assert "reconstructed" not in again.stderr  # no optimization
    assert json.loads(again.stdout)["from_state"] == "cat.state.safetensors"
    for name in files(tmp_path / "a"):
        if name != "cat_jitter_sheet.png":  # the sheet of a state has no input tile
            assert np.array_equal(pixels(tmp_path / "a" / name), pixels(tmp_path / "b" / name)), name


def test_existing_outputs_need_overwrite_and_inputs_are_never_overwritten(run, tmp_path):
    save_image(tmp_path / "cat.png")
    assert run("jitter", "cat.png", "--count", "1", "--std", "0.3", "-o", "out").exit_code == 0
    before = {n: (tmp_path / "out" / n).read_bytes() for n in files(tmp_path / "out")}
    again = run("jitter", "cat.png", "--count", "1", "--std", "0.3", "-o", "out", "--seed", "1")
    assert again.exit_code == 2 and "already exists; pass --overwrite" in one_error_line(again)
    assert {n: (tmp_path / "out" / n).read_bytes() for n in files(tmp_path / "out")} == before
    replaced = run("jitter", "cat.png", "--count", "1", "--std", "0.3", "-o", "out", "--seed", "1", "--overwrite")
    assert replaced.exit_code == 0, replaced.stderr
    source = (tmp_path / "cat.png").read_bytes()
    clash = run("jitter", "cat.png", "--count", "1", "--save-state", "cat.png", "--overwrite", "-o", "o2")
    assert clash.exit_code == 2 and "refusing to overwrite an input" in one_error_line(clash)
    assert (tmp_path / "cat.png").read_bytes() == source and not (tmp_path / "o2").exists()


@pytest.mark.parametrize("args, words", [
    (["jitter"], "give an IMAGE"),
    (["jitter", "cat.png", "--from-state", "cat.png"], "not both"),
    (["jitter", "cat.png", "--std", "0.3,x"], "--std"),
    (["jitter", "cat.png", "--std", "-1"], "std must be"),
    (["jitter", "cat.png", "--class", "kat"], "did you mean 'cat'"),
    (["transfer", "cat.png", "--to", "unicorn"], "unknown class 'unicorn'"),
    (["transfer", "cat.png", "--to", "3", "--preset", "nope"], "unknown preset 'nope'"),
    (["morph", "cat.png", "missing.png"], "missing.png"),
    (["morph", "cat.png", "cat.png", "--class", "1", "--class", "2", "--class", "3"], "once"),
    (["sample", "--class", "99"], "out of range"),
    (["jitter", "--from-state", "cat.png"], "not a dgp-toolkit state file"),
])
def test_usage_errors_exit_2_with_one_line_and_write_nothing(run, tmp_path, args, words):
    save_image(tmp_path / "cat.png")
    result = run(*args, "-o", "out", preset="--preset" not in args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    line = one_error_line(result)
    assert line.startswith("Error: ") and words in line
    assert not (tmp_path / "out").exists() and result.stdout == ""


@pytest.mark.parametrize("args, words", [
    # --save-state into a folder that cannot be made: refused after the reconstruction and
    # the renders (their files written, then removed)
    (["jitter", "cat.png", "--count", "1", "--save-state", "taken/s.safetensors"],
     "--save-state taken/s.safetensors: taken is a file, not a folder"),
    (["transfer", "cat.png", "--to", "1", "--save-state", "taken/deeper/s.safetensors"],
     "taken is a file, so the folder taken/deeper cannot be created"),
    # with --overwrite, the pipe (or a device) was replaced by a file
    (["jitter", "cat.png", "--save-state", "pipe.png", "--overwrite"], "--save-state pipe.png: is a named pipe (FIFO)"),
    (["sample", "-o", "taken/samples"], "--output taken/samples: taken is a file"),
    (["morph", "cat.png", "pipe.png"], "pipe.png: is a named pipe (FIFO), not an image file"),
    (["jitter", "pipe.png"], "pipe.png: is a named pipe (FIFO), not an image file"),
    (["jitter", "--from-state", "pipe.png"], "pipe.png: is a named pipe (FIFO), not a state file"),
])
def test_bad_paths_are_refused_before_any_work_without_blocking(run, fifo, tmp_path, args, words):
    save_image(tmp_path / "cat.png")
    (tmp_path / "taken").write_text("a file")
    fifo("pipe.png")
    out = [] if "-o" in args else ["-o", "out"]
    result = run(*args, *out, preset=args[0] != "sample")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert words in one_error_line(result) and result.stdout == ""
    assert files(tmp_path) == ["cat.png", "pipe.png", "taken"] and (tmp_path / "pipe.png").is_fifo()


def test_a_state_with_nan_values_is_refused(run, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    save_image(tmp_path / "cat.png")
    assert run("jitter", "cat.png", "--count", "1", "--save-state", "s.safetensors", "-o", "a").exit_code == 0
    with safe_open("s.safetensors", framework="pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors["z"][0, 1] = float("nan")
    save_file(tensors, "s.safetensors", metadata=metadata)
    result = run("transfer", "--from-state", "s.safetensors", "--to", "1", "-o", "b", preset=False)
    assert result.exit_code == 2
    assert "s.safetensors: damaged state file (tensor 'z' holds NaN (1 of its" in one_error_line(result)
    assert not (tmp_path / "b").exists()


def test_a_state_for_another_prior_is_refused(run, wider_file, tmp_path):
    save_image(tmp_path / "cat.png")
    made = run("jitter", "cat.png", "--count", "1", "--save-state", "s.safetensors", "-o", "a")
    assert made.exit_code == 0, made.stderr
    refused = run("transfer", "--from-state", "s.safetensors", "--to", "1", "--weights", str(wider_file),
                  "-o", "b", preset=False)
    assert refused.exit_code == 2
    assert "another architecture" in one_error_line(refused) and "dim_z" in refused.stderr
    assert not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------- transfer
def test_transfer_to_all_and_to_the_own_class(run, tmp_path):
    save_image(tmp_path / "dog.png", seed=2)
    result = run("transfer", "dog.png", "--to", "all", "--class", "dog", "-o", "t")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert [t["index"] for t in record["transfers"]] == list(range(10))
    assert record["transfers"][5] == {"file": str(Path("t") / "dog_to_5_dog.png"), "index": 5, "name": "dog"}
    assert len(files(tmp_path / "t")) == 12  # 10 classes, the reconstruction, the sheet
    recon = pixels(tmp_path / "t" / "dog_reconstruction.png")
    assert np.array_equal(pixels(tmp_path / "t" / "dog_to_5_dog.png"), recon)
    assert not np.array_equal(pixels(tmp_path / "t" / "dog_to_3_cat.png"), recon)


# ----------------------------------------------------------------------------- morph
def test_morph_writes_frames_a_sheet_and_a_gif(run, tmp_path):
    save_image(tmp_path / "a.png", seed=3)
    save_image(tmp_path / "b.png", 30, 30, seed=4)
    result = run("morph", "a.png", "b.png", "--steps", "4", "--class", "cat", "--class", "dog", "-o", "m")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert [c["name"] for c in record["classes"]] == ["cat", "dog"]
    assert [f["alpha"] for f in record["frames"]] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert files(tmp_path / "m") == ["a_b_morph.gif", "a_b_morph_00.png", "a_b_morph_01.png", "a_b_morph_02.png",
                                     "a_b_morph_03.png", "a_b_morph_sheet.png"]
    gif = Image.open(tmp_path / "m" / "a_b_morph.gif")
    assert gif.n_frames == 4 and gif.size == (32, 32)
    ends = [pixels(tmp_path / "m" / f"a_b_morph_0{i}.png") for i in (0, 1, 3)]
    assert not np.array_equal(ends[0], ends[1]) and not np.array_equal(ends[1], ends[2])


# ----------------------------------------------------------------------------- sample
def test_sample_is_seeded_and_labelled(run, tmp_path):
    first = run("sample", "--class", "ship", "--count", "3", "--seed", "7", "-o", "s")
    assert first.exit_code == 0, first.stderr
    record = json.loads(first.stdout)
    assert [s["name"] for s in record["samples"]] == ["ship"] * 3
    assert files(tmp_path / "s") == [f"sample_ship_seed7_0{i}.png" for i in (1, 2, 3)] + ["sample_ship_seed7_sheet.png"]
    again = run("sample", "--class", "8", "--count", "3", "--seed", "7", "-o", "s2")
    assert again.exit_code == 0
    for i in (1, 2, 3):
        name = f"sample_ship_seed7_0{i}.png"
        assert np.array_equal(pixels(tmp_path / "s" / name), pixels(tmp_path / "s2" / name))
    mixed = run("sample", "--count", "4", "-o", "s3")
    assert mixed.exit_code == 0 and len(files(tmp_path / "s3")) == 5


def test_help_lists_the_commands(dgp):
    result = dgp("--help")
    for name in ("jitter", "transfer", "morph", "sample"):
        assert name in result.stdout
    assert "--from-state" in dgp("jitter", "--help").stdout
