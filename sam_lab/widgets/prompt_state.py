"""The state behind the click-to-segment widget: prompts in, candidate masks out, with history.

Paper §3 and §7.1 (interactive segmentation). The widget is a thin view over this object; tests
and notebooks drive it directly, exactly as a click would:

    state = PromptState(predictor, image)            # image (H, W, 3) uint8, encoded once
    state.add_point(120, 80)                         # (x, y) in original-image pixels, label 1
    state.add_point(200, 90, label=0)                # a negative click refines the mask
    state.set_box([40, 30, 260, 200])                # a box (x0, y0, x1, y1) joins the prompt
    state.set_text("red pentagon")                   # a caption too, for a model with a text path
    state.masks, state.scores, state.selected        # (C, H, W) bool, (C,), index of the chosen
    state.select(2); state.undo(); state.reset()
    state.export_png("mask.png"); state.export_coco_rle()

Refinement: when a prompt *extends* the previous one (a point added, a box added), the chosen
mask's low-res logits (1, 256, 256) go back in as ``mask_input``, as in SAM's interactive
training and Meta's notebooks. A bad prompt (outside the image, zero-area box, wrong shape)
raises the predictor's ``ValueError``/``TypeError`` and leaves the state exactly as it was.

How many candidates: one point is ambiguous (whole / part / subpart), so it gets three; once
there are several prompts (two points, a point and a box) they say which object is meant, and
SAM (paper §3, lesson 07) asks for one mask. ``multimask_output="auto"`` (the default) does that;
True or False forces three or one for every prompt (the widget's toggle).

Text (``sam_lab.modeling.text_prompt``): a caption is one more part of the prompt, kept in the
history like the points and the box. A caption names one mask, so a prompt with text asks the
predictor for one candidate whatever ``multimask_output`` says.

Points are numbered from 1 everywhere a learner reads them: the markers' titles, the attention
explorer's tokens and the error messages (the predictor's own checks say "point 3 (row 2)", the
number and the array row; :func:`number_points_from_one` keeps the number for the widget).
"""
from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from ..inference.predictor import SamPredictor
from ..inference.rle import mask_to_rle
from ..inference.validation import check_box, check_image, check_points, check_text

Point = Tuple[float, float, int]  # x, y in original-image pixels; label 1 = object, 0 = not
Box = Tuple[float, float, float, float]  # x0, y0, x1, y1
MULTIMASK_MODES = ("auto", True, False)


@dataclass(frozen=True)
class Prediction:
    """One answer of the model: the prompt it was given and what came back."""

    points: Tuple[Point, ...]
    box: Optional[Box]
    masks: np.ndarray  # (C, H, W) bool at the original image size
    scores: np.ndarray  # (C,) predicted IoU
    low_res_logits: np.ndarray  # (C, 256, 256): the next refinement's mask_input
    selected: int  # the candidate the user (or the highest score) chose
    refined: bool  # whether the previous mask's logits went in as mask_input
    latency_ms: float  # prompt encoder + mask decoder + upsampling, measured around predict
    text: Optional[str] = None  # the caption, if the prompt had one


def normalise_points(points) -> Tuple[Point, ...]:
    """[[x, y, label], ...] (lists, tuples or an (N, 3) array) -> a tuple of (x, y, label)."""
    if points is None:
        return ()
    result = []
    for i, point in enumerate(points):
        if isinstance(point, (str, bytes)) or not hasattr(point, "__len__") or len(point) != 3:
            raise ValueError(f"points: point {i + 1} should be [x, y, label], got {point!r}")
        x, y, label = point
        if isinstance(label, bool) or label not in (0, 1):
            raise ValueError(f"points: point {i + 1} has label {label!r}; expected 1 (object) or 0 (background)")
        try:
            result.append((float(x), float(y), int(label)))
        except (TypeError, ValueError):
            raise TypeError(f"points: point {i + 1} should hold numbers [x, y, label], got {point!r}") from None
    return tuple(result)


def number_points_from_one(message: str) -> str:
    """The predictor's "point_coords: point 1 (row 0) at ..." as the widget's "points: point 1 at ..."
    (the marker's number; the widget has no array rows)."""
    return re.sub(r"^point_coords: point (\d+) \(row \d+\) ", r"points: point \1 ", message)


def check_prompt_points(points, image_hw) -> None:
    """The predictor's checks on ``points`` ((x, y, label) tuples), with points counted from 1."""
    if not points:
        return
    coords = np.array([p[:2] for p in points], dtype=float)
    labels = np.array([p[2] for p in points], dtype=int)
    try:
        check_points(coords, labels, image_hw)
    except ValueError as error:
        raise ValueError(number_points_from_one(str(error))) from None


def wants_multimask(mode, points, box, text) -> bool:
    """Three candidates or one for this prompt (see the module docstring): a caption always gets
    one; ``"auto"`` gives three to a single point (or a box alone) and one to several prompts."""
    if text is not None:
        return False
    if mode == "auto":
        return len(points) + (box is not None) <= 1
    return bool(mode)


def normalise_text(text) -> Optional[str]:
    """None or "" -> None (no text prompt); anything else must be a non-empty string (a caption of
    only spaces raises ``ValueError``, a non-string ``TypeError``, both naming ``text``)."""
    if text is None or text == "":
        return None
    return check_text(text)


def normalise_box(box) -> Optional[Box]:
    if box is None:
        return None
    if isinstance(box, (str, bytes)) or not hasattr(box, "__len__") or len(box) != 4:
        raise ValueError(f"box: expected [x0, y0, x1, y1] or None, got {box!r}")
    try:
        return tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise TypeError(f"box: expected 4 numbers [x0, y0, x1, y1], got {box!r}") from None


def check_multimask(mode) -> Union[bool, str]:
    if mode not in MULTIMASK_MODES or (mode != "auto" and not isinstance(mode, (bool, np.bool_))):
        raise ValueError(f"multimask_output: expected 'auto', True or False, got {mode!r}")
    return mode if mode == "auto" else bool(mode)


class PromptState:
    """Prompts, candidate masks and undo history for one image and one predictor.

    ``predictor``: a :class:`SamPredictor` (or a SAM model, wrapped in one). ``lazy=True``
    encodes the image on the first prompt instead of now (the compare widget's panels).
    ``multimask_output``: ``"auto"`` (3 candidates, whole / part / subpart, for a single prompt;
    one mask once there are several), True (3 for every prompt) or False (always one). A prompt
    with a caption gets one mask whatever it says: a caption names one object.
    ``decoder_threads``: torch threads for the per-click path on a CPU (prompt encoder, decoder,
    upsampling). 1 by default: its matrix products are small, and on a busy machine (the browser,
    other kernels) more threads mostly wait for each other — measured on 2 cores under load, tiny
    took ~1 s per click with 2 threads and ~10 ms with 1. None keeps torch's setting."""

    def __init__(self, predictor, image=None, multimask_output: Union[bool, str] = "auto", lazy: bool = False,
                 decoder_threads: Optional[int] = 1) -> None:
        self.predictor = predictor if isinstance(predictor, SamPredictor) else SamPredictor(predictor)
        self.multimask_output = check_multimask(multimask_output)
        self.decoder_threads = decoder_threads
        self.image: Optional[np.ndarray] = None
        self.encode_ms: Optional[float] = None
        self.current: Optional[Prediction] = None
        self.history: List[Optional[Prediction]] = []  # earlier states, for undo
        self._features = None  # the embedding we computed (another widget may share the predictor)
        if image is not None:
            self.set_image(image, lazy=lazy)

    # ---------------------------------------------------------------------------- the image
    def set_image(self, image, lazy: bool = False) -> None:
        """Check and (unless ``lazy``) encode a new image; prompts and history are cleared.
        A bad image raises and leaves the state as it was."""
        image = check_image(image)
        self.image, self.encode_ms, self._features = image, None, None
        self.reset()
        if not lazy:
            self.encode()

    @property
    def image_hw(self) -> Optional[Tuple[int, int]]:
        return None if self.image is None else tuple(self.image.shape[:2])

    @property
    def encoded(self) -> bool:
        return self._features is not None and self.predictor.features is self._features

    def encode(self) -> float:
        """Run the image encoder now (if not done yet); returns the milliseconds it took."""
        if self.image is None:
            raise RuntimeError("No image is set: give the widget an image first.")
        if not self.encoded:
            start = time.perf_counter()
            self.predictor.set_image(self.image)
            self.encode_ms = (time.perf_counter() - start) * 1000
            self._features = self.predictor.features
        return self.encode_ms

    # ---------------------------------------------------------------------------- prompts
    def add_point(self, x: float, y: float, label: int = 1) -> Prediction:
        return self.set_prompt(list(self.points) + [(x, y, label)], self.box, self.text)

    def set_box(self, box) -> Prediction:
        return self.set_prompt(self.points, box, self.text)

    def set_text(self, text: Optional[str]) -> Optional[Prediction]:
        """Prompt with a caption beside the clicks and box (None or "" removes it)."""
        return self.set_prompt(self.points, self.box, text)

    def set_prompt(self, points: Sequence = (), box=None, text: Optional[str] = None) -> Optional[Prediction]:
        """Predict for ``points`` ([[x, y, label], ...]), ``box`` and ``text`` (a caption, or None)
        and make it the current state.

        Raises ``ValueError``/``TypeError`` (with the predictor's message) for a bad prompt,
        including text on a model without a text path, and ``RuntimeError`` without an image;
        the state is then unchanged."""
        points, box, text = normalise_points(points), normalise_box(box), normalise_text(text)
        if self.current is not None and (points, box, text) == (self.current.points, self.current.box, self.current.text):
            return self.current  # the same prompt again (e.g. a traitlet echo): nothing to do
        if not points and box is None and text is None:  # everything taken away: no mask (undo brings it back)
            if self.current is not None:
                self._push(None)
            return None
        if self.image is None:
            raise RuntimeError("No image is set: give the widget an image first.")
        check_prompt_points(points, self.image_hw)  # before encoding: a bad click costs nothing
        check_box(box, self.image_hw)
        self.encode()
        prediction = self._predict(points, box, text, self.current if self._extends(points, box, text) else None)
        self._push(prediction)
        return prediction

    def _predict(self, points, box, text, previous: Optional[Prediction]) -> Prediction:
        """Run the predictor on a checked prompt; ``previous``'s chosen mask refines it (if given)."""
        coords = np.array([p[:2] for p in points], dtype=float) if points else None
        labels = np.array([p[2] for p in points], dtype=int) if points else None
        mask_input = None if previous is None else previous.low_res_logits[previous.selected][None]
        with self._threads():
            start = time.perf_counter()
            masks, scores, logits = self.predictor.predict(
                point_coords=coords, point_labels=labels, box=None if box is None else np.array(box),
                mask_input=mask_input, multimask_output=wants_multimask(self.multimask_output, points, box, text),
                text=text,
            )
            latency_ms = (time.perf_counter() - start) * 1000
        return Prediction(points, box, masks, scores, logits, int(np.argmax(scores)), previous is not None, latency_ms, text)

    @contextlib.contextmanager
    def _threads(self):
        """Run the block with ``decoder_threads`` torch threads (CPU only), then restore."""
        previous = torch.get_num_threads()
        change = self.decoder_threads is not None and self.predictor.device.type == "cpu"
        if change:
            torch.set_num_threads(self.decoder_threads)
        try:
            yield
        finally:
            if change:
                torch.set_num_threads(previous)

    def _extends(self, points, box, text) -> bool:
        """Does the new prompt add to the current one (so the current mask can refine it)? A box
        or a caption that is added extends it; one that changes or goes away starts afresh."""
        current = self.current
        if current is None:
            return False
        kept_points = points[: len(current.points)] == current.points
        kept_box = current.box is None or box == current.box
        kept_text = current.text is None or text == current.text
        return kept_points and kept_box and kept_text

    def set_multimask(self, mode) -> Optional[Prediction]:
        """Change ``multimask_output`` ("auto", True, False) and answer the current prompt again
        with it, refined by the same previous mask as before."""
        mode = check_multimask(mode)
        if mode == self.multimask_output:
            return self.current
        self.multimask_output = mode
        current = self.current
        if current is None or wants_multimask(mode, current.points, current.box, current.text) == (len(current.scores) > 1):
            return current  # nothing shown, or as many candidates either way: nothing to redo
        previous = self.history[-1] if current.refined and self.history else None  # what refined it
        prediction = self._predict(current.points, current.box, current.text, previous)
        self._push(prediction)  # undo goes back to the other number of candidates
        return prediction

    def _push(self, prediction: Optional[Prediction]) -> None:
        self.history.append(self.current)
        self.current = prediction

    def select(self, index: int) -> None:
        """Choose candidate ``index``: it is shown, exported and refines the next prompt."""
        if self.current is None:
            raise ValueError("selected: there are no candidate masks yet; click on the image first")
        count = len(self.current.scores)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < count:
            raise ValueError(f"selected: expected a candidate index 0..{count - 1}, got {index!r}")
        self.current = replace(self.current, selected=int(index))

    def undo(self) -> bool:
        """Go back to the state before the last prompt; False when there is nothing to undo."""
        if not self.history:
            return False
        self.current = self.history.pop()
        return True

    def reset(self) -> None:
        """Forget every prompt and mask (the image stays encoded)."""
        self.current = None
        self.history.clear()

    # ---------------------------------------------------------------------------- results
    @property
    def points(self) -> Tuple[Point, ...]:
        return () if self.current is None else self.current.points

    @property
    def box(self) -> Optional[Box]:
        return None if self.current is None else self.current.box

    @property
    def text(self) -> Optional[str]:
        return None if self.current is None else self.current.text

    @property
    def masks(self) -> Optional[np.ndarray]:
        return None if self.current is None else self.current.masks

    @property
    def scores(self) -> Optional[np.ndarray]:
        return None if self.current is None else self.current.scores

    @property
    def selected(self) -> Optional[int]:
        return None if self.current is None else self.current.selected

    @property
    def mask(self) -> Optional[np.ndarray]:
        """The chosen candidate, (H, W) bool, or None before the first prompt."""
        return None if self.current is None else self.current.masks[self.current.selected]

    @property
    def latency_ms(self) -> Optional[float]:
        return None if self.current is None else self.current.latency_ms

    def _require_mask(self) -> np.ndarray:
        if self.current is None:
            raise ValueError("export: there is no mask yet; click on the image first")
        return self.mask

    def export_png(self, path) -> Path:
        """Write the chosen mask as a black-and-white PNG at the image's size; returns the path."""
        path = Path(path)
        Image.fromarray(self._require_mask().astype(np.uint8) * 255).save(path)
        return path

    def export_coco_rle(self) -> dict:
        """The chosen mask in COCO's compressed RLE (``sam_lab.inference.rle.rle_to_mask`` reads it back)."""
        return mask_to_rle(self._require_mask())
