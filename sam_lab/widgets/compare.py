"""Compare encoders: one image, one set of clicks, several SAMs side by side.

A thin view over :class:`CompareState`. Click on any panel and the point goes to every model;
each panel shows its best mask, the predicted IoUs (three for one point, one once there are
several prompts), its parameter count, and how long its image encoder (once per image) and its
decoder (per click) took. Nothing is built when the widget is made: each panel shows an encoder
time measured on this machine (``sam_lab.widgets.calibrate``); on the first click each model is
built and its encoder runs, with a progress bar that moves block by block.

    widget = CompareWidget(["tiny", "vit_b"], image, folder="~/checkpoints")
    widget.points = [[120, 80, 1]]       # what a click does, scripted
    widget.state.panels["vit_b"].state.masks
"""
from __future__ import annotations

from typing import Optional

import traitlets

from .base import ClickableWidget
from .compare_state import CompareState, Panel
from .images import CANDIDATE_COLORS, HERE, es_module, mask_overlay_url, png_data_url
from .models import format_parameters, format_seconds


class CompareWidget(ClickableWidget):
    """Compare encoders (see the module docstring); ``display_width`` is each panel's."""

    _esm = es_module("compare.js")
    _css = HERE / "widgets.css"

    panels = traitlets.List([]).tag(sync=True)  # one dict of display data per model
    mask_urls = traitlets.List([]).tag(sync=True)  # each panel's best mask overlay ("" if none)

    def __init__(self, models, image, folder: Optional[str] = None, device: str = "cpu",
                 display_width: int = 300, **kwargs) -> None:
        super().__init__(display_width=display_width, **kwargs)
        self._overlays = {}  # panel key -> ((id of the masks, selected), overlay URL)
        self.state = CompareState(models, image, folder=folder, device=device, on_change=self._panel_changed)
        H, W = self.state.image_hw
        self.image_url, self.image_size = png_data_url(self.state.image), [W, H]
        self._handle(lambda: None)

    # ---------------------------------------------------------------------------- Python API
    def add_point(self, x: float, y: float, label: int = 1) -> None:
        self.points = self.points + [[x, y, label]]

    def undo(self) -> None:
        self._handle(self.state.undo)

    def reset(self) -> None:
        self._handle(self.state.reset)

    # ---------------------------------------------------------------------------- page input
    def _apply_prompt(self, points, box) -> None:
        self.state.set_prompt(points, box)

    def _commands(self):
        return {"undo": self.state.undo, "reset": self.state.reset}

    # ---------------------------------------------------------------------------- to the page
    def _panel_changed(self, key: str) -> None:
        """A panel moved on (building, encoding progress, done): tell the page now, so a fast
        model's mask shows while a slow one is still encoding."""
        self.panels = [_panel_data(key, panel) for key, panel in self.state.panels.items()]
        self.mask_urls = [self._mask_url(key, panel) for key, panel in self.state.panels.items()]

    def _mask_url(self, key: str, panel: Panel) -> str:
        """The panel's chosen mask as an overlay, encoded once per prediction."""
        if panel.state is None or panel.state.current is None:
            return ""
        current = panel.state.current
        made_for = (id(current.masks), current.selected)
        if self._overlays.get(key, (None, ""))[0] != made_for:
            color = CANDIDATE_COLORS[current.selected % len(CANDIDATE_COLORS)]
            self._overlays[key] = (made_for, mask_overlay_url(current.masks[current.selected], color))
        return self._overlays[key][1]

    def _push_state(self) -> None:
        self.points = [list(p) for p in self.state.points]
        self.box = None if self.state.box is None else list(self.state.box)
        self._panel_changed("")


def _panel_data(key: str, panel: Panel) -> dict:
    choice, state = panel.choice, panel.state
    current = None if state is None else state.current
    return {
        "key": key,
        "name": choice.name,
        "weights": choice.weights,
        "trained": choice.trained,
        "parameters": format_parameters(choice.parameters),
        "status": panel.status,
        "progress": panel.progress,
        "encoder": "" if state is None or state.encode_ms is None else format_seconds(state.encode_ms / 1000),
        "decoder": "" if current is None else format_seconds(current.latency_ms / 1000),
        "scores": [] if current is None else [round(float(s), 3) for s in current.scores],
        "selected": None if current is None else current.selected,
        "error": panel.error,
    }
