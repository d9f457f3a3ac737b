"""The example third-party plugin (examples/plugins/pixelate), found by real entry-point
discovery, and badly behaved plugin distributions next to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgp_toolkit.testing import DegradationContract
from dgp_toolkit.registry import reset_registry

EXAMPLE_PLUGIN_DIR = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "pixelate"

PIXELATE = {"pixelate": "dgp_pixelate"}


@pytest.fixture
def pixelate(plugin_dist, monkeypatch):
    """Make the example plugin "installed": its dist-info plus its source on sys.path."""
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN_DIR))
    return plugin_dist("dgp-toolkit-pixelate", entry_points=PIXELATE)


BROKEN = "raise RuntimeError('this plugin is broken on purpose')\n"


def hook_plugin(plugin_dist, name, hooks):
    """Install ``dgp-toolkit-NAME`` (entry point NAME): a module ``dgp_NAME_mod`` that imports
    ``hookimpl`` and defines HOOKS (source text)."""
    module = f"dgp_{name}_mod"
    source = "from dgp_toolkit import hookimpl\n" + textwrap.dedent(hooks)
    return plugin_dist(f"dgp-toolkit-{name}", entry_points={name: module}, modules={module: source})


def plugin_row(result, entry_point):
    rows = [row for row in json.loads(result.stdout) if row["entry_point"] == entry_point]
    assert len(rows) == 1, result.stdout
    return rows[0]


def assert_one_warning(stderr, *fragments):
    lines = [line for line in stderr.splitlines() if "warning:" in line]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0]


# ----------------------------------------------------------------------------- the example
def test_plugins_json_shows_the_example(dgp, pixelate):
    result = dgp("plugins", "--json")
    assert result.exit_code == 0, result.stderr
    assert plugin_row(result, "pixelate") == {
        "entry_point": "pixelate",
        "distribution": "dgp-toolkit-pixelate",
        "version": "0.1.0",
        "registers": {"degradations": ["pixelate", "haze"], "priors": [], "losses": [], "schedules": [],
                      "commands": ["pixelate-preview"]},
        "error": None,
    }
    assert result.stderr == ""
    table = dgp("plugins")
    assert "dgp-toolkit-pixelate" in table.stdout and "pixelate-preview" in table.stdout


def test_degradations_lists_the_example(dgp, pixelate):
    rows = {row["name"]: row for row in json.loads(dgp("degradations", "--json").stdout)}
    assert rows["pixelate"]["plugin"] == "pixelate"
    (size,) = rows["pixelate"]["options"]
    assert (size["name"], size["type"], size["default"]) == ("size", "int", 4)


def test_python_api_builds_the_example(pixelate):
    import torch

    import dgp_toolkit

    pix = dgp_toolkit.get_degradation("pixelate", size="4")
    assert pix.name == "pixelate" and pix.options == {"size": 4} and pix.spec == "pixelate:size=4"
    assert dgp_toolkit.parse_degradation("pixelate:size=4") == pix
    assert dgp_toolkit.parse_degradation(pix.spec) == pix
    assert isinstance(pix, dgp_toolkit.Degradation)
    x = (torch.rand(2, 3, 10, 12, dtype=torch.float64) * 2 - 1).requires_grad_()
    y = pix(x)
    assert y.shape == x.shape
    # each 4x4 block is constant and equals the block's mean
    assert torch.allclose(y[:, :, :4, :4], x[:, :, :4, :4].mean(dim=(-2, -1), keepdim=True).expand(-1, -1, 4, 4))
    # the partial bottom-right block averages the pixels it has
    assert torch.allclose(y[:, :, 8:, 8:], x[:, :, 8:, 8:].mean(dim=(-2, -1), keepdim=True).expand(-1, -1, 2, 4))
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad != 0).all()
    with pytest.raises(dgp_toolkit.DGPUsageError, match="size"):
        dgp_toolkit.get_degradation("pixelate", size="0")


# ----------------------------------------------------------------------------- a fitted parameter
def _haze(**options):
    """The example's ``haze``, built through the registry as the command line builds it."""
    import dgp_toolkit

    return dgp_toolkit.get_degradation("haze", **options)


@pytest.mark.usefixtures("pixelate")
class TestHazeContract(DegradationContract):
    """The contract, learnable parameters included, for a third-party degradation found
    through its entry point."""

    factory = staticmethod(_haze)
    valid_options = [{}, {"amount": "0.5"}, {"amount": 0}]
    invalid_options = [{"amount": "1"}, {"amount": "-0.1"}, {"amount": "thick"}]
    learnable_options = [{"amount": "auto"}]


def test_haze_declares_its_learnable_amount_through_the_entry_point(dgp, pixelate):
    import dgp_toolkit
    from dgp_toolkit.learnable import learnable_specs

    rows = {row["name"]: row for row in json.loads(dgp("degradations", "--json").stdout)}
    (amount,) = rows["haze"]["options"]
    assert rows["haze"]["plugin"] == "pixelate"
    assert amount["allowed"].endswith("or auto (fitted with the image, from 0 to 0.9, starting at 0.3)")
    haze = dgp_toolkit.parse_degradation("haze:amount=auto")
    (spec,) = learnable_specs(haze)
    assert (spec.key, spec.init, spec.low, spec.high, spec.lr) == ("haze.amount", 0.3, 0.0, 0.9, 0.02)
    # a preset overrides the plugin's defaults, strictly validated against the plugin's schema
    from dgp_toolkit.presets import preset_from_dict

    schedule = {"iterations": [5], "ft_num": [1], "lr_ratio": [1.0], "g_lr": [1e-4], "z_lr": [1e-3],
                "ftr_num": [5], "use_in": [False], "weights": {"mse": [1.0]}}
    preset = preset_from_dict({"schedule": schedule, "learnable": {"haze": {"amount": {"init": 0.6}}}}, "mine")
    assert learnable_specs(haze, preset)[0].init == 0.6
    with pytest.raises(dgp_toolkit.DGPUsageError, match=r"\[learnable.pixelate.size\]: pixelate's option 'size' "
                                                        r"cannot be fitted \(options that can be auto: none\)"):
        preset_from_dict({"schedule": schedule, "learnable": {"pixelate": {"size": {"init": 2}}}}, "mine")


def test_haze_amount_is_recovered_by_fitting_it(pixelate):
    """The engine's side on the plugin: Adam on the raw values finds each image's own veil."""
    import torch

    import dgp_toolkit
    from dgp_toolkit.learnable import FittedValues, learnable_specs

    haze = dgp_toolkit.parse_degradation("haze:amount=auto")
    clean = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    observed = torch.cat([_haze(amount=0.2)(clean[:1]), _haze(amount=0.7)(clean[1:])])
    fitted = FittedValues(learnable_specs(haze), batch=2)
    opt = torch.optim.Adam(fitted.param_groups(), betas=(0.0, 0.999))
    for group in opt.param_groups:
        group["lr"] = 0.1
    for _ in range(300):
        opt.zero_grad()
        (fitted.apply(haze, clean) - observed).square().sum().backward()
        opt.step()
    found = [fitted.report(i)[0]["haze.amount"] for i in range(2)]
    assert found == pytest.approx([0.2, 0.7], abs=1e-3)


def test_auto_on_a_degradation_that_fits_nothing_is_exit_2(dgp, pixelate, tmp_path):
    source = tmp_path / "in.png"
    Image.new("RGB", (32, 32)).save(source)
    result = dgp("restore", str(source), "--degrade", "pixelate:size=auto", "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["Error: pixelate: option 'size' cannot be auto (pixelate has no option that can be fitted "
                     "with the image); give it a value: an integer, between 1 and 256"], result.stderr
    assert not (tmp_path / "out").exists()


def test_pixelate_preview_command(dgp, pixelate, tmp_path):
    rng = np.random.default_rng(0)
    source = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(source)
    target = tmp_path / "out.png"
    result = dgp("pixelate-preview", str(source), str(target), "--size", "8")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(target)
    out = np.asarray(Image.open(target))
    assert out.shape == (16, 16, 3)
    assert len(np.unique(out[:8, :8].reshape(-1, 3), axis=0)) == 1  # one colour per block
    # an existing output is kept (usage error, exit 2), a bad size is a usage error too
    again = dgp("pixelate-preview", str(source), str(target))
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    bad = dgp("pixelate-preview", str(source), str(tmp_path / "x.png"), "--size", "zero")
    assert bad.exit_code == 2 and "size" in bad.stderr and not (tmp_path / "x.png").exists()


def test_console_script_sees_the_example(pixelate, tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "dgp-tool")
    if not os.path.exists(exe):
        pytest.skip("dgp-tool console script is not installed in this environment")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGP_TOOLKIT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(pixelate), str(EXAMPLE_PLUGIN_DIR)])
    out = subprocess.run([exe, "plugins", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pixelate" in {row["entry_point"] for row in json.loads(out.stdout)}


def _pixelate_class():
    """The example's ``Pixelate``, loaded from its file (the contract needs no installation)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "dgp_pixelate_under_contract", EXAMPLE_PLUGIN_DIR / "dgp_pixelate" / "degradation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Pixelate


class TestPixelateContract(DegradationContract):
    """The example passes the degradation contract, as docs/plugins.md tells a plugin to."""

    factory = _pixelate_class()
    valid_options = [{}, {"size": "2"}, {"size": 8}]
    invalid_options = [{"size": "0"}, {"size": "many"}, {"size": "300"}]


# ----------------------------------------------------------------------------- broken plugins
@pytest.fixture
def broken(plugin_dist):
    return plugin_dist("dgp-toolkit-broken", entry_points={"broken": "dgp_broken_mod"},
                       modules={"dgp_broken_mod": BROKEN}, version="2.0")


@pytest.mark.parametrize(
    "args",
    [("--help",), ("plugins",), ("plugins", "--json"), ("degradations",), ("--version",)],
)
def test_a_broken_plugin_leaves_every_command_working(dgp, pixelate, broken, args):
    result = dgp(*args)
    assert result.exit_code == 0, result.stderr
    assert_one_warning(result.stderr, "'broken'", "dgp-toolkit-broken 2.0", "RuntimeError",
                       "this plugin is broken on purpose", "pip uninstall dgp-toolkit-broken",
                       "DGP_TOOLKIT_DISABLE_PLUGINS=broken")


def test_a_broken_plugin_is_listed_with_its_error(dgp, pixelate, broken, tmp_path):
    result = dgp("plugins", "--json")
    row = plugin_row(result, "broken")
    assert row["distribution"] == "dgp-toolkit-broken" and row["version"] == "2.0"
    assert row["error"].startswith("import failed: RuntimeError: this plugin is broken on purpose")
    assert all(names == [] for names in row["registers"].values())
    assert plugin_row(result, "pixelate")["error"] is None  # the good plugin is unaffected
    source = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(source)
    assert dgp("pixelate-preview", str(source), str(tmp_path / "o.png"), "--size", "2").exit_code == 0


@pytest.mark.parametrize("args", [("degradations",), ("restore", "a.png"), ("plugins-typo",)])
def test_strict_mode_turns_the_warning_into_exit_1(dgp, broken, monkeypatch, args):
    monkeypatch.setenv("DGP_TOOLKIT_STRICT_PLUGINS", "1")
    result = dgp(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: plugin 'broken' (distribution dgp-toolkit-broken 2.0)")
    assert "DGP_TOOLKIT_STRICT_PLUGINS is set" in lines[0]


@pytest.mark.parametrize("as_json", [False, True])
def test_strict_mode_still_lets_plugins_report_every_plugin(dgp, pixelate, broken, monkeypatch, as_json):
    # It died with the strict error before listing anything: the one command that
    # diagnoses a broken plugin could not run. Now it lists all, then exits 1.
    monkeypatch.setenv("DGP_TOOLKIT_STRICT_PLUGINS", "1")
    result = dgp("plugins", *(["--json"] if as_json else []))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: plugin 'broken' (distribution dgp-toolkit-broken 2.0)")
    if as_json:
        assert plugin_row(result, "broken")["error"].startswith("import failed: RuntimeError: this plugin is broken")
        assert plugin_row(result, "pixelate")["error"] is None  # loaded after the broken one, listed too
    else:
        assert "skipped: import failed: RuntimeError" in result.stdout and "dgp-toolkit-pixelate" in result.stdout


def test_strict_mode_in_a_real_process(broken):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGP_TOOLKIT_")}
    env.update(DGP_TOOLKIT_STRICT_PLUGINS="1", PYTHONPATH=str(broken))
    code = "from dgp_toolkit.cli import main; main(['plugins', '--json'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1
    assert "Error: plugin 'broken'" in out.stderr and "Traceback" not in out.stderr
    assert "broken" in {row["entry_point"] for row in json.loads(out.stdout)}


@pytest.mark.parametrize("where", ["import", "hook"])
def test_a_plugin_calling_sys_exit_is_skipped_like_any_broken_plugin(dgp, pixelate, plugin_dist, where):
    # SystemExit is no Exception: it went through the loader and ended every command,
    # --help included, silently, with the plugin's exit code.
    source = ("import sys\nsys.exit(7)\n" if where == "import" else
              "from dgp_toolkit import hookimpl\nimport sys\n\n@hookimpl\n"
              "def register_degradations(register):\n    sys.exit(7)\n")
    plugin_dist("dgp-toolkit-quitter", entry_points={"quitter": "dgp_quitter_mod"},
                modules={"dgp_quitter_mod": source})
    for args in (("--help",), ("degradations", "--json")):
        reset_registry()  # load the plugins again, as a new process would
        result = dgp(*args)
        assert result.exit_code == 0, result.stderr
        assert_one_warning(result.stderr, "'quitter'", "SystemExit: it called sys.exit(7)")
    assert "pixelate" in {row["name"] for row in json.loads(result.stdout)}  # loaded after it
    row = plugin_row(dgp("plugins", "--json"), "quitter")
    assert "SystemExit: it called sys.exit(7)" in row["error"]


def test_a_plugin_interrupted_at_import_still_stops_the_tool(plugin_dist):
    site = plugin_dist("dgp-toolkit-ctrlc", entry_points={"ctrlc": "dgp_ctrlc_mod"},
                       modules={"dgp_ctrlc_mod": "raise KeyboardInterrupt\n"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGP_TOOLKIT_")}
    env["PYTHONPATH"] = str(site)
    code = "from dgp_toolkit.cli import main; main(['--version'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 130 and out.stderr.strip() == "Interrupted." and out.stdout == ""


def test_disable_removes_the_plugin(dgp, pixelate, broken, monkeypatch):
    monkeypatch.setenv("DGP_TOOLKIT_DISABLE_PLUGINS", "broken,pixelate")
    result = dgp("plugins", "--json")
    assert result.exit_code == 0
    names = {row["entry_point"] for row in json.loads(result.stdout)}
    assert "broken" not in names and "pixelate" not in names
    assert "warning" not in result.stderr
    assert "disabled by DGP_TOOLKIT_DISABLE_PLUGINS: broken, pixelate" in result.stderr
    assert dgp("pixelate-preview", "--help").exit_code == 2  # its command is gone too


def test_plugin_registering_an_existing_name_is_skipped(dgp, pixelate, plugin_dist):
    hook_plugin(plugin_dist, "copycat", """
        @hookimpl
        def register_degradations(register):
            register("blur", "dgp_copycat_mod:Fake")

        class Fake:
            pass
    """)
    result = dgp("plugins", "--json")
    assert result.exit_code == 0
    assert_one_warning(result.stderr, "'copycat'", "dgp-toolkit-copycat",
                       "degradation name 'blur' is already registered by plugin 'dgp_toolkit.plugins.degradations'")
    assert "already registered" in plugin_row(result, "copycat")["error"]
    import dgp_toolkit

    assert dgp_toolkit.get_degradation("blur").name == "blur"  # still the built-in one


def test_plugin_with_a_misspelled_hook_is_skipped(dgp, plugin_dist):
    hook_plugin(plugin_dist, "typo", """
        @hookimpl
        def register_degradation(register):
            register("typo", dict)
    """)
    result = dgp("degradations", "--json")
    assert result.exit_code == 0
    assert "typo" not in {row["name"] for row in json.loads(result.stdout)}
    assert_one_warning(result.stderr, "'typo'", "unknown hook 'register_degradation'",
                       "did you mean 'register_degradations'?")


def test_plugin_whose_command_hook_raises_is_skipped(dgp, plugin_dist):
    hook_plugin(plugin_dist, "cmdfail", """
        @hookimpl
        def register_schedules(register):
            register("never-kept", dict)

        @hookimpl
        def register_commands(cli):
            raise ImportError("needs an optional dependency")
    """)
    result = dgp("--help")
    assert result.exit_code == 0 and "plugins" in result.stdout
    assert_one_warning(result.stderr, "'cmdfail'", "register_commands raised ImportError")
    import dgp_toolkit

    with pytest.raises(dgp_toolkit.DGPUsageError, match="unknown schedule 'never-kept'"):
        dgp_toolkit.get_schedule("never-kept")
