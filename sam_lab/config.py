"""Configurations for every stage of SAM, as plain dataclasses.

The three released image encoders (ViT-B, ViT-L, ViT-H; paper §3 and appendix A) differ only
in width, depth, head count and where the global-attention blocks sit. Everything after the
image encoder (prompt encoder, two-way transformer, mask decoder) is the same for all three.

`TINY` is the same architecture at a size that runs in a fraction of a second on a laptop CPU;
tests and CPU lessons use it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Tuple


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
# Same architecture, small: 256 px input (16x16 tokens), 4 blocks of width 96, windows of 8,
# decoder of width 64. Every stage and every code path of the full model is exercised.
TINY = SamConfig(
    name="tiny",
    image_encoder=ImageEncoderConfig(
        img_size=256,
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

CONFIGS = {"vit_b": VIT_B, "vit_l": VIT_L, "vit_h": VIT_H, "tiny": TINY}


def get_config(name_or_config) -> SamConfig:
    """Look a config up by name ("vit_b", "vit_l", "vit_h", "default" = vit_h, "tiny")."""
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
