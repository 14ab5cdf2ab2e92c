"""Ready-to-use models: the tiny SAM shipped in this folder, and Meta's checkpoints.

    sam = sam_lab.load_model("tiny")                 # trained weights in sam_lab/weights/
    sam = sam_lab.load_model("vit_b")                # Meta's file, found on disk (see below)
    sam = sam_lab.load_model("vit_b", pretrained=False)  # random weights, any variant

The tiny model was trained with ``python -m sam_lab.training`` on the synthetic nested-shapes data
(see the README's model card). Meta's checkpoints are looked for with
:func:`sam_lab.weights.find_checkpoint` (a folder you name, ``$SAM_LAB_CHECKPOINTS``, or
``~/.cache/sam_lab/checkpoints``); download one with :func:`sam_lab.download_checkpoint`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..build import build_sam
from ..config import get_config
from .io import load_checkpoint
from .official import find_checkpoint

WEIGHTS_DIR = Path(__file__).parent  # the shipped .safetensors files sit beside this module
SHIPPED = {"tiny": WEIGHTS_DIR / "tiny.safetensors"}
# lesson 08's ablation: two tiny models trained identically for 1,000 steps, one with the three
# ambiguity-aware outputs and min-over-masks, one with a single output token
ABLATION = {
    "multimask": WEIGHTS_DIR / "tiny_ablation_multimask.safetensors",
    "single_output": WEIGHTS_DIR / "tiny_ablation_single_output.safetensors",
}


def shipped_weights_available(name: str = "tiny") -> bool:
    return name in SHIPPED and SHIPPED[name].is_file()


def load_model(name: str = "tiny", pretrained: bool = True, folder: Optional[str] = None, device: str = "cpu"):
    """A SAM in eval mode. ``pretrained=True`` loads trained weights (shipped for "tiny", Meta's
    checkpoint for vit_b/l/h) and says clearly where to get them if they are missing."""
    config = get_config(name)
    model = build_sam(config)
    if pretrained:
        if config.name in SHIPPED:
            path = SHIPPED[config.name]
            if not path.is_file():
                raise FileNotFoundError(
                    f"name: the shipped weights for {config.name!r} are missing ({path}); reinstall sam_lab "
                    "or train them with `python -m sam_lab.training --config tiny` (see the README)"
                )
        else:
            path = find_checkpoint(config.name, folder)
            if path is None:
                raise FileNotFoundError(
                    f"name: no checkpoint for {config.name!r} found (folder={folder!r}, $SAM_LAB_CHECKPOINTS, "
                    f"~/.cache/sam_lab/checkpoints); get it with sam_lab.download_checkpoint({config.name!r}, folder) "
                    "or pass pretrained=False for random weights"
                )
        load_checkpoint(model, path)
    return model.to(device).eval()


def load_ablation_model(kind: str, device: str = "cpu"):
    """One of the two tiny models of the ambiguity ablation (lesson 08), in eval mode:
    ``"multimask"`` (SAM's recipe) or ``"single_output"`` (one output token, no min-over-masks),
    both trained the same way for the same 1,000 steps."""
    if kind not in ABLATION:
        raise ValueError(f"kind: expected one of {sorted(ABLATION)}, got {kind!r}")
    model = build_sam("tiny")
    load_checkpoint(model, ABLATION[kind])
    return model.to(device).eval()
