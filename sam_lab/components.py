"""Build a SAM from its stages, with any stage swapped for your own.

A stage is given either as a class (or any factory) that is called with the same keyword
arguments as ours, or as an already built ``nn.Module`` that is used as it is:

    build_sam("tiny", two_way_attention=MyTwoWayTransformer)
    build_sam("vit_b", encoder_block=MyBlock, checkpoint="sam_vit_b_01ec64.pth")

Stages and the keyword arguments their factories receive:

    image_encoder        img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio,
                         out_chans, qkv_bias, norm_layer, act_layer, use_abs_pos, use_rel_pos,
                         rel_pos_zero_init, window_size, global_attn_indexes
      patch_embed        kernel_size, stride, in_chans, embed_dim
      encoder_block      dim, num_heads, mlp_ratio, qkv_bias, norm_layer, act_layer, use_rel_pos,
                         rel_pos_zero_init, window_size, input_size
      neck               embed_dim, out_chans
    prompt_encoder       embed_dim, image_embedding_size, input_image_size, mask_in_chans
      positional_encoding  num_pos_feats
    two_way_attention    depth, embedding_dim, num_heads, mlp_dim, attention_downsample_rate
      two_way_block      embedding_dim, num_heads, mlp_dim, activation,
                         attention_downsample_rate, skip_first_layer_pe
    mask_decoder         transformer_dim, transformer, num_multimask_outputs, iou_head_depth,
                         iou_head_hidden_dim

The sub-stages (indented) are handed to our own parent class; swap the parent and they are
yours to place.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Dict, Optional

import torch.nn as nn

from .config import SamConfig, get_config
from .image_encoder import Block, ImageEncoder, Neck
from .layers import make_stage
from .mask_head import MaskDecoder
from .patching import PatchEmbed
from .positional_encoding import PositionEmbeddingRandom
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .two_way_attention import TwoWayAttentionBlock, TwoWayTransformer

# our implementation of every stage, by name
STAGES: Dict[str, type] = {
    "image_encoder": ImageEncoder,
    "patch_embed": PatchEmbed,
    "encoder_block": Block,
    "neck": Neck,
    "prompt_encoder": PromptEncoder,
    "positional_encoding": PositionEmbeddingRandom,
    "two_way_attention": TwoWayTransformer,
    "two_way_block": TwoWayAttentionBlock,
    "mask_decoder": MaskDecoder,
}
_SUB_STAGES = {
    "image_encoder": {"patch_embed": "patch_embed", "encoder_block": "block", "neck": "neck"},
    "prompt_encoder": {"positional_encoding": "positional_encoding"},
    "two_way_attention": {"two_way_block": "block"},
}


def build_sam(config="vit_b", checkpoint: Optional[str] = None, **stages) -> Sam:
    """Build a SAM from a config name ("vit_b", "vit_l", "vit_h", "default", "tiny") or a
    :class:`SamConfig`, with any stage replaced (see the module docstring), and load a checkpoint
    (Meta's ``.pth`` or a ``.safetensors`` file) with strict keys if one is given."""
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise TypeError(f"build_sam: unknown stage(s) {sorted(unknown)}; stages are {sorted(STAGES)}")
    cfg: SamConfig = get_config(config)
    enc, pe, dec = cfg.image_encoder, cfg.prompt_encoder, cfg.mask_decoder
    if not (enc.out_chans == pe.embed_dim == dec.transformer_dim):
        raise ValueError(
            "config: image_encoder.out_chans, prompt_encoder.embed_dim and "
            "mask_decoder.transformer_dim must be equal, got "
            f"{enc.out_chans}, {pe.embed_dim}, {dec.transformer_dim}"
        )

    def sub(parent: str) -> dict:
        return {arg: stages[name] for name, arg in _SUB_STAGES[parent].items() if name in stages}

    image_encoder = make_stage(
        stages.get("image_encoder", ImageEncoder),
        img_size=enc.img_size,
        patch_size=enc.patch_size,
        in_chans=enc.in_chans,
        embed_dim=enc.embed_dim,
        depth=enc.depth,
        num_heads=enc.num_heads,
        mlp_ratio=enc.mlp_ratio,
        out_chans=enc.out_chans,
        qkv_bias=enc.qkv_bias,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        act_layer=nn.GELU,
        use_abs_pos=enc.use_abs_pos,
        use_rel_pos=enc.use_rel_pos,
        rel_pos_zero_init=True,
        window_size=enc.window_size,
        global_attn_indexes=tuple(enc.global_attn_indexes),
        **sub("image_encoder"),
    )
    grid = enc.grid_size
    prompt_encoder = make_stage(
        stages.get("prompt_encoder", PromptEncoder),
        embed_dim=pe.embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(enc.img_size, enc.img_size),
        mask_in_chans=pe.mask_in_chans,
        **sub("prompt_encoder"),
    )
    transformer = make_stage(
        stages.get("two_way_attention", TwoWayTransformer),
        depth=dec.transformer_depth,
        embedding_dim=dec.transformer_dim,
        num_heads=dec.transformer_num_heads,
        mlp_dim=dec.transformer_mlp_dim,
        attention_downsample_rate=dec.attention_downsample_rate,
        **sub("two_way_attention"),
    )
    mask_decoder = make_stage(
        stages.get("mask_decoder", MaskDecoder),
        transformer_dim=dec.transformer_dim,
        transformer=transformer,
        num_multimask_outputs=dec.num_multimask_outputs,
        iou_head_depth=dec.iou_head_depth,
        iou_head_hidden_dim=dec.iou_head_hidden_dim,
    )
    sam = Sam(image_encoder, prompt_encoder, mask_decoder, cfg.pixel_mean, cfg.pixel_std)
    sam.config = cfg
    sam.eval()
    if checkpoint is not None:
        from .checkpoints import load_checkpoint

        load_checkpoint(sam, checkpoint)
    return sam


def _registry_entry(name: str) -> Callable[..., Sam]:
    def build(checkpoint: Optional[str] = None, **stages) -> Sam:
        return build_sam(name, checkpoint=checkpoint, **stages)

    build.__name__ = f"build_sam_{name}"
    build.__doc__ = f"Build SAM {name}; ``checkpoint`` loads Meta's file (strict keys)."
    return build


build_sam_vit_b = _registry_entry("vit_b")
build_sam_vit_l = _registry_entry("vit_l")
build_sam_vit_h = _registry_entry("vit_h")
build_sam_tiny = _registry_entry("tiny")

# Same keys as Meta's registry ("default" is ViT-H), plus our small "tiny".
sam_model_registry: Dict[str, Callable[..., Sam]] = {
    "default": build_sam_vit_h,
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
    "tiny": build_sam_tiny,
}
