"""Click to segment: a widget that turns clicks and drags on an image into SAM masks.

A thin view over :class:`PromptState`: the page (``prompt.js``) writes the prompt into the
``points`` and ``box`` traitlets, in the original image's pixels, and a caption into ``text``;
Python predicts and writes the results back (``scores``, ``selected``, one mask overlay per
candidate as a PNG data URL).

    widget = PromptWidget(predictor, image)     # click = object, shift-click = background,
    widget                                      # drag = box; pick a candidate; undo, reset
    widget.points = [[120, 80, 1]]              # what a click does, scripted
    widget.set_text("red pentagon")             # what the text box does (a model with a text path)
    widget.masks, widget.scores                 # (C, H, W) bool (Python only), (C,)
    widget.export_png("mask.png"); widget.export_coco_rle()

One point gets three candidates (whole / part / subpart); two or more prompts get one mask, as in
SAM and lesson 07. The "3 candidates for every prompt" toggle (``always_three``) asks for three
every time. The download buttons save the chosen mask from the browser, as a black-and-white PNG
or as COCO RLE JSON (``download`` carries both; ``export_png`` / ``export_coco_rle`` do the same
from Python).

The text box is shown only for a model with a text path (``has_text``; see
``sam_lab.modeling.text_prompt``). A caption joins the clicks and the box, and such a prompt gets
one mask. A bad prompt never breaks it: the predictor's message goes to ``error``, the prompt
snaps back to the last good one, and the next click (or caption) works.
"""
from __future__ import annotations

from typing import Optional
import json
from typing import Union

import numpy as np
import traitlets

from ..modeling.text_prompt import has_text_path
from .base import SelectingWidget, describe_input
from .images import CANDIDATE_COLORS, HERE, es_module, mask_overlay_url, png_data_url
from .models import format_parameters, pick_model
from .prompt_state import PromptState


class PromptWidget(SelectingWidget):
    """Click to segment (see the module docstring). The image, prompt, ``command``, ``received``,
    ``error`` and ``revision`` traitlets come from :class:`ClickableWidget` (via :class:`SelectingWidget`)."""

    _esm = es_module("prompt.js")
    _css = HERE / "widgets.css"

    model_label = traitlets.Unicode("").tag(sync=True)
    # the results
    scores = traitlets.List([]).tag(sync=True)  # predicted IoU of each candidate
    selected = traitlets.Int(0).tag(sync=True)  # the chosen candidate
    mask_urls = traitlets.List([]).tag(sync=True)  # one translucent PNG overlay per candidate
    refined = traitlets.Bool(False).tag(sync=True)  # the last prediction used the previous mask
    latency_ms = traitlets.Float(0.0).tag(sync=True)  # predict: prompt encoder + decoder + resize
    encode_ms = traitlets.Float(0.0).tag(sync=True)  # set_image: the image encoder
    can_undo = traitlets.Bool(False).tag(sync=True)
    # the text prompt: the page shows its box only when the model has a text path
    text = traitlets.Unicode("").tag(sync=True)  # the caption; "" = no text prompt
    has_text = traitlets.Bool(False).tag(sync=True)
    # the toggle: 3 candidates for every prompt (True), or SAM's default (False: 3 for one point,
    # one mask once there are several prompts)
    always_three = traitlets.Bool(False).tag(sync=True)
    # the chosen mask for the download buttons, made on request (command "download"):
    # {"png": data URL of the black-and-white mask, "rle": COCO RLE JSON text, "name": file stem}
    download = traitlets.Dict({}).tag(sync=True)

    def __init__(self, predictor, image=None, model_label: Optional[str] = None, display_width: int = 512,
                 multimask_output: Union[bool, str] = "auto", **kwargs) -> None:
        super().__init__(display_width=display_width, **kwargs)
        self._overlays = {}  # id(prediction.masks) -> overlay URLs, for the states in the history
        self.state = PromptState(predictor, None, multimask_output)
        self._pushing = True
        self.always_three = self.state.multimask_output is True
        self._pushing = False
        self.model_label = model_label or _describe(self.state.predictor.model)
        self.has_text = has_text_path(self.state.predictor.model)
        if image is not None:
            self.set_image(image)

    # ---------------------------------------------------------------------------- Python API
    @property
    def masks(self) -> Optional[np.ndarray]:
        """The candidates, (C, H, W) bool at the image size (not sent to the page)."""
        return self.state.masks

    @property
    def mask(self) -> Optional[np.ndarray]:
        """The chosen candidate, (H, W) bool."""
        return self.state.mask

    def set_image(self, image) -> None:
        def apply():
            self.state.set_image(image)
            H, W = self.state.image_hw
            self.image_url, self.image_size = png_data_url(self.state.image), [W, H]
            self.encode_ms = self.state.encode_ms
        self._handle(apply)

    def add_point(self, x: float, y: float, label: int = 1) -> None:
        self.points = self.points + [[x, y, label]]

    def set_box(self, box) -> None:
        self.box = None if box is None else [float(v) for v in box]

    def set_text(self, text: Optional[str]) -> None:
        """Prompt with a caption, as the text box does; None or "" removes the text prompt. A bad
        caption (only spaces, or a model without a text path) goes to ``error``, as a bad click does."""
        if text is not None and not isinstance(text, str):
            raise TypeError(f"text: expected a string or None, got {type(text).__name__}")
        self.text = text or ""

    def select(self, index: int) -> None:
        self.selected = index

    def undo(self) -> None:
        self._handle(self.state.undo)

    def reset(self) -> None:
        self._handle(self.state.reset)

    def export_png(self, path):
        return self.state.export_png(path)

    def export_coco_rle(self) -> dict:
        return self.state.export_coco_rle()

    # ---------------------------------------------------------------------------- page input
    def _apply_prompt(self, points, box) -> None:
        self.state.set_prompt(points, box, self.text)

    @traitlets.observe("text")
    def _text_changed(self, change) -> None:
        if self._pushing:
            return
        self.received = describe_input("text", change["new"], change["old"])
        self._handle(lambda: self._apply_prompt(self.points, self.box))

    @traitlets.observe("always_three")
    def _always_three_changed(self, change) -> None:
        if self._pushing:
            return
        self.received = f"kernel received always_three = {change['new']}"
        self._handle(lambda: self.state.set_multimask(True if change["new"] else "auto"))

    def _commands(self):
        return {"undo": self.state.undo, "reset": self.state.reset, "download": self._prepare_download}

    def _prepare_download(self) -> None:
        """Fill ``download`` with the chosen mask (the page then saves the file it was asked for)."""
        mask = self.state._require_mask()
        rle = self.state.export_coco_rle()
        self.download = {"png": png_data_url(mask.astype(np.uint8) * 255), "rle": json.dumps(rle),
                         "name": "mask", "revision": self.revision + 1}

    # ---------------------------------------------------------------------------- to the page
    def _push_state(self) -> None:
        state, current = self.state, self.state.current
        self.points = [list(p) for p in state.points]
        self.box = None if state.box is None else list(state.box)
        self.text = state.text or ""
        self.scores = [] if current is None else [round(float(s), 4) for s in current.scores]
        self.selected = 0 if current is None else current.selected
        self.mask_urls = self._overlay_urls()
        self.refined = bool(current is not None and current.refined)
        self.latency_ms = 0.0 if current is None else round(current.latency_ms, 2)
        self.can_undo = bool(state.history)
        self.always_three = state.multimask_output is True

    def _overlay_urls(self) -> list:
        current = self.state.current
        if current is None:
            return []
        alive = {id(p.masks) for p in [*self.state.history, current] if p is not None}
        self._overlays = {key: urls for key, urls in self._overlays.items() if key in alive}
        key = id(current.masks)
        if key not in self._overlays:
            self._overlays[key] = [mask_overlay_url(m, CANDIDATE_COLORS[i % len(CANDIDATE_COLORS)])
                                   for i, m in enumerate(current.masks)]
        return self._overlays[key]


def _describe(model) -> str:
    """A default label: the model's name and size (pass ``model_label`` to say more)."""
    choice = pick_model(model)
    return f"{choice.name} · {format_parameters(choice.parameters)}"
