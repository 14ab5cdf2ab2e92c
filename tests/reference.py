"""Helpers that build Meta's reference SAM (the test oracle) and give it random weights.

The reference package builds its released variants only at full size; ``build_reference``
assembles the same classes from any of our configs, with the keyword arguments of
:func:`sam_lab.config.stage_kwargs` (Meta's constructors take the same names), so the tiny
config is checked against the reference too. Weights are randomised *everywhere* with
:func:`sam_lab.weights.randomize` (also the parameters the reference initialises to zero, like
positional embeddings and relative-position tables), otherwise whole code paths would multiply
by zero and a parity test would prove nothing.
"""
from __future__ import annotations

import torch

from sam_lab import build_sam, get_config, stage_kwargs
from sam_lab.weights import randomize


def build_reference(config):
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    cfg = get_config(config)
    kwargs = stage_kwargs(cfg)
    return Sam(
        image_encoder=ImageEncoderViT(**kwargs["image_encoder"]),
        prompt_encoder=PromptEncoder(**kwargs["prompt_encoder"]),
        mask_decoder=MaskDecoder(transformer=TwoWayTransformer(**kwargs["two_way_attention"]), **kwargs["mask_decoder"]),
        pixel_mean=list(cfg.pixel_mean),
        pixel_std=list(cfg.pixel_std),
    ).eval()


def twin_models(config, seed: int = 0):
    """(reference, ours) with identical random weights, copied with strict keys."""
    torch.manual_seed(seed)
    reference = randomize(build_reference(config), seed)
    ours = build_sam(config)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference.eval(), ours.eval()
