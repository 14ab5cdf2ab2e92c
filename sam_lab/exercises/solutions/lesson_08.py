"""Lesson 08, min-loss training: the two mask losses, focal and dice."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...training.losses import dice_loss as _library_dice
from ...training.losses import focal_loss as _library_focal
from ..engine import CheckResult
from ..turns import Turn, compare_function


def focal_loss(logits, target, alpha=0.25, gamma=2.0):
    """(B, C, H, W) logits and 0/1 target -> (B, C) mean focal loss per mask."""
    target = target.float()
    p = torch.sigmoid(logits)
    p_t = torch.where(target > 0, p, 1 - p)  # the probability given to the right answer
    # -log p_t, written so it stays exact for confident pixels: -log σ(z) = softplus(-z)
    # (computing log(p_t) after the sigmoid rounds p_t to 1 and loses the small losses)
    cross_entropy = F.softplus(torch.where(target > 0, -logits, logits))
    weight = torch.where(target > 0, alpha, 1 - alpha)  # alpha on the object, 1 - alpha on the background
    return (weight * (1 - p_t) ** gamma * cross_entropy).mean(dim=(-2, -1))


def dice_loss(logits, target, smooth=1.0):
    """(B, C, H, W) -> (B, C): 1 - soft Dice coefficient per mask."""
    p = torch.sigmoid(logits).flatten(2)  # (B, C, H*W)
    t = target.float().flatten(2)
    return 1 - (2 * (p * t).sum(-1) + smooth) / (p.sum(-1) + t.sum(-1) + smooth)


def _ours_focal(logits, target, alpha=0.25, gamma=2.0):
    return _library_focal(logits, target, alpha=alpha, gamma=gamma)


def _ours_dice(logits, target, smooth=1.0):
    return _library_dice(logits, target, smooth=smooth)


# ----------------------------------------------------------------------------- planted mistakes

def _focal_parts(logits, target):
    target = target.float()
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return target, p, p_t, ce


def _focal_sum(logits, target, alpha=0.25, gamma=2.0):
    target, _, p_t, ce = _focal_parts(logits, target)
    return ((alpha * target + (1 - alpha) * (1 - target)) * (1 - p_t) ** gamma * ce).sum(dim=(-2, -1))


def _focal_no_sigmoid(logits, target, alpha=0.25, gamma=2.0):
    target = target.float()
    p = logits  # the logits used as probabilities
    p_t = p * target + (1 - p) * (1 - target)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return ((alpha * target + (1 - alpha) * (1 - target)) * (1 - p_t) ** gamma * ce).mean(dim=(-2, -1))


def _focal_alpha_swapped(logits, target, alpha=0.25, gamma=2.0):
    target, _, p_t, ce = _focal_parts(logits, target)
    return (((1 - alpha) * target + alpha * (1 - target)) * (1 - p_t) ** gamma * ce).mean(dim=(-2, -1))


def _focal_no_alpha(logits, target, alpha=0.25, gamma=2.0):
    target, _, p_t, ce = _focal_parts(logits, target)
    return ((1 - p_t) ** gamma * ce).mean(dim=(-2, -1))


def _focal_no_gamma(logits, target, alpha=0.25, gamma=2.0):
    target, _, _, ce = _focal_parts(logits, target)
    return ((alpha * target + (1 - alpha) * (1 - target)) * ce).mean(dim=(-2, -1))


def _focal_gamma_on_p(logits, target, alpha=0.25, gamma=2.0):
    target, p, _, ce = _focal_parts(logits, target)
    return ((alpha * target + (1 - alpha) * (1 - target)) * (1 - p) ** gamma * ce).mean(dim=(-2, -1))


def _focal_log_of_sigmoid(logits, target, alpha=0.25, gamma=2.0):
    target, _, p_t, _ = _focal_parts(logits, target)
    ce = -torch.log(p_t)
    return ((alpha * target + (1 - alpha) * (1 - target)) * (1 - p_t) ** gamma * ce).mean(dim=(-2, -1))


FOCAL_MISTAKES = [
    ("you summed over the pixels: the loss of a mask is the mean over its H x W pixels", _focal_sum),
    ("you used the logits as probabilities: p = sigmoid(logits)", _focal_no_sigmoid),
    ("alpha weighs the wrong class: alpha = 0.25 for object pixels (target 1), 1 - alpha for the background",
     _focal_alpha_swapped),
    ("you left out the alpha weight (alpha for object pixels, 1 - alpha for the background)", _focal_no_alpha),
    ("you left out the focal factor (1 - p_t) ** gamma: that is plain weighted cross-entropy", _focal_no_gamma),
    ("the focal factor uses p; it should use p_t, the probability of the right answer (p where the target "
     "is 1, 1 - p where it is 0)", _focal_gamma_on_p),
    ("you took the log of the sigmoid: for a confident pixel p rounds to 1 in float32 and log(1 - p) is -inf; "
     "compute -log p_t from the logits (F.softplus(-z) = -log sigmoid(z), or "
     "F.binary_cross_entropy_with_logits)", _focal_log_of_sigmoid),
]


def _dice_no_smooth(logits, target, smooth=1.0):
    return _library_dice(logits, target, smooth=0.0)


def _dice_no_sigmoid(logits, target, smooth=1.0):
    p, t = logits.flatten(2), target.float().flatten(2)
    return 1 - (2 * (p * t).sum(-1) + smooth) / (p.sum(-1) + t.sum(-1) + smooth)


def _dice_no_two(logits, target, smooth=1.0):
    p, t = torch.sigmoid(logits).flatten(2), target.float().flatten(2)
    return 1 - ((p * t).sum(-1) + smooth) / (p.sum(-1) + t.sum(-1) + smooth)


def _dice_squared(logits, target, smooth=1.0):
    p, t = torch.sigmoid(logits).flatten(2), target.float().flatten(2)
    return 1 - (2 * (p * t).sum(-1) + smooth) / ((p ** 2).sum(-1) + (t ** 2).sum(-1) + smooth)


def _dice_coefficient(logits, target, smooth=1.0):
    return 1 - _library_dice(logits, target, smooth=smooth)


def _dice_hard(logits, target, smooth=1.0):
    return _library_dice(torch.where(logits > 0, 100.0, -100.0), target, smooth=smooth)


DICE_MISTAKES = [
    ("you left out the +1 smoothing in numerator and denominator: (2 sum(p y) + 1) / (sum p + sum y + 1)",
     _dice_no_smooth),
    ("you used the logits as probabilities: p = sigmoid(logits)", _dice_no_sigmoid),
    ("the overlap needs its factor 2: (2 sum(p y) + 1) / (sum p + sum y + 1)", _dice_no_two),
    ("you squared p and y in the denominator (the V-Net variant); SAM's dice sums them plainly", _dice_squared),
    ("you returned the Dice coefficient; the loss is 1 minus it", _dice_coefficient),
    ("you thresholded the prediction: dice loss uses the soft probabilities, so it has a gradient", _dice_hard),
]


def _loss_cases():
    generator = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 3, 24, 20, generator=generator) * 2
    target = torch.rand(2, 3, 24, 20, generator=generator) > 0.7
    confident = torch.randn(1, 3, 16, 16, generator=generator) * 40  # many |logits| > 17: sigmoid rounds to 0 or 1
    confident_target = confident > 0
    confident_target[..., :4, :] = ~confident_target[..., :4, :]  # and some confidently wrong
    empty = torch.zeros(1, 2, 16, 16, dtype=torch.bool)
    return [
        ("random logits, 0/1 target", (logits, target), {}),
        ("an empty target", (logits[:1, :2, :16, :16] - 3, empty), {}),
        ("confident logits (|z| up to ~100)", (confident, confident_target), {}),
    ]


def check_focal_loss(yours) -> CheckResult:
    return compare_function("focal_loss", yours, _ours_focal, _loss_cases(), FOCAL_MISTAKES)


def check_dice_loss(yours) -> CheckResult:
    return compare_function("dice_loss", yours, _ours_dice, _loss_cases(), DICE_MISTAKES)


TURNS = [
    Turn("focal_loss", "08", "focal loss per mask: (1 - p_t)^gamma-weighted cross-entropy with alpha, mean over pixels",
         focal_loss, check=check_focal_loss),
    Turn("dice_loss", "08", "dice loss per mask: 1 - (2 sum(p y) + 1) / (sum p + sum y + 1)",
         dice_loss, check=check_dice_loss),
]
