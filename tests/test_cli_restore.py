"""``dgp-tool restore`` and ``dgp-tool presets`` through the real entry point, on a tiny
random-weight BigGAN (as ``--prior biggan``) and a tiny preset file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgp_toolkit.priors.biggan.variants import ENV_EMBEDDED

from processes import kill_tree
from tiny import save_image

KEYS = {"input", "output", "degradations", "preset", "class", "seconds", "observation", "result", "error"}
INTERRUPT_PLUGIN = """
from dgp_toolkit import hookimpl
from dgp_toolkit.plugins.degradations.base import Degradation, Option

CALLS = []


class Interrupt(Degradation):
    '''The identity, except that its Nth forward raises KeyboardInterrupt (Ctrl-C).'''

    name = "interrupt"
    OPTIONS = {"after": Option(int, 10**9, "forward call that is interrupted")}

    def forward(self, x):
        CALLS.append(1)
        if len(CALLS) == self.options["after"]:
            raise KeyboardInterrupt
        return x


@hookimpl
def register_degradations(register):
    register("interrupt", Interrupt)
"""


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py, as are tiny_files and tiny_biggan


@pytest.fixture
def run(dgp, tiny_files, tiny_biggan, monkeypatch, tmp_path):
    """``dgp-tool restore ARGS --preset tiny.toml --device cpu -o OUT`` with the tiny prior."""
    monkeypatch.chdir(tmp_path)

    def restore(*args: str, preset: bool = True, out: str = "out"):
        extra = ["--preset", str(tiny_files[1])] if preset else []
        device = [] if "--device" in args else ["--device", "cpu"]
        return dgp("restore", *args, *extra, *device, "-o", out)

    return restore


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- success
def test_restores_each_input_with_all_outputs_and_a_json_list(run, tmp_path):
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "b.jpg", 20, 20, seed=1)
    result = run("a.png", "b.jpg", "--degrade", "blur:sigma=1", "--sheet", "--class", "cat")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert [set(r) for r in records] == [KEYS, KEYS]
    a, b = records
    assert a["input"] == "a.png" and a["output"] == str(Path("out") / "a_restored.png")
    assert a["degradations"] == ["blur:sigma=1.0,size=5"] and a["preset"] == "tiny"
    assert a["class"] == 3 and a["error"] is None and a["seconds"] > 0
    assert a["observation"] is None and a["result"] is None  # scores only with --simulate
    assert files(tmp_path / "out") == sorted(
        f"{n}_{s}" for n in "ab" for s in ("restored.png", "observed.png", "run.json", "sheet.png"))
    assert Image.open(tmp_path / "out" / "a_restored.png").size == (32, 32)
    run_json = json.loads((tmp_path / "out" / "a_run.json").read_text())
    assert run_json["degradations"] == ["blur:sigma=1.0,size=5"]
    assert run_json["preset"]["resolved"]["schedule"]["iterations"] == [3, 3]
    assert run_json["class"] == {"given": "cat", "index": 3, "name": "cat"}
    assert "versions" in run_json and len(run_json["history"]) == 6
    assert "centre-cropped 40x30 to 30x30, then resized to 32x32" in run_json["notes"]
    assert run_json["command"].startswith("dgp-tool restore a.png --degrade blur:sigma=1.0,size=5 ")
    assert "a: restored in" in result.stderr and "b: restored in" in result.stderr


def test_precision_is_applied_and_recorded_in_run_json(run, tmp_path):
    save_image(tmp_path / "a.png")
    result = run("a.png", "--degrade", "gray", "--precision", "bf16")
    assert result.exit_code == 0, result.stderr
    run_json = json.loads((tmp_path / "out" / "a_run.json").read_text())
    assert run_json["precision"] == "bf16" and run_json["engine"]["precision"] == "bf16"
    assert "--precision bf16" in run_json["command"]
    bad = run("a.png", "--precision", "fp8", out="other")
    assert bad.exit_code == 2 and "'fp8' is not one of 'auto', 'float32', 'bf16'" in bad.stderr
    assert not (tmp_path / "other").exists()


def test_runs_are_applied_and_recorded_in_run_json(run, tmp_path):
    save_image(tmp_path / "a.png")
    result = run("a.png", "--degrade", "gray", "--runs", "2")
    assert result.exit_code == 0, result.stderr
    run_json = json.loads((tmp_path / "out" / "a_run.json").read_text())
    assert run_json["runs"] == 2 and len(run_json["run_classes"]) == 2
    assert "--runs 2" in run_json["command"] and {h["run"] for h in run_json["history"]} == {0, 1}
    bad = run("a.png", "--runs", "0", out="other")
    assert bad.exit_code == 2 and "--runs" in bad.stderr and "0 is not in the range x>=1" in bad.stderr
    assert not (tmp_path / "other").exists()


def test_simulate_writes_scores_to_stdout_and_the_metrics_file(run, tmp_path):
    save_image(tmp_path / "a.png")
    result = run("a.png", "--degrade", "gray", "--simulate", "--metrics", "m.json", "--quiet")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert json.loads((tmp_path / "m.json").read_text()) == records
    for key in ("observation", "result"):
        assert set(records[0][key]) == {"psnr", "ssim"}
        assert isinstance(records[0][key]["psnr"], float)
    assert result.stderr == ""  # --quiet


def test_folders_expand_to_their_images_and_large_inputs_get_full_resolution(run, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    save_image(photos / "one.png", 64, 48)
    save_image(photos / "two.bmp", 16, 16)
    (photos / "notes.txt").write_text("not an image")
    result = run("photos", "--degrade", "mask", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert [r["input"] for r in json.loads(result.stdout)] == [str(Path("photos/one.png")), str(Path("photos/two.bmp"))]
    out = files(tmp_path / "out")
    assert "one_restored_full.png" in out and "two_restored_full.png" not in out
    assert Image.open(tmp_path / "out" / "one_restored_full.png").size == (64, 48)


def test_weights_point_the_prior_at_a_file(run, tiny_files, monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_EMBEDDED)
    save_image(tmp_path / "a.png")
    result = run("a.png", "--weights", str(tiny_files[0]), "--quiet")
    assert result.exit_code == 0, result.stderr
    run_json = json.loads((tmp_path / "out" / "a_run.json").read_text())
    assert run_json["weights"] == str(tiny_files[0]) and f"--weights {tiny_files[0]}" in run_json["command"]


def test_presets_are_listed(dgp):
    table = dgp("presets")
    assert table.exit_code == 0 and "super-resolution" in table.stdout
    rows = json.loads(dgp("presets", "--json").stdout)
    assert {"family", "name", "task", "stages", "iterations"} <= set(rows[0])
    assert any(r["family"] == "biggan-32" and r["name"] == "inpainting" for r in rows)


def test_a_shown_preset_is_the_file_and_runs_as_ones_own_after_an_edit(dgp, run, tmp_path):
    from dgp_toolkit.presets import _preset_root

    shown = dgp("presets", "--show", "inpainting")
    assert shown.exit_code == 0
    assert shown.stdout == (_preset_root() / "biggan-32" / "inpainting.toml").read_text()
    imagenet = dgp("presets", "--show", "super-resolution", "--family", "biggan-imagenet").stdout
    assert "ft_num = [2, 3, 4, 5, 6]" in imagenet
    # the workflow the help gives: show, edit, restore with it
    mine = tmp_path / "mine.toml"
    mine.write_text(dgp("presets", "--show", "reconstruction").stdout
                    .replace("select_num = 500", "select_num = 3"))
    save_image(tmp_path / "a.png")
    result = run("a.png", "--preset", str(mine), "--iterations-scale", "0.002", preset=False)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["preset"] == "mine"
    for args, words in [(("--show", "inpaint"), "did you mean 'inpainting'"),
                        (("--show", "inpainting", "--family", "nope"), "no presets for prior family 'nope'"),
                        (("--show", "inpainting", "--json"), "give --show NAME or --json, not both")]:
        bad = dgp("presets", *args)
        assert bad.exit_code == 2 and words in bad.stderr and bad.stdout == ""


# ----------------------------------------------------------------------------- usage errors: exit 2, nothing done
@pytest.mark.parametrize("args, words", [
    (["--degrade", "blurr"], "unknown degradation 'blurr'; did you mean 'blur'?"),
    (["--prior", "bigan"], "unknown prior 'bigan'; did you mean 'biggan'?"),
    (["--class", "12"], "class 12 is out of range for prior 'biggan' (0..9)"),
    (["--class", "kitten"], "unknown class 'kitten' for prior 'biggan'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--weights", "nowhere"], "--weights nowhere: no such file or folder"),
    # options that cannot work at the prior's size: refused before any input, not once per input
    (["--degrade", "blur:sigma=100"], "blur: a 401x401 kernel (sigma 100) needs images larger than 200 px"),
    (["--degrade", "mask:box=40/40/4/4"], "mask: box 40/40/4/4 does not fit inside the 32x32 image"),
    (["--degrade", "mask:box=0/0/32/32"], "mask: box 0/0/32/32 covers the whole 32x32 image"),
])
def test_usage_errors_exit_2_with_one_line_and_write_nothing(args, words, run, tmp_path):
    save_image(tmp_path / "a.png")
    result = run("a.png", *args)
    assert result.exit_code == 2
    assert error_lines(result.stderr) == [f"Error: {error_lines(result.stderr)[0][7:]}"]
    assert words in result.stderr
    assert result.stdout == "" and not (tmp_path / "out").exists()


def test_a_seed_out_of_torch_range_is_refused_by_the_option_itself(run, tmp_path):
    from dgp_toolkit.cli.output import SEED
    from dgp_toolkit.engine import MAX_SEED

    assert SEED.max == MAX_SEED and SEED.convert(str(MAX_SEED), None, None) == MAX_SEED
    save_image(tmp_path / "a.png")
    for seed, words in [(str(10**23), f"{10**23} is not in the range 0 to 2**63 - 1"), ("-1", "-1 is not in the range"),
                        ("1.5", "'1.5' is not an integer")]:
        result = run("a.png", "--seed", seed)
        assert result.exit_code == 2 and f"Invalid value for '--seed': {words}" in result.stderr
        assert result.stdout == "" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("value, words", [("inf", "'inf' is not a finite number > 0"),
                                          ("nan", "'nan' is not a finite number > 0"),
                                          ("0", "'0' is not a finite number > 0"), ("fast", "'fast' is not a number")])
def test_a_non_finite_iterations_scale_is_refused_by_the_option_itself(value, words, run, tmp_path):
    # A FloatRange let nan through and took inf, which failed after the prior loaded
    # ("unexpected OverflowError: cannot convert float infinity to integer").
    save_image(tmp_path / "a.png")
    result = run("a.png", "--iterations-scale", value)
    assert result.exit_code == 2 and f"Invalid value for '--iterations-scale': {words}" in result.stderr
    assert result.stdout == "" and not (tmp_path / "out").exists()


def test_an_unknown_preset_exits_2(run, tmp_path):
    save_image(tmp_path / "a.png")
    result = run("a.png", "--degrade", "gray", "--preset", "colourisation", preset=False)
    assert result.exit_code == 2 and "unknown preset 'colourisation'" in result.stderr
    assert len(error_lines(result.stderr)) == 1 and not (tmp_path / "out").exists()


def test_a_folder_without_images_says_so_and_points_to_subfolders_that_have_some(run, tmp_path):
    (tmp_path / "photos" / "2024").mkdir(parents=True)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    result = run("photos")
    assert result.exit_code == 2 and "photos: no images in this folder (.png, .jpg" in result.stderr
    assert "recursively" not in result.stderr
    save_image(tmp_path / "photos" / "2024" / "a.png")
    result = run("photos")
    assert result.exit_code == 2 and len(error_lines(result.stderr)) == 1
    assert ("folders are not searched recursively, and 1 subfolder(s) hold images (2024): pass them instead"
            in result.stderr)
    assert not (tmp_path / "out").exists() or files(tmp_path / "out") == []


@pytest.mark.parametrize("command", [["restore", "a.png"], ["jitter", "a.png"], ["train-prior", "data"]])
def test_an_empty_output_folder_name_is_refused_not_taken_as_the_current_folder(command, dgp, tmp_path,
                                                                                 monkeypatch):
    # -o "$UNSET" gave Path("") == ".": the outputs landed in the current folder.
    monkeypatch.chdir(tmp_path)
    save_image(tmp_path / "a.png")
    result = dgp(*command, "-o", "")
    assert result.exit_code == 2 and "the folder name is empty" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_an_output_folder_that_is_a_file_exits_2(run, tmp_path):
    save_image(tmp_path / "a.png")
    (tmp_path / "taken").write_text("a file")
    result = run("a.png", out="taken")
    assert result.exit_code == 2 and "--output taken: exists and is not a folder" in result.stderr
    assert len(error_lines(result.stderr)) == 1 and (tmp_path / "taken").read_text() == "a file"


@pytest.mark.parametrize("option, value, words", [
    ("--metrics", "taken/m.json", "--metrics taken/m.json: taken is a file, not a folder"),
    ("--metrics", "taken/deeper/m.json", "taken is a file, so the folder taken/deeper cannot be created"),
    ("--metrics", "a.png", "--metrics a.png: refusing to overwrite an input"),
    ("--metrics", "out/a_run.json", "--metrics out/a_run.json: an input's outputs may take this name"),
    # with --overwrite, the pipe (or a device such as /dev/null) was replaced by a file
    ("--metrics", "pipe", "--metrics pipe: is a named pipe (FIFO); give a file name"),
    ("--save-state", "taken/{name}.safetensors", "--save-state taken/a.safetensors: taken is a file"),
    ("--save-state", "a.png", "--save-state a.png: refusing to overwrite an input"),
    ("--save-state", "out/{name}_restored.png", "--save-state out/a_restored.png: an input's outputs may take"),
    ("-o", "taken/out", "--output taken/out: taken is a file, so the folder taken/out cannot be created"),
])
def test_output_paths_are_checked_before_any_work(option, value, words, dgp, tiny_files, tiny_biggan, fifo,
                                                  monkeypatch, tmp_path):
    # --metrics into a folder that could not be made: the restore ran, wrote its outputs,
    # then exited 2 ("nothing done") while the JSON on stdout said "error": null.
    monkeypatch.chdir(tmp_path)
    save_image(tmp_path / "a.png")
    (tmp_path / "taken").write_text("a file")
    fifo("pipe")
    out = [] if option == "-o" else ["-o", "out"]
    result = dgp("restore", "a.png", "--preset", str(tiny_files[1]), "--device", "cpu", *out, option, value,
                 "--overwrite")
    assert result.exit_code == 2 and result.stdout == ""
    assert error_lines(result.stderr) == [f"Error: {error_lines(result.stderr)[0][7:]}"] and words in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "pipe", "taken"]
    assert (tmp_path / "pipe").is_fifo()


def test_a_refused_input_writes_no_metrics_and_creates_no_folder(run, tmp_path):
    # The metrics file (and its folder) appeared although nothing was done (exit 2), and
    # the next run then failed with "already exists".
    result = run("missing.png", "--metrics", "reports/m.json")
    assert result.exit_code == 2 and "missing.png: no such file" in result.stderr
    assert json.loads(result.stdout)[0]["error"] == "missing.png: no such file"
    assert not (tmp_path / "reports").exists() and not (tmp_path / "out").exists()
    save_image(tmp_path / "a.png")
    done = run("a.png", "--metrics", "reports/m.json", "--save-state", "states/{name}.safetensors")
    assert done.exit_code == 0, done.stderr  # the folders are created once the checks pass
    assert json.loads((tmp_path / "reports" / "m.json").read_text()) == json.loads(done.stdout)
    assert (tmp_path / "states" / "a.safetensors").is_file()


def test_a_save_state_file_that_is_a_folder_is_refused_before_any_work(run, tmp_path):
    # It was found when the state was written, after a's work and b's restoration, whose
    # images stayed behind an input reported as failed.
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "b.png", seed=1)
    (tmp_path / "states" / "b.safetensors").mkdir(parents=True)
    result = run("a.png", "b.png", "--save-state", "states/{name}.safetensors", "--quiet")
    assert result.exit_code == 2 and result.stdout == ""
    assert error_lines(result.stderr) == ["Error: --save-state states/b.safetensors: is a folder; give a file name"]
    assert not (tmp_path / "out").exists() and files(tmp_path / "states") == ["b.safetensors"]


def test_a_fifo_named_as_an_input_is_refused_without_blocking(run, fifo, tmp_path):
    fifo("pipe.png")
    result = run("pipe.png", "--quiet")
    assert result.exit_code == 2
    assert error_lines(result.stderr) == ["Error: pipe.png: is a named pipe (FIFO), not an image file"]
    save_image(tmp_path / "a.png")
    batch = run("pipe.png", "a.png", "/dev/null", "--quiet")
    assert batch.exit_code == 3
    assert [r["error"] for r in json.loads(batch.stdout)] == [
        "pipe.png: is a named pipe (FIFO), not an image file", None,
        "/dev/null: is a character device, not an image file"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_get_the_mode_of_any_new_file(run, tmp_path, umask):
    save_image(tmp_path / "a.png")
    previous = os.umask(umask)
    try:
        result = run("a.png", "--quiet", "--metrics", "m.json", "--save-state", "a.safetensors")
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.stderr
    written = [*(tmp_path / "out").iterdir(), tmp_path / "m.json", tmp_path / "a.safetensors"]
    assert {p.name: p.stat().st_mode & 0o777 for p in written} == {p.name: 0o666 & ~umask for p in written}


def test_an_existing_metrics_file_needs_overwrite(run, tmp_path):
    save_image(tmp_path / "a.png")
    (tmp_path / "m.json").write_text("[]")
    result = run("a.png", "--metrics", "m.json")
    assert result.exit_code == 2 and "pass --overwrite" in result.stderr
    assert (tmp_path / "m.json").read_text() == "[]" and not (tmp_path / "out").exists()


def test_a_mask_file_of_the_wrong_size_is_reported_and_nothing_is_written(run, tmp_path):
    save_image(tmp_path / "a.png")
    mask = np.full((20, 20), 255, np.uint8)
    mask[5:10, 5:10] = 0
    Image.fromarray(mask).save(tmp_path / "mask.png")
    result = run("a.png", "--degrade", "mask:file=mask.png")
    assert result.exit_code == 2
    assert error_lines(result.stderr) == [
        "Error: a.png: mask: mask file mask.png is 20x20 but the image is 40x30; draw the mask at the image's size"]
    assert json.loads(result.stdout)[0]["error"].startswith("a.png: mask: mask file")
    assert files(tmp_path / "out") == []


def test_existing_outputs_need_overwrite(run, tmp_path):
    save_image(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a_run.json").write_text("old")
    result = run("a.png")
    assert result.exit_code == 2
    assert error_lines(result.stderr) == [
        f"Error: a.png: {Path('out/a_run.json')} already exists; pass --overwrite to replace it"]
    assert files(tmp_path / "out") == ["a_run.json"] and (tmp_path / "out" / "a_run.json").read_text() == "old"
    again = run("a.png", "--overwrite", "--quiet")
    assert again.exit_code == 0 and json.loads((tmp_path / "out" / "a_run.json").read_text())["degradations"] == []


# ----------------------------------------------------------------------------- batches
def test_a_bad_input_among_good_ones_is_skipped_and_the_batch_exits_3(run, tmp_path):
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "c.png", seed=2)
    good = (tmp_path / "a.png").read_bytes()
    (tmp_path / "b.png").write_bytes(good[: len(good) // 3])  # truncated
    result = run("a.png", "b.png", "missing.png", "c.png", "--degrade", "gray", "--quiet")
    assert result.exit_code == 3
    records = json.loads(result.stdout)
    assert [r["error"] is None for r in records] == [True, False, False, True]
    assert "b.png: is truncated or corrupt" in records[1]["error"]
    assert records[2]["error"] == "missing.png: no such file"
    assert error_lines(result.stderr) == [f"Error: {records[1]['error']}", "Error: missing.png: no such file"]
    # (grey inputs larger than the prior come back whole, at their own size: restored_full)
    assert files(tmp_path / "out") == sorted(
        f"{n}_{s}" for n in "ac" for s in ("restored.png", "observed.png", "run.json", "restored_full.png"))


def test_batch_size_changes_no_output_name_json_key_or_class(run, tmp_path):
    """--batch N optimizes N generator copies together: the same files, the same JSON keys
    (stdout and run.json) and the same restorations up to float rounding."""
    for i, name in enumerate("abc"):
        save_image(tmp_path / f"{name}.png", seed=i)
    args = ("a.png", "b.png", "c.png", "--degrade", "blur:sigma=1", "--simulate", "--sheet", "--quiet")
    one = run(*args, "--batch", "1", out="one")
    three = run(*args, "--batch", "3", out="three")
    assert one.exit_code == three.exit_code == 0, (one.stderr, three.stderr)
    assert files(tmp_path / "one") == files(tmp_path / "three") == sorted(
        f"{n}_{s}" for n in "abc" for s in ("observed.png", "restored.png", "run.json", "sheet.png"))
    ones, threes = json.loads(one.stdout), json.loads(three.stdout)
    assert [set(r) for r in ones] == [set(r) for r in threes] == [KEYS] * 3
    assert [r["class"] for r in ones] == [r["class"] for r in threes]
    for name, a, b in zip("abc", ones, threes):
        assert b["result"]["psnr"] == pytest.approx(a["result"]["psnr"], abs=0.05)
        run_one = json.loads((tmp_path / "one" / f"{name}_run.json").read_text())
        run_three = json.loads((tmp_path / "three" / f"{name}_run.json").read_text())
        assert set(run_one) == set(run_three) and run_one["command"] == run_three["command"]
    bad = run("a.png", "--batch", "0", out="zero")
    assert bad.exit_code == 2 and "--batch" in bad.stderr and not (tmp_path / "zero").exists()


def test_resume_skips_complete_inputs_reports_them_and_replaces_what_an_unfinished_one_left(run, tmp_path):
    for i, name in enumerate("abc"):
        save_image(tmp_path / f"{name}.png", seed=i)
    args = ("--degrade", "gray", "--simulate", "--metrics", "m.json", "--quiet")
    first = run("a.png", "b.png", *args)
    assert first.exit_code == 0, first.stderr
    (tmp_path / "out" / "b_run.json").unlink()  # b stopped in its writes: NAME_run.json is written last
    restored_a = (tmp_path / "out" / "a_restored.png").stat().st_mtime_ns
    second = run("a.png", "b.png", "c.png", *args, "--resume")
    assert second.exit_code == 0, second.stderr
    records = json.loads(second.stdout)
    assert records[0] == json.loads(first.stdout)[0]  # a: read back from a_run.json, not restored again
    assert (tmp_path / "out" / "a_restored.png").stat().st_mtime_ns == restored_a
    assert [(r["input"], r["error"]) for r in records] == [("a.png", None), ("b.png", None), ("c.png", None)]
    assert json.loads((tmp_path / "m.json").read_text()) == records  # --resume replaces its own --metrics
    assert files(tmp_path / "out") == sorted(f"{n}_{s}" for n in "abc" for s in ("observed.png", "restored.png",
                                                                                  "run.json"))
    assert "--resume: 3 of 3 inputs are complete, skipped" in run("a.png", "b.png", "c.png", "--degrade", "gray",
                                                                  "--simulate", "--resume", out="out").stderr


def test_resume_refuses_a_folder_made_by_another_command(run, tmp_path):
    save_image(tmp_path / "a.png")
    assert run("a.png", "--iterations-scale", "0.5", "--quiet").exit_code == 0
    result = run("a.png", "--resume", "--device", "cpu")
    assert result.exit_code == 2 and result.stdout == ""
    assert error_lines(result.stderr) == [
        f"Error: --resume: {Path('out/a_run.json')} was made by another command: --iterations-scale 0.5 there, "
        "no --iterations-scale here; use the same options, another --output, or --overwrite to restore those "
        "inputs again"]
    assert run("a.png", "--resume", "--iterations-scale", "0.5", "--quiet").exit_code == 0  # the same: all done


def test_workers_under_torchrun_is_a_usage_error(run, monkeypatch, tmp_path):
    save_image(tmp_path / "a.png")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    result = run("a.png", "--workers", "2")
    assert result.exit_code == 2 and result.stdout == ""
    assert error_lines(result.stderr) == ["Error: --workers: under torchrun every rank is a worker already; drop "
                                          "--workers (or start more ranks with --nproc-per-node)"]


def test_same_names_from_two_folders_exit_2_before_any_work_naming_both(run, tmp_path):
    # The clash was found up front but reported in the second input's turn, after the
    # first had been restored (its compute spent, its outputs written).
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        save_image(tmp_path / folder / "a.png")
    save_image(tmp_path / "b.png")
    for workers in ("1", "2"):
        result = run("b.png", "x/a.png", "y/a.png", "--quiet", "--workers", workers)
        assert result.exit_code == 2 and result.stdout == ""
        assert error_lines(result.stderr) == [
            "Error: x/a.png and y/a.png would both write a_restored.png (and the rest of their outputs) into "
            "the same --output; restore them separately, each with its own --output"]
        assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- Ctrl-C
@pytest.fixture
def interrupt_plugin(plugin_dist):
    plugin_dist("dgp-interrupt", entry_points={"interrupt": "interrupt_plugin"},
                modules={"interrupt_plugin": INTERRUPT_PLUGIN})


def test_ctrl_c_in_the_first_image_exits_130_and_writes_nothing(run, interrupt_plugin, tmp_path):
    save_image(tmp_path / "a.png")
    result = run("a.png", "--degrade", "interrupt:after=3", "--sheet", "--metrics", "m.json")
    assert result.exit_code == 130
    assert "Interrupted." in result.stderr
    assert json.loads(result.stdout)[0]["error"] == "interrupted"
    assert files(tmp_path / "out") == []
    assert not list(tmp_path.rglob("*.tmp"))


def test_ctrl_c_in_the_second_image_keeps_the_first_whole(run, interrupt_plugin, tmp_path):
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "b.png", seed=1)
    calibrate = run("a.png", "--degrade", "interrupt", "--quiet", out="calibrate")
    assert calibrate.exit_code == 0, calibrate.stderr
    calls = sys.modules["interrupt_plugin"].CALLS
    per_image = len(calls)
    calls.clear()
    result = run("a.png", "b.png", "--degrade", f"interrupt:after={per_image + 2}", "--sheet", "--quiet",
                 "--batch", "1")  # one image a batch: the second is in flight alone
    assert result.exit_code == 130
    assert [r["error"] for r in json.loads(result.stdout)] == [None, "interrupted"]
    assert files(tmp_path / "out") == ["a_observed.png", "a_restored.png", "a_run.json", "a_sheet.png"]
    json.loads((tmp_path / "out" / "a_run.json").read_text())  # complete
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.fixture
def sigint_is_ctrl_c():
    """SIGINT raises KeyboardInterrupt in this process for the test, as in a terminal, even where
    pytest was started with SIGINT ignored (a background job of a non-interactive shell)."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _sigint_default() -> None:
    """For a child process: SIGINT at its default even where this process ignores it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("batch, after", [("1", []), ("2", [("b.png", "interrupted")])])
def test_ctrl_c_while_an_input_is_written_keeps_it_whole_and_reported_done(batch, after, run, monkeypatch, tmp_path,
                                                                          sigint_is_ctrl_c):
    """A real SIGINT that lands during the writes of the first input (the window between its
    files being whole and its record saying so): it takes effect once the input is recorded;
    the input is whole and reported done, exit 130. With --batch 1 the next input is not
    started; with --batch 2 it was restored in the same batch, and is reported interrupted
    with nothing of it written."""
    import os
    import signal

    import dgp_toolkit.batch as batch_module

    real = batch_module._write_outputs

    def write_then_ctrl_c(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the terminal's and a forwarded one: count as one

    monkeypatch.setattr(batch_module, "_write_outputs", write_then_ctrl_c)
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "b.png", seed=1)
    before = signal.getsignal(signal.SIGINT)
    result = run("a.png", "b.png", "--degrade", "blur:sigma=1", "--sheet", "--quiet", "--batch", batch)
    assert result.exit_code == 130, result.stderr
    assert [(r["input"], r["error"]) for r in json.loads(result.stdout)] == [("a.png", None), *after]
    assert files(tmp_path / "out") == ["a_observed.png", "a_restored.png", "a_run.json", "a_sheet.png"]
    json.loads((tmp_path / "out" / "a_run.json").read_text())
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_sigterm_while_an_input_is_written_is_held_until_it_is_reported(sigint_is_ctrl_c):
    """SIGTERM, like Ctrl-C, waits while an input's files are written; the first of
    several signals is the one handed on."""
    import signal

    from dgp_toolkit.cli.restore import _CommitHold
    from dgp_toolkit.cli.signals import Terminated, sigterm_as_interrupt

    hold = _CommitHold()
    with sigterm_as_interrupt():
        hold.take()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(Terminated):
            hold.release()
        hold.take()
        hold.release()  # nothing pending: nothing raised
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_save_state_then_jitter_from_state_reuses_the_reconstruction(run, dgp, tmp_path):
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "b.png", seed=2)
    many = run("a.png", "b.png", "--save-state", "one.safetensors")
    assert many.exit_code == 2 and "{name}" in many.stderr
    result = run("a.png", "--save-state", "states/{name}.safetensors")
    assert result.exit_code == 0, result.stderr
    state = tmp_path / "states" / "a.safetensors"
    assert state.exists()
    again = run("a.png", "--save-state", "states/{name}.safetensors", out="out2")
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    jit = dgp("jitter", "--from-state", str(state), "--std", "0", "--count", "1", "-o", "jit", "--quiet")
    assert jit.exit_code == 0, jit.stderr
    # std 0 reproduces the saved reconstruction, which is the restored image (no finish for 'none').
    restored = np.asarray(Image.open(tmp_path / "out" / "a_restored.png"), dtype=np.int16)
    frames = [p for p in (tmp_path / "jit").iterdir() if "sheet" not in p.name and p.suffix == ".png"]
    assert frames, sorted(p.name for p in (tmp_path / "jit").iterdir())
    assert np.abs(np.asarray(Image.open(frames[0]), dtype=np.int16) - restored).max() <= 1


# ----------------------------------------------------------------------------- --workers N
@pytest.fixture
def run_fd(capfd, tiny_files, tiny_biggan, monkeypatch, tmp_path):
    """``run``, capturing file descriptors: the local ranks of --workers are other processes,
    which write to the descriptors rather than through this process's ``sys.stdout``."""
    from conftest import Result

    from dgp_toolkit.cli import main

    monkeypatch.chdir(tmp_path)

    def restore(*args: str, out: str = "out") -> Result:
        capfd.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(["restore", *args, "--preset", str(tiny_files[1]), "--device", "cpu", "-o", out])
        stdout, stderr = capfd.readouterr()
        code = exited.value.code
        return Result(code if isinstance(code, int) else (0 if code is None else 1), stdout, stderr)

    return restore


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.int16)


def test_workers_give_the_same_outputs_and_records_as_one_process(run_fd, tmp_path):
    for i, name in enumerate("abc"):
        save_image(tmp_path / f"{name}.png", seed=i)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    args = ("a.png", "broken.png", "b.png", "c.png", "--degrade", "blur:sigma=1", "--simulate", "--quiet")
    one = run_fd(*args, out="one")
    two = run_fd(*args, "--workers", "2", out="two")
    assert one.exit_code == two.exit_code == 3, (one.stderr, two.stderr)
    ones, twos = json.loads(one.stdout), json.loads(two.stdout)

    def strip(r):
        return {k: v for k, v in r.items() if k not in ("seconds", "output", "observation", "result")}

    assert [strip(r) for r in twos] == [strip(r) for r in ones]
    assert [r["error"] is None for r in twos] == [True, False, True, True]
    for a, b in zip(ones, twos):  # batches of other sizes: the same run up to float rounding
        if a["result"] is not None:
            assert b["observation"] == a["observation"] and b["result"]["psnr"] == pytest.approx(a["result"]["psnr"], abs=0.05)
    assert "broken.png" in two.stderr and two.stderr.count("Error:") == 1
    assert files(tmp_path / "one") == files(tmp_path / "two")
    for name in "abc":
        assert np.abs(_pixels(tmp_path / "one" / f"{name}_restored.png")
                      - _pixels(tmp_path / "two" / f"{name}_restored.png")).max() <= 2


def test_workers_print_each_summary_once(run_fd, tmp_path):
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "b.png", seed=1)
    result = run_fd("a.png", "b.png", "--workers", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("a: restored in") == 1 and result.stderr.count("b: restored in") == 1
    assert len(json.loads(result.stdout)) == 2  # one JSON list, from rank 0
    bad = run_fd("a.png", "--workers", "0", out="zero")
    assert bad.exit_code == 2 and "--workers" in bad.stderr and not (tmp_path / "zero").exists()


def test_ctrl_c_in_a_worker_stops_all_and_leaves_only_whole_outputs(run_fd, interrupt_plugin, tmp_path):
    for i, name in enumerate("abc"):
        save_image(tmp_path / f"{name}.png", seed=i)
    calibrate = run_fd("a.png", "--degrade", "interrupt", "--quiet", out="calibrate")
    assert calibrate.exit_code == 0, calibrate.stderr
    per_image = len(sys.modules["interrupt_plugin"].CALLS)
    # Each rank counts its own calls: with one image a batch, rank 0 (a, then c) is
    # interrupted in c; rank 1 (b alone) never is.
    result = run_fd("a.png", "b.png", "c.png", "--degrade", f"interrupt:after={per_image + 2}", "--sheet",
                    "--quiet", "--workers", "2", "--batch", "1")
    assert result.exit_code == 130, result.stderr
    records = json.loads(result.stdout)
    assert [(r["input"], r["error"]) for r in records] == [("a.png", None), ("b.png", None), ("c.png", "interrupted")]
    out = files(tmp_path / "out")
    for r in records:
        name = Path(r["input"]).stem
        mine = [f for f in out if f.startswith(f"{name}_")]
        if r["error"] is None:
            assert mine == [f"{name}_{s}" for s in ("observed.png", "restored.png", "run.json", "sheet.png")]
            json.loads((tmp_path / "out" / f"{name}_run.json").read_text())
        else:
            assert mine == []
    assert not list(tmp_path.rglob("*.tmp"))


DIE_PLUGIN = INTERRUPT_PLUGIN.replace('"interrupt"', '"die"').replace(
    "raise KeyboardInterrupt",
    "import os\n            if os.environ.get('RANK') == '1' and not os.path.exists(os.environ['DIED']):\n"
    "                open(os.environ['DIED'], 'w').close()\n"
    "                os._exit(9)")


def test_a_worker_that_dies_stops_the_others_and_resume_finishes(run_fd, plugin_dist, monkeypatch, tmp_path):
    """A worker killed (out of memory, SIGKILL) takes the inputs it had in flight with it;
    the others stop, keeping what they finished whole; the same command with --resume
    restores the rest and reports every input."""
    plugin_dist("dgp-die", entry_points={"die": "die_plugin"}, modules={"die_plugin": DIE_PLUGIN})
    monkeypatch.setenv("DIED", str(tmp_path / "died"))  # rank 1 dies once, in its second image
    for i, name in enumerate("abcd"):
        save_image(tmp_path / f"{name}.png", seed=i)
    calibrate = run_fd("a.png", "--degrade", "die", "--quiet", out="calibrate")
    assert calibrate.exit_code == 0, calibrate.stderr
    per_image = len(sys.modules["die_plugin"].CALLS)
    args = ("a.png", "b.png", "c.png", "d.png", "--degrade", f"die:after={per_image + 2}", "--quiet", "--workers",
            "2", "--batch", "1")
    result = run_fd(*args)
    assert result.exit_code == 1, result.stderr
    assert (tmp_path / "died").exists()
    assert "Error: worker 2 ended with exit code 9; the other workers were stopped" in result.stderr
    assert "run the same command with --resume" in result.stderr
    records = json.loads(result.stdout)  # rank 0's list: what it knew of when it was stopped
    assert "d.png" not in [r["input"] for r in records if r["error"] is None]
    out = files(tmp_path / "out")
    for name in "abcd":  # each input whole or absent
        assert [f for f in out if f.startswith(f"{name}_")] in (
            [], [f"{name}_{s}" for s in ("observed.png", "restored.png", "run.json")])
    assert not list(tmp_path.rglob("*.tmp"))
    again = run_fd(*args, "--resume")
    assert again.exit_code == 0, again.stderr
    assert [(r["input"], r["error"]) for r in json.loads(again.stdout)] == [(f"{n}.png", None) for n in "abcd"]
    assert files(tmp_path / "out") == sorted(
        f"{n}_{s}" for n in "abcd" for s in ("observed.png", "restored.png", "run.json"))


SLOW_PLUGIN = """
import os
import time
from pathlib import Path

from dgp_toolkit import hookimpl
from dgp_toolkit.plugins.degradations.base import Degradation

STARTED = []


class Slow(Degradation):
    '''The identity, 20 ms a call; the first call on an image (not the blank one of
    restoration._probe) of each process leaves a marker file.'''

    name = "slow"

    def forward(self, x):
        if not STARTED and bool(x.abs().sum() > 0):
            STARTED.append(1)
            Path(os.environ["SLOW_MARKERS"], str(os.getpid())).touch()
        time.sleep(0.02)
        return x


@hookimpl
def register_degradations(register):
    register("slow", Slow)
"""


def _slow_restore(plugin_dist, tiny_files, tmp_path, *extra: str, session: bool = False):
    """``dgp-tool restore a.png b.png --degrade slow EXTRA`` in a child process, once every
    process of it is inside an image; returns (the process, the number of such processes)."""
    import os
    import subprocess
    import time

    site = plugin_dist("dgp-slow", entry_points={"slow": "slow_plugin"}, modules={"slow_plugin": SLOW_PLUGIN})
    markers = tmp_path / "markers"
    markers.mkdir()
    for name in "ab":
        save_image(tmp_path / f"{name}.png", seed=ord(name))
    env = {**os.environ, ENV_EMBEDDED: str(tiny_files[0]), "SLOW_MARKERS": str(markers), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-c", "from dgp_toolkit.cli import main; main()", "restore", "a.png", "b.png",
           "--degrade", "slow", "--preset", str(tiny_files[1]), "--device", "cpu", "--iterations-scale", "200",
           "--quiet", "-o", "out", *extra]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default, start_new_session=session)
    inside = 2 if "--workers" in extra else 1
    deadline = time.monotonic() + 120
    while len(list(markers.iterdir())) < inside and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)  # until every process is inside an image
    if len(list(markers.iterdir())) < inside:
        kill_tree(proc.pid)
        raise AssertionError(proc.communicate(timeout=120))
    return proc


def _stop(proc, signum: int, group: bool = False) -> tuple[str, str]:
    import os

    try:
        if group:
            os.killpg(proc.pid, signum)  # systemd, docker, a scheduler: every process of the job
        else:
            proc.send_signal(signum)  # `kill PID`, torchrun: the parent alone
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)  # with --workers, its ranks too (each in a session of its own)


def test_ctrl_c_to_the_parent_alone_reaches_the_workers(plugin_dist, tiny_files, tmp_path):
    """``kill -INT <dgp-tool>`` (not the terminal's Ctrl-C, which reaches every process):
    the parent forwards it; both images in flight are cleaned up; exit 130."""
    import signal

    proc = _slow_restore(plugin_dist, tiny_files, tmp_path, "--workers", "2")
    stdout, stderr = _stop(proc, signal.SIGINT)
    assert proc.returncode == 130, stderr
    assert "Interrupted." in stderr
    assert [r["error"] for r in json.loads(stdout)] == ["interrupted", "interrupted"]
    assert files(tmp_path / "out") == []
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("extra, group", [((), False), (("--workers", "2"), False), (("--workers", "2"), True)],
                         ids=["one-process", "workers-parent-alone", "workers-whole-group"])
def test_sigterm_is_handled_as_ctrl_c_and_exits_143(plugin_dist, tiny_files, tmp_path, extra, group):
    """What torchrun, systemd, docker and batch schedulers send: it ended the process at
    once (143, nothing printed, no JSON). Now: the inputs in flight are cleaned up and
    reported interrupted, one line on stderr, exit 143."""
    import signal

    proc = _slow_restore(plugin_dist, tiny_files, tmp_path, *extra, "--metrics", "m.json", session=group)
    stdout, stderr = _stop(proc, signal.SIGTERM, group=group)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "Terminated." and "Traceback" not in stderr
    records = json.loads(stdout)
    assert [r["error"] for r in records] == ["interrupted"] * 2  # in flight: one batch, or one image a worker
    assert json.loads((tmp_path / "m.json").read_text()) == records
    assert files(tmp_path / "out") == []
    assert not list(tmp_path.rglob("*.tmp"))


# ----------------------------------------------------------------------------- blind deblurring
def test_a_blind_fit_simulates_with_its_own_spec_and_reports_the_width(run, tmp_path):
    save_image(tmp_path / "a.png", 32, 32)
    refused = run("a.png", "--degrade", "blur:sigma=auto", "--simulate")
    assert refused.exit_code == 2 and files(tmp_path / "out") == []
    assert error_lines(refused.stderr) == [
        "Error: blur: cannot simulate an observation with sigma=auto (the value is unknown); give the "
        "simulation its own spec with the true value, e.g. --simulate-with blur:sigma=2.0,size=17"]
    result = run("a.png", "--degrade", "blur:sigma=auto", "--simulate-with", "blur:sigma=1.5", "--quiet")
    assert result.exit_code == 0, result.stderr
    [record] = json.loads(result.stdout)
    assert record["observation"] is not None and record["result"] is not None  # --simulate implied
    run_json = json.loads((tmp_path / "out" / "a_run.json").read_text())
    fitted = run_json["fitted"]["final"]["blur.sigma"]
    assert 0.3 <= fitted <= 4.0 and run_json["simulated_with"] == ["blur:sigma=1.5,size=7"]
    assert "--simulate-with blur:sigma=1.5" in run_json["command"]
