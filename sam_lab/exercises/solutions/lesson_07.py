"""Lesson 07, ambiguity and multimask output: the predictor's last step, low-res logits to masks."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...modeling.sam import to_original_size
from ..engine import CheckResult
from ..turns import Turn, compare_function


def postprocess_masks(low_res_logits, img_size, input_size, original_size):
    """Low-res logits (B, C, h, w) -> boolean masks (B, C, H, W) over the original image.

    img_size: the side of the square model input; input_size: (h', w') of the resized image inside
    it (top left, the rest is padding); original_size: (H, W) of the image the user gave.
    """
    # 1. upsample to the padded model input, img_size x img_size
    logits = F.interpolate(low_res_logits, (img_size, img_size), mode="bilinear", align_corners=False)
    # 2. crop the padding away: the resized image is the top-left input_size
    logits = logits[..., : input_size[0], : input_size[1]]
    # 3. resize to the original image
    logits = F.interpolate(logits, tuple(original_size), mode="bilinear", align_corners=False)
    # 4. a logit above 0 is a probability above 0.5: inside the mask
    return logits > 0


def _ours(low_res_logits, img_size, input_size, original_size):
    return to_original_size(low_res_logits, img_size, input_size, original_size) > 0


def _input_size(original_size, img_size):
    """(h', w') of an image resized so that its longer side is img_size (ResizeLongestSide)."""
    scale = img_size / max(original_size)
    return tuple(int(side * scale + 0.5) for side in original_size)


def _resize(logits, size, **kwargs):
    return F.interpolate(logits, tuple(size), mode="bilinear", align_corners=False, **kwargs)


# ----------------------------------------------------------------------------- planted mistakes

def _no_crop(low_res_logits, img_size, input_size, original_size):
    return _resize(_resize(low_res_logits, (img_size, img_size)), original_size) > 0


def _straight_to_original(low_res_logits, img_size, input_size, original_size):
    return _resize(low_res_logits, original_size) > 0


def _crop_swapped(low_res_logits, img_size, input_size, original_size):
    padded = _resize(low_res_logits, (img_size, img_size))
    return _resize(padded[..., : input_size[1], : input_size[0]], original_size) > 0


def _threshold_half(low_res_logits, img_size, input_size, original_size):
    return to_original_size(low_res_logits, img_size, input_size, original_size) > 0.5


def _sigmoid_then_zero(low_res_logits, img_size, input_size, original_size):
    return torch.sigmoid(to_original_size(low_res_logits, img_size, input_size, original_size)) > 0


def _threshold_then_resize(low_res_logits, img_size, input_size, original_size):
    masks = (low_res_logits > 0).float()
    return to_original_size(masks, img_size, input_size, original_size) > 0.5


def _nearest(low_res_logits, img_size, input_size, original_size):
    padded = F.interpolate(low_res_logits, (img_size, img_size), mode="nearest")
    return F.interpolate(padded[..., : input_size[0], : input_size[1]], tuple(original_size), mode="nearest") > 0


def _align_corners(low_res_logits, img_size, input_size, original_size):
    padded = F.interpolate(low_res_logits, (img_size, img_size), mode="bilinear", align_corners=True)
    cropped = padded[..., : input_size[0], : input_size[1]]
    return F.interpolate(cropped, tuple(original_size), mode="bilinear", align_corners=True) > 0


POSTPROCESS_MISTAKES = [
    ("you resized the whole padded square to the original size: crop it to input_size first (the resized "
     "image sits at the top left of the model input, the rest is padding)", _no_crop),
    ("you resized the low-res logits straight to the original size: they cover the padded img_size x img_size "
     "input, so upsample to that, crop to input_size, then resize", _straight_to_original),
    ("you cropped with height and width swapped: input_size is (h', w'), rows first", _crop_swapped),
    ("you thresholded at 0.5: these are logits, and logit 0 is probability 0.5; threshold at 0", _threshold_half),
    ("you took the sigmoid and then thresholded at 0: every pixel is in; threshold the logits at 0 "
     "(or the sigmoid at 0.5)", _sigmoid_then_zero),
    ("you thresholded before resizing: resize the logits (smooth edges), then threshold", _threshold_then_resize),
    ("you resized with mode='nearest': SAM resizes the logits bilinearly (blocky edges otherwise)", _nearest),
    ("you resized with align_corners=True: SAM uses align_corners=False (pixel centres, not corners)",
     _align_corners),
]


def _postprocess_cases():
    generator = torch.Generator().manual_seed(7)
    cases = []
    for label, original_size in [("wide image 300 x 450", (300, 450)), ("tall image 450 x 300", (450, 300)),
                                 ("square image 200 x 200", (200, 200))]:
        # smooth logits: a blob that is in, ringed by out, plus noise, so edges cross the resize
        logits = torch.randn(1, 3, 32, 32, generator=generator) * 3
        logits = F.interpolate(logits, (128, 128), mode="bilinear", align_corners=False)
        cases.append((label, (logits, 256, _input_size(original_size, 256), original_size), {}))
    return cases


def check_postprocess_masks(yours) -> CheckResult:
    return compare_function("postprocess_masks", yours, _ours, _postprocess_cases(), POSTPROCESS_MISTAKES,
                            atol=0, rtol=0)


TURNS = [
    Turn("postprocess_masks", "07", "low-res logits -> full-size masks: upsample, crop the padding, resize, "
         "threshold at 0", postprocess_masks, check=check_postprocess_masks),
]
