"""The degradation spec grammar: parse_spec / format_spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.specs import format_spec, format_value, parse_spec, split_tuple


@pytest.mark.parametrize(
    "text, expected",
    [
        ("blur", ("blur", {})),
        ("blur:", ("blur", {})),
        ("blur:sigma=2", ("blur", {"sigma": "2"})),
        ("blur:sigma=2,size=9", ("blur", {"sigma": "2", "size": "9"})),
        (" blur : sigma = 2 , size=9 ", ("blur", {"sigma": "2", "size": "9"})),
        ("mask:box=8/8/16/16", ("mask", {"box": "8/8/16/16"})),
        ('mask:file="C:\\x,y.png"', ("mask", {"file": "C:\\x,y.png"})),
        ('mask:file="a:b",box=1/2/3/4', ("mask", {"file": "a:b", "box": "1/2/3/4"})),
        ('mask:file="say ""hi"".png"', ("mask", {"file": 'say "hi".png'})),
        ('mask:file=""', ("mask", {"file": ""})),
        ('mask:file="  padded  " ', ("mask", {"file": "  padded  "})),
        ("x:eq=a=b", ("x", {"eq": "a=b"})),
        ("downsample:factor=4", ("downsample", {"factor": "4"})),
    ],
)
def test_parse_spec(text, expected):
    assert parse_spec(text) == expected


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "the name is empty"),
        (":sigma=2", "the name is empty"),
        ("blur:sigma", "has no '='"),
        ("blur:sigma=2,size", "'size' has no '='"),
        ('mask:file="abc', "no closing"),
        ("blur:sigma=1,sigma=2", "'sigma' is given twice"),
        ("blur:sigma=2,", "an option is empty"),
        ("blur:sigma=2,,size=3", "an option is empty"),
        ("blur:,sigma=2", "an option is empty"),
        ("blur:sigma=2:size=3", "contains ':'"),
        ('mask:file=a"b', "contains '\"'"),
        ('mask:file="a"b', "unexpected text"),
        ("blur:1x=2", "not a valid name"),
        ("blur sigma=2", "contains"),
        ("a,b", "contains"),
    ],
)
def test_malformed_specs_are_usage_errors(text, fragment):
    with pytest.raises(DGPUsageError) as info:
        parse_spec(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert "NAME[:key=value" in message  # says what the grammar is


def test_parse_spec_rejects_non_strings():
    with pytest.raises(DGPUsageError):
        parse_spec(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name, options, text",
    [
        ("blur", {}, "blur"),
        ("blur", {"sigma": 2.0}, "blur:sigma=2.0"),
        ("blur", {"sigma": 2.0, "size": None}, "blur:sigma=2.0"),
        ("mask", {"box": (8, 8, 16, 16)}, "mask:box=8/8/16/16"),
        ("mask", {"box": [1, 2]}, "mask:box=1/2"),
        ("mask", {"file": "C:\\x,y.png"}, 'mask:file="C:\\x,y.png"'),
        ("mask", {"file": Path("a/b.png")}, "mask:file=a/b.png"),
        ("mask", {"file": 'q"q'}, 'mask:file="q""q"'),
        ("mask", {"file": ""}, 'mask:file=""'),
        ("x", {"flag": True, "off": False, "n": 3}, "x:flag=true,off=false,n=3"),
    ],
)
def test_format_spec(name, options, text):
    assert format_spec(name, options) == text


ODD_VALUES = [
    "plain",
    "C:\\masks\\a,b.png",
    "a:b",
    'a "quoted" name',
    '"',
    '""',
    ",",
    ":",
    "",
    " lead",
    "trail ",
    "x=y=z",
    "with space",
    "ünïcödé,é",
    "8/8/16/16",
    "\\",
    'ends with backslash\\"',
]


@pytest.mark.parametrize("value", ODD_VALUES)
def test_round_trip_of_any_string_value(value):
    text = format_spec("mask", {"file": value, "fit": "crop"})
    assert parse_spec(text) == ("mask", {"file": value, "fit": "crop"})


def test_round_trip_of_python_values():
    options = {"sigma": 0.1, "size": 7, "box": (8, 8, 16, 16), "keep": True}
    name, parsed = parse_spec(format_spec("x", options))
    assert name == "x"
    assert parsed == {"sigma": "0.1", "size": "7", "box": "8/8/16/16", "keep": "true"}
    assert float(parsed["sigma"]) == 0.1
    assert tuple(int(v) for v in split_tuple(parsed["box"])) == (8, 8, 16, 16)


def test_format_is_canonical():
    text = ' blur : sigma = 2 , file="plain" '
    assert format_spec(*parse_spec(text)) == "blur:sigma=2,file=plain"


@pytest.mark.parametrize(
    "name, options",
    [
        ("", {}),
        ("a:b", {}),
        ("blur", {"bad key": 1}),
        ("blur", {"sigma": float("nan")}),
        ("mask", {"box": ("a/b", "c")}),
    ],
)
def test_format_spec_rejects_unwritable_input(name, options):
    with pytest.raises(DGPUsageError):
        format_spec(name, options)


def test_format_value_and_split_tuple():
    assert format_value(0.1) == "0.1"
    assert format_value(1e-7) == "1e-07"
    assert float(format_value(1 / 3)) == 1 / 3
    assert split_tuple(" 1 / 2 /3") == ["1", "2", "3"]
    assert split_tuple((1.5, 2)) == ["1.5", "2"]
