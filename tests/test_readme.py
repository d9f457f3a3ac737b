"""The README as a front door: one screen and a bit, its links lead somewhere, its commands
name real degradations, and its twenty-line plugin works when installed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

import dgp_toolkit
from dgp_toolkit.testing import DegradationContract

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def section(title: str) -> str:
    """The text of the README's ``## title`` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"the README has no section {title!r}"
    return match.group(1)


def plugin_source() -> str:
    (code,) = re.findall(r"```python\n(.*?)```", section("A plugin in twenty lines"), re.S)
    return code


def test_well_under_200_lines():
    assert len(README.splitlines()) < 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if target.startswith(("http://", "https://", "#")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name} links to {target}, which does not exist"


def test_every_task_command_names_a_real_degradation():
    commands = re.findall(r"`(dgp-tool restore [^`]*)`", section("Tasks"))
    assert len(commands) >= 6
    for command in commands:
        words = shlex.split(command)
        specs = [words[i + 1] for i, word in enumerate(words) if word == "--degrade"]
        assert specs, command
        for spec in specs:
            if "file=" not in spec:
                assert dgp_toolkit.parse_degradation(spec).name == spec.split(":")[0]


def test_the_main_job_is_the_end_to_end_tests_command():
    (command,) = re.findall(r"^    (dgp-tool restore .*)$", section("The main job"), re.M)
    assert command == "dgp-tool restore --degrade blur examples/images/cifar_cat_300.png"
    assert (ROOT / command.split()[-1]).is_file()


def test_the_python_api_takes_five_lines():
    code = [line for line in section("From Python").splitlines() if line.startswith("    ") and line.strip()]
    assert len(code) <= 5 and "dgp_toolkit.restore(" in "".join(code)


# ----------------------------------------------------------------------------- the plugin
def _darken_class():
    namespace: dict = {}
    exec(compile(plugin_source(), "README.md (dgp_darken.py)", "exec"), namespace)
    return namespace["Darken"]


class TestReadmePluginContract(DegradationContract):
    """The README's example degradation passes the contract it points plugin authors to."""

    factory = _darken_class()
    valid_options = [{}, {"factor": "0.3"}, {"factor": 1}]
    invalid_options = [{"factor": "0"}, {"factor": "2"}, {"factor": "dim"}]


def test_the_plugin_is_about_twenty_lines_and_works_installed(plugin_dist):
    source = plugin_source()
    assert len(source.strip().splitlines()) <= 22
    plugin_dist("dgp-toolkit-darken", entry_points={"darken": "dgp_darken"}, modules={"dgp_darken": source})
    (row,) = [row for row in dgp_toolkit.list_plugins() if row["entry_point"] == "darken"]
    assert row["error"] is None and row["registers"]["degradations"] == ["darken"]
    darken = dgp_toolkit.parse_degradation("darken:factor=0.3")
    x = torch.zeros(1, 3, 8, 8)
    assert torch.allclose(darken(x), torch.full_like(x, -0.7))
    assert '[project.entry-points.dgp_toolkit]` then\n`darken = "dgp_darken"`' in README
