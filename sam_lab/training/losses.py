"""SAM's training losses (paper §3 "Losses and training", appendix A).

Mask loss     20 * focal + 1 * dice on the mask logits (the 20:1 ratio of the paper)
IoU loss      mean-squared error between the IoU head's prediction for each mask and that
              mask's actual IoU with the ground truth (the target is not differentiated)
Min-loss      with three outputs (one ambiguous prompt), only the mask with the lowest mask
              loss is trained, so the three tokens are free to specialise on whole / part /
              subpart instead of averaging them into a blur

Shapes: logits (B, C, H, W) with C = 3 or 1; target (B, H, W) bool, or float in [0, 1] (a soft
target: the share of each pixel the object covers; the IoU is then taken against coverage >= 0.5).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F

from ..inference.masks import mask_iou

FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al., 2017) averaged over pixels: (B, C, H, W) -> (B, C).

    Cross-entropy scaled by (1 - p_t)^gamma, so easy pixels (most of the background) count
    little; alpha weighs the positive class (a negative alpha switches that off).
    """
    target = target.to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - Dice coefficient of sigmoid(logits) and the target, per mask: (B, C, H, W) -> (B, C)."""
    p = torch.sigmoid(logits).flatten(2)
    t = target.to(logits.dtype).flatten(2)
    overlap = (p * t).sum(-1)
    return 1 - (2 * overlap + smooth) / (p.sum(-1) + t.sum(-1) + smooth)


def sam_loss(
    logits: torch.Tensor,
    iou_pred: torch.Tensor,
    target: torch.Tensor,
    iou_weight: float = 1.0,
    focal_alpha: float = 0.25,
    iou_target: Optional[torch.Tensor] = None,
) -> Dict[str, torch.Tensor]:
    """The full loss for a batch of predictions against one ground-truth mask each.

    logits (B, C, H, W), iou_pred (B, C), target (B, H, W). Target masks of another size are
    resized to the logits' size (nearest). ``iou_target`` (B, C), if given, is what the IoU head
    learns instead of each mask's IoU with the target (e.g. the IoU with the best-matching object
    that contains the click: :func:`sam_lab.training.clicks.level_iou`). Returns a dict with the
    scalar ``loss`` and its parts: ``mask`` (of the chosen masks), ``iou`` (IoU-head MSE),
    ``chosen`` (B,) the index of the lowest-loss mask, and ``iou_true`` (B, C) against the target.
    """
    if logits.ndim != 4 or iou_pred.shape != logits.shape[:2]:
        raise ValueError(f"logits/iou_pred: expected (B, C, H, W) and (B, C), got {tuple(logits.shape)} and {tuple(iou_pred.shape)}")
    target = target.float()
    if target.ndim != 3 or target.shape[0] != logits.shape[0]:
        raise ValueError(f"target: expected (B, H, W) with B = {logits.shape[0]}, got {tuple(target.shape)}")
    if target.shape[-2:] != logits.shape[-2:]:
        target = F.interpolate(target[:, None], size=logits.shape[-2:], mode="nearest")[:, 0]
    target = target[:, None].expand_as(logits)  # (B, C, H, W): same target for each candidate
    focal = focal_loss(logits, target, alpha=focal_alpha)
    per_mask = FOCAL_WEIGHT * focal + DICE_WEIGHT * dice_loss(logits, target)  # (B, C)
    chosen = per_mask.argmin(dim=1)  # min over the candidates: only the best one learns
    mask_term = per_mask.gather(1, chosen[:, None]).squeeze(1).mean()
    with torch.no_grad():
        iou_true = mask_iou(logits > 0, target >= 0.5)  # the IoU head's target
    if iou_target is not None and tuple(iou_target.shape) != tuple(iou_pred.shape):
        raise ValueError(f"iou_target: expected shape {tuple(iou_pred.shape)} like iou_pred, got {tuple(iou_target.shape)}")
    iou_term = F.mse_loss(iou_pred, iou_true if iou_target is None else iou_target.to(iou_pred.dtype))
    return {
        "loss": mask_term + iou_weight * iou_term,
        "mask": mask_term.detach(),
        "iou": iou_term.detach(),
        "chosen": chosen,
        "iou_true": iou_true,
    }
