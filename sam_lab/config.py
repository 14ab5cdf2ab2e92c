"""Configurations for every stage of SAM, as plain dataclasses.

The three released image encoders (ViT-B, ViT-L, ViT-H; paper §3 and appendix A) differ only
in width, depth, head count and where the global-attention blocks sit. Everything after the
image encoder (prompt encoder, two-way transformer, mask decoder) is the same for all three.

`TINY` is the same architecture at a size that runs in a fraction of a second on a laptop CPU;
tests and CPU lessons use it. `TINY16` is TINY at the coarser 16 x 16 token grid its weights
were first trained at (the coarse stages of the shipped recipe and of lesson 08's ablation pair).

:func:`stage_kwargs` is the one mapping from a config to the keyword arguments each stage's
constructor receives. ``build_sam``, the exercise checkers and the reference-model oracle of the
tests all use it, so a field means the same thing everywhere.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Dict, Tuple

import torch.nn as nn


@dataclass(frozen=True)
class ImageEncoderConfig:
    img_size: int = 1024  # side of the square, padded input image in pixels
    patch_size: int = 16  # each patch_size x patch_size patch becomes one token
    in_chans: int = 3  # RGB
    embed_dim: int = 768  # token width D inside the ViT
    depth: int = 12  # number of transformer blocks
    num_heads: int = 12  # attention heads per block
    mlp_ratio: float = 4.0  # hidden width of each block's MLP is mlp_ratio * D
    out_chans: int = 256  # channels of the image embedding the neck produces
    qkv_bias: bool = True  # the qkv projection has a bias
    use_abs_pos: bool = True  # learned absolute positional embedding added after patching
    use_rel_pos: bool = True  # decomposed relative position bias inside attention
    window_size: int = 14  # side of the local attention windows (0 = global everywhere)
    global_attn_indexes: Tuple[int, ...] = (2, 5, 8, 11)  # blocks that attend globally
    stem: str = "patch"  # "patch": SAM's patch projection; "conv": modeling.patching.ConvStem (tiny_conv only, not SAM's)

    @property
    def grid_size(self) -> int:
        """Side of the token grid: 1024 / 16 = 64 for the released models."""
        return self.img_size // self.patch_size


@dataclass(frozen=True)
class PromptEncoderConfig:
    embed_dim: int = 256  # width of every prompt token (equals the image embedding channels)
    mask_in_chans: int = 16  # hidden channels of the dense-mask downscaler


@dataclass(frozen=True)
class MaskDecoderConfig:
    transformer_dim: int = 256  # token width in the two-way transformer
    transformer_depth: int = 2  # number of two-way attention blocks
    transformer_num_heads: int = 8
    transformer_mlp_dim: int = 2048  # hidden width of the token MLP
    attention_downsample_rate: int = 2  # cross-attention works in transformer_dim / rate
    num_multimask_outputs: int = 3  # whole, part, subpart
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256


@dataclass(frozen=True)
class SamConfig:
    name: str
    image_encoder: ImageEncoderConfig
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    pixel_mean: Tuple[float, float, float] = (123.675, 116.28, 103.53)  # ImageNet, in 0..255
    pixel_std: Tuple[float, float, float] = (58.395, 57.12, 57.375)

    @property
    def image_embedding_size(self) -> int:
        return self.image_encoder.grid_size

    def with_image_encoder(self, **changes) -> "SamConfig":
        """A copy with some image-encoder fields changed, e.g. ``img_size=512``."""
        return replace(self, image_encoder=replace(self.image_encoder, **changes))


VIT_B = SamConfig(
    name="vit_b",
    image_encoder=ImageEncoderConfig(
        embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)
    ),
)
VIT_L = SamConfig(
    name="vit_l",
    image_encoder=ImageEncoderConfig(
        embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)
    ),
)
VIT_H = SamConfig(
    name="vit_h",
    image_encoder=ImageEncoderConfig(
        embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)
    ),
)
# Same architecture, small: 256 px input in 8 x 8 patches (32 x 32 tokens, 128 x 128 low-res
# masks), 4 blocks of width 96, windows of 16 tokens, decoder of width 64. Every stage and every
# code path of the full model is exercised. The shipped weights were trained at 16 x 16 tokens
# first (TINY16) and then moved to this finer grid (sam_lab.training.regrid; the README's model
# card): a 25-px coin covers about nine tokens here instead of two or three.
TINY16 = SamConfig(
    name="tiny16",
    image_encoder=ImageEncoderConfig(
        img_size=256,
        patch_size=16,
        embed_dim=96,
        depth=4,
        num_heads=4,
        out_chans=64,
        window_size=8,
        global_attn_indexes=(1, 3),
    ),
    prompt_encoder=PromptEncoderConfig(embed_dim=64, mask_in_chans=16),
    mask_decoder=MaskDecoderConfig(
        transformer_dim=64,
        transformer_num_heads=4,
        transformer_mlp_dim=256,
        iou_head_hidden_dim=64,
    ),
)
TINY = replace(TINY16, name="tiny", image_encoder=replace(TINY16.image_encoder, patch_size=8, window_size=16))

# An extra model that is not SAM's architecture: TINY16 with its patch projection replaced by
# 3x3 stride-2 convolutions (modeling.patching.ConvStem, after Xiao et al. 2021). At equal
# training time it segments better than the patch projection (the README's card for tiny_conv);
# lessons 01-06 swap their stages into TINY, which stays SAM's.
TINY_CONV = replace(TINY16, name="tiny_conv", image_encoder=replace(TINY16.image_encoder, stem="conv"))
STEMS = ("patch", "conv")

CONFIGS = {"vit_b": VIT_B, "vit_l": VIT_L, "vit_h": VIT_H, "tiny": TINY, "tiny16": TINY16, "tiny_conv": TINY_CONV}


def get_config(name_or_config) -> SamConfig:
    """Look a config up by name ("vit_b", "vit_l", "vit_h", "default" = vit_h, "tiny", "tiny16",
    "tiny_conv")."""
    if isinstance(name_or_config, SamConfig):
        return name_or_config
    if not isinstance(name_or_config, str):
        raise TypeError(
            f"config: expected a variant name or a SamConfig, got {type(name_or_config).__name__}"
        )
    key = "vit_h" if name_or_config == "default" else name_or_config
    if key not in CONFIGS:
        raise ValueError(
            f"config: expected one of {sorted(CONFIGS) + ['default']}, got {name_or_config!r}"
        )
    return CONFIGS[key]


def override_config(config, changes: str) -> SamConfig:
    """A copy of ``config`` (a name or a :class:`SamConfig`) with fields changed by a string such
    as ``"image_encoder.patch_size=8, image_encoder.global_attn_indexes=(1, 3)"``: comma-separated
    ``stage.field=value`` items, values as Python literals. An empty string changes nothing. Used
    by the training commands (``--config-overrides``) to compare model sizes at equal budget."""
    import ast
    import re

    cfg = get_config(config)
    if not isinstance(changes, str):
        raise TypeError(f"changes: expected a string like 'image_encoder.depth=6', got {type(changes).__name__}")
    # a comma starts a new item only where "stage.field=" follows, so tuples stay whole
    items = [item.strip() for item in re.split(r",(?=\s*\w+\.\w+\s*=)", changes) if item.strip()]
    stages = ("image_encoder", "prompt_encoder", "mask_decoder")
    for item in items:
        key, sep, value = item.partition("=")
        stage, dot, name = key.strip().partition(".")
        if not sep or not dot or stage not in stages:
            raise ValueError(f"changes: expected items 'stage.field=value' with stage in {stages}, got {item!r}")
        sub = getattr(cfg, stage)
        if name not in sub.__dataclass_fields__:
            raise ValueError(f"changes: {stage} has no field {name!r}; its fields are {sorted(sub.__dataclass_fields__)}")
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"changes: the value of {key.strip()} must be a Python literal, got {value.strip()!r}") from None
        cfg = replace(cfg, **{stage: replace(sub, **{name: parsed})})
    return cfg


#: stage -> its parent stage (the sub-stages are built inside our parent class; "" = top level)
STAGE_PARENTS: Dict[str, str] = {
    "image_encoder": "",
    "patch_embed": "image_encoder",
    "encoder_block": "image_encoder",
    "neck": "image_encoder",
    "prompt_encoder": "",
    "positional_encoding": "prompt_encoder",
    "two_way_attention": "",
    "two_way_block": "two_way_attention",
    "mask_decoder": "",
}


def stage_kwargs(config) -> Dict[str, Dict[str, Any]]:
    """Stage name -> the keyword arguments its constructor receives, for every stage of SAM.

    Top-level stages get these from ``build_sam``; sub-stages from our parent class. Two
    arguments vary from block to block inside a parent; the values given are block 0's:

    * ``encoder_block``: ``window_size`` is 0 for the blocks in ``global_attn_indexes`` (they
      attend over the whole grid) and the window side for the others.
    * ``two_way_block``: ``skip_first_layer_pe`` is True for block 0 only (its queries are the
      prompt tokens themselves, positions included), False for the others.

    ``mask_decoder`` also receives the built ``transformer`` (the two-way attention stage).
    """
    cfg = get_config(config)
    enc, pe, dec = cfg.image_encoder, cfg.prompt_encoder, cfg.mask_decoder
    grid = enc.grid_size
    norm_layer, act_layer = partial(nn.LayerNorm, eps=1e-6), nn.GELU
    window = 0 if 0 in enc.global_attn_indexes else enc.window_size  # block 0's
    return {
        "image_encoder": dict(
            img_size=enc.img_size, patch_size=enc.patch_size, in_chans=enc.in_chans,
            embed_dim=enc.embed_dim, depth=enc.depth, num_heads=enc.num_heads,
            mlp_ratio=enc.mlp_ratio, out_chans=enc.out_chans, qkv_bias=enc.qkv_bias,
            norm_layer=norm_layer, act_layer=act_layer, use_abs_pos=enc.use_abs_pos,
            use_rel_pos=enc.use_rel_pos, rel_pos_zero_init=True, window_size=enc.window_size,
            global_attn_indexes=tuple(enc.global_attn_indexes),
        ),
        "patch_embed": dict(
            kernel_size=(enc.patch_size, enc.patch_size), stride=(enc.patch_size, enc.patch_size),
            in_chans=enc.in_chans, embed_dim=enc.embed_dim,
        ),
        "encoder_block": dict(
            dim=enc.embed_dim, num_heads=enc.num_heads, mlp_ratio=enc.mlp_ratio,
            qkv_bias=enc.qkv_bias, norm_layer=norm_layer, act_layer=act_layer,
            use_rel_pos=enc.use_rel_pos, rel_pos_zero_init=True, window_size=window,
            input_size=(grid, grid),
        ),
        "neck": dict(embed_dim=enc.embed_dim, out_chans=enc.out_chans),
        "prompt_encoder": dict(
            embed_dim=pe.embed_dim, image_embedding_size=(grid, grid),
            input_image_size=(enc.img_size, enc.img_size), mask_in_chans=pe.mask_in_chans,
        ),
        "positional_encoding": dict(num_pos_feats=pe.embed_dim // 2),
        "two_way_attention": dict(
            depth=dec.transformer_depth, embedding_dim=dec.transformer_dim,
            num_heads=dec.transformer_num_heads, mlp_dim=dec.transformer_mlp_dim,
            attention_downsample_rate=dec.attention_downsample_rate,
        ),
        "two_way_block": dict(
            embedding_dim=dec.transformer_dim, num_heads=dec.transformer_num_heads,
            mlp_dim=dec.transformer_mlp_dim, activation=nn.ReLU,
            attention_downsample_rate=dec.attention_downsample_rate, skip_first_layer_pe=True,
        ),
        "mask_decoder": dict(
            transformer_dim=dec.transformer_dim, num_multimask_outputs=dec.num_multimask_outputs,
            iou_head_depth=dec.iou_head_depth, iou_head_hidden_dim=dec.iou_head_hidden_dim,
        ),
    }


def describe_stages() -> str:
    """The stages and their keyword arguments as an indented table (for docstrings)."""
    kwargs = stage_kwargs(TINY)
    kwargs["mask_decoder"] = {"transformer": None, **kwargs["mask_decoder"]}
    lines = []
    for stage, parent in STAGE_PARENTS.items():
        name = ("  " if parent else "") + stage
        lines += textwrap.wrap(", ".join(kwargs[stage]), width=96, initial_indent=f"    {name:<22} ",
                               subsequent_indent=" " * 27)
    return "\n".join(lines)
