"""Ready-to-use models: the tiny SAM shipped in this folder, and Meta's checkpoints.

    sam = sam_lab.load_model("tiny")                 # trained weights in sam_lab/weights/
    sam = sam_lab.load_model("vit_b")                # Meta's file, found on disk (see below)
    sam = sam_lab.load_model("vit_b", pretrained=False)  # random weights, any variant
    sam = sam_lab.load_model("path/to/sam_vit_b_01ec64.pth")  # a file: its size names the variant
    sam = sam_lab.load_model("path/to/hf_folder")    # a transformers save_pretrained folder

The tiny model was trained with ``python -m sam_lab.training`` on the synthetic nested-shapes data
(see the README's model card). Meta's checkpoints are looked for with
:func:`sam_lab.weights.find_checkpoint` (a folder you name, ``$SAM_LAB_CHECKPOINTS``, or
``~/.cache/sam_lab/checkpoints``); download one with :func:`sam_lab.download_checkpoint`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

from ..build import build_sam
from ..config import CONFIGS, SamConfig, get_config
from ..convert import from_transformers, read_transformers_config
from . import transformers_names
from .io import (
    CheckpointError,
    _encoder_size,
    identify_variant,
    load_checkpoint,
    load_state_dict_checked,
    read_state_dict,
    stem_of,
)
from .official import find_checkpoint

WEIGHTS_DIR = Path(__file__).parent  # the shipped .safetensors files sit beside this module
# "tiny16" is the recipe's first two stages at 16 x 16 tokens, before the move to tiny's 32 x 32
# "tiny_conv" is the extra model with a convolutional stem (not SAM's; the README's card for it)
SHIPPED = {"tiny": WEIGHTS_DIR / "tiny.safetensors", "tiny16": WEIGHTS_DIR / "tiny16.safetensors",
           "tiny_conv": WEIGHTS_DIR / "tiny_conv.safetensors"}
# lesson 08's ablation: two tiny models made by the same recipe at the same budget (coarse at
# tiny16, regrid, fine at tiny), one with the three ambiguity-aware outputs and min-over-masks,
# one with a single output token
ABLATION = {
    "multimask": WEIGHTS_DIR / "tiny_ablation_multimask.safetensors",
    "single_output": WEIGHTS_DIR / "tiny_ablation_single_output.safetensors",
}


def shipped_weights_available(name: str = "tiny") -> bool:
    return name in SHIPPED and SHIPPED[name].is_file()


# a string that is none of the config names but looks like this is a path that is not there
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def _as_path(name) -> Optional[Path]:
    """The path ``name`` names, or None for a config name (names win over same-named folders)."""
    if isinstance(name, SamConfig) or (isinstance(name, str) and (name in CONFIGS or name == "default")):
        return None
    if not isinstance(name, (str, os.PathLike)):
        return None  # get_config says what it expected
    path = Path(name).expanduser()
    if path.exists():
        return path
    text = os.fspath(name)
    if isinstance(name, os.PathLike) or "/" in text or os.sep in text or path.suffix in _CHECKPOINT_SUFFIXES:
        raise FileNotFoundError(
            f"name: no such file or folder: {text!r} (expected a config name, one of {sorted(CONFIGS)}, "
            "or the path of a checkpoint file or a transformers save_pretrained folder)"
        )
    return None


def _config_of_file(state_dict, path: Path) -> SamConfig:
    """The preset whose size the file's image encoder has (Meta's names), or a clear error."""
    try:
        variant = identify_variant(state_dict)
    except ValueError:
        raise CheckpointError(
            f"name: {path} is not a SAM checkpoint: it has neither Meta's image_encoder.patch_embed.proj.weight "
            f"nor transformers' {transformers_names.PATCH_EMBED_KEY}"
        ) from None
    size = _encoder_size(state_dict)
    stem, patch = stem_of(state_dict)  # tiny and tiny16 differ in the patch only, tiny16 and tiny_conv in the stem
    for config in CONFIGS.values():
        enc = config.image_encoder
        if (enc.embed_dim, enc.depth) == size and (enc.stem, enc.patch_size) == (stem, patch):
            return config
    raise ValueError(
        f"name: {path} holds a SAM of no preset size, {variant}; a file does not say the rest of its "
        "config: build it with build_sam(your_config, checkpoint=path) (or load a transformers folder, "
        "whose config.json says it)"
    )


def _load_path(path: Path, pretrained: bool):
    """A model built and loaded from a checkpoint path: a transformers folder, or a file."""
    if path.is_dir():  # only transformers writes folders: config.json says the size
        model = build_sam(read_transformers_config(path))
        return load_checkpoint(model, path) if pretrained else model
    state_dict = read_state_dict(path)
    in_meta_names = (from_transformers(state_dict, source=path)
                     if transformers_names.is_transformers_layout(state_dict) else state_dict)
    model = build_sam(_config_of_file(in_meta_names, path))
    return load_state_dict_checked(model, in_meta_names, path) if pretrained else model


def load_model(name: Union[str, os.PathLike] = "tiny", pretrained: bool = True, folder: Optional[str] = None,
               device: str = "cpu"):
    """A SAM in eval mode. ``pretrained=True`` loads trained weights (shipped for "tiny", Meta's
    checkpoint for vit_b/l/h) and says clearly where to get them if they are missing.

    ``name`` is a config name or a path (a config name wins over a same-named folder):

    * a transformers ``save_pretrained`` folder: its config.json gives the model, its weights
      are renamed to ours (see :mod:`sam_lab.convert`);
    * a checkpoint file, Meta's ``.pth`` / ``.safetensors`` or one in transformers' names: the
      image encoder's size picks the preset (vit_b / vit_l / vit_h / tiny), see identify_variant.

    With a path, ``pretrained=False`` builds that model with fresh weights and ``folder`` is unused.
    """
    path = _as_path(name)
    if path is not None:
        return _load_path(path, pretrained).to(device).eval()
    config = get_config(name)
    model = build_sam(config)
    if pretrained:
        if config.name in SHIPPED:
            path = SHIPPED[config.name]
            if not path.is_file():
                raise FileNotFoundError(
                    f"name: the shipped weights for {config.name!r} are missing ({path}); reinstall sam_lab "
                    "or train them with `python -m sam_lab.training.recipe` (see the README's model card)"
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
    both made by the same recipe for the same steps (``sam_lab.training.recipe --recipe
    ablation_<kind>``; the runs' settings in sam_lab/weights/tiny_ablation_recipe.json)."""
    if kind not in ABLATION:
        raise ValueError(f"kind: expected one of {sorted(ABLATION)}, got {kind!r}")
    return _load_path(ABLATION[kind], pretrained=True).to(device).eval()  # its grid read off the file


#: text paths that ship: a base model's name -> its file (sam_lab.training.text; the README's card)
SHIPPED_TEXT = {"tiny": WEIGHTS_DIR / "tiny_text.safetensors"}


def load_text_model(name: Union[str, os.PathLike] = "tiny", device: str = "cpu"):
    """A SAM that also takes text prompts: the base model, its text path's weights and the CLIP
    tower they were trained against (``SamPredictor.predict(text=...)``).

    ``name`` is a base model with a shipped text path ("tiny") or a text-path file written by
    ``python -m sam_lab.training.text``; its metadata names the base model and the tower (open_clip
    model, pretrained tag, seed), which is rebuilt, so a random tower warns that it is untrained."""
    from safetensors import safe_open

    from ..modeling.text_prompt import ClipTower, add_text_path

    path = SHIPPED_TEXT.get(name) if isinstance(name, str) else None
    if path is None:
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"name: expected one of {sorted(SHIPPED_TEXT)} or a text-path .safetensors file, got {name!r}")
    elif not path.is_file():
        raise FileNotFoundError(f"name: the shipped text path for {name!r} is missing ({path}); train it with "
                                "`python -m sam_lab.training.text` (see the README's model card)")
    with safe_open(str(path), framework="pt") as file:
        meta = file.metadata() or {}
        state = {key: file.get_tensor(key) for key in file.keys()}
    if meta.get("kind") != "sam_lab text path":
        raise ValueError(f"name: {path} is not a text-path file (written by python -m sam_lab.training.text)")
    model = load_model(meta["base"], device=device)
    tower = ClipTower(meta["clip_model"], json.loads(meta["clip_pretrained"]), seed=int(meta["clip_seed"]))
    encoder = add_text_path(model, tower, num_tokens=int(meta["num_tokens"]), hidden_dim=int(meta["hidden_dim"]),
                            colour_skip=bool(json.loads(meta.get("colour_skip", "false"))),
                            grounding=bool(json.loads(meta.get("grounding", "false"))))
    encoder.tower = None  # the file's fingerprint is checked below, when the tower is attached again
    encoder.tower_fingerprint.zero_()
    unexpected = [k for k in state if k not in model.state_dict()]
    if unexpected:
        raise ValueError(f"name: {path} holds keys this model lacks: {unexpected[:5]}")
    model.load_state_dict(state, strict=False)
    encoder.attach(tower)
    return model.to(device).eval()
