"""Move a trained SAM to a finer token grid without losing what it learned.

    fine, fine_config = regrid(coarse_model, "tiny16", patch_size=8)

The shipped tiny model is trained in two grids: first at 16 x 16 tokens (patch 16 at 256 px),
where a step is cheap, then at 32 x 32 tokens (patch 8), where a 25-px object covers nine tokens
instead of two or three. This module is the move between them (the README's model card measures
what it buys).

Nothing in SAM's decoder depends on the grid: the prompt encoder's positional encoding is
continuous and the mask decoder upsamples whatever grid it gets 4x. Only four kinds of encoder
weights do, and each is carried over so that the new model starts out computing what the old one
computes on the image upsampled ``f = old_patch / new_patch`` times (nearest neighbour):

* the patch kernel: an f x f block of the upsampled image repeats one pixel, so the old kernel's
  f x f blocks are summed into one weight each (average pool times f squared);
* the absolute positions: resized bicubically to the new grid;
* the windows: f times wider, so that each still covers the same part of the image;
* the relative-position tables: resized linearly along their offsets, as
  :func:`~sam_lab.modeling.positional_encoding.get_rel_pos` does for a grid it was not trained at.

It is only "starts out equal" up to the interpolations, which is why the finer grid is then
trained (sam_lab.training.recipe); the test suite checks the starting point against the coarse
model on the upsampled image.
"""
from __future__ import annotations

from typing import Tuple

import torch.nn.functional as F
from torch import nn

from ..build import build_sam
from ..config import SamConfig, get_config
from ..modeling.positional_encoding import resize_absolute_pos_embed, resize_rel_pos


def regrid_config(config, patch_size: int) -> SamConfig:
    """``config`` (a name or a SamConfig) with ``patch_size`` and windows scaled to match."""
    config = get_config(config)
    old = config.image_encoder
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size <= 0 or old.patch_size % patch_size:
        raise ValueError(f"patch_size: expected a positive divisor of the model's patch size {old.patch_size}, got {patch_size!r}")
    f = old.patch_size // patch_size
    return config.with_image_encoder(patch_size=patch_size, window_size=old.window_size * f)


def regrid(model: nn.Module, config, patch_size: int) -> Tuple[nn.Module, SamConfig]:
    """A new model at the finer grid ``patch_size`` holding ``model``'s weights carried over (see
    the module docstring), and its config. ``config`` is ``model``'s own (a name or a SamConfig);
    ``model`` is left unchanged. The new model is in the mode ``model`` was in."""
    config = get_config(config)
    new_config = regrid_config(config, patch_size)  # checks patch_size
    f = config.image_encoder.patch_size // patch_size
    fine = build_sam(new_config)
    target = fine.state_dict()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state or state[key].shape[-1] != config.image_encoder.patch_size:
        got = tuple(state[key].shape) if key in state else "no patch kernel"
        raise ValueError(f"model: expected a SAM with config {config.name!r}'s patch size {config.image_encoder.patch_size}, got {got}")
    state[key] = F.avg_pool2d(state[key], f) * f * f  # (D, 3, P, P) -> (D, 3, P/f, P/f)
    if "image_encoder.pos_embed" in state:
        state["image_encoder.pos_embed"] = resize_absolute_pos_embed(state["image_encoder.pos_embed"], tuple(target["image_encoder.pos_embed"].shape[1:3]))
    for name in [k for k in state if ".attn.rel_pos_" in k]:
        state[name] = resize_rel_pos(state[name], target[name].shape[0])
    fine.load_state_dict(state, strict=True)  # refuses any shape the carry-over missed
    return fine.train(model.training), new_config
