"""The built-in schedules pass the schedule contract (``dgp_toolkit.testing.ScheduleContract``)."""

from __future__ import annotations

from dgp_toolkit.plugins.schedules import blockwise, full, latent_only
from dgp_toolkit.testing import ScheduleContract

#: A preset's stage table (two stages) and the run-wide options.
TABLE = {"iterations": [4, 3], "ft_num": [1, 3], "g_lr": [1e-4, 5e-5], "z_lr": [1e-2, 1e-3],
         "lr_ratio": [1.0, 0.5], "ftr_num": [3, 1], "use_in": [True, False],
         "weights": {"discriminator": [1.0, 0.1], "mse": [1.0, 1.0], "nll": [0.02, 0.0]}}
WITH_OPTIONS = {**TABLE, "warmup": 2, "early_stop_mse": 1e-4}
INVALID = [
    {"iterations": [0, 3]},
    {"g_lr": [1e-4]},
    {"z_lr": [-1.0, 1e-3]},
    {"ftr_num": [1.5, 1]},
    {"use_in": ["yes", False]},
    {"warmup": -1},
    {"early_stop_d": float("nan")},
]


class TestBlockwise(ScheduleContract):
    factory = blockwise
    registered_name = "blockwise"
    valid_options = [TABLE, WITH_OPTIONS, {"iterations": [5], "ft_num": [2], "g_lr": [1e-4], "z_lr": [1e-3]}]
    invalid_fields = INVALID


class TestLatentOnly(ScheduleContract):
    factory = latent_only
    registered_name = "latent-only"
    valid_options = [TABLE, WITH_OPTIONS]
    invalid_fields = INVALID


class TestFull(ScheduleContract):
    factory = full
    registered_name = "full"
    valid_options = [TABLE, WITH_OPTIONS]
    invalid_fields = INVALID
