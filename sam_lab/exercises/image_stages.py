"""Checkers for the image side (lessons 01-03): patching, positions, attention, the ViT.

Each ``*_cases(cfg)`` returns the :class:`~.engine.Case` s a stage is checked on, with the
mistakes a learner is likely to make planted into ours so the checker can name them.
"""
from __future__ import annotations

import math
from typing import List

import torch
import torch.nn.functional as F

from ..config import SamConfig, stage_kwargs
from ..modeling.patching import window_partition, window_unpartition
from .engine import Case, Mistake, attention_factors, attention_mistakes, modified_copy


def randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- lesson 01

def patch_embed_cases(cfg: SamConfig) -> List[Case]:
    enc = cfg.image_encoder
    p = enc.patch_size
    image = randn(1, 2, enc.in_chans, 4 * p, 6 * p)  # a 4 x 6 grid of patches
    advice = "each token is one linear map of one patch, with no extra scaling"
    return [
        Case(
            f"a (2, {enc.in_chans}, {4 * p}, {6 * p}) image",
            run=lambda m: m(image.clone()),
            outputs=("tokens",),
            axes=("BHWC",),
            kwargs=stage_kwargs(cfg)["patch_embed"],
            factors={"patch_size": (float(p), advice), "patch_size²": (float(p * p), advice)},
        )
    ]


def _windows_in_column_order(windows: torch.Tensor, batch: int, nh: int, nw: int) -> torch.Tensor:
    """Our windows renumbered column by column, as a wrong permute would give them."""
    w, c = windows.shape[1], windows.shape[-1]
    return windows.reshape(batch, nh, nw, w, w, c).transpose(1, 2).reshape(-1, w, w, c)


def window_partition_cases(cfg: SamConfig) -> List[Case]:
    w = cfg.image_encoder.window_size or 14
    H, W = w + w // 2, w + 2  # not multiples of w: the grid must be padded to (2w, 2w)
    x = randn(2, 2, H, W, 5)
    flat = randn(3, 2, 2 * w, w, 5)  # a grid that needs no padding
    windows, padded = window_partition(x, w)

    def partition(fns, grid):
        out, hw = fns[0](grid.clone(), w)
        return out, torch.tensor([int(s) for s in hw])

    def planted(change):  # ours, with change(windows, padded_hw, grid) applied to the partition
        def variant(ours, run):
            return run((lambda grid, size: change(*ours[0](grid, size), grid), ours[1]))

        return variant

    mistakes = [
        Mistake(
            "the windows come out in another order: number them batch first, then window row, "
            "then window column, i.e. permute (B, nh, w, nw, w, C) to (B, nh, nw, w, w, C)",
            planted(lambda win, hw, g: (_windows_in_column_order(win, len(g), hw[0] // w, hw[1] // w), hw)),
        ),
        Mistake(
            "rows and columns are swapped inside each window: keep (y, x) order within a window",
            planted(lambda win, hw, g: (win.transpose(1, 2), hw)),
        ),
        Mistake(
            "the padding is on the wrong side: SAM pads the bottom and the right, "
            "F.pad(x, (0, 0, 0, pad_w, 0, pad_h))",
            planted(lambda win, hw, g: window_partition(
                F.pad(g, (0, 0, hw[1] - g.shape[2], 0, hw[0] - g.shape[1], 0)), w)),
        ),
    ]

    def unpadded_hint(name, want, got):
        if got[1:3] == tuple(padded) and want[1:3] != got[1:3]:
            return (
                f"the windows were stitched back into the padded {padded[0]}x{padded[1]} grid, but "
                f"the padding was not cut away (windows not unpadded): crop to the original (H, W) = {(H, W)}"
            )
        return None

    grid_outputs = dict(outputs=("tokens",), axes=("BHWC",), shape_hint=unpadded_hint)
    return [
        Case(f"partition a (2, {H}, {W}, 5) grid into {w}x{w} windows (padded to {padded})",
             run=lambda fns: partition(fns, x), outputs=("windows", "padded_hw"), axes=("NhwC", "k"),
             mistakes=mistakes),
        Case(f"partition a (2, {2 * w}, {w}, 5) grid, no padding needed",
             run=lambda fns: partition(fns, flat), outputs=("windows", "padded_hw"), axes=("NhwC", "k"),
             mistakes=mistakes),
        Case(f"unpartition our windows back to (2, {H}, {W}, 5)",
             run=lambda fns: fns[1](windows.clone(), w, padded, (H, W)), **grid_outputs),
        Case("partition then unpartition gives the grid back",
             run=lambda fns: fns[1](fns[0](x.clone(), w)[0], w, padded, (H, W)), **grid_outputs),
    ]


# ----------------------------------------------------------------------------- lesson 02

def absolute_pos_embed_cases(cfg: SamConfig) -> List[Case]:
    table = randn(4, 1, 8, 8, 6)  # (1, H, W, D)

    def resized(mode, align_corners):
        def fn(pos_embed, size):
            grid = pos_embed.permute(0, 3, 1, 2)  # (1, D, H, W)
            grid = F.interpolate(grid, size=size, mode=mode, align_corners=align_corners)
            return grid.permute(0, 2, 3, 1)

        return lambda ours, run: run(fn)

    mistakes = [
        Mistake("the embedding is resized bilinearly: SAM uses bicubic interpolation "
                "(mode='bicubic', align_corners=False)", resized("bilinear", False)),
        Mistake("align_corners=True: SAM resizes with align_corners=False", resized("bicubic", True)),
    ]

    def hint(name, want, got):
        if len(got) == 4 and got[1] == table.shape[1] and got[2:] == want[1:3]:
            return ("F.interpolate resizes the last two axes: permute (1, H, W, D) to (1, D, H, W) "
                    "before it and back after")
        return None

    def case(size, label):
        return Case(label, run=lambda fn: fn(table.clone(), size), outputs=("pos_embed",), axes=("BHWC",),
                    mistakes=mistakes, shape_hint=hint)

    return [case((8, 8), "same size: returned unchanged"), case((12, 12), "8x8 -> 12x12"),
            case((6, 10), "8x8 -> 6x10 (not square)")]


def rel_pos_cases(cfg: SamConfig) -> List[Case]:
    def case(q_size, k_size, rows, label, seed):
        table = randn(seed, rows, 6)
        mistakes = [
            Mistake("the offsets are read backwards: index the table with q - k + (k_size - 1), "
                    "not k - q (or the result is (k_size, q_size, C) instead of (q_size, k_size, C))",
                    lambda ours, run: run(lambda q, k, t: ours(q, k, t.flip(0)))),
            Mistake("the offset q - k is used as an index without shifting it: add k_size - 1 so the "
                    "most negative offset, -(k_size - 1), lands on row 0",
                    lambda ours, run: run(lambda q, k, t: ours(q, k, t.roll(k - 1, 0)))),
        ]
        return Case(label, run=lambda fn: fn(q_size, k_size, table.clone()), outputs=("rel_pos",),
                    axes=("QKC",), mistakes=mistakes)

    return [
        case(7, 7, 13, "q_size = k_size = 7, a table of 13 offsets", 5),
        case(7, 7, 9, "q_size = k_size = 7, a table of 9 rows: interpolate it to 13 first", 6),
        case(4, 8, 15, "q_size = 4, k_size = 8: query coordinates are scaled by 2", 7),
        case(8, 4, 15, "q_size = 8, k_size = 4: key coordinates are scaled by 2", 8),
    ]


def _pe_mistake(explanation, change_coords=None, change_output=None, matrix_scale=1.0):
    """Ours with its coordinate encoding altered (before or after the sin/cos)."""

    def variant(ours, run):
        def alter(other):
            original = type(other)._pe_encoding.__get__(other)
            other.positional_encoding_gaussian_matrix.mul_(matrix_scale)
            coords = change_coords or (lambda c: c)
            output = change_output or (lambda e: e)
            other._pe_encoding = lambda c: output(original(coords(c)))

        return run(modified_copy(ours, alter))

    return Mistake(explanation, variant)


def fourier_features_cases(cfg: SamConfig) -> List[Case]:
    F_ = cfg.prompt_encoder.embed_dim // 2
    h, w = 6, 8
    coords = torch.rand(2, 5, 2, generator=torch.Generator().manual_seed(9)) * torch.tensor([64.0, 48.0])
    common = [
        _pe_mistake("the factor 2π is missing: encode as sin(2π p B) and cos(2π p B)",
                    matrix_scale=1 / (2 * math.pi)),
        _pe_mistake("the coordinates are not mapped from [0, 1] to [-1, 1] (2 p - 1) before the "
                    "Gaussian matrix", change_coords=lambda c: (c + 1) / 2),
        _pe_mistake("sin and cos are in the wrong order: concatenate [sin, cos]",
                    change_output=lambda e: e.roll(F_, -1)),
        _pe_mistake("x and y are swapped: a point is (x, y) = (column, row), multiplied by the "
                    "(2, F) matrix in that order", change_coords=lambda c: c.flip(-1)),
    ]
    centre = _pe_mistake("the grid encodes the corner of each cell, not its centre: add 0.5 to the "
                         "row and column index before dividing by h and w",
                         change_coords=lambda c: c - torch.tensor([0.5 / w, 0.5 / h]))
    swapped_size = Mistake("x is divided by the image height: image_size is (H, W), so x / W and y / H",
                           lambda ours, run: ours.forward_with_coords(coords.clone(), (64, 48)))
    return [
        Case(f"forward(({h}, {w})): every cell of a {h}x{w} grid", run=lambda m: m((h, w)),
             outputs=("encoding",), axes=("CHW",), kwargs=stage_kwargs(cfg)["positional_encoding"],
             mistakes=[centre] + common),
        Case("forward_with_coords: 5 points in a 48x64 (H x W) image",
             run=lambda m: m.forward_with_coords(coords.clone(), (48, 64)), outputs=("encoding",),
             axes=("BNC",), kwargs=stage_kwargs(cfg)["positional_encoding"], mistakes=[swapped_size] + common),
    ]


# ----------------------------------------------------------------------------- lesson 03

def attention_cases(cfg: SamConfig) -> List[Case]:
    enc = cfg.image_encoder
    d = enc.embed_dim // enc.num_heads
    x = randn(10, 2, 6, 10, enc.embed_dim)
    y = randn(11, 2, 5, 7, enc.embed_dim)
    block = stage_kwargs(cfg)["encoder_block"]  # the attention takes the block's arguments it shares
    base = {key: block[key] for key in ("dim", "num_heads", "qkv_bias", "rel_pos_zero_init")}
    return [
        Case("a (2, 6, 10, D) grid with relative positions", run=lambda m: m(x.clone()),
             outputs=("tokens",), axes=("BHWC",), kwargs=dict(base, use_rel_pos=True, input_size=(6, 10)),
             mistakes=attention_mistakes(d, with_bias=True), factors=attention_factors(d)),
        Case("a (2, 5, 7, D) grid without relative positions", run=lambda m: m(y.clone()),
             outputs=("tokens",), axes=("BHWC",), kwargs=dict(base, use_rel_pos=False, input_size=None),
             mistakes=attention_mistakes(d), factors=attention_factors(d)),
    ]


def _block_attention(block, x, shift: int = 0):
    """The attention half of ``block`` on the normed ``x``, in windows when it has them; ``shift``
    rolls the grid first and back afterwards (the Swin-style shift SAM does not use)."""
    if block.window_size <= 0:
        return block.attn(x)
    H, W = x.shape[1], x.shape[2]
    if shift:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    windows, padded_hw = window_partition(x, block.window_size)
    y = window_unpartition(block.attn(windows), block.window_size, padded_hw, (H, W))
    return torch.roll(y, shifts=(shift, shift), dims=(1, 2)) if shift else y


def _block_mistakes(window_size: int) -> List[Mistake]:
    """Mistakes in the order of the block's steps: norms, residuals, windows."""

    def planted(forward):
        return lambda ours, run: run(lambda x: forward(ours, x))

    def post_norm(m, x):
        x = m.norm1(x + _block_attention(m, x))
        return m.norm2(x + m.mlp(x))

    def shifted(direction):
        def forward(m, x):
            x = x + _block_attention(m, m.norm1(x), shift=direction * (window_size // 2))
            return x + m.mlp(m.norm2(x))
        return forward

    mistakes = [
        Mistake("the norms come after the residual additions (post-norm, as in the original Transformer): "
                "SAM's ViT is pre-norm, x = x + attn(norm1(x)); x = x + mlp(norm2(x))", planted(post_norm)),
        Mistake("the attention's residual connection is missing: add the block's input back, "
                "x = x + attn(norm1(x))", planted(lambda m, x: (lambda y: y + m.mlp(m.norm2(y)))(
                    _block_attention(m, m.norm1(x))))),
        Mistake("the MLP's residual connection is missing: x = x + mlp(norm2(x))",
                planted(lambda m, x: m.mlp(m.norm2(x + _block_attention(m, m.norm1(x)))))),
        Mistake("the MLP reads x without norm2: SAM's block is x = x + mlp(norm2(x))",
                planted(lambda m, x: (lambda y: y + m.mlp(y))(x + _block_attention(m, m.norm1(x))))),
    ]
    if window_size > 0:
        shift_text = (f"the windows are shifted by {window_size // 2} tokens (Swin's shifted windows): SAM's "
                      "windows never move - partition the grid as it is, starting at token (0, 0), and let "
                      "the global blocks connect the windows")
        mistakes += [Mistake(shift_text, planted(shifted(+1))), Mistake(shift_text, planted(shifted(-1)))]
    return mistakes


def encoder_block_cases(cfg: SamConfig) -> List[Case]:
    enc = cfg.image_encoder
    d, w = enc.embed_dim // enc.num_heads, enc.window_size or 14
    H, W = w + w // 2, w + 2
    padded = (2 * w, 2 * w)
    x = randn(12, 2, H, W, enc.embed_dim)
    g = randn(13, 2, 6, 10, enc.embed_dim)
    base = dict(stage_kwargs(cfg)["encoder_block"], use_rel_pos=True)  # window_size, input_size per case
    attends_globally = Mistake(
        "this windowed block attends over the whole grid: split it into windows "
        "(window_partition), attend within each, and stitch them back (window_unpartition)",
        lambda ours, run: run(modified_copy(ours, lambda m: setattr(m, "window_size", 0))),
    )

    def unpadded_hint(name, want, got):
        if got[1:3] == padded:
            return (f"the output is still the padded {padded[0]}x{padded[1]} grid (windows not "
                    f"unpadded): window_unpartition must cut the padding away, back to {(H, W)}")
        return None

    return [
        Case(f"windowed block ({w}x{w} windows) on a {H}x{W} grid, padded to {padded[0]}x{padded[1]}",
             run=lambda m: m(x.clone()), outputs=("tokens",), axes=("BHWC",),
             kwargs=dict(base, window_size=w, input_size=(H, W)), shape_hint=unpadded_hint,
             mistakes=[attends_globally] + _block_mistakes(w) + attention_mistakes(d, with_bias=True),
             factors=attention_factors(d)),
        Case("global block on a 6x10 grid", run=lambda m: m(g.clone()), outputs=("tokens",), axes=("BHWC",),
             kwargs=dict(base, window_size=0, input_size=(6, 10)),
             mistakes=_block_mistakes(0) + attention_mistakes(d, with_bias=True), factors=attention_factors(d)),
    ]


def image_encoder_cases(cfg: SamConfig) -> List[Case]:
    enc = cfg.image_encoder
    d = enc.embed_dim // enc.num_heads
    image = randn(14, 1, enc.in_chans, enc.img_size, enc.img_size)
    kwargs = stage_kwargs(cfg)["image_encoder"]

    def every_block(window_size):
        return lambda m: [setattr(b, "window_size", window_size) for b in m.blocks]

    mistakes = [
        Mistake("the learned absolute position embedding (pos_embed) is not added to the patch tokens",
                lambda ours, run: run(modified_copy(ours, lambda m: m.pos_embed.data.zero_()))),
        Mistake(f"every block attends in windows: the blocks {tuple(enc.global_attn_indexes)} "
                "(global_attn_indexes) must attend globally (window_size=0)",
                lambda ours, run: run(modified_copy(ours, every_block(enc.window_size)))),
        Mistake("every block attends globally: all blocks except global_attn_indexes use windows",
                lambda ours, run: run(modified_copy(ours, every_block(0)))),
    ] + attention_mistakes(d, with_bias=True)
    return [
        Case(f"a (1, 3, {enc.img_size}, {enc.img_size}) image", run=lambda m: m(image.clone()),
             outputs=("image_embedding",), axes=("BCHW",), kwargs=kwargs, mistakes=mistakes)
    ]
