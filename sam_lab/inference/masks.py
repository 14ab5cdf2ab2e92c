"""Mask arithmetic shared by training, evaluation and inference: IoU and tight boxes.

Masks are boolean arrays whose last two axes are (H, W): numpy arrays or torch tensors (the
result is of the same kind). Leading axes broadcast, so one call scores every candidate against
every target: ``mask_iou(candidates[:, None], targets[None])`` gives a (C, T) table.

One convention, used everywhere in sam_lab: the IoU of an empty mask with an empty mask is 1
(they agree on every pixel). Nothing in SAM's pipeline scores an empty target, but a loss or a
metric that met one would otherwise divide by zero.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

Mask = Union[np.ndarray, torch.Tensor]


def mask_iou(pred: Mask, target: Mask) -> Mask:
    """|pred & target| / |pred | target| over the last two axes; empty vs empty = 1.

    pred, target: boolean (..., H, W), broadcastable to each other (numpy or torch, not mixed).
    Returns float IoUs of the broadcast leading shape.
    """
    if torch.is_tensor(pred) != torch.is_tensor(target):
        raise TypeError(
            f"pred/target: expected both numpy arrays or both torch tensors, got "
            f"{type(pred).__name__} and {type(target).__name__}"
        )
    if pred.dtype not in (bool, torch.bool) or target.dtype not in (bool, torch.bool):
        raise TypeError(f"pred/target: expected boolean masks, got {pred.dtype} and {target.dtype}")
    inter = (pred & target).sum((-2, -1))
    union = (pred | target).sum((-2, -1))
    if torch.is_tensor(union):
        return (inter.float() + (union == 0).float()) / union.clamp(min=1).float()
    return (inter + (union == 0)) / np.maximum(union, 1)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight box (x0, y0, x1, y1) in pixels around a non-empty (H, W) mask (corners included)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("mask: expected at least one foreground pixel, got an empty mask")
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def pairwise_mask_iou(a: Mask, b: Mask) -> torch.Tensor:
    """(N, M) IoU of every mask in ``a`` (N, H, W) with every mask in ``b`` (M, H, W), as one
    matrix product: no (N, M, H, W) intermediate, so it suits hundreds of full-size masks.
    Same convention as :func:`mask_iou` (empty vs empty = 1)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.dtype != torch.bool or b.dtype != torch.bool or a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"a/b: expected boolean (N, H, W) and (M, H, W) masks of one size, got "
                         f"{tuple(a.shape)} {a.dtype} and {tuple(b.shape)} {b.dtype}")
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return (inter + (union == 0).float()) / union.clamp(min=1)
