"""Be the annotator of the data engine's first stage (lesson 11).

The paper's annotators clicked with a SAM-powered tool, accepted a mask, and moved on; the time
per mask is what the data engine measured and the retrained model brought down. This view puts
the learner in that seat: a :class:`PromptWidget` to click in, an "Accept mask" button, and a
table of each accepted mask's clicks and seconds, beside what the simulated annotator
(:class:`sam_lab.data_engine.SimulatedAnnotator`) would be charged for the same clicks and, when the
image's hidden truth is given, the mask's IoU with the object it best matches.

    session = AnnotationSession(predictor, image, truths=item["masks"])
    session            # click, shift-click, then "Accept mask"; the table grows
    session.widget.points = [[120, 80, 1]]; session.accept()     # the same, scripted
    session.summary()  # masks, clicks per mask, your seconds per mask, the simulated estimate
"""
from __future__ import annotations

import html
import time
from typing import Callable, List, Optional

import ipywidgets
import numpy as np

from ..data_engine.annotator import SimulatedAnnotator
from ..data_engine.engine import best_truth_iou
from .prompt import PromptWidget


class AnnotationSession:
    """A PromptWidget with an accept button and a running table (see the module docstring).
    ``clock`` (seconds) is replaceable for tests; an object's time runs from its first click."""

    def __init__(self, predictor, image, truths: Optional[np.ndarray] = None,
                 annotator: Optional[SimulatedAnnotator] = None, clock: Callable[[], float] = time.monotonic,
                 display_width: int = 512) -> None:
        self.widget = PromptWidget(predictor, image, display_width=display_width)
        self.truths = None if truths is None else np.asarray(truths, dtype=bool)
        self.annotator = annotator or SimulatedAnnotator()
        self.clock = clock
        self.records: List[dict] = []
        self.accepted_mask = np.zeros(self.widget.state.image_hw, dtype=bool)  # everything accepted so far
        self._started: Optional[float] = None
        self.button = ipywidgets.Button(description="Accept mask", button_style="success", icon="check")
        self.button.on_click(lambda _: self.accept())
        self.message = ipywidgets.HTML("")
        self.table = ipywidgets.HTML(self._table_html())
        self.widget.observe(self._prompt_changed, names="points")
        self.view = ipywidgets.VBox([self.widget, ipywidgets.HBox([self.button, self.message]), self.table])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.view)

    def _prompt_changed(self, change) -> None:
        if change["new"] and self._started is None:
            self._started = self.clock()

    def accept(self) -> Optional[dict]:
        """Keep the selected mask (as the tool's accept does), record its cost, clear the prompt
        for the next object. With no mask yet it says so in ``message`` and returns None."""
        mask = self.widget.mask
        if mask is None or not mask.any() or not self.widget.points:
            self.message.value = "<span style='color:#b00'>click on an object first: there is no mask to accept</span>"
            return None
        clicks = len(self.widget.points)
        seconds = self.clock() - (self._started if self._started is not None else self.clock())
        record = {
            "mask": mask.copy(), "clicks": clicks, "seconds": round(float(seconds), 2),
            "simulated_seconds": self.annotator.seconds_per_mask + self.annotator.seconds_per_click * clicks,
            "truth_iou": None if self.truths is None or not len(self.truths) else round(float(best_truth_iou(mask[None], self.truths)[0]), 3),
        }
        self.records.append(record)
        self.accepted_mask |= mask
        self._started = None
        self.widget.reset()
        self.message.value = f"mask {len(self.records)} kept: {clicks} click{'s' if clicks > 1 else ''}"
        self.table.value = self._table_html()
        return record

    def summary(self) -> dict:
        n = len(self.records)
        return {
            "masks": n,
            "clicks_per_mask": float(np.mean([r["clicks"] for r in self.records])) if n else float("nan"),
            "seconds_per_mask": float(np.mean([r["seconds"] for r in self.records])) if n else float("nan"),
            "simulated_seconds_per_mask": float(np.mean([r["simulated_seconds"] for r in self.records])) if n else float("nan"),
        }

    def _table_html(self) -> str:
        rows = "".join(
            f"<tr><td>{i + 1}</td><td>{r['clicks']}</td><td>{r['seconds']:.1f}</td><td>{r['simulated_seconds']:.0f}</td>"
            f"<td>{'' if r['truth_iou'] is None else format(r['truth_iou'], '.2f')}</td></tr>"
            for i, r in enumerate(self.records)
        )
        s = self.summary()
        foot = "" if not self.records else (
            f"<tr><th>mean</th><th>{s['clicks_per_mask']:.1f}</th><th>{s['seconds_per_mask']:.1f}</th>"
            f"<th>{s['simulated_seconds_per_mask']:.0f}</th><th></th></tr>")
        head = ("<tr><th>mask</th><th>clicks</th><th>your seconds</th><th>simulated annotator's seconds</th>"
                "<th>IoU with the object</th></tr>")
        note = html.escape(f"simulated: {self.annotator.seconds_per_mask:g} s per mask + "
                           f"{self.annotator.seconds_per_click:g} s per click")
        style = ("<style>table.sam-lab-annotations td, table.sam-lab-annotations th {padding: 2px 10px; "
                 "text-align: right}</style>")
        return f"{style}<table class='sam-lab-annotations'>{head}{rows}{foot}</table><small>{note}</small>"
