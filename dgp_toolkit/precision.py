"""Numeric precision: float32 everywhere, or bf16 autocast where the hardware does bf16.

``precision`` is one of ``"auto"``, ``"float32"`` or ``"bf16"``. ``auto`` picks bf16 only
where it is computed natively: a CUDA device that supports it, or a CPU with AMX or
AVX-512 BF16 instructions. Elsewhere (e.g. AVX2-only CPUs) bf16 is emulated and 13-50x
slower than float32, so ``auto`` stays in float32 there.

Under bf16 autocast the convolutions and matrix products run in bf16; parameters,
optimizer states, losses and everything outside the ``autocast`` block stay float32.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from dgp_toolkit.errors import DGPUsageError

PRECISIONS = ("auto", "float32", "bf16")


def cpu_has_fast_bf16() -> bool:
    """True when this CPU has native bf16 matrix instructions (AMX or AVX-512 BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"float32"`` or ``"bf16"`` for ``precision`` on ``device`` (``auto`` resolved)."""
    if precision not in PRECISIONS:
        raise DGPUsageError(f"unknown precision {precision!r}; choices: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "float32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "float32"
    return "float32"


def autocast(device: torch.device | str, precision: str):
    """A context manager: bf16 autocast on ``device`` for ``"bf16"``, nothing for ``"float32"``."""
    device = torch.device(device)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
