"""Multi-head self-attention with decomposed relative position bias (the ViT's attention).

Paper appendix A: SAM's image encoder is a ViT (MAE pre-trained) with ViTDet's changes: most
blocks attend inside 14x14 windows, a few attend over the whole 64x64 grid, and every attention
adds a decomposed relative-position bias to its logits (see positional_encoding.py).

For tokens X of shape (B, H, W, D) and head width d = D / heads:
    q, k, v = X W_qkv                          one linear layer makes all three
    logits  = q k^T / sqrt(d) + bias_rel(q)    (B*heads, HW, HW)
    out     = softmax(logits) v, heads concatenated, then the output projection.

The softmax/product is done by ``kernels.attend`` so the kernel (math or sdpa) is pluggable.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn

from .kernels import attend, bias_buffer
from .positional_encoding import decomposed_rel_pos_bias


class Attention(nn.Module):
    """Self-attention over a (B, H, W, D) token grid, with optional relative-position bias."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        input_size: Optional[Tuple[int, int]] = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads: must divide dim={dim}, got {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size: relative positions need the (H, W) of the grid")
            # one learned vector per row offset and per column offset: 2S - 1 of each
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, self.head_dim))
            if not rel_pos_zero_init:
                nn.init.trunc_normal_(self.rel_pos_h, std=0.02)
                nn.init.trunc_normal_(self.rel_pos_w, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, D = x.shape
        N, h, d = H * W, self.num_heads, self.head_dim
        qkv = self.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)  # (3, B, h, N, d)
        q, k, v = qkv.unbind(0)  # each (B, h, N, d)
        bias = None
        if self.use_rel_pos:
            buffer = bias_buffer((B * h, N, N), q.dtype, q.device)  # None unless the encoder shares one
            bias = decomposed_rel_pos_bias(
                q.reshape(B * h, N, d), self.rel_pos_h, self.rel_pos_w, (H, W), (H, W), out=buffer
            ).view(B, h, N, N)
        out = attend(q, k, v, bias, name="image_encoder")  # (B, h, N, d)
        out = out.permute(0, 2, 1, 3).reshape(B, H, W, D)  # heads side by side again
        return self.proj(out)
