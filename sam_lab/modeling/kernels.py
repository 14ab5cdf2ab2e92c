"""The attention kernel: the one place where softmax(q k^T / sqrt(d) + bias) v is computed.

Every attention in sam_lab (the ViT's windowed and global attention, lesson 03, and the
two-way transformer's three attentions, lesson 05) calls :func:`attend`. Two kernels compute it:

    ``"sdpa"``  (the default) ``torch.nn.functional.scaled_dot_product_attention``; on a GPU
                it picks the flash or memory-efficient kernel. The relative-position bias goes in
                as the additive ``attn_mask``. On 2 CPU threads it runs ViT-B's encoder in 0.44-0.59x
                the reference's time, against 0.91x for ``"math"`` (benchmarks/README.md).
                One shape is routed around it on CPU: many queries against a handful of keys (the
                decoder's image -> token attention, 4096 image cells against 7 tokens), where the
                fused kernel is slow; :func:`few_keys_attention` computes the same thing 3-6x faster.
                And without autograd the decoder's attentions between a few tokens and many image
                cells fold their image-side projections into the tokens (:func:`folding_applies`,
                :func:`folded_few_queries`, :func:`folded_few_keys`).
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


# the CPU rule for folding a decoder attention's projections into its few tokens (measured with 2
# threads, torch 2.14, ViT-B's decoder: 8 heads x 7 tokens against 4096 image cells, batch 64)
FOLD_MANY = 256


def folding_applies(heads: int, few: int, many: int, internal_dim: int, device: torch.device) -> bool:
    """Whether an attention between ``few`` tokens and ``many`` image cells computes faster with its
    image-side projections folded into the few side (:func:`folded_few_queries`,
    :func:`folded_few_keys`): the image is then multiplied by ``heads * few`` vectors instead of
    ``internal_dim`` projection rows. Only where it is measured to help and changes nothing else:
    the ``sdpa`` kernel (``math`` writes the formula out and records maps), on the CPU, with no
    gradient recorded (training keeps its exact arithmetic) and outside tracing / ONNX export."""
    return (
        get_attention_kernel() == "sdpa"
        and torch.device(device).type == "cpu"
        and not torch.is_grad_enabled()
        and not torch.jit.is_tracing()
        and not torch.onnx.is_in_onnx_export()
        and many >= FOLD_MANY
        and 2 * heads * few <= internal_dim
    )


def folded_few_queries(q, keys, values, k_weight, v_weight, v_bias) -> torch.Tensor:
    """Attention of a few projected queries over many image cells whose key and value projections
    are never computed.

    q (B, h, T, d): the projected queries; keys, values (B or 1, N, C): the image rows *before* the
    key and value projections (weights (h*d, C), value bias (h*d,)). With K = keys W_k^T + b_k:

        q_h K_h^T = (q_h W_k,h) keys^T + q_h . b_k,h     the last term is the same for every cell,
                                                          so the softmax over cells drops it
        P_h V_h   = (P_h values) W_v,h^T + b_v,h         the rows of P_h sum to 1

    so the image is multiplied by h*T vectors of width C, not by two (C -> h*d) projections.
    Returns (B, h, T, d), what ``softmax(q K^T / sqrt(d)) V`` gives, to float rounding."""
    B, h, T, d = q.shape
    C = keys.shape[-1]
    folded = (q * (1.0 / math.sqrt(d))) @ k_weight.view(h, d, C)  # (B, h, T, C)
    weights = (folded.reshape(B, h * T, C) @ keys.transpose(-2, -1)).softmax(dim=-1)  # (B, hT, N)
    pooled = (weights @ values).view(B, h, T, C)  # each head's weighted mean of the image rows
    return pooled @ v_weight.view(h, d, C).transpose(-2, -1) + v_bias.view(h, 1, d)


def folded_few_keys(queries, k, v, q_weight, q_bias, o_weight, o_bias, projected: bool = False) -> torch.Tensor:
    """Attention of many image cells over a few tokens, with the image's query projection and the
    output projection folded into the tokens.

    queries: the image rows (B or 1, N, C) before the query projection (weight (h*d, C), bias
    (h*d,)), or, with ``projected``, the query heads (B or 1, h, N, d) already computed; k, v
    (B, h, T, d): the tokens' projected keys and values; o_weight (C, h*d), o_bias (C,): the output
    projection. With Q = queries W_q^T + b_q:

        Q_h k_h^T = queries (W_q,h^T k_h^T) + b_q,h . k_h     a bias per token
        out       = sum_h P_h (v_h W_o,h^T) + b_o             each head's P_h rows sum to 1, so b_o
                                                              joins head 0's rows: no pass of its own

    Returns (B, N, C): the output projection of ``softmax(Q k^T / sqrt(d)) v``, to float rounding."""
    B, h, T, d = k.shape
    C = o_weight.shape[0]
    k = k * (1.0 / math.sqrt(d))
    if projected:
        logits = k @ queries.transpose(-2, -1)  # (B, h, T, N)
    else:
        folded = (k @ q_weight.view(h, d, C)).reshape(B, h * T, C)
        bias = (k @ q_bias.view(h, d, 1)).reshape(B, h * T, 1)
        logits = (folded @ queries.transpose(-2, -1) + bias).view(B, h, T, -1)
    weights = logits.softmax(dim=2)  # over the tokens, vectorised along the long cell axis
    mixed = v @ o_weight.view(C, h, d).permute(1, 2, 0)  # (B, h, T, C): each token's output row
    mixed[:, 0] += o_bias
    return weights.reshape(B, h * T, -1).transpose(-2, -1) @ mixed.reshape(B, h * T, C)


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
