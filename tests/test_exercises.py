"""The stage checkers pass our own stages and name each planted learner mistake.

Every buggy learner below is ours with exactly one thing broken, the way a learner might
break it; the checker must fail it and its explanation must name the cause.
"""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sam_lab
from sam_lab.modeling.text_prompt import TextPromptEncoder
from sam_lab import exercises
from sam_lab.modeling.attention import Attention
from sam_lab.modeling.image_encoder import Block, ImageEncoder
from sam_lab.modeling.mask_decoder import MaskDecoder
from sam_lab.modeling.patching import PatchEmbed, window_partition, window_unpartition
from sam_lab.modeling.positional_encoding import (
    PositionEmbeddingRandom,
    decomposed_rel_pos_bias,
    get_rel_pos,
    resize_absolute_pos_embed,
)
from sam_lab.modeling.prompt_encoder import PromptEncoder
from sam_lab.modeling.two_way_transformer import DecoderAttention
from sam_lab.modeling.two_way_transformer import TwoWayAttentionBlock, TwoWayTransformer

torch.set_num_threads(2)

from sam_lab.inference.amg import box_nms, stability_score  # noqa: E402

OURS = {
    "patch_embed": PatchEmbed,
    "window_partition": (window_partition, window_unpartition),
    "absolute_pos_embed": resize_absolute_pos_embed,
    "rel_pos": get_rel_pos,
    "fourier_features": PositionEmbeddingRandom,
    "attention": Attention,
    "encoder_block": Block,
    "image_encoder": ImageEncoder,
    "prompt_encoder": PromptEncoder,
    "two_way_block": TwoWayAttentionBlock,
    "two_way_attention": TwoWayTransformer,
    "mask_decoder": MaskDecoder,
    "stability_score": stability_score,
    "box_nms": box_nms,
    "text_projection": TextPromptEncoder,
}


def fails_with(stage, learner, *phrases):
    result = exercises.check(stage, learner, verbose=False)
    assert not result.passed, f"{stage}: a planted mistake passed"
    assert not result
    for phrase in phrases:
        assert phrase in result.message, f"expected {phrase!r} in:\n{result.message}"
    return result


# ----------------------------------------------------------------------------- our own stages pass

def test_every_stage_is_listed_with_a_description():
    assert list(exercises.CHECKS) == list(OURS)
    assert all(isinstance(text, str) and text for text in exercises.CHECKS.values())


@pytest.mark.parametrize("stage", list(OURS))
def test_our_own_implementation_passes_its_checker(stage):
    result = exercises.check(stage, OURS[stage], verbose=False)
    assert result.passed and bool(result), result.message
    assert result.message.startswith("✓") and result.max_abs_diff < 1e-4


def test_check_prints_a_friendly_message_only_when_verbose(capsys):
    exercises.check("patch_embed", PatchEmbed)
    assert capsys.readouterr().out.startswith("✓ patch_embed: your PatchEmbed matches ours")
    exercises.check("patch_embed", PatchEmbed, verbose=False)
    assert capsys.readouterr().out == ""


def test_assert_passes_raises_with_the_explanation():
    exercises.assert_passes("rel_pos", get_rel_pos, verbose=False)
    with pytest.raises(AssertionError, match="backwards"):
        exercises.assert_passes("rel_pos", lambda q, k, t: get_rel_pos(q, k, t.flip(0)), verbose=False)


def test_check_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    exercises.check("encoder_block", Block, verbose=False)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="stage: expected one of"):
        exercises.check("vit", PatchEmbed)


def test_a_built_module_is_checked_on_the_cases_it_was_built_for():
    windowed = Block(dim=96, num_heads=4, use_rel_pos=True, window_size=16, input_size=(24, 18))  # tiny's windowed case
    result = exercises.check("encoder_block", windowed, verbose=False)
    assert result.passed and "1 case(s) need another configuration" in result.message


# ----------------------------------------------------------------------------- lesson 01

class ChannelsFirstPatchEmbed(PatchEmbed):
    def forward(self, x):
        return self.proj(x)  # forgot the permute to channels-last


class ScaledPatchEmbed(PatchEmbed):
    def forward(self, x):
        return super().forward(x) * sam_lab.TINY.image_encoder.patch_size  # 8


class RenamedPatchEmbed(nn.Module):
    def __init__(self, kernel_size, stride, in_chans, embed_dim):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, embed_dim, kernel_size, stride)

    def forward(self, x):
        return self.conv(x).permute(0, 2, 3, 1)


class PatchEmbedWithOtherArguments(nn.Module):
    def __init__(self, patch_size, dim):
        super().__init__()


def test_patch_embed_mistakes_are_named():
    fails_with("patch_embed", ChannelsFirstPatchEmbed, "looks like (B, C, H, W) where (B, H, W, C) was")
    fails_with("patch_embed", ScaledPatchEmbed, "factor of 8 = patch_size")
    fails_with("patch_embed", RenamedPatchEmbed, "'proj.weight'", "'conv.weight'")
    fails_with("patch_embed", PatchEmbedWithOtherArguments, "building yours with our keyword arguments")


def unpartition_without_crop(windows, window_size, padded_hw, hw):
    return window_unpartition(windows, window_size, padded_hw, padded_hw)


def partition_in_column_order(x, window_size):
    windows, (Hp, Wp) = window_partition(x, window_size)
    B, C, nh, nw = x.shape[0], x.shape[-1], Hp // window_size, Wp // window_size
    windows = windows.reshape(B, nh, nw, window_size, window_size, C).transpose(1, 2)
    return windows.reshape(-1, window_size, window_size, C), (Hp, Wp)


def partition_padding_top_left(x, window_size):
    pad_h, pad_w = (-x.shape[1]) % window_size, (-x.shape[2]) % window_size
    return window_partition(F.pad(x, (0, 0, pad_w, 0, pad_h, 0)), window_size)


def test_window_mistakes_are_named():
    fails_with("window_partition", (window_partition, unpartition_without_crop), "windows not unpadded")
    fails_with("window_partition", (partition_in_column_order, window_unpartition), "another order")
    fails_with("window_partition", (partition_padding_top_left, window_unpartition), "wrong side")


# ----------------------------------------------------------------------------- lesson 02

def resize_bilinear(pos_embed, size):
    grid = F.interpolate(pos_embed.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False)
    return grid.permute(0, 2, 3, 1)


def resize_without_permute(pos_embed, size):
    return F.interpolate(pos_embed, size=size, mode="bicubic", align_corners=False)


def test_absolute_pos_embed_mistakes_are_named():
    fails_with("absolute_pos_embed", resize_bilinear, "bicubic")
    fails_with("absolute_pos_embed", resize_without_permute, "permute (1, H, W, D) to (1, D, H, W)")


def rel_pos_unshifted(q_size, k_size, rel_pos):
    index = torch.arange(q_size)[:, None] - torch.arange(k_size)[None, :]
    return rel_pos[index]  # negative offsets wrap around to the end of the table


def test_rel_pos_mistakes_are_named():
    fails_with("rel_pos", lambda q, k, t: get_rel_pos(q, k, t).transpose(0, 1), "backwards")
    fails_with("rel_pos", rel_pos_unshifted, "without shifting")


class CornerFourier(PositionEmbeddingRandom):
    def forward(self, size):
        h, w = size
        ys, xs = torch.arange(h) / h, torch.arange(w) / w  # forgot the +0.5 cell centre
        grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
        return self._pe_encoding(grid).permute(2, 0, 1)


class CosSinFourier(PositionEmbeddingRandom):
    def _pe_encoding(self, coords):
        coords = 2 * math.pi * ((2 * coords - 1) @ self.positional_encoding_gaussian_matrix)
        return torch.cat([torch.cos(coords), torch.sin(coords)], dim=-1)


class NoTwoPiFourier(PositionEmbeddingRandom):
    def _pe_encoding(self, coords):
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)


class HeightFirstFourier(PositionEmbeddingRandom):
    def forward_with_coords(self, coords_input, image_size):
        return super().forward_with_coords(coords_input, image_size[::-1])


def test_fourier_feature_mistakes_are_named():
    fails_with("fourier_features", CornerFourier, "centre")
    fails_with("fourier_features", CosSinFourier, "wrong order")
    fails_with("fourier_features", NoTwoPiFourier, "2π")
    fails_with("fourier_features", HeightFirstFourier, "divided by the image height")


# ----------------------------------------------------------------------------- lesson 03

class MistakenAttention(Attention):
    """Our attention written out by hand, with ``mistake`` planted."""

    mistake = None

    def forward(self, x):
        B, H, W, D = x.shape
        N, h, d = H * W, self.num_heads, self.head_dim
        q, k, v = self.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        logits = (q * (1.0 if self.mistake == "no_scale" else d**-0.5)) @ k.transpose(-2, -1)
        if self.mistake == "transposed":
            logits = logits.transpose(-2, -1)  # k q^T
        if self.use_rel_pos and self.mistake != "no_rel_pos":
            q_flat = q.reshape(B * h, N, d)
            bias = decomposed_rel_pos_bias(q_flat, self.rel_pos_h, self.rel_pos_w, (H, W), (H, W))
            logits = logits + bias.view(B, h, N, N)
        weights = logits.softmax(dim=-2 if self.mistake == "softmax_axis" else -1)
        out = self.proj((weights @ v).permute(0, 2, 1, 3).reshape(B, H, W, D))
        return out * math.sqrt(d) if self.mistake == "output_scaled" else out


def mistaken(cls, mistake):
    return type(f"{cls.__name__}_{mistake}", (cls,), {"mistake": mistake})


@pytest.mark.parametrize(
    "mistake, phrase",
    [
        ("no_scale", "not divided by sqrt(head_dim) = 4.899: check the 1/sqrt(d) scaling"),
        ("softmax_axis", "softmax runs over the wrong axis"),
        ("transposed", "attention matrix is transposed"),
        ("no_rel_pos", "relative position bias is missing"),
        ("output_scaled", "off by a factor of 4.899 = sqrt(head_dim): check the 1/sqrt(d) scaling"),
    ],
)
def test_attention_mistakes_are_named(mistake, phrase):
    fails_with("attention", mistaken(MistakenAttention, mistake), phrase)
    # the same mistake inside a block and inside the whole encoder is found there too
    if mistake in ("no_scale", "no_rel_pos"):
        attention = mistaken(MistakenAttention, mistake)
        block = type("BlockWithMistake", (Block,), {"__init__": _block_with(attention)})
        fails_with("encoder_block", block, phrase)


def _block_with(attention_cls):
    def __init__(self, **kwargs):
        Block.__init__(self, **kwargs)
        self.attn.__class__ = attention_cls

    return __init__


class UnpaddedBlock(Block):
    def forward(self, x):
        shortcut, x = x, self.norm1(x)
        if self.window_size > 0:
            x, padded_hw = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(x), self.window_size, padded_hw, padded_hw)  # no crop
            pad_h, pad_w = x.shape[1] - shortcut.shape[1], x.shape[2] - shortcut.shape[2]
            shortcut = F.pad(shortcut, (0, 0, 0, pad_w, 0, pad_h))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class AlwaysGlobalBlock(Block):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.window_size = 0


class ReluBlock(Block):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.mlp.act = nn.ReLU()


class NoAbsolutePositionEncoder(ImageEncoder):
    def forward(self, x):
        x = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))


class PostNormBlock(Block):
    def forward(self, x):
        shortcut, y = x, x
        if self.window_size > 0:
            y, padded_hw = window_partition(y, self.window_size)
            y = window_unpartition(self.attn(y), self.window_size, padded_hw, shortcut.shape[1:3])
        else:
            y = self.attn(y)
        x = self.norm1(shortcut + y)
        return self.norm2(x + self.mlp(x))


class ShiftedWindowBlock(Block):
    def forward(self, x):
        shortcut, x = x, self.norm1(x)
        s = self.window_size // 2
        x = torch.roll(x, shifts=(s, s), dims=(1, 2))  # a learner who remembers Swin
        x, padded_hw = window_partition(x, self.window_size)
        x = window_unpartition(self.attn(x), self.window_size, padded_hw, shortcut.shape[1:3])
        x = shortcut + torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        return x + self.mlp(self.norm2(x))


class NoMlpResidualBlock(Block):
    def forward(self, x):
        y = super().forward(x)  # x + a + mlp(norm2(x + a)); the learner drops the "x + a"
        shortcut, h = x, self.norm1(x)
        h, padded_hw = window_partition(h, self.window_size)
        a = window_unpartition(self.attn(h), self.window_size, padded_hw, shortcut.shape[1:3])
        return y - (shortcut + a)


def test_block_mistakes_a_learner_brings_from_other_transformers_are_named():
    fails_with("encoder_block", PostNormBlock, "post-norm", "pre-norm")
    fails_with("encoder_block", ShiftedWindowBlock, "shifted by", "Swin")
    fails_with("encoder_block", NoMlpResidualBlock, "MLP's residual connection is missing")


def test_encoder_mistakes_are_named():
    fails_with("encoder_block", UnpaddedBlock, "windows not unpadded", "padded 32x32 grid")
    fails_with("encoder_block", AlwaysGlobalBlock, "attends over the whole grid")
    fails_with("encoder_block", ReluBlock, "`tokens` differs from ours by up to", "the largest at (B=")
    fails_with("image_encoder", NoAbsolutePositionEncoder, "position embedding (pos_embed) is not added")


# ----------------------------------------------------------------------------- lessons 04-06

class NoShiftPromptEncoder(PromptEncoder):
    def _embed_points(self, points, labels, pad):
        return super()._embed_points(points - 0.5, labels, pad)

    def _embed_boxes(self, boxes):
        return super()._embed_boxes(boxes - 0.5)


class NoPaddingPromptEncoder(PromptEncoder):
    def _embed_points(self, points, labels, pad):
        return super()._embed_points(points, labels, pad=False)


class BlockWithoutPositions(TwoWayAttentionBlock):
    def forward(self, queries, keys, query_pe, key_pe):
        return super().forward(queries, keys, torch.zeros_like(query_pe), torch.zeros_like(key_pe))


class SoftmaxOverQueries(DecoderAttention):
    def forward(self, q, k, v):
        projections = (self.q_proj, self.k_proj, self.v_proj)
        q, k, v = (self._split_heads(proj(x)) for proj, x in zip(projections, (q, k, v)))
        weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-2)
        out = weights @ v
        B, h, N, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, N, h * d))


class TransformerWithWrongSoftmax(TwoWayTransformer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for module in self.modules():
            if isinstance(module, DecoderAttention):
                module.__class__ = SoftmaxOverQueries


class FirstThreeMasksDecoder(MaskDecoder):
    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                multimask_output):
        masks, iou = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                        dense_prompt_embeddings)
        chosen = slice(0, 3) if multimask_output else slice(0, 1)
        return masks[:, chosen], iou[:, chosen]


def test_prompt_side_mistakes_are_named():
    fails_with("prompt_encoder", NoShiftPromptEncoder, "+0.5 pixel-centre shift is missing")
    fails_with("prompt_encoder", NoPaddingPromptEncoder, "padding point is missing")
    fails_with("two_way_block", BlockWithoutPositions, "positional encodings are not re-added")
    fails_with("two_way_attention", TransformerWithWrongSoftmax, "softmax runs over the wrong axis")
    fails_with("mask_decoder", FirstThreeMasksDecoder, "SAM returns masks 1, 2, 3")


def test_a_learner_that_raises_is_reported():
    def broken(q_size, k_size, rel_pos):
        raise IndexError("index 13 is out of bounds")

    result = fails_with("rel_pos", broken, "yours raised IndexError: index 13 is out of bounds")
    assert result.max_abs_diff is None


# ----------------------------------------------------------------------------- lesson 13: the text projection

class _NoStandardisation(TextPromptEncoder):
    def forward(self, clip_embeddings):
        return self.proj(clip_embeddings).view(len(clip_embeddings), self.num_tokens, self.embed_dim) + self.type_embed


class _NoTypeEmbedding(TextPromptEncoder):
    def forward(self, clip_embeddings):
        return super().forward(clip_embeddings) - self.type_embed


class _ChannelMajor(TextPromptEncoder):
    def forward(self, clip_embeddings):
        x = (clip_embeddings - self.center) / self.scale
        return self.proj(x).view(len(x), self.embed_dim, self.num_tokens).transpose(1, 2) + self.type_embed


@pytest.mark.parametrize("learner, phrase", [
    (_NoStandardisation, "not standardised"),
    (_NoTypeEmbedding, "type embedding"),
    (_ChannelMajor, "wrong order"),
])
def test_text_projection_mistakes_are_named(learner, phrase):
    fails_with("text_projection", learner, phrase)
