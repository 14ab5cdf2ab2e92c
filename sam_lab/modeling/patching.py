"""Patching: an image becomes a grid of tokens, and a grid of tokens becomes windows.

Paper §3 / ViT (Dosovitskiy et al., 2021): the 1024x1024 input is cut into 16x16 patches;
each patch is flattened and projected linearly to D channels. A Conv2d whose kernel and stride
both equal the patch size *is* that linear layer applied to every patch.

Windowed attention (ViTDet, Li et al., 2022) splits the 64x64 token grid into 14x14 windows.
64 is not a multiple of 14, so the grid is zero-padded to 70x70 (5x5 windows) first, and the
padding is cut away again afterwards.

A convolutional stem ("Early convolutions help transformers see better", Xiao et al., 2021)
replaces the one large-stride patch projection with a few 3x3 stride-2 convolutions: the same
token grid, reached one halving at a time. It is not SAM's stem (Meta's checkpoints have a
patch projection); sam_lab offers it as a swappable ``patch_embed`` for training experiments.

Shapes
    PatchEmbed:          (B, 3, 1024, 1024) -> (B, 64, 64, D)     channels last
    ConvStem:            (B, 3, 1024, 1024) -> (B, 64, 64, D)     channels last, same grid
    window_partition:    (B, H, W, C) -> (B * nWindows, w, w, C), plus the padded (Hp, Wp)
    window_unpartition:  (B * nWindows, w, w, C) -> (B, H, W, C)
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import LayerNorm2d


class PatchEmbed(nn.Module):
    """Cut the image into non-overlapping patches and project each to ``embed_dim`` channels."""

    def __init__(
        self,
        kernel_size: Tuple[int, int] = (16, 16),
        stride: Tuple[int, int] = (16, 16),
        padding: Tuple[int, int] = (0, 0),
        in_chans: int = 3,
        embed_dim: int = 768,
    ) -> None:
        super().__init__()
        # One weight matrix of shape (D, 3*16*16) applied to every patch, written as a conv.
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (B, D, H/16, W/16)
        return x.permute(0, 2, 3, 1)  # (B, H/16, W/16, D): the ViT works channels-last


class ConvStem(nn.Module):
    """log2(patch) stride-2 3x3 convolutions, each followed by a per-pixel LayerNorm and GELU, then
    a 1x1 convolution: the token grid of a ``patch``-sized PatchEmbed, reached by halving the
    image one step at a time. Channels double at each step and reach ``embed_dim`` at the last
    (patch 16, D 96: 3 -> 12 -> 24 -> 48 -> 96). Takes PatchEmbed's arguments so it swaps in as
    ``build_sam(config, patch_embed=ConvStem)`` (the same signature on purpose; ``padding`` is
    accepted for that and unused: each 3x3 convolution pads by 1). The patch must be a square
    power of two."""

    def __init__(
        self,
        kernel_size: Tuple[int, int] = (16, 16),
        stride: Tuple[int, int] = (16, 16),
        padding: Tuple[int, int] = (0, 0),
        in_chans: int = 3,
        embed_dim: int = 768,
    ) -> None:
        super().__init__()
        patch = stride[0]
        steps = patch.bit_length() - 1
        if tuple(kernel_size) != tuple(stride) or stride[0] != stride[1] or patch != 2**steps or steps < 1:
            raise ValueError(f"stride: expected a square power-of-two patch equal to kernel_size, got {tuple(stride)} / {tuple(kernel_size)}")
        if embed_dim % 2 ** (steps - 1):
            raise ValueError(f"embed_dim: expected a multiple of {2 ** (steps - 1)} for patch {patch}, got {embed_dim}")
        layers, channels = [], in_chans
        for i in range(steps):
            width = embed_dim // 2 ** (steps - 1 - i)  # doubles each step, embed_dim at the last
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), LayerNorm2d(width), nn.GELU()]
            channels = width
        layers.append(nn.Conv2d(channels, embed_dim, 1))
        self.proj = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # (B, H/patch, W/patch, D)


def window_partition(x: torch.Tensor, window_size: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Split a (B, H, W, C) grid into (B * nWindows, window_size, window_size, C) windows.

    The grid is zero-padded at the bottom and right up to a multiple of ``window_size``;
    the padded size (Hp, Wp) is returned so :func:`window_unpartition` can undo it.
    """
    B, H, W, C = x.shape
    pad_h = (-H) % window_size
    pad_w = (-W) % window_size
    if pad_h or pad_w:
        # F.pad pads the last dims first: (C: 0, 0), (W: 0, pad_w), (H: 0, pad_h)
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    nh, nw = Hp // window_size, Wp // window_size
    x = x.view(B, nh, window_size, nw, window_size, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(B * nh * nw, window_size, window_size, C)
    return windows, (Hp, Wp)


def window_unpartition(
    windows: torch.Tensor, window_size: int, padded_hw: Tuple[int, int], hw: Tuple[int, int]
) -> torch.Tensor:
    """Put windows back into a (B, H, W, C) grid and drop the padding added by the partition."""
    Hp, Wp = padded_hw
    H, W = hw
    nh, nw = Hp // window_size, Wp // window_size
    B = windows.shape[0] // (nh * nw)
    x = windows.reshape(B, nh, nw, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    if Hp > H or Wp > W:
        x = x[:, :H, :W, :].contiguous()
    return x
