"""Small helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> str:
    """The processor's name, its core count and whether it computes bf16 natively."""
    from dgp_toolkit.precision import cpu_has_fast_bf16

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    bf16 = "native bf16 (AMX/AVX-512 BF16)" if cpu_has_fast_bf16() else "no native bf16"
    return f"{model}, {os.cpu_count()} cores, {platform.system()}, {bf16}"
