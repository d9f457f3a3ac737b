"""The Degradation base class: option schema, spec, equality, input checks."""

from pathlib import Path

import pytest
import torch

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.plugins.degradations.base import Degradation, Option, as_size, check_images
from dgp_toolkit.testing import DegradationContract


class Shift(Degradation):
    """A test degradation with one option of every kind."""

    name = "shift"
    OPTIONS = {
        "amount": Option(float, 0.1, "added to every pixel", check=lambda v: abs(v) <= 1, allowed="in [-1, 1]"),
        "steps": Option(int, 1, "how many times", check=lambda v: v >= 1, allowed="at least 1"),
        "mode": Option(str, "add", "add or sub", choices=("add", "sub")),
        "clip": Option(bool, False, "clip to [-1, 1]"),
        "offset": Option(int, (0, 0), "unused pair", length=2, metavar="dx/dy"),
        "path": Option(Path, None, "unused file"),
        "scale": Option(float, None, "computed", default_text="2 * amount"),
    }

    def resolve_options(self, options):
        if options["scale"] is None:
            options["scale"] = 2 * options["amount"]
        if options["mode"] == "sub" and options["clip"]:
            raise self.usage_error("'clip' cannot be used with mode=sub")
        return options

    def forward(self, x):
        x = self.check_images(x)
        sign = 1 if self._options["mode"] == "add" else -1
        y = x + sign * self._options["amount"] * self._options["steps"]
        return y.clamp(-1, 1) if self._options["clip"] else y


class TestShiftContract(DegradationContract):
    factory = Shift
    valid_options = [{}, {"amount": "-0.2", "steps": "2"}, {"mode": "sub"}, {"offset": "3/4"},
                     {"path": "some dir, v2/file:1.png"}]
    invalid_options = [{"amount": "2"}, {"steps": "0"}, {"mode": "mul"}, {"clip": "maybe"},
                       {"offset": "1/2/3"}, {"mode": "sub", "clip": "yes"}]

    def test_forward_stays_in_range(self):
        pytest.skip("a shift leaves [-1, 1] on purpose")


def test_strings_are_converted_by_type():
    s = Shift(amount="0.5", steps="3", mode="sub", clip="no", offset="1/-2", path="~/x.png")
    assert s.options == {"amount": 0.5, "steps": 3, "mode": "sub", "clip": False, "offset": (1, -2),
                         "path": Path("~/x.png").expanduser(), "scale": 1.0}
    assert Shift(clip="TRUE").options["clip"] is True and Shift(clip="0").options["clip"] is False
    assert Shift(steps=2.0).options["steps"] == 2 and Shift(amount=1).options["amount"] == 1.0


@pytest.mark.parametrize("options,words", [
    ({"amount": "big"}, ["shift", "'amount'", "a number, in [-1, 1]", "'big'"]),
    ({"amount": "inf"}, ["'amount'", "'inf'"]),
    ({"amount": True}, ["'amount'"]),
    ({"steps": "1.5"}, ["'steps'", "an integer, at least 1", "'1.5'"]),
    ({"steps": "0"}, ["at least 1", "'0'"]),
    ({"mode": "mul"}, ["'mode'", "one of add, sub", "'mul'"]),
    ({"clip": "maybe"}, ["'clip'", "true or false"]),
    ({"offset": "1/2/3"}, ["'offset'", "2 integers written dx/dy", "'1/2/3'"]),
    ({"offset": 5}, ["'offset'"]),
    ({"path": ""}, ["'path'", "a path"]),
])
def test_bad_values_name_the_degradation_option_value_and_what_is_allowed(options, words):
    with pytest.raises(DGPUsageError) as info:
        Shift(**options)
    for word in words:
        assert word in str(info.value)


def test_unknown_option_lists_valid_ones_and_suggests():
    with pytest.raises(DGPUsageError) as info:
        Shift(amout="0.2")
    message = str(info.value)
    assert "unknown option 'amout'" in message and "did you mean 'amount'?" in message
    assert "amount, steps, mode, clip, offset, path, scale" in message
    with pytest.raises(DGPUsageError, match="valid options") as info:
        Shift(zzz=1)
    assert "did you mean" not in str(info.value)


def test_cross_option_rule_in_resolve_options():
    with pytest.raises(DGPUsageError, match="^shift: 'clip' cannot be used with mode=sub$"):
        Shift(mode="sub", clip=True)
    assert Shift(amount=0.3).options["scale"] == pytest.approx(0.6)


def test_spec_lists_resolved_options_and_skips_none():
    s = Shift(amount="0.5", offset="1/2")
    assert s.spec == "shift:amount=0.5,steps=1,mode=add,clip=false,offset=1/2,scale=1.0"
    assert Shift.from_spec(s.spec) == s


def test_spec_quotes_values_with_commas_and_colons():
    s = Shift(path='C:\\a,b "q".png')
    assert 'path="C:\\a,b ""q"".png"' in s.spec
    assert Shift.from_spec(s.spec) == s


def test_from_spec_checks_the_name():
    with pytest.raises(DGPUsageError, match="names 'blur', not 'shift'"):
        Shift.from_spec("blur:sigma=1")


def test_equality_and_hash_by_name_and_options():
    assert Shift() == Shift(amount="0.1") and hash(Shift()) == hash(Shift(amount=0.1))
    assert Shift() != Shift(amount=0.2)
    assert len({Shift(), Shift(amount="0.1"), Shift(steps=2)}) == 2
    assert Shift() != object()


def test_options_is_a_copy():
    s = Shift()
    s.options["amount"] = 5
    assert s.options["amount"] == 0.1


def test_describe_rows():
    rows = {row["name"]: row for row in Shift.describe()}
    assert list(rows) == list(Shift.OPTIONS)
    assert rows["amount"] == {"name": "amount", "type": "float", "default": 0.1, "default_text": "0.1",
                              "help": "added to every pixel", "allowed": "a number, in [-1, 1]"}
    assert rows["offset"]["type"] == "int dx/dy" and rows["offset"]["default_text"] == "0/0"
    assert rows["scale"]["default_text"] == "2 * amount" and rows["path"]["default_text"] == "-"
    assert rows["mode"]["allowed"] == "one of add, sub" and rows["clip"]["type"] == "bool"


def test_default_methods():
    s = Shift()
    x = torch.zeros(1, 3, 4, 4)
    assert torch.allclose(s.degrade(x), x + 0.1)
    assert torch.equal(s.observe(x), x) and torch.equal(s.observe(x, size=4), x)
    with pytest.raises(DGPUsageError, match="expected an observed image of 8x8 px, got 4x4"):
        s.observe(x, size=8)
    assert torch.equal(s.finish(x, x), x)
    assert s.observation_size(5) == (5, 5) and s.observation_size((4, 6)) == (4, 6)
    s.check_image_size(100, 50)  # no constraint by default


def test_check_images_typed_errors():
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_images([1, 2, 3])
    with pytest.raises(TypeError, match="floating-point"):
        check_images(torch.zeros(1, 3, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\), got \(1, 4, 2, 2\)"):
        check_images(torch.zeros(1, 4, 2, 2))
    x = torch.zeros(1, 3, 2, 2)
    assert check_images(x) is x


def test_as_size():
    assert as_size(8) == (8, 8) and as_size((2, 3)) == (2, 3) and as_size(torch.Size([4, 5])) == (4, 5)
    with pytest.raises(TypeError):
        as_size(True)


def test_option_convert_directly():
    opt = Option(float, 1.0, "x", check=lambda v: v > 0, allowed="> 0")
    assert opt.convert("2.5", owner="o", name="n") == 2.5
    assert opt.convert(None, owner="o", name="n") is None
    with pytest.raises(DGPUsageError, match="^o: option 'n' must be a number, > 0; got '-1'$"):
        opt.convert("-1", owner="o", name="n")
