"""Which model a widget shows, which weights it has, and how long its image encoder will take.

    choice = pick_model("tiny")      # the trained weights shipped in sam_lab/weights/
    choice = pick_model("vit_b", folder="~/checkpoints")   # Meta's file when found, else random
    choice.label        "tiny · trained (shipped weights)" or "vit_b · untrained (random weights)"
    choice.model        built on first use (ViT-H takes seconds and GBs: only when needed)
    choice.config       its SamConfig (None for a model handed in without one)

Meta's files are looked for with :func:`sam_lab.weights.find_checkpoint`: the folder given,
else ``$SAM_LAB_CHECKPOINTS``, else ``~/.cache/sam_lab/checkpoints``. A model without trained
weights still runs every stage exactly; its masks just mean nothing, and the widgets say so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn

from ..weights.official import find_checkpoint
from ..build import build_sam
from ..config import get_config
from ..inference.predictor import SamPredictor
from ..weights.pretrained import SHIPPED, load_model, shipped_weights_available
from .calibrate import estimate_encode

def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def estimate_encode_seconds(name, device: Union[str, torch.device] = "cpu") -> Optional[float]:
    """Encoder time for one image of model ``name`` (or a SamConfig) on ``device``, measured now
    (``sam_lab.widgets.calibrate``: counted FLOPs over one block's measured rate); None for a
    name or model we cannot build."""
    try:
        return estimate_encode(name, device).seconds
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


@dataclass
class ModelChoice:
    """A model for a widget panel: its name, where its weights come from, built lazily."""

    name: str
    trained: Optional[bool]  # None: a model handed in, we cannot tell
    weights: str  # "trained (shipped weights)", "Meta checkpoint <file>", "untrained (random weights)"
    parameters: int
    device: str = "cpu"
    folder: Optional[str] = None
    _model: Optional[nn.Module] = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.name} · {self.weights}"

    @property
    def config(self):
        """The model's SamConfig: from its name, or the config a handed-in model carries (or None)."""
        if self._model is not None:
            return getattr(self._model, "config", None)
        return get_config(self.name)

    @property
    def built(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            self._model = load_model(self.name, pretrained=bool(self.trained), folder=self.folder, device=self.device)
        return self._model


def pick_model(spec, folder: Optional[str] = None, device: str = "cpu", build: bool = True) -> ModelChoice:
    """A :class:`ModelChoice` from a name ("tiny", "vit_b", "vit_l", "vit_h"), a built SAM, a
    ``SamPredictor`` or a ``(model, label)`` pair. Names get trained weights when they are on
    disk (shipped for tiny, Meta's checkpoint in ``folder`` for the ViTs) and random ones
    otherwise, labelled "untrained". ``build=False`` defers building to first use."""
    if isinstance(spec, SamPredictor):
        spec = spec.model
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], nn.Module):
        model, weights = spec
        return ModelChoice(_model_name(model), None, str(weights), count_parameters(model), str(model.device), _model=model)
    if isinstance(spec, nn.Module):
        return ModelChoice(_model_name(spec), None, "your model", count_parameters(spec), str(spec.device), _model=spec)
    if not isinstance(spec, str):
        raise TypeError(f"model: expected a name like 'vit_b', a SAM model or a SamPredictor, got {type(spec).__name__}")
    config = get_config(spec)
    if config.name in SHIPPED:
        trained = shipped_weights_available(config.name)
        weights = "trained (shipped weights)" if trained else "untrained (random weights)"
    else:
        path = find_checkpoint(config.name, folder)
        trained = path is not None
        weights = f"Meta checkpoint {Path(path).name}" if trained else "untrained (random weights)"
    with torch.device("meta"):  # count parameters without allocating them (ViT-H: 641 M)
        parameters = count_parameters(build_sam(config))
    choice = ModelChoice(config.name, trained, weights, parameters, device, None if folder is None else str(folder))
    if build:
        choice.model
    return choice


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return getattr(config, "name", None) or type(model).__name__


def format_parameters(count: int) -> str:
    return f"{count / 1e6:.1f} M parameters" if count >= 1e5 else f"{count:,} parameters"


def format_seconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
