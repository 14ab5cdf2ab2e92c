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
