"""The runnable examples in the docstrings of the degradation, image and metric modules."""

import doctest
import importlib

import pytest

MODULES = [
    "dgp_toolkit.plugins.degradations.base",
    "dgp_toolkit.plugins.degradations.blur",
    "dgp_toolkit.plugins.degradations.compose",
    "dgp_toolkit.plugins.degradations.downsample",
    "dgp_toolkit.plugins.degradations.gray",
    "dgp_toolkit.plugins.degradations.mask",
    "dgp_toolkit.plugins.degradations.noise",
    "dgp_toolkit.images",
    "dgp_toolkit.metrics",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
