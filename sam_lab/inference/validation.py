"""Check what users hand the predictor, and say clearly what is wrong.

Every check raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind, wrong
shape or value) with a message that names the argument, what was expected and what came.

Documented conversions (the only ones; nothing else is guessed):
    * grayscale images (H, W) or (H, W, 1) are repeated to 3 channels;
    * RGBA images (H, W, 4) drop their alpha channel;
    * PIL images are converted with ``.convert("RGB")``.
Points and boxes must lie inside the image: x in [0, W], y in [0, H] (pixel coordinates of the
original image; a click on the last pixel's far edge is still inside). Anything outside is an
error, not clipped.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:120]


def as_numeric_array(name: str, value, expected: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (bfloat16 has no numpy dtype: go via float64)
        value = value.detach().cpu()
        value = (value.double() if value.is_floating_point() else value).numpy()
    if isinstance(value, (str, bytes, dict, set)) or value is None:
        raise TypeError(f"{name}: expected {expected}, got {_describe(value)}")
    try:
        array = np.asarray(value)
    except Exception as error:  # ragged lists and the like
        raise ValueError(f"{name}: expected {expected}, got {type(value).__name__} ({error})") from None
    real = np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating)
    if array.dtype == object or not (real or array.dtype == bool):
        raise TypeError(f"{name}: expected {expected}, got {_describe(array)}")
    return array


def check_image(image, image_format: str = "RGB") -> np.ndarray:
    """Return an (H, W, 3) uint8 array, converting grayscale/RGBA/PIL as documented."""
    if image_format not in ("RGB", "BGR"):
        raise ValueError(f"image_format: expected 'RGB' or 'BGR', got {image_format!r}")
    if hasattr(image, "convert") and hasattr(image, "size") and not isinstance(image, np.ndarray):
        image = np.asarray(image.convert("RGB"))  # a PIL image
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image: expected a numpy array (H, W, 3) of uint8, got {_describe(image)}")
    if image.dtype != np.uint8:
        raise TypeError(
            f"image: expected dtype uint8 (0..255), got {image.dtype}; "
            "convert floats in [0, 1] with (image * 255).round().astype(np.uint8)"
        )
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
        raise ValueError(f"image: expected shape (H, W, 3) (or (H, W), (H, W, 1), (H, W, 4)), got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:  # checked on the shape that came, before converting
        raise ValueError(f"image: expected a non-empty image, got shape {image.shape}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return image


def as_rgb(image: np.ndarray) -> np.ndarray:
    """A sample photo as (H, W, 3) uint8, whatever it came as: bool (0/255), grayscale
    (repeated), RGBA (alpha dropped). For images we *make* (scikit-image's samples); a user's
    image goes through :func:`check_image`, which refuses what it cannot read unambiguously."""
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3]).astype(np.uint8)


def check_points(
    point_coords, point_labels, image_hw: Tuple[int, int]
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(N, 2) float coords inside the image and (N,) int labels in {0, 1}."""
    if point_coords is None and point_labels is None:
        return None, None
    if point_coords is None:
        raise ValueError("point_coords: point_labels were given without point_coords; give both or neither")
    if point_labels is None:
        raise ValueError("point_labels: point_coords were given without point_labels; give both or neither")
    coords = as_numeric_array("point_coords", point_coords, "an (N, 2) array of (x, y) pixels")
    if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] == 0:
        raise ValueError(f"point_coords: expected shape (N, 2) with N >= 1, got {coords.shape}")
    if not np.all(np.isfinite(coords)):
        raise ValueError("point_coords: expected finite numbers, got NaN or infinity")
    labels = as_numeric_array("point_labels", point_labels, "an (N,) array of 0/1 labels")
    if labels.ndim != 1 or labels.shape[0] != coords.shape[0]:
        raise ValueError(
            f"point_labels: expected shape ({coords.shape[0]},) to match point_coords, got {labels.shape}"
        )
    if not np.all(np.isin(labels, (0, 1))):
        bad = sorted(set(np.asarray(labels).ravel().tolist()) - {0, 1})[:5]
        raise ValueError(f"point_labels: expected 1 (foreground) or 0 (background), got {bad}")
    H, W = image_hw
    outside = (coords[:, 0] < 0) | (coords[:, 0] > W) | (coords[:, 1] < 0) | (coords[:, 1] > H)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"point_coords: point {i + 1} (row {i}) at (x={coords[i, 0]:g}, y={coords[i, 1]:g}) lies outside the "
            f"image (x in [0, {W}], y in [0, {H}])"
        )
    return coords.astype(np.float64), labels.astype(np.int64)


def check_box(box, image_hw: Tuple[int, int]) -> Optional[np.ndarray]:
    """A (4,) box x0, y0, x1, y1 with x1 > x0, y1 > y0, inside the image; returned as (1, 4)."""
    if box is None:
        return None
    array = as_numeric_array("box", box, "4 numbers x0, y0, x1, y1")
    if array.size != 4 or array.ndim > 2 or (array.ndim == 2 and array.shape[0] != 1):
        raise ValueError(f"box: expected 4 numbers x0, y0, x1, y1 (shape (4,) or (1, 4)), got shape {array.shape}")
    x0, y0, x1, y1 = array.reshape(4).astype(np.float64)
    if not np.all(np.isfinite([x0, y0, x1, y1])):
        raise ValueError("box: expected finite numbers, got NaN or infinity")
    if x1 <= x0 or y1 <= y0:
        raise ValueError(
            f"box: expected x1 > x0 and y1 > y0 (x0, y0, x1, y1), got ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
        )
    H, W = image_hw
    if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
        raise ValueError(
            f"box: ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the image (x in [0, {W}], y in [0, {H}])"
        )
    return np.array([[x0, y0, x1, y1]])


def check_mask_input(mask_input, size: Tuple[int, int]) -> Optional[np.ndarray]:
    """A (1, 256, 256) array of low-res mask logits (a previous ``low_res_logits`` entry)."""
    if mask_input is None:
        return None
    array = as_numeric_array("mask_input", mask_input, f"a (1, {size[0]}, {size[1]}) array of mask logits")
    if array.shape != (1, *size):
        raise ValueError(
            f"mask_input: expected shape (1, {size[0]}, {size[1]}) (one of the low_res_logits a "
            f"previous predict returned), got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("mask_input: expected finite logits, got NaN or infinity")
    return array.astype(np.float32)


def check_flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {_describe(value)}")
    return bool(value)


def check_text(text, name: str = "text") -> str:
    """One text prompt: a non-empty string. A list is refused (``predict_batch(texts=...)`` takes
    many)."""
    if isinstance(text, (list, tuple)):
        raise TypeError(f"{name}: expected one string for a single prompt set, got a {type(text).__name__} of "
                        f"{len(text)}; use predict_batch(texts=[...]) for several")
    if not isinstance(text, str):
        raise TypeError(f"{name}: expected a string, got {_describe(text)}")
    if not text.strip():
        raise ValueError(f"{name}: expected a non-empty string, got {text!r}")
    return text


def check_texts(texts) -> list:
    """Text prompts for a batch: a list of non-empty strings, one per prompt set."""
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise TypeError(f"texts: expected a list of strings, one per prompt set, got {_describe(texts)}")
    if not texts:
        raise ValueError("texts: expected at least one string, got an empty list")
    return [check_text(t, f"texts[{i}]") for i, t in enumerate(texts)]


def check_prompt_batch(point_coords, point_labels, boxes, mask_input, image_hw: Tuple[int, int], low_res_size: Tuple[int, int],
                       texts=None):
    """Many prompt sets for one image: point_coords (B, N, 2) with point_labels (B, N), boxes
    (B, 4), mask_input (B, 1, 256, 256), each optional, one B >= 1 for all that are given. Each
    set is checked as a single ``predict`` checks one, and an error names the set.
    Returns (coords float64 or None, labels int64 or None, boxes float64 or None, masks float32
    or None, B)."""
    sets = {}
    coords = labels = None
    if point_coords is not None or point_labels is not None:
        if point_coords is None or point_labels is None:
            raise ValueError("point_coords/point_labels: give both or neither")
        coords = as_numeric_array("point_coords", point_coords, "a (B, N, 2) array of (x, y) pixels")
        labels = as_numeric_array("point_labels", point_labels, "a (B, N) array of 0/1 labels")
        if coords.ndim != 3 or labels.ndim != 2:
            raise ValueError(f"point_coords/point_labels: expected shapes (B, N, 2) and (B, N), got {coords.shape} and {labels.shape}")
        sets["point_coords"] = len(coords)
    if boxes is not None:
        boxes = as_numeric_array("boxes", boxes, "a (B, 4) array of x0, y0, x1, y1")
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes: expected shape (B, 4), got {boxes.shape}")
        sets["boxes"] = len(boxes)
    if mask_input is not None:
        mask_input = as_numeric_array("mask_input", mask_input, f"a (B, 1, {low_res_size[0]}, {low_res_size[1]}) array of mask logits")
        if mask_input.ndim != 4:
            raise ValueError(f"mask_input: expected shape (B, 1, {low_res_size[0]}, {low_res_size[1]}), got {mask_input.shape}")
        sets["mask_input"] = len(mask_input)
    if texts is not None:
        sets["texts"] = len(texts)
    if not sets or 0 in sets.values() or len(set(sets.values())) > 1:
        raise ValueError(f"prompts: expected at least one of point_coords, boxes, mask_input, texts with one batch size B >= 1, got {sets or 'none'}")
    batch = next(iter(sets.values()))
    for b in range(batch):  # each set checked as predict checks one
        try:
            if coords is not None:
                check_points(coords[b], labels[b], image_hw)
            if boxes is not None:
                check_box(boxes[b], image_hw)
            if mask_input is not None:
                check_mask_input(mask_input[b], low_res_size)
        except ValueError as error:
            raise ValueError(f"prompt set {b + 1} (row {b}): {error}") from None
    return (
        None if coords is None else coords.astype(np.float64),
        None if labels is None else labels.astype(np.int64),
        None if boxes is None else boxes.astype(np.float64),
        None if mask_input is None else mask_input.astype(np.float32),
        batch,
    )


def check_prompt_set(point_coords, point_labels, box, mask_input, multimask_output, return_logits,
                     image_hw: Tuple[int, int], low_res_size: Tuple[int, int]):
    """One prompt set as ``predict`` takes it, checked: (coords, labels, box (1, 4), mask_input,
    multimask_output, return_logits), each None where not given."""
    coords, labels = check_points(point_coords, point_labels, image_hw)
    return (coords, labels, check_box(box, image_hw), check_mask_input(mask_input, low_res_size),
            check_flag("multimask_output", multimask_output), check_flag("return_logits", return_logits))
