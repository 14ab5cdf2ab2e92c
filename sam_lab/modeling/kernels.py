"""The attention kernel: the one place where softmax(q k^T / sqrt(d) + bias) v is computed.

Every attention in sam_lab (the ViT's windowed and global attention, lesson 03, and the
two-way transformer's three attentions, lesson 05) calls :func:`attend`. Two kernels compute it:

    ``"sdpa"``  (the default) ``torch.nn.functional.scaled_dot_product_attention``; on a GPU
                it picks the flash or memory-efficient kernel. The relative-position bias goes in
                as the additive ``attn_mask``. On 2 CPU threads it runs ViT-B's encoder in 0.59x
                the reference's time, against 0.91x for ``"math"`` (benchmarks/README.md).
                One shape is routed around it on CPU: many queries against a handful of keys (the
                decoder's image -> token attention, 4096 image cells against 7 tokens), where the
                fused kernel is slow; :func:`few_keys_attention` computes the same thing 3-6x faster.
    ``"math"``  the formula written out step by step. It can hand back the attention weights
                (see :func:`record_attention`, which switches to it), which the explorers draw.

Choose globally with ``set_attention_kernel("sdpa")`` or for a block of code with
``with attention_kernel("math"): ...``. Both give the same numbers within float tolerance.
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
_default_kernel = "sdpa"


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


@contextlib.contextmanager
def shared_bias_buffer() -> Iterator[None]:
    """Inside the block, attention biases of one dtype are written into one reused buffer, as
    large as the largest of them (see :func:`bias_buffer`). The image encoder opens it around its blocks when no
    gradient is recorded: each global block of ViT-B builds a 12 x 4096 x 4096 bias (805 MB), and a
    fresh buffer of that size costs ~0.3 s of page faults on CPU every time, more than filling it.
    The buffer is dropped when the block ends, so nothing stays allocated after the forward."""
    previous = getattr(_state, "buffers", None)
    _state.buffers = {} if previous is None else previous
    try:
        yield
    finally:
        if previous is None:
            _state.buffers = None


def bias_buffer(shape, dtype: torch.dtype, device: torch.device) -> Optional[torch.Tensor]:
    """A reusable uninitialised tensor for an attention bias, or None: outside
    :func:`shared_bias_buffer`, or while autograd records (a bias saved for the backward pass must
    not be overwritten by the next block's)."""
    buffers = getattr(_state, "buffers", None)
    if buffers is None or torch.is_grad_enabled() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return None  # (an exported graph has no out= writes: it builds each bias as before)
    key, numel = (dtype, torch.device(device)), math.prod(shape)
    if key not in buffers or buffers[key].numel() < numel:
        buffers.pop(key, None)  # free the smaller one first: one buffer, the largest asked for
        buffers[key] = torch.empty(numel, dtype=dtype, device=device)
    return buffers[key][:numel].view(shape)  # windowed and global blocks take turns in it


# the CPU shape rule of the "sdpa" kernel (measured with 1 and 2 threads, torch 2.14: against 7
# keys the fused kernel takes 6.5 ms for 8 heads x 4096 queries, the layout below 1.2-1.7 ms; from
# 16 keys on the fused kernel wins, and below ~64 queries neither matters)
FEW_KEYS = 12
MANY_QUERIES = 64


def few_keys_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for many queries and few keys, with the logits laid out
    (B, h, keys, queries): the softmax then runs over dim -2, vectorised along the long query axis,
    instead of over rows of a few numbers each. Same result as the formula, to float rounding."""
    logits_t = (k * (1.0 / math.sqrt(q.shape[-1]))) @ q.transpose(-2, -1)  # (B, h, Nk, Nq)
    return logits_t.softmax(dim=-2).transpose(-2, -1) @ v


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
        if bias is None and q.device.type == "cpu" and k.shape[-2] <= FEW_KEYS and q.shape[-2] >= MANY_QUERIES:
            return few_keys_attention(q, k, v)
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
