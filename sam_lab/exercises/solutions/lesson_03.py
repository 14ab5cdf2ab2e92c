"""Lesson 03, the image encoder: one ViT block, windowed or global."""
from __future__ import annotations

import torch.nn as nn

from ...modeling.attention import Attention
from ...modeling.layers import MLPBlock
from ...modeling.patching import window_partition, window_unpartition
from ..turns import Turn


class EncoderBlock(nn.Module):
    """Pre-norm ViT block: x + Attention(LN(x)), then x + MLP(LN(x)); windowed if window_size > 0."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=nn.LayerNorm,
                 act_layer=nn.GELU, use_rel_pos=False, rel_pos_zero_init=True, window_size=0, input_size=None):
        super().__init__()
        self.norm1 = norm_layer(dim)
        attention_size = (window_size, window_size) if window_size > 0 else input_size
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, use_rel_pos=use_rel_pos,
                              rel_pos_zero_init=rel_pos_zero_init, input_size=attention_size)
        self.norm2 = norm_layer(dim)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), act_layer)
        self.window_size = window_size

    def forward(self, x):  # (B, H, W, D) -> (B, H, W, D)
        shortcut = x
        x = self.norm1(x)  # pre-norm: normalise before attending
        if self.window_size > 0:
            H, W = x.shape[1], x.shape[2]
            x, padded_hw = window_partition(x, self.window_size)  # (B * nWindows, w, w, D)
            x = self.attn(x)  # each window attends within itself
            x = window_unpartition(x, self.window_size, padded_hw, (H, W))  # back to (B, H, W, D)
        else:
            x = self.attn(x)  # the whole grid at once
        x = shortcut + x  # first residual
        return x + self.mlp(self.norm2(x))  # second residual, around the MLP


TURNS = [
    Turn("encoder_block", "03", "the forward pass of a ViT block: pre-norm, windows, attention, residuals, MLP",
         EncoderBlock, stage="encoder_block"),
]
