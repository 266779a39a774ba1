"""Device and precision choice: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""

from __future__ import annotations

import os

import torch

from selfguide.contract.errors import PermanentError
from selfguide.spec.model import Dtype

DEVICE_ENV = "SELFGUIDE_DEVICE"


class DeviceUnavailable(PermanentError):
    """A GPU was asked for and none is visible."""


def resolve_device(requested: str | None = None) -> torch.device:
    """`requested` (or $SELFGUIDE_DEVICE), else the first GPU when there is one, else the CPU.

    On the CPU, torch uses every core this process may run on (its affinity, as a container's cpuset
    sets it), unless OMP_NUM_THREADS says otherwise."""
    name = requested or os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {name!r} requested but no CUDA GPU is visible")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    return device


def gpu_count() -> int:
    """CUDA GPUs visible to this process."""
    return torch.cuda.device_count()


def resolve_dtype(dtype: Dtype, device: torch.device) -> torch.dtype:
    """The torch dtype for `dtype` on `device`; `auto` picks the fastest exact-enough one."""
    if dtype is Dtype.MIXED:
        return torch.float32  # bf16 copies for the linear layers: engine/backends/mixed_precision.py
    if dtype is Dtype.AUTO:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {Dtype.FLOAT32: torch.float32, Dtype.BFLOAT16: torch.bfloat16, Dtype.FLOAT16: torch.float16}[dtype]
