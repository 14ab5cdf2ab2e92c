"""Lesson 00, the tour: map a click from the original image into the resized image the model sees."""
from __future__ import annotations

import copy

import numpy as np

from ..turns import Turn, compare_function


def apply_coords(coords, original_size, target_length):
    """coords (..., 2) as (x, y) pixels of an image of ``original_size`` = (H, W) -> (x, y) pixels of
    the image resized so that its long side is ``target_length`` (floats, not rounded)."""
    old_h, old_w = original_size
    scale = target_length / max(old_h, old_w)  # the long side becomes target_length
    new_h, new_w = int(old_h * scale + 0.5), int(old_w * scale + 0.5)  # the resized image, whole pixels
    coords = np.array(coords, dtype=float)
    coords[..., 0] = coords[..., 0] * (new_w / old_w)  # x runs along the width
    coords[..., 1] = coords[..., 1] * (new_h / old_h)  # y along the height
    return coords


# ---- likely mistakes, each written out so the checker can recognise it

def _swapped_size(coords, original_size, target_length):
    return apply_coords(coords, tuple(original_size)[::-1], target_length)


def _swapped_columns(coords, original_size, target_length):
    return apply_coords(np.asarray(coords)[..., ::-1], original_size, target_length)


def _short_side(coords, original_size, target_length):
    return np.asarray(coords, dtype=float) * (target_length / min(original_size))


def _rounded(coords, original_size, target_length):
    return np.round(apply_coords(coords, original_size, target_length))


def _truncated(coords, original_size, target_length):
    return np.floor(apply_coords(coords, original_size, target_length))


def _one_factor(coords, original_size, target_length):
    return np.asarray(coords, dtype=float) * (target_length / max(original_size))


def _unscaled(coords, original_size, target_length):
    return np.asarray(coords, dtype=float)


MISTAKES = [
    ("x and y are swapped: original_size is (H, W) but a point is (x, y), so x scales with the width "
     "(new_w / old_w) and y with the height", _swapped_size),
    ("x and y are swapped: a point is (x, y), column first; keep that order in what you return", _swapped_columns),
    ("you scaled by the short side: the resize makes the LONG side target_length, so the factor is "
     "target_length / max(H, W)", _short_side),
    ("you rounded the coordinates: keep them as floats, a click can fall between pixels", _rounded),
    ("you truncated the coordinates to whole pixels: keep them as floats", _truncated),
    ("almost: the resized image's sides are rounded to whole pixels (int(h * scale + 0.5)), so each axis "
     "has its own factor, new_w / old_w for x and new_h / old_h for y", _one_factor),
    ("the coordinates are not scaled at all: multiply by the resize factor", _unscaled),
]

CASES = [
    ("the coffee photo, 400 x 600 -> 256", (np.array([[200, 135], [10, 390]]), (400, 600), 256), {}),
    ("a portrait photo, 600 x 401 -> 1024", (np.array([[100, 500], [400, 7]]), (600, 401), 1024), {}),
    ("a batch of boxes' corners (2, 2, 2), 333 x 500 -> 1024",
     (np.array([[[3, 4], [250, 300]], [[499, 332], [0, 0]]]), (333, 500), 1024), {}),
]


def check_apply_coords(yours):
    if not callable(yours):
        return compare_function("click_to_model_input", yours, apply_coords, CASES, MISTAKES)

    def safe(*args, **kwargs):  # your function on copies, so a change in place cannot spoil the cases
        return yours(*copy.deepcopy(args), **copy.deepcopy(kwargs))

    return compare_function("click_to_model_input", safe, apply_coords, CASES, MISTAKES)


TURNS = [
    Turn("click_to_model_input", "00", "map a click (x, y) from the original image into the resized image",
         apply_coords, check=check_apply_coords),
]
