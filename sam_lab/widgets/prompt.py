"""Click to segment: a widget that turns clicks and drags on an image into SAM masks.

A thin view over :class:`PromptState`: the page (``prompt.js``) writes the prompt into the
``points`` and ``box`` traitlets, in the original image's pixels; Python predicts and writes the
results back (``scores``, ``selected``, one mask overlay per candidate as a PNG data URL).

    widget = PromptWidget(predictor, image)     # click = object, shift-click = background,
    widget                                      # drag = box; pick a candidate; undo, reset
    widget.points = [[120, 80, 1]]              # what a click does, scripted
    widget.masks, widget.scores                 # (C, H, W) bool (Python only), (C,)
    widget.export_png("mask.png"); widget.export_coco_rle()

A bad prompt never breaks it: the predictor's message goes to ``error``, the prompt snaps back
to the last good one, and the next click works.
"""
from __future__ import annotations

from typing import Callable, Optional

import anywidget
import numpy as np
import traitlets

from .images import CANDIDATE_COLORS, HERE, es_module, mask_overlay_url, png_data_url
from .models import format_parameters, pick_model
from .prompt_state import PromptState

# what a bad prompt, a missing image or a bad image raises: shown in the widget, never fatal
PROMPT_ERRORS = (ValueError, TypeError, RuntimeError)


class PromptWidget(anywidget.AnyWidget):
    _esm = es_module("prompt.js")
    _css = HERE / "widgets.css"

    # the image and the model
    image_url = traitlets.Unicode("").tag(sync=True)  # PNG data URL of the original image
    image_size = traitlets.List([0, 0]).tag(sync=True)  # [W, H] in pixels
    display_width = traitlets.Int(512).tag(sync=True)  # CSS pixels; clicks map back whatever it is
    model_label = traitlets.Unicode("").tag(sync=True)
    # the prompt, in original-image pixels
    points = traitlets.List([]).tag(sync=True)  # [[x, y, label], ...]; label 1 object, 0 background
    box = traitlets.List(None, allow_none=True).tag(sync=True)  # [x0, y0, x1, y1] or None
    command = traitlets.Dict({}).tag(sync=True)  # {"name": "undo" | "reset", "count": n} from buttons
    # the results
    scores = traitlets.List([]).tag(sync=True)  # predicted IoU of each candidate
    selected = traitlets.Int(0).tag(sync=True)  # the chosen candidate
    mask_urls = traitlets.List([]).tag(sync=True)  # one translucent PNG overlay per candidate
    refined = traitlets.Bool(False).tag(sync=True)  # the last prediction used the previous mask
    latency_ms = traitlets.Float(0.0).tag(sync=True)  # predict: prompt encoder + decoder + resize
    encode_ms = traitlets.Float(0.0).tag(sync=True)  # set_image: the image encoder
    can_undo = traitlets.Bool(False).tag(sync=True)
    received = traitlets.Unicode("").tag(sync=True)  # what the kernel got from the last input
    error = traitlets.Unicode("").tag(sync=True)  # why the last input was refused ("" if it was not)
    revision = traitlets.Int(0).tag(sync=True)  # +1 after every input handled

    def __init__(self, predictor, image=None, model_label: Optional[str] = None, display_width: int = 512,
                 multimask_output: bool = True, **kwargs) -> None:
        super().__init__(display_width=display_width, **kwargs)
        self._pushing = False
        self._overlays = {}  # id(prediction.masks) -> overlay URLs, for the states in the history
        self.state = PromptState(predictor, None, multimask_output)
        self.model_label = model_label or _describe(self.state.predictor.model)
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

    # ---------------------------------------------------------------------------- from the page
    @traitlets.observe("points", "box")
    def _prompt_changed(self, change) -> None:
        if self._pushing:
            return
        self.received = _describe_input(change["name"], change["new"], self.state.points)
        self._handle(lambda: self.state.set_prompt(self.points, self.box))

    @traitlets.observe("selected")
    def _selected_changed(self, change) -> None:
        if not self._pushing:
            self.received = f"kernel received selected = {change['new']}"
            self._handle(lambda: self.state.select(change["new"]))

    @traitlets.observe("command")
    def _command_changed(self, change) -> None:
        name = (change["new"] or {}).get("name")
        actions = {"undo": self.state.undo, "reset": self.state.reset}
        if name in actions:
            self.received = f"kernel received {name}"
            self._handle(actions[name])

    # ---------------------------------------------------------------------------- to the page
    def _handle(self, action: Callable) -> None:
        """Run ``action`` on the state; show its error instead of raising; resync the traitlets."""
        try:
            action()
            error = ""
        except PROMPT_ERRORS as exc:
            error = str(exc)
        with self.hold_sync():
            self._push_state()
            self.error = error
            self.revision += 1

    def _push_state(self) -> None:
        state, current = self.state, self.state.current
        self._pushing = True
        try:
            self.points = [list(p) for p in state.points]
            self.box = None if state.box is None else list(state.box)
            self.scores = [] if current is None else [round(float(s), 4) for s in current.scores]
            self.selected = 0 if current is None else current.selected
            self.mask_urls = self._overlay_urls()
            self.refined = bool(current is not None and current.refined)
            self.latency_ms = 0.0 if current is None else round(current.latency_ms, 2)
            self.can_undo = bool(state.history)
        finally:
            self._pushing = False

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


def _describe_input(name: str, value, previous_points) -> str:
    """What the kernel received, in words: the new point or box in original-image pixels."""
    try:
        if name == "box":
            if value is None:
                return "kernel received: no box"
            x0, y0, x1, y1 = (float(v) for v in value)
            return f"kernel received box (x0={x0:.2f}, y0={y0:.2f}, x1={x1:.2f}, y1={y1:.2f})"
        if value and len(value) > len(previous_points):
            x, y, label = value[-1]
            return f"kernel received point (x={float(x):.2f}, y={float(y):.2f}), label {label}"
        return f"kernel received {len(value or [])} points"
    except (TypeError, ValueError):
        return f"kernel received {name} = {value!r}"[:200]
