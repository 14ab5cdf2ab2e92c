"""Lesson 03b, MAE pre-training: the per-patch normalised pixel target."""
from __future__ import annotations

import copy

import torch

from ..engine import CheckResult
from ..turns import Turn, compare_function


def patch_rows(images, patch):
    """(B, 3, H, W) -> (B, H/p, W/p, p * p * 3): each patch's pixels in one row (like mae.patchify)."""
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // patch, patch, W // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, H // patch, W // patch, patch * patch * C)


def normalised_targets(images, patch, eps=1e-6):
    """Each patch's row minus the row's mean, over sqrt(the row's variance + eps)."""
    rows = patch_rows(images, patch)  # (B, h, w, p * p * 3)
    mean = rows.mean(dim=-1, keepdim=True)  # one number per patch
    var = rows.var(dim=-1, keepdim=True)  # torch's default: the unbiased variance, as MAE's code
    return (rows - mean) / torch.sqrt(var + eps)


# ---- likely mistakes

def _whole_image(images, patch, eps=1e-6):
    rows = patch_rows(images, patch)
    flat = rows.flatten(1)
    mean = flat.mean(-1)[:, None, None, None]
    var = flat.var(-1)[:, None, None, None]
    return (rows - mean) / torch.sqrt(var + eps)


def _per_channel(images, patch, eps=1e-6):
    rows = patch_rows(images, patch)
    B, h, w, P = rows.shape
    by_channel = rows.reshape(B, h, w, P // 3, 3)
    mean = by_channel.mean(-2, keepdim=True)
    var = by_channel.var(-2, keepdim=True)
    return ((by_channel - mean) / torch.sqrt(var + eps)).reshape(B, h, w, P)


def _biased(images, patch, eps=1e-6):
    rows = patch_rows(images, patch)
    var = rows.var(-1, keepdim=True, unbiased=False)
    return (rows - rows.mean(-1, keepdim=True)) / torch.sqrt(var + eps)


def _eps_outside(images, patch, eps=1e-6):
    rows = patch_rows(images, patch)
    return (rows - rows.mean(-1, keepdim=True)) / (rows.std(-1, keepdim=True) + eps)


def _by_variance(images, patch, eps=1e-6):
    rows = patch_rows(images, patch)
    return (rows - rows.mean(-1, keepdim=True)) / (rows.var(-1, keepdim=True) + eps)


def _mean_only(images, patch, eps=1e-6):
    rows = patch_rows(images, patch)
    return rows - rows.mean(-1, keepdim=True)


def _raw(images, patch, eps=1e-6):
    return patch_rows(images, patch)


MISTAKES = [
    ("you normalised over the whole image: the mean and variance are per patch, over the last axis of the "
     "patch rows (dim=-1), one pair of numbers per patch", _whole_image),
    ("you normalised each colour channel of a patch separately: MAE uses one mean and one variance over all "
     "p * p * 3 values of the patch's row", _per_channel),
    ("you used the biased variance (unbiased=False or a mean of squares): MAE's code uses torch's default "
     "var(), the unbiased one", _biased),
    ("eps belongs inside the square root, sqrt(var + eps), not added to the standard deviation", _eps_outside),
    ("you divided by the variance: divide by the standard deviation, sqrt(var + eps)", _by_variance),
    ("you subtracted the mean but did not divide by sqrt(var + eps)", _mean_only),
    ("these are the raw patch rows: subtract each patch's mean and divide by sqrt(var + eps)", _raw),
]


def _cases():
    generator = torch.Generator().manual_seed(3)
    textured = torch.randn(2, 3, 32, 48, generator=generator) * 2.0 + 0.5
    with_flat = torch.randn(1, 3, 32, 32, generator=generator)
    with_flat[:, :, :16, :16] = 0.7  # one perfectly flat patch: variance 0
    almost_flat = torch.full((1, 3, 16, 16), -0.3) + 1e-3 * torch.randn(1, 3, 16, 16, generator=generator)
    return [
        ("textured images (2, 3, 32, 48), 16-pixel patches", (textured, 16), {}),
        ("8-pixel patches", (textured, 8), {}),
        ("an image with one flat patch", (with_flat, 16), {}),
        ("an almost flat patch, eps=1e-4", (almost_flat, 16), {"eps": 1e-4}),
    ]


def check_normalised_targets(yours):
    if not callable(yours):
        return CheckResult("normalised_targets", False,
                           f"✗ normalised_targets: expected a function, got {type(yours).__name__}")
    for label, args, kwargs in _cases():  # a flat patch: 0 / 0 without eps
        try:
            got = yours(*copy.deepcopy(args), **copy.deepcopy(kwargs))
        except Exception:
            break  # compare_function reports it
        if isinstance(got, torch.Tensor) and got.shape == normalised_targets(*args, **kwargs).shape \
                and not torch.isfinite(got).all():
            return CheckResult("normalised_targets", False,
                               f"✗ normalised_targets ({label}): yours has NaN or inf where a patch is one flat "
                               "colour (variance 0): add eps inside the square root, sqrt(var + eps)")

    def safe(*args, **kwargs):  # your function on copies, so the cases stay as they are
        return yours(*copy.deepcopy(args), **copy.deepcopy(kwargs))

    return compare_function("normalised_targets", safe, normalised_targets, _cases(), MISTAKES)


TURNS = [
    Turn("normalised_targets", "03b", "MAE's target: each patch's pixels, normalised by the patch's own mean and "
         "standard deviation", normalised_targets, check=check_normalised_targets),
]
