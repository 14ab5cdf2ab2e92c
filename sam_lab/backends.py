"""Pluggable backends: the attention kernel, the device and dtype, and the model implementation.

Attention kernel
    Every attention in sam_lab (the ViT's windowed/global attention and the two-way
    transformer's three attentions) goes through :func:`attend`. Two kernels compute it:

    ``"math"``  softmax(q k^T * scale + bias) v written out step by step. It can hand back the
                attention weights (see :func:`record_attention`), which the explorers draw.
    ``"sdpa"``  ``torch.nn.functional.scaled_dot_product_attention``; on a GPU it picks the
                flash or memory-efficient kernel. The relative-position bias goes in as the
                additive ``attn_mask``.

    Choose globally with ``set_attention_kernel("sdpa")`` or for a block of code with
    ``with attention_kernel("math"): ...``.

Device and dtype
    :func:`pick_device` chooses cuda > mps > cpu; :func:`autocast` gives bf16 autocast on CUDA
    and is a no-op elsewhere.

Model backend
    ``"sam_lab"`` (ours) or ``"segment_anything"`` (Meta's reference package, when installed):
    :func:`build_model` returns either behind the same interface, so predictors, widgets and
    tests can put them side by side.
"""
from __future__ import annotations

import contextlib
import math
import threading
from typing import Iterator, List, Optional

import torch
import torch.nn.functional as F

ATTENTION_KERNELS = ("math", "sdpa")

_state = threading.local()
_default_kernel = "math"


def get_attention_kernel() -> str:
    return getattr(_state, "kernel", _default_kernel)


def set_attention_kernel(name: str) -> None:
    """Choose the attention kernel for every model in this process (``"math"`` or ``"sdpa"``)."""
    global _default_kernel
    _check_kernel(name)
    _default_kernel = name
    _state.kernel = name


@contextlib.contextmanager
def attention_kernel(name: str) -> Iterator[None]:
    """Use ``name`` as the attention kernel inside the ``with`` block."""
    _check_kernel(name)
    previous = get_attention_kernel()
    _state.kernel = name
    try:
        yield
    finally:
        _state.kernel = previous


def _check_kernel(name: str) -> None:
    if name not in ATTENTION_KERNELS:
        raise ValueError(f"attention kernel: expected one of {ATTENTION_KERNELS}, got {name!r}")


class AttentionRecord(list):
    """A list of ``(module_name, weights)`` filled while :func:`record_attention` is active."""

    def by_name(self, name: str) -> List[torch.Tensor]:
        return [w for n, w in self if n == name]


@contextlib.contextmanager
def record_attention() -> Iterator[AttentionRecord]:
    """Keep every attention map computed inside the block (forces the ``math`` kernel).

    >>> with record_attention() as maps:
    ...     predictor.predict(point_coords=..., point_labels=...)
    >>> name, weights = maps[0]   # weights: (B, heads, queries, keys)
    """
    record = AttentionRecord()
    previous = getattr(_state, "record", None)
    _state.record = record
    try:
        with attention_kernel("math"):
            yield record
    finally:
        _state.record = previous


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    name: str = "attention",
) -> torch.Tensor:
    """Scaled dot-product attention with the chosen kernel.

    q: (B, heads, Nq, d), k and v: (B, heads, Nk, d), bias: broadcastable to (B, heads, Nq, Nk)
    and added to the scaled logits before the softmax. Returns (B, heads, Nq, d).
    """
    kernel = get_attention_kernel()
    if kernel == "sdpa":
        if bias is not None:
            bias = bias.to(q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    # math: logits = q k^T / sqrt(d) (+ bias); weights = softmax over keys; out = weights v
    logits = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # (B, h, Nq, Nk)
    if bias is not None:
        logits = logits + bias
    weights = logits.softmax(dim=-1)
    record = getattr(_state, "record", None)
    if record is not None:
        record.append((name, weights.detach().cpu()))
    return weights @ v


# ----------------------------------------------------------------------------- device and dtype

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


# ----------------------------------------------------------------------------- model backend

MODEL_BACKENDS = ("sam_lab", "segment_anything")


def reference_available() -> bool:
    try:
        import segment_anything  # noqa: F401
    except ImportError:
        return False
    return True


def build_model(variant: str = "vit_b", checkpoint=None, backend: str = "sam_lab"):
    """Build a SAM with either implementation; both answer the same predictor protocol.

    ``backend="segment_anything"`` needs Meta's reference package (``pip install
    segment-anything``); its checkpoint loading is the package's own.
    """
    if backend == "sam_lab":
        from .components import sam_model_registry

        if variant not in sam_model_registry:
            raise ValueError(f"variant: expected one of {sorted(sam_model_registry)}, got {variant!r}")
        return sam_model_registry[variant](checkpoint=checkpoint)
    if backend == "segment_anything":
        if not reference_available():
            raise ImportError(
                "backend: 'segment_anything' needs Meta's reference package; "
                "install it with `pip install segment-anything`"
            )
        from segment_anything import sam_model_registry as reference_registry

        if variant not in reference_registry:
            raise ValueError(
                f"variant: expected one of {sorted(reference_registry)}, got {variant!r}"
            )
        return reference_registry[variant](checkpoint=checkpoint)
    raise ValueError(f"backend: expected one of {MODEL_BACKENDS}, got {backend!r}")


def make_predictor(model):
    """A predictor for either backend's model: ours works on both (same attribute interface)."""
    from .predictor import SamPredictor

    return SamPredictor(model)
