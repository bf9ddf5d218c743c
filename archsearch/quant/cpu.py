"""What this CPU's int8 kernels can hold.

On x86 without VNNI, ONNX Runtime's int8 convolutions and matmuls multiply uint8 activations by int8 weights
with an instruction that sums pairs of products into 16 bits and saturates: with weights over the full int8
range the sums overflow and the int8 model no longer computes what was quantized (measured: a trained v2's
int8 model agreed with its own simulation on 44 % of images with 8-bit weights, 100 % with 7-bit). ONNX
Runtime's advice is ``reduce_range``: 7-bit weights there. A CPU with VNNI (or an ARM one) keeps 8.
"""

from __future__ import annotations

import platform
from pathlib import Path

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def int8_weight_bits(cpuinfo: str | None = None) -> int:
    """7 on an x86 CPU without VNNI, else 8 (``cpuinfo``: /proc/cpuinfo's text, read when not given)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return 8
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return 7  # unknown x86: the bits that cannot overflow
    flags = set(cpuinfo.split())
    return 8 if any(flag in flags for flag in VNNI_FLAGS) else 7
