"""The state behind the compare widget: the same clicks, fanned out to several SAMs.

Paper §3 and §7: SAM's three released image encoders (ViT-B 91 M, ViT-L 308 M, ViT-H 636 M
parameters) share one prompt encoder and mask decoder design; a bigger encoder costs seconds per
image but nothing per click. Here every click goes to every model, and each panel reports its
masks, predicted IoUs, parameter count, encoder time and decoder time:

    state = CompareState({"tiny": "tiny", "vit_b": "vit_b"}, image, folder="~/checkpoints")
    state.set_prompt([[120, 80, 1]])          # builds and encodes each model on first use
    state.panels["vit_b"].state.masks         # each panel holds a PromptState

Names get Meta's checkpoint from ``folder`` (or ``$SAM_LAB_CHECKPOINTS``) when it is there and
random weights otherwise, labelled "untrained". Models are built and images encoded lazily, the
first time a prompt needs them; before that each panel says how long its encoder will take, an
estimate measured on this machine when the state is made (``sam_lab.widgets.calibrate``: the
encoder's counted FLOPs over the rate of one of its blocks, timed now), and while it runs a
progress bar moves block by block.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch

from ..inference.predictor import SamPredictor
from ..inference.validation import check_box, check_image
from .calibrate import EncodeEstimate, estimate_encode
from .models import ModelChoice, format_seconds, pick_model
from .prompt_state import PromptState, check_prompt_points, normalise_box, normalise_points


@dataclass
class Panel:
    """One model of the comparison."""

    choice: ModelChoice
    state: Optional[PromptState] = None  # made when the model is first needed
    status: str = ""
    progress: Optional[float] = None  # 0..1 while the image encoder runs, else None
    error: str = ""
    estimate: Optional[EncodeEstimate] = None  # measured on this machine (None: not measurable)

    @property
    def estimate_s(self) -> Optional[float]:
        return None if self.estimate is None else self.estimate.seconds

    def calibrate(self) -> None:
        """Measure the encoder-time estimate now (about a second for ViT-B on 2 CPU threads)."""
        config = self.choice.config
        self.estimate = None if config is None else estimate_encode(config, self.choice.device)

    def estimate_text(self) -> str:
        if self.estimate is None:
            return "time unknown"
        where = f"this CPU ({torch.get_num_threads()} threads)" if self.choice.device == "cpu" else self.choice.device
        return (f"about {format_seconds(self.estimate.seconds)} on {where}, measured just now "
                f"({self.estimate.flops / 1e9:.0f} GFLOP at {self.estimate.rate / 1e9:.1f} GFLOP/s)")


@contextlib.contextmanager
def encoder_progress(model, report: Callable[[int, int], None]) -> Iterator[None]:
    """Call ``report(blocks_done, blocks)`` after each transformer block of the image encoder."""
    blocks = list(getattr(model.image_encoder, "blocks", []))
    handles = [block.register_forward_hook(lambda *_, i=i: report(i + 1, len(blocks))) for i, block in enumerate(blocks)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class CompareState:
    """Several models, one image, one prompt. ``models``: {label: name | model | (model, label)}
    or a list of names; ``on_change(panel_key)`` is called whenever a panel's status moves."""

    def __init__(self, models, image, folder: Optional[str] = None, device: str = "cpu",
                 on_change: Optional[Callable[[str], None]] = None) -> None:
        if not isinstance(models, dict):
            models = {str(name): name for name in models}
        if not models:
            raise ValueError("models: expected at least one model to compare")
        self.image = check_image(image)
        self.panels: Dict[str, Panel] = {}
        for key, spec in models.items():
            panel = Panel(pick_model(spec, folder=folder, device=device, build=False))
            panel.calibrate()
            panel.status = f"image encoder not run yet: {panel.estimate_text()}, on the first click"
            self.panels[key] = panel
        self.points: Tuple = ()
        self.box = None
        self.history: List[Tuple] = []
        self.on_change = on_change or (lambda key: None)

    @property
    def image_hw(self) -> Tuple[int, int]:
        return tuple(self.image.shape[:2])

    # ---------------------------------------------------------------------------- prompts
    def set_prompt(self, points=(), box=None) -> None:
        """Send the prompt to every model. A bad prompt raises before any model runs (all share
        the image, so it is bad for all); a model that fails (say, out of memory) shows its
        error in its own panel and the others carry on."""
        points, box = normalise_points(points), normalise_box(box)
        if (points, box) == (self.points, self.box):
            return
        if points:
            check_prompt_points(points, self.image_hw)
        check_box(box, self.image_hw)
        self.history.append((self.points, self.box))
        self.points, self.box = points, box
        for key in self.panels:
            self._run(key)

    def add_point(self, x: float, y: float, label: int = 1) -> None:
        self.set_prompt(list(self.points) + [(x, y, label)], self.box)

    def undo(self) -> bool:
        if not self.history:
            return False
        self.points, self.box = self.history.pop()
        for key, panel in self.panels.items():
            if panel.state is not None and panel.state.undo() and (panel.state.points, panel.state.box) == (self.points, self.box):
                continue
            self._run(key)  # a panel that had failed catches up
        return True

    def reset(self) -> None:
        self.points, self.box, self.history = (), None, []
        for panel in self.panels.values():
            if panel.state is not None:
                panel.state.reset()

    def _run(self, key: str) -> None:
        panel = self.panels[key]
        try:
            if panel.state is None:
                if not (self.points or self.box):
                    return
                panel.status = f"building {panel.choice.name}: {panel.choice.weights}"
                self.on_change(key)
                panel.state = PromptState(SamPredictor(panel.choice.model), self.image, lazy=True)
            if not panel.state.encoded and (self.points or self.box):
                self._encode(key, panel)
            panel.state.set_prompt(self.points, self.box)
            panel.status, panel.error = "ready", ""
        except Exception as error:  # shown in the panel; the other models carry on
            panel.status, panel.error = "failed", f"{type(error).__name__}: {error}"
        panel.progress = None
        self.on_change(key)

    def _encode(self, key: str, panel: Panel) -> None:
        panel.status = f"encoding the image: {panel.estimate_text()}"
        panel.progress = 0.0
        self.on_change(key)
        start = time.perf_counter()

        def report(done: int, total: int) -> None:
            elapsed = time.perf_counter() - start
            left = elapsed / done * (total - done)
            panel.progress = done / total
            panel.status = (f"encoding the image: block {done} of {total}, {format_seconds(elapsed)} so far, "
                            f"about {format_seconds(left)} left")
            self.on_change(key)

        with encoder_progress(panel.state.predictor.model, report):
            panel.state.encode()
