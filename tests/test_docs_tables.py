"""``benchmarks/docs_tables.py``: the benchmark tables in docs/ are the benchmarks' output."""

from __future__ import annotations

import json
import sys

import pytest

from tiny import benchmark_module


@pytest.fixture(scope="module")
def tables():
    yield benchmark_module("docs_tables", "docs_tables_benchmark")
    sys.modules.pop("docs_tables_benchmark", None)


def test_the_docs_are_up_to_date_with_every_committed_result(tables):
    assert tables.main(["--check"]) == 0, "run python benchmarks/docs_tables.py"


def test_every_block_is_in_one_page_of_docs(tables):
    pages = {page: page.read_text() for page in tables.PAGES}
    for name in tables.SOURCES:
        holders = [page.name for page, text in pages.items() if tables.block_pattern(name).search(text)]
        assert len(holders) == 1, (name, holders)
    assert "<!-- BEGIN" not in (tables.ROOT / "README.md").read_text()  # the README carries no tables


def test_the_colorization_table_reads_the_accuracy_file(tables, tmp_path):
    def method(accuracy, low, high, chroma, paired=None):
        m = {"accuracy": accuracy, "wilson95": [low, high], "mean_chroma": chroma}
        if paired:
            m["vs_observation"] = dict(zip(["right_where_grey_wrong", "wrong_where_grey_right", "mcnemar_p",
                                            "true_class_probability_gain", "true_class_probability_gain_ci95"],
                                           paired))
        return m

    data = {"n": 7, "mean_psnr": {"observation": 26.0, "gan-inversion": 22.0, "dgp": 24.5},
            "methods": {"clean": method(0.9, 0.8, 0.95, 14.0, (3, 1, 0.625, 0.08, 0.03)),
                        "observation": method(0.8, 0.7, 0.9, 0.0),
                        "gan-inversion": method(0.81, 0.7, 0.9, 12.0, (2, 2, 1.0, 0.01, 0.02)),
                        "dgp": method(0.86, 0.75, 0.92, 11.0, (4, 1, 0.375, 0.03, 0.025))}}
    path = tmp_path / "accuracy.json"
    path.write_text(json.dumps(data))
    lines = tables.colorization_accuracy_table(path).splitlines()
    assert lines[0].startswith("| image (7 dev images) |") and len(lines) == 6
    assert lines[3] == "| grey input | 80% (70-90%) |  |  | 0.0 | **26.00** |"
    assert lines[5] == "| **DGP**, Lab L put back | **86% (75-92%)** | **+0.030 ± 0.025** | 4 / 1 (0.38) | 11.0 | 24.50 |"
