"""Helpers that build Meta's reference SAM (the test oracle) and give it random weights.

The reference package builds its released variants only at full size; ``build_reference``
assembles the same classes from any of our configs, so the tiny config is checked against the
reference too. Weights are randomised *everywhere* (also the parameters the reference
initialises to zero, like positional embeddings and relative-position tables), otherwise
whole code paths would multiply by zero and a parity test would prove nothing.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from sam_lab import build_sam, get_config


def build_reference(config):
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    cfg = get_config(config)
    enc, pe, dec = cfg.image_encoder, cfg.prompt_encoder, cfg.mask_decoder
    grid = enc.img_size // enc.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=enc.depth,
            embed_dim=enc.embed_dim,
            img_size=enc.img_size,
            mlp_ratio=enc.mlp_ratio,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=enc.num_heads,
            patch_size=enc.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=list(enc.global_attn_indexes),
            window_size=enc.window_size,
            out_chans=enc.out_chans,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=pe.embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(enc.img_size, enc.img_size),
            mask_in_chans=pe.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=dec.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=dec.transformer_depth,
                embedding_dim=dec.transformer_dim,
                mlp_dim=dec.transformer_mlp_dim,
                num_heads=dec.transformer_num_heads,
            ),
            transformer_dim=dec.transformer_dim,
            iou_head_depth=dec.iou_head_depth,
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
        ),
        pixel_mean=list(cfg.pixel_mean),
        pixel_std=list(cfg.pixel_std),
    ).eval()


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter random values of a sensible scale (LayerNorm weights near 1)."""
    generator = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=generator)
        if p.ndim == 1 and name.endswith("weight"):  # norm scales
            p.copy_(1.0 + 0.1 * noise)
        elif p.ndim == 1:  # biases
            p.copy_(0.02 * noise)
        else:
            fan_in = p[0].numel() if p.ndim > 1 else 1
            if "rel_pos" in name or "pos_embed" in name or "embed" in name.split(".")[-2:][0]:
                p.copy_(0.5 * noise)
            else:
                p.copy_(noise / fan_in**0.5)
    return model


def twin_models(config, seed: int = 0):
    """(reference, ours) with identical random weights, copied with strict keys."""
    torch.manual_seed(seed)
    reference = randomize_(build_reference(config), seed)
    ours = build_sam(config)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference.eval(), ours.eval()
