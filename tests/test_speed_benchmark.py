"""``benchmarks/speed.py``: a run of some parts replaces those parts in ``speed.json`` and keeps
the others; each table names the command that measured it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import benchmark_module, needs_dev_split

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def speed():
    return benchmark_module("speed")


OLD = {"command": "python benchmarks/speed.py --parts tasks", "date": "2026-12-01 10:00 UTC", "machine": "m",
       "torch": "2.13.0", "settings": {"iterations_scale": 1.0, "precision": "float32", "candidates": 500},
       "tasks": [{"task": "denoising", "steps": 700, "select_num": 500, "startup_s": 1.7, "select_s": 3.0,
                  "optimize_s": 12.0, "wall_s": 16.7, "peak_rss_mb": 450.0}]}


def test_old_layout_reads_as_one_run(speed, tmp_path):
    path = tmp_path / "speed.json"
    path.write_text(json.dumps(OLD))
    data = speed._load(path)
    assert list(data["parts"]) == ["tasks"]
    assert data["parts"]["tasks"]["command"] == OLD["command"]
    table = speed.markdown(data)
    assert "`python benchmarks/speed.py --parts tasks`" in table
    assert "| denoising | 700 | 500 | 1.7 | 3.0 | 12.0 | 16.7 | 450 |" in table


@needs_dev_split
def test_a_run_of_one_part_keeps_the_others(tmp_path):
    (tmp_path / "speed.json").write_text(json.dumps(OLD))
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--parts", "selection",
                    "--candidates", "4", "--out", str(tmp_path)], check=True, capture_output=True, text=True,
                   timeout=300)
    data = json.loads((tmp_path / "speed.json").read_text())
    assert set(data["parts"]) == {"tasks", "selection"}
    assert data["parts"]["tasks"]["rows"] == OLD["tasks"]
    sel = data["parts"]["selection"]
    assert sel["command"].endswith("--parts selection --candidates 4 --out " + str(tmp_path))
    assert [r["precision"] for r in sel["rows"]] == ["float32", "bf16"]
    assert all(r["candidates"] == 4 and r["same_pick"] for r in sel["rows"])
    table = (tmp_path / "speed.md").read_text()
    assert table.count("Command: ") == 2  # each part names the run that measured it
