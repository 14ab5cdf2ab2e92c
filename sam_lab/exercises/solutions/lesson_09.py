"""Lesson 09, the interactive simulation: the evaluation protocol's next click."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt

from ...evaluation.interactive import next_eval_click as _library_next_click
from ..engine import CheckResult
from ..turns import Turn


def next_click(prediction, target):
    """The evaluation protocol's next click for a prediction and a target, both (H, W) bool.

    Returns None if the prediction is perfect, else ((x, y) float array, label): the pixel of the
    error region farthest from the region's boundary (the image border counts as boundary), with
    label 1 if the target is there (a missed pixel), 0 if not (a false alarm).
    """
    error = prediction != target
    if not error.any():
        return None
    # distance of every error pixel to the nearest pixel outside the error region; the padding of
    # one pixel makes the image border count as outside
    distance = distance_transform_edt(np.pad(error, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(np.argmax(distance), distance.shape)  # rows are y, columns x
    return np.array([x, y], dtype=np.float64), int(target[y, x])


# ----------------------------------------------------------------------------- the checker

def _cases():
    """(label, prediction, target) on a 40 x 64 image: every kind of error the protocol meets."""
    H, W = 40, 64
    rows, cols = np.mgrid[:H, :W]
    target = (rows >= 8) & (rows < 30) & (cols >= 10) & (cols < 46)  # a 22 x 36 rectangle
    blob = (rows - 18) ** 2 + (cols - 50) ** 2 < 9 ** 2
    return [
        ("an empty prediction (all missed)", np.zeros((H, W), bool), target),
        ("a strip of the target missed", target & (cols >= 18), target),
        ("a false alarm beside the target", target | blob, target),
        ("a false alarm at the image border", target | (cols >= 56), target),
        ("a shifted prediction (misses and false alarms)", np.roll(target, (6, 9), axis=(0, 1)), target),
        ("a perfect prediction", target.copy(), target),
    ]


def _edt(region, pad=True):
    if pad:
        return distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    return distance_transform_edt(region)


def _pixel(point, shape):
    """(x, y) -> integer (x, y) inside the image, or None."""
    x, y = int(point[0]), int(point[1])
    return (x, y) if 0 <= x < shape[1] and 0 <= y < shape[0] else None


def _diagnose(point, label, prediction, target) -> str:
    """'' if (point, label) is a right answer (any maximum of the error's distance transform)."""
    error = prediction != target
    distance = _edt(error)
    at = _pixel(point, error.shape)
    swapped = _pixel(point[::-1], error.shape)
    if at is None or not error[at[1], at[0]] or distance[at[1], at[0]] < distance.max() - 1e-9:
        if swapped is not None and distance[swapped[1], swapped[0]] >= distance.max() - 1e-9:
            return "x and y are swapped: np.argmax over the (H, W) map gives (row, column) = (y, x); return (x, y)"
        if at is None:
            return f"the click {tuple(point)} is outside the {error.shape[0]} x {error.shape[1]} image"
        x, y = at
        if not error[y, x]:
            if target[y, x] and _edt(target)[y, x] >= _edt(target).max() - 1e-9:
                return ("you clicked the middle of the object: the distance transform is of the error region "
                        "(prediction != target), not of the target")
            return "the click is not in the error region (prediction != target)"
        if _edt(error, pad=False)[y, x] >= _edt(error, pad=False).max() - 1e-9:
            return ("the image border must count as the error region's boundary: pad the error with a ring of "
                    "False (np.pad(error, 1)) before the distance transform, then cut the ring off")
        inside_object = _edt(target) * error
        if inside_object[y, x] >= inside_object.max() - 1e-9:
            return ("you measured the distance to the object's boundary; the protocol measures it to the error "
                    "region's boundary (distance transform of prediction != target)")
        return (f"the click is in the error region but {distance[y, x]:.1f} px from its boundary; the farthest "
                f"pixel is {distance.max():.1f} px away")
    if label != int(target[at[1], at[0]]):
        return ("the label is inverted: 1 (positive) where the target has the pixel (a miss), 0 where it does not "
                "(a false alarm); read it from the target, not the prediction")
    return ""


def check_next_click(yours) -> CheckResult:
    name = "next_click"
    if not callable(yours):
        return CheckResult(name, False, f"✗ {name}: expected a function, got {type(yours).__name__}")
    for label, prediction, target in _cases():
        expected = _library_next_click(prediction, target)
        try:
            got = yours(prediction.copy(), target.copy())
        except Exception as error:
            return CheckResult(name, False, f"✗ {name} ({label}): yours raised {type(error).__name__}: {error}")
        if expected is None:
            if got is not None:
                return CheckResult(name, False, f"✗ {name} ({label}): there is no error to click on: return None")
            continue
        if got is None:
            return CheckResult(name, False, f"✗ {name} ({label}): yours returned None, but the prediction has "
                                            f"{int((prediction != target).sum())} wrong pixels")
        try:
            point, click_label = got
            point = np.asarray(point, dtype=np.float64).reshape(-1)
            click_label = int(click_label)
        except Exception:
            return CheckResult(name, False, f"✗ {name} ({label}): return ((x, y), label), got {got!r:.80}")
        if point.shape != (2,):
            return CheckResult(name, False, f"✗ {name} ({label}): the point should be (x, y), got shape {point.shape}")
        why = _diagnose(point, click_label, prediction, target)
        if why:
            return CheckResult(name, False, f"✗ {name} ({label}): {why}")
    return CheckResult(name, True, f"✓ {name}: yours clicks where ours does, with the same label, on "
                                   f"{len(_cases())} cases (ties between equally deep pixels allowed)", 0.0)


TURNS = [
    Turn("next_click", "09", "the evaluation's next click: the error pixel farthest from the error's boundary, "
         "labelled by the target", next_click, check=check_next_click),
]
