"""Device and dtype: where a model runs and in which precision.

:func:`pick_device` chooses cuda > mps > cpu (or checks the one you ask for); :func:`autocast`
gives bf16 autocast on CUDA and is a no-op for fp32. fp32 is the default everywhere: the parity
tests with Meta's reference hold in fp32.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch


def pick_device(preferred: Optional[str] = None) -> torch.device:
    """``preferred`` if given, else the best available device: cuda, then mps, then cpu."""
    if preferred is not None:
        device = torch.device(preferred)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: 'cuda' was asked for but torch sees no CUDA device")
        if device.type == "mps" and not (
            hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
        ):
            raise ValueError("device: 'mps' was asked for but torch sees no MPS device")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device: torch.device | str, dtype: Optional[str | torch.dtype] = None):
    """bf16 autocast on CUDA when ``dtype`` is ``"bf16"``/``torch.bfloat16``; else a no-op.

    fp32 is the default everywhere: the parity tests hold in fp32.
    """
    device = torch.device(device)
    if dtype in (None, "fp32", torch.float32):
        return contextlib.nullcontext()
    if dtype in ("bf16", torch.bfloat16):
        if device.type != "cuda":
            raise ValueError(
                f"dtype: bf16 autocast is supported on cuda only, got device {device.type!r}"
            )
        return torch.autocast("cuda", dtype=torch.bfloat16)
    raise ValueError(f"dtype: expected 'fp32' or 'bf16', got {dtype!r}")


