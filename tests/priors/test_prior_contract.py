"""The shipped priors pass the prior contract (``dgp_toolkit.testing.PriorContract``): the
embedded ``biggan``, ``dip`` and a tiny random BigGAN. The ImageNet variants share
``biggan``'s class; their weights are not available here."""

from __future__ import annotations

import pytest
from tiny import make_prior

from dgp_toolkit.registry import get_registry
from dgp_toolkit.testing import PriorContract

pytestmark = pytest.mark.usefixtures("one_thread")


def registered(name):
    """The registry's factory of ``name`` (looked up when the prior is first built)."""
    return lambda **options: get_registry().create("prior", name, **options)


class TestEmbeddedBigGAN(PriorContract):
    factory = registered("biggan")
    options = {"device": "cpu"}
    registered_name = "biggan"


class TestDIP(PriorContract):
    factory = registered("dip")
    options = {"device": "cpu", "seed": 3}
    registered_name = "dip"


class TestTinyBigGAN(PriorContract):
    factory = staticmethod(make_prior)
