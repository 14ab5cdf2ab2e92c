"""The image encoder: a ViT that turns a 1024x1024 image into a 256x64x64 embedding.

Paper §3 and appendix A. Runs once per image; every prompt afterwards reuses its output.

    image (B, 3, 1024, 1024)
      -> PatchEmbed                          (B, 64, 64, D)
      -> + learned absolute position         (B, 64, 64, D)
      -> depth x Block                       windowed (14x14) or global self-attention + MLP
      -> Neck: 1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d
      -> image embedding                     (B, 256, 64, 64)

Swappable parts: ``patch_embed``, ``block`` and ``neck`` may be given as classes (called
with the same keyword arguments as ours) or built modules.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Optional, Tuple, Type

import torch
import torch.nn as nn

from .attention import Attention
from .kernels import shared_bias_buffer
from .layers import LayerNorm2d, MLPBlock, make_stage
from .patching import PatchEmbed, window_partition, window_unpartition
from .positional_encoding import resize_absolute_pos_embed


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)).

    ``window_size > 0`` makes the attention local: the grid is split into windows (padded),
    each attends only within itself, and the windows are stitched back together.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_layer: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=1e-6),
        act_layer: Type[nn.Module] = nn.GELU,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        window_size: int = 0,
        input_size: Optional[Tuple[int, int]] = None,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        # a windowed block's relative-position tables cover one window, a global one the grid
        attn_size = (window_size, window_size) if window_size > 0 else input_size
        self.attn = Attention(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            rel_pos_zero_init=rel_pos_zero_init,
            input_size=attn_size,
        )
        self.norm2 = norm_layer(dim)
        self.mlp = MLPBlock(embedding_dim=dim, mlp_dim=int(dim * mlp_ratio), act=act_layer)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, D) -> (B, H, W, D)
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            H, W = x.shape[1], x.shape[2]
            x, padded_hw = window_partition(x, self.window_size)  # (B*nW, w, w, D)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, padded_hw, (H, W))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class Neck(nn.Sequential):
    """Project D channels down to ``out_chans``: 1x1 conv, LN, 3x3 conv, LN (no biases)."""

    def __init__(self, embed_dim: int, out_chans: int) -> None:
        super().__init__(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )


class ImageEncoder(nn.Module):
    """ViT image encoder. Attribute names match Meta's checkpoints (``image_encoder.*``)."""

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        norm_layer: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=1e-6),
        act_layer: Type[nn.Module] = nn.GELU,
        use_abs_pos: bool = True,
        use_rel_pos: bool = True,
        rel_pos_zero_init: bool = True,
        window_size: int = 14,
        global_attn_indexes: Tuple[int, ...] = (2, 5, 8, 11),
        patch_embed: Optional[Callable[..., nn.Module] | nn.Module] = None,
        block: Optional[Callable[..., nn.Module]] = None,
        neck: Optional[Callable[..., nn.Module] | nn.Module] = None,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = make_stage(
            patch_embed or PatchEmbed,
            kernel_size=(patch_size, patch_size),
            stride=(patch_size, patch_size),
            in_chans=in_chans,
            embed_dim=embed_dim,
        )
        self.pos_embed: Optional[nn.Parameter] = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        block = block or Block
        self.blocks = nn.ModuleList(
            make_stage(
                block,
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                norm_layer=norm_layer,
                act_layer=act_layer,
                use_rel_pos=use_rel_pos,
                rel_pos_zero_init=rel_pos_zero_init,
                window_size=0 if i in global_attn_indexes else window_size,
                input_size=(grid, grid),
            )
            for i in range(depth)
        )
        self.neck = make_stage(neck or Neck, embed_dim=embed_dim, out_chans=out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (B, h, w, D)
        if self.pos_embed is not None:
            x = x + resize_absolute_pos_embed(self.pos_embed, x.shape[1:3])
        with shared_bias_buffer():  # without autograd, the blocks' attention biases share memory
            for blk in self.blocks:
                x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))  # (B, out_chans, h, w)
