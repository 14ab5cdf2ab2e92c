"""Positional encodings: where a token is, told three ways.

1. Learned absolute embedding (ViT): one learned D-vector per grid cell, added to the patch
   tokens. Trained at 64x64; :func:`resize_absolute_pos_embed` interpolates it for other
   input sizes.
2. Decomposed relative position (MViTv2, used in SAM's ViT blocks, paper appendix A): the
   attention logit between query (qy, qx) and key (ky, kx) gets ``q . R_h[qy - ky] +
   q . R_w[qx - kx]``, two small learned tables indexed by the row and column offsets.
   :func:`get_rel_pos` resizes a table when query and key grids differ in size.
3. Random Fourier features (Tancik et al., 2020; paper appendix A, prompt encoder): a point
   (x, y) in [0, 1]^2 maps to [sin(2π B p), cos(2π B p)] with a fixed Gaussian matrix B.
   Both prompt points and every image-embedding cell are encoded this way, so prompts and
   image share one coordinate language.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- 1. absolute

def resize_absolute_pos_embed(pos_embed: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bicubically resize a learned (1, H, W, D) absolute embedding to (1, h, w, D)."""
    if tuple(pos_embed.shape[1:3]) == tuple(size):
        return pos_embed
    grid = pos_embed.permute(0, 3, 1, 2)  # (1, D, H, W)
    grid = F.interpolate(grid, size=size, mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1)


# ----------------------------------------------------------------------------- 2. relative

def resize_rel_pos(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly resize a (L, C) relative-position table along its offset axis to (length, C)."""
    if rel_pos.shape[0] == length:
        return rel_pos
    table = F.interpolate(rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=length, mode="linear")  # (1, C, L')
    return table.reshape(-1, length).permute(1, 0)  # (L', C)


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Look up the relative-position vectors for every (query row, key row) pair.

    rel_pos: (L, C) learned table, one row per offset. For q_size == k_size == S it has
    L = 2S - 1 rows covering offsets -(S-1) .. S-1; another L is resized to it
    (:func:`resize_rel_pos`). Returns (q_size, k_size, C).
    """
    table = resize_rel_pos(rel_pos, 2 * max(q_size, k_size) - 1)
    # Put query and key coordinates on a common scale when their grids differ in size.
    q_scale = max(k_size / q_size, 1.0)
    k_scale = max(q_size / k_size, 1.0)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * q_scale
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * k_scale
    # offset (q - k) shifted so that the most negative offset indexes row 0
    index = (q_coords - k_coords) + (k_size - 1) * k_scale
    return table[index.long()]  # (q_size, k_size, C)


def decomposed_rel_pos_bias(
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_hw: Tuple[int, int],
    k_hw: Tuple[int, int],
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The additive attention bias of decomposed relative positions.

    q: (B, q_h * q_w, C) unscaled queries (B counts batch x heads).
    Returns (B, q_h * q_w, k_h * k_w): bias[b, (qy,qx), (ky,kx)] = q . R_h[qy,ky] + q . R_w[qx,kx].
    ``out``: a contiguous tensor of B * q_h * q_w * k_h * k_w elements to write it into.
    """
    q_h, q_w = q_hw
    k_h, k_w = k_hw
    R_h = get_rel_pos(q_h, k_h, rel_pos_h)  # (q_h, k_h, C)
    R_w = get_rel_pos(q_w, k_w, rel_pos_w)  # (q_w, k_w, C)
    B, _, C = q.shape
    q_grid = q.reshape(B, q_h, q_w, C)
    # einsum hands back permuted strides; made contiguous (small: B x q_h x q_w x k), the
    # broadcast sum below is written row by row, and the reshape to (B, N, N) is a view. Left
    # permuted, the sum inherits their layout and the reshape copies the whole (B, N, N) bias
    # through a transposition: a quarter of ViT-B's encoder time on CPU (benchmarks/README.md).
    bias_h = torch.einsum("byxc,ykc->byxk", q_grid, R_h).contiguous()  # (B, q_h, q_w, k_h)
    bias_w = torch.einsum("byxc,xkc->byxk", q_grid, R_w).contiguous()  # (B, q_h, q_w, k_w)
    if out is None:
        bias = bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]  # (B, q_h, q_w, k_h, k_w)
    else:
        bias = torch.add(bias_h[:, :, :, :, None], bias_w[:, :, :, None, :], out=out.view(B, q_h, q_w, k_h, k_w))
    return bias.view(B, q_h * q_w, k_h * k_w)


# ----------------------------------------------------------------------------- 3. Fourier

class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of 2-D positions.

    ``positional_encoding_gaussian_matrix`` (2, F) is drawn once from N(0, scale^2) and never
    trained; the encoding has 2F channels (sin and cos).
    """

    def __init__(self, num_pos_feats: int = 64, scale: Optional[float] = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats))
        )

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (..., 2) in [0, 1] -> (..., 2F)."""
        coords = 2 * coords - 1  # to [-1, 1]
        coords = coords @ self.positional_encoding_gaussian_matrix  # (..., F)
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: Tuple[int, int]) -> torch.Tensor:
        """Encode the centre of every cell of an (h, w) grid: returns (2F, h, w)."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        dtype = self.positional_encoding_gaussian_matrix.dtype
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h  # cell centres in [0, 1]
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
        grid = torch.stack(
            [xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1
        )  # (h, w, 2) as (x, y)
        return self._pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords_input: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
        """Encode pixel coordinates (B, N, 2) given as (x, y) in an image of (H, W)."""
        coords = coords_input.clone()
        coords[:, :, 0] = coords[:, :, 0] / image_size[1]
        coords[:, :, 1] = coords[:, :, 1] / image_size[0]
        return self._pe_encoding(coords.to(torch.float))  # (B, N, 2F)
