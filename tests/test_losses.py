"""The built-in loss terms pass the loss contract (``dgp_toolkit.testing.LossContract``)."""

from __future__ import annotations

import torch

from dgp_toolkit.plugins.losses import DiscriminatorLoss, L1Loss, MSELoss, NLLLoss
from dgp_toolkit.testing import LossContract


class TestDiscriminatorLoss(LossContract):
    factory = DiscriminatorLoss
    registered_name = "discriminator"


class TestMSELoss(LossContract):
    factory = MSELoss
    registered_name = "mse"


class TestL1Loss(LossContract):
    factory = L1Loss
    registered_name = "l1"


class TestNLLLoss(LossContract):
    factory = NLLLoss
    registered_name = "nll"


def test_discriminator_loss_without_features_is_a_zero_tensor():
    state = TestDiscriminatorLoss().state(ftr_num=0)
    value = DiscriminatorLoss()(state)
    assert isinstance(value, torch.Tensor) and float(value) == 0.0
