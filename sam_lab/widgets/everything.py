"""Segment everything: the mask generator's masks over an image; click one to read its record.

A thin view over :class:`EverythingState`, a pure-Python state that tests and notebooks drive
directly. The page (``everything.js``) sends clicks as ``points`` (original-image pixels) and
the buttons as ``command``; Python answers with one overlay PNG (every mask in its own colour,
the selected one outlined), the selected record, and the generator's per-stage counts.

    widget = EverythingWidget(model, image, pred_iou_thresh=0.5)   # generator options
    widget                         # "segment everything", then click a mask
    widget.records                 # the generator's records (bool segmentations)
    widget.select_at(120, 80)      # what a click does, scripted
    widget.record                  # the selected record, without its segmentation
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import numpy as np
import traitlets

from ..inference.amg import SamAutomaticMaskGenerator
from ..inference.validation import check_image
from .base import SelectingWidget
from .images import HERE, es_module, mask_interior, png_data_url
from .prompt import _describe

SELECTED_COLOR = (255, 255, 255)


class EverythingState:
    """The image, the generator's records and which one is selected (-1: none)."""

    def __init__(self, generator: SamAutomaticMaskGenerator) -> None:
        if not isinstance(generator, SamAutomaticMaskGenerator):
            raise TypeError(f"generator: expected a SamAutomaticMaskGenerator, got {type(generator).__name__}")
        if generator.output_mode != "binary_mask":
            raise ValueError(f"generator: expected output_mode='binary_mask' (masks to draw), got {generator.output_mode!r}")
        self.generator = generator
        self.image: Optional[np.ndarray] = None
        self.records: List[Dict[str, Any]] = []
        self.selected = -1
        self.generate_ms = 0.0
        self.generated = False

    @property
    def image_hw(self):
        return self.image.shape[:2]

    def set_image(self, image) -> None:
        self.image = check_image(image, "RGB")
        self.records, self.selected, self.generated = [], -1, False

    def generate(self) -> None:
        if self.image is None:
            raise RuntimeError("No image is set: call set_image(image) first.")
        start = time.perf_counter()
        records = self.generator.generate(self.image)
        self.generate_ms = (time.perf_counter() - start) * 1000
        self.records = sorted(records, key=lambda r: -r["area"])  # large first: small ones drawn on top
        self.selected, self.generated = -1, True

    def select(self, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -1 <= index < len(self.records):
            raise ValueError(f"selected: expected -1 (none) or a mask index in 0..{len(self.records) - 1}, got {index!r}")
        self.selected = int(index)

    def select_at(self, x: float, y: float) -> None:
        """Select the smallest mask that holds pixel (x, y); none if no mask does."""
        if self.image is None:
            raise RuntimeError("No image is set: call set_image(image) first.")
        H, W = self.image_hw
        if not (0 <= x < W and 0 <= y < H):
            raise ValueError(f"point: expected (x, y) inside the {W}x{H} image, got ({x}, {y}), which lies outside the image")
        row, col = int(y), int(x)
        holding = [i for i, r in enumerate(self.records) if r["segmentation"][row, col]]
        self.selected = min(holding, key=lambda i: self.records[i]["area"]) if holding else -1

    @property
    def record(self) -> Optional[Dict[str, Any]]:
        """The selected record without its segmentation (None if nothing is selected)."""
        if self.selected < 0:
            return None
        return {k: v for k, v in self.records[self.selected].items() if k != "segmentation"}

    def colours(self, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).integers(40, 256, size=(len(self.records), 3), dtype=np.uint8)

    def overlay(self) -> np.ndarray:
        """(H, W, 4) uint8: every mask in its colour, the selected one white-outlined on top."""
        H, W = self.image_hw
        layer = np.zeros((H, W, 4), dtype=np.uint8)
        for record, colour in zip(self.records, self.colours()):
            mask = record["segmentation"]
            layer[mask, :3] = colour
            layer[mask, 3] = 120
        if self.selected >= 0:
            mask = self.records[self.selected]["segmentation"]
            layer[mask, 3] = 200
            edge = mask & ~mask_interior(mask)
            layer[edge, :3] = SELECTED_COLOR
            layer[edge, 3] = 255
        return layer


class EverythingWidget(SelectingWidget):
    """Segment everything, then click a mask (see the module docstring). ``model`` is a SAM or a
    ready :class:`SamAutomaticMaskGenerator`; other keyword arguments are generator options."""

    _esm = es_module("everything.js")
    _css = HERE / "widgets.css"

    model_label = traitlets.Unicode("").tag(sync=True)
    overlay_url = traitlets.Unicode("").tag(sync=True)
    count = traitlets.Int(0).tag(sync=True)
    generated = traitlets.Bool(False).tag(sync=True)
    selected = traitlets.Int(-1).tag(sync=True)
    record = traitlets.Dict({}).tag(sync=True)  # the selected record, without its segmentation
    stats = traitlets.Dict({}).tag(sync=True)  # the generator's per-stage counts
    generate_ms = traitlets.Float(0.0).tag(sync=True)

    def __init__(self, model, image=None, model_label: Optional[str] = None, display_width: int = 512,
                 generate: bool = False, **options) -> None:
        super().__init__(display_width=display_width)
        if isinstance(model, SamAutomaticMaskGenerator):
            if options:
                raise ValueError(f"options: give generator options to the generator itself, not with it: {sorted(options)}")
            generator = model
        else:
            generator = SamAutomaticMaskGenerator(model, **options)
        self.state = EverythingState(generator)
        self.model_label = model_label or _describe(generator.predictor.model)
        if image is not None:
            self.set_image(image)
            if generate:
                self.generate()

    # ---------------------------------------------------------------------------- Python API
    @property
    def records(self) -> List[Dict[str, Any]]:
        return self.state.records

    def set_image(self, image) -> None:
        def apply():
            self.state.set_image(image)
            H, W = self.state.image_hw
            self.image_url, self.image_size = png_data_url(self.state.image), [W, H]
        self._handle(apply)

    def generate(self) -> None:
        self._handle(self.state.generate)

    def select_at(self, x: float, y: float) -> None:
        self.points = [[x, y, 1]]

    # ---------------------------------------------------------------------------- page input
    def _apply_prompt(self, points, box) -> None:
        if box is not None:
            raise ValueError("box: this widget selects masks by clicking; a drag does nothing here")
        if points:
            x, y = points[-1][:2]
            self.state.select_at(float(x), float(y))

    def _commands(self):
        return {"generate": self.state.generate, "reset": lambda: self.state.select(-1)}

    # ---------------------------------------------------------------------------- to the page
    def _push_state(self) -> None:
        state = self.state
        self.points, self.box = [], None  # a click selects; it leaves no marker
        self.count = len(state.records)
        self.generated = state.generated
        self.selected = state.selected
        self.record = state.record or {}
        self.stats = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in state.generator.stats.items()
                      if not (isinstance(v, float) and np.isnan(v))}
        self.generate_ms = round(state.generate_ms, 1)
        self.overlay_url = png_data_url(state.overlay()) if state.records else ""
