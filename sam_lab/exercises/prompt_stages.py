"""Checkers for the prompt side (lessons 04-06): prompt encoder, two-way attention, mask head."""
from __future__ import annotations

import copy
from typing import List

import torch

from ..config import SamConfig, stage_kwargs
from ..modeling.two_way_transformer import TwoWayTransformer
from .engine import Case, Mistake, attention_mistakes, modified_copy
from .image_stages import randn

SPARSE_DENSE = dict(outputs=("sparse_embeddings", "dense_embeddings"), axes=("BNC", "BCHW"))


def _swap_embeddings(a: int, b: int):
    def change(encoder):
        first, second = encoder.point_embeddings[a].weight, encoder.point_embeddings[b].weight
        first.data, second.data = second.data.clone(), first.data.clone()

    return change


def prompt_encoder_cases(cfg: SamConfig) -> List[Case]:
    size, grid = cfg.image_encoder.img_size, cfg.image_encoder.grid_size
    g = torch.Generator().manual_seed(20)
    coords = torch.rand(2, 3, 2, generator=g) * (size - 1)
    labels = torch.tensor([[1, 0, 1], [1, 1, 0]])
    corners = torch.rand(2, 2, 2, generator=g) * (size - 1)
    boxes = torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)  # x0 y0 x1 y1
    masks = randn(21, 2, 1, 4 * grid, 4 * grid)
    kwargs = stage_kwargs(cfg)["prompt_encoder"]

    def prompts(points, box, mask):
        return dict(points=(coords.clone(), labels.clone()) if points else None,
                    boxes=boxes.clone() if box else None, masks=masks.clone() if mask else None)

    def unshifted(ours):  # ours(p - 0.5) is ours without the +0.5 shift, at p
        def encode(points=None, boxes=None, masks=None):
            points = None if points is None else (points[0] - 0.5, points[1])
            return ours(points=points, boxes=None if boxes is None else boxes - 0.5, masks=masks)

        return encode

    def padding_with_position(ours, run):
        sparse, dense = run(ours)
        pe = ours.pe_layer.forward_with_coords(torch.zeros(2, 1, 2), ours.input_image_size)
        return torch.cat([sparse[:, :-1], sparse[:, -1:] + pe], dim=1), dense

    shift = Mistake("the +0.5 pixel-centre shift is missing: add 0.5 to point and box coordinates "
                    "before encoding them (a click names the centre of a pixel)",
                    lambda ours, run: run(unshifted(ours)))
    labels_swapped = Mistake("positive and negative points use each other's embedding: label 1 adds "
                             "point_embeddings[1], label 0 adds point_embeddings[0]",
                             lambda ours, run: run(modified_copy(ours, _swap_embeddings(0, 1))))
    corners_swapped = Mistake("the box corners use each other's embedding: the top-left corner adds "
                              "point_embeddings[2], the bottom-right point_embeddings[3]",
                              lambda ours, run: run(modified_copy(ours, _swap_embeddings(2, 3))))
    padding_pe = Mistake("the padding point (label -1) carries a position: zero its Fourier features, "
                         "it gets only the 'not a point' embedding", padding_with_position)

    def hint(points, box):
        def explain(name, want, got):
            if name != "sparse_embeddings" or len(got) != 3 or got[::2] != want[::2]:
                return None
            if points and not box and got[1] == want[1] - 1:
                return ("one token short - the padding point is missing: with points and no box, SAM "
                        "appends a point at (0, 0) with label -1 ('not a point')")
            if points and box and got[1] == want[1] + 1:
                return "one token too many: the padding point is appended only when no box is given"
            return None

        return explain

    def case(label, points=False, box=False, mask=False, mistakes=()):
        return Case(label, run=lambda m: m(**prompts(points, box, mask)), kwargs=kwargs, mistakes=mistakes,
                    shape_hint=hint(points, box), **SPARSE_DENSE)

    return [
        case("3 points per prompt, no box (a padding point is added)", points=True,
             mistakes=[shift, labels_swapped, padding_pe]),
        case("3 points and a box", points=True, box=True, mistakes=[shift, labels_swapped, corners_swapped]),
        case("a box only", box=True, mistakes=[shift, corners_swapped]),
        case("a mask prompt only", mask=True),
        Case("get_dense_pe(): Fourier features of every image-embedding cell", run=lambda m: m.get_dense_pe(),
             outputs=("dense_pe",), axes=("BCHW",), kwargs=kwargs),
    ]


def _two_way_sizes(cfg: SamConfig):
    dec = cfg.mask_decoder
    return (dec.transformer_dim, dec.transformer_num_heads, dec.transformer_mlp_dim,
            dec.attention_downsample_rate)


def _block_by_hand(m, queries, keys, query_pe, key_pe, *, pe_in_values=False, self_attn_residual=None,
                   pre_norm=False):
    """A two-way block's forward with one planted mistake, on the block ``m``'s own modules.

    pe_in_values: the positions are added to the values too (SAM adds them to queries and keys only).
    self_attn_residual: True or False forces a residual around step 1 whatever skip_first_layer_pe
    says (None: as SAM does, a residual exactly when the block does not skip the PE).
    pre_norm: each LayerNorm is applied to a step's input (x + f(norm(x))), not after the residual."""
    skip = m.skip_first_layer_pe
    residual = (not skip) if self_attn_residual is None else self_attn_residual

    def step(x, norm, f):
        return x + f(norm(x)) if pre_norm else norm(x + f(x))

    def self_attention(x):
        if skip:
            return m.self_attn(q=x, k=x, v=x)
        q = x + query_pe
        return m.self_attn(q=q, k=q, v=q if pe_in_values else x)

    if pre_norm:
        queries = step(queries, m.norm1, self_attention) if residual else self_attention(m.norm1(queries))
    else:
        queries = m.norm1(queries + self_attention(queries) if residual else self_attention(queries))
    t2i = lambda x: m.cross_attn_token_to_image(q=x + query_pe, k=keys + key_pe,
                                               v=keys + key_pe if pe_in_values else keys)
    queries = step(queries, m.norm2, t2i)
    queries = step(queries, m.norm3, m.mlp)
    i2t = lambda y: m.cross_attn_image_to_token(q=y + key_pe, k=queries + query_pe,
                                               v=queries + query_pe if pe_in_values else queries)
    keys = step(keys, m.norm4, i2t)
    return queries, keys


def two_way_block_cases(cfg: SamConfig) -> List[Case]:
    C, heads, mlp_dim, rate = _two_way_sizes(cfg)
    queries, query_pe = randn(30, 2, 7, C), randn(31, 2, 7, C)
    keys, key_pe = randn(32, 2, 48, C), randn(33, 2, 48, C)

    def call(m, q_pe, k_pe):
        return m(queries=queries.clone(), keys=keys.clone(), query_pe=q_pe.clone(), key_pe=k_pe.clone())

    def by_hand(**mistake):
        return lambda ours, run: _block_by_hand(ours, queries.clone(), keys.clone(), query_pe.clone(),
                                                key_pe.clone(), **mistake)

    def case(skip):
        def flag_flipped(m):
            m.skip_first_layer_pe = not skip

        mistakes = [
            Mistake("the positional encodings are not re-added: every attention's queries and keys "
                    "get query_pe / key_pe added (values do not)",
                    lambda ours, run: call(ours, torch.zeros_like(query_pe), torch.zeros_like(key_pe))),
            Mistake("the positional encodings are added to the values too: SAM adds query_pe / key_pe to "
                    "the queries and keys only (they decide who attends to whom), the values are the "
                    "tokens and image cells as they are, e.g. cross_attn_token_to_image(q=queries + "
                    "query_pe, k=keys + key_pe, v=keys)", by_hand(pe_in_values=True)),
            Mistake("skip_first_layer_pe is not followed: when it is True the first self-attention "
                    "uses the tokens as they are, with no residual and no query_pe",
                    lambda ours, run: run(modified_copy(ours, flag_flipped))),
        ]
        if skip:
            mistakes.append(Mistake(
                "with skip_first_layer_pe=True the first self-attention has no residual: queries = "
                "norm1(self_attn(q=queries, k=queries, v=queries)), not queries + self_attn(...)",
                by_hand(self_attn_residual=True)))
        else:
            mistakes.append(Mistake(
                "the self-attention's residual is missing: only the first block (skip_first_layer_pe=True) "
                "drops it; every later block does queries = norm1(queries + self_attn(q, q, queries)) "
                "with q = queries + query_pe", by_hand(self_attn_residual=False)))
        mistakes.append(Mistake(
            "the LayerNorms are applied before each step (pre-norm: x + f(norm(x))); SAM's two-way block "
            "is post-norm: x = norm(x + f(x)) after every residual step", by_hand(pre_norm=True)))
        mistakes += attention_mistakes()
        kwargs = dict(stage_kwargs(cfg)["two_way_block"], skip_first_layer_pe=skip)
        return Case(f"7 tokens, 48 image cells, skip_first_layer_pe={skip}",
                    run=lambda m: call(m, query_pe, key_pe),
                    outputs=("queries", "keys"), axes=("BNC", "BNC"), kwargs=kwargs, mistakes=mistakes)

    return [case(False), case(True)]


def _positions_only_in_the_first_block(ours, image, image_pe, tokens):
    """The transformer with query_pe / key_pe given to the first block only (a likely mistake)."""
    keys, key_pe = image.flatten(2).transpose(1, 2), image_pe.flatten(2).transpose(1, 2)
    queries = tokens
    for index, layer in enumerate(ours.layers):
        q_pe, k_pe = (tokens, key_pe) if index == 0 else (torch.zeros_like(tokens), torch.zeros_like(key_pe))
        queries, keys = layer(queries=queries, keys=keys, query_pe=q_pe, key_pe=k_pe)
    attn = ours.final_attn_token_to_image(q=queries, k=keys, v=keys)
    return ours.norm_final_attn(queries + attn), keys


def two_way_attention_cases(cfg: SamConfig) -> List[Case]:
    C, heads, mlp_dim, rate = _two_way_sizes(cfg)
    image, image_pe, tokens = randn(40, 2, C, 6, 8), randn(41, 2, C, 6, 8), randn(42, 2, 7, C)
    kwargs = stage_kwargs(cfg)["two_way_attention"]
    no_image_pe = Mistake("the image positional encoding (image_pe) is not added to the image keys",
                          lambda ours, run: ours(image.clone(), torch.zeros_like(image_pe), tokens.clone()))
    first_block_only = Mistake(
        "the positions reach only the first block: every block gets query_pe=point_embedding (the tokens "
        "as they came in) and key_pe=image_pe, and the final token -> image attention adds them too "
        "(q = queries + point_embedding, k = keys + key_pe)",
        lambda ours, run: _positions_only_in_the_first_block(ours, image.clone(), image_pe.clone(), tokens.clone()))
    return [
        Case("7 tokens and a 6x8 image embedding",
             run=lambda m: m(image.clone(), image_pe.clone(), tokens.clone()),
             outputs=("queries", "keys"), axes=("BNC", "BNC"), kwargs=kwargs,
             mistakes=[no_image_pe, first_block_only] + attention_mistakes())
    ]


def mask_decoder_cases(cfg: SamConfig) -> List[Case]:
    dec = cfg.mask_decoder
    C, heads, mlp_dim, rate = _two_way_sizes(cfg)
    image, image_pe = randn(50, 1, C, 6, 8), randn(51, 1, C, 6, 8)
    sparse, dense = randn(52, 2, 3, C), randn(53, 2, C, 6, 8)
    kwargs = dict(stage_kwargs(cfg)["mask_decoder"], transformer=TwoWayTransformer(**stage_kwargs(cfg)["two_way_attention"]))

    def call(m, multimask, dense_prompt):
        return m(image_embeddings=image.clone(), image_pe=image_pe.clone(),
                 sparse_prompt_embeddings=sparse.clone(), dense_prompt_embeddings=dense_prompt.clone(),
                 multimask_output=multimask)

    def chosen(which):
        def variant(ours, run):
            masks, iou = ours.predict_masks(image, image_pe, sparse, dense)
            return masks[:, which], iou[:, which]

        return variant

    def hint(name, want, got):
        if len(got) >= 2 and got[1] == dec.num_multimask_outputs + 1 != want[1]:
            return ("all mask tokens' outputs are returned: with multimask_output=True keep masks 1.. "
                    "(the ambiguity candidates), with False only mask 0")
        return None

    first = Mistake("with multimask_output=True SAM returns masks 1, 2, 3; mask 0 is the single-mask answer",
                    chosen(slice(0, dec.num_multimask_outputs)))
    wrong_single = [Mistake("with multimask_output=False SAM returns mask 0 (the single-answer token)",
                            chosen(slice(i, i + 1))) for i in range(1, dec.num_multimask_outputs + 1)]

    def case(multimask, mistakes):
        no_dense = Mistake("the dense prompt embedding is not added to the image embedding",
                           lambda ours, run: call(ours, multimask, torch.zeros_like(dense)))
        return Case(f"2 prompt sets of 3 tokens, multimask_output={multimask}",
                    run=lambda m: call(m, multimask, dense),
                    outputs=("masks", "iou_predictions"), axes=("BMHW", "BM"), kwargs=kwargs,
                    mistakes=[no_dense] + mistakes, shape_hint=hint)

    return [case(True, [first]), case(False, wrong_single)]


def text_projection_cases(cfg: SamConfig) -> List[Case]:
    """Lesson 13: a CLIP embedding (B, D) -> text prompt tokens (B, T, C), like TextPromptEncoder."""
    C = cfg.prompt_encoder.embed_dim
    D, T = 32, 3
    clip = randn(60, 4, D)
    center, scale = 0.1 * randn(61, D), 0.5 + randn(62, D).abs()

    def run(m, standardise=True):
        with torch.no_grad():  # the training captions' statistics, which fit_standardisation would set
            m.center.copy_(center if standardise else torch.zeros(D))
            m.scale.copy_(scale if standardise else torch.ones(D))
        return m(clip.clone())

    def token_major(ours, _):
        x = (clip - center) / scale
        return ours.proj(x).view(len(x), C, T).transpose(1, 2) + ours.type_embed

    mistakes = [
        Mistake("the embedding is not standardised with `center` and `scale` before the MLP",
                lambda ours, _: run(copy.deepcopy(ours), standardise=False)),
        Mistake("the type embedding (`type_embed`) is not added to the tokens",
                lambda ours, _: run(ours) - ours.type_embed),
        Mistake("the MLP's output is cut into tokens in the wrong order: view it as (B, T, C), token by token",
                token_major),
    ]
    return [Case(f"4 embeddings of width {D} -> {T} tokens of width {C}", run=run, outputs=("tokens",),
                 axes=("BNC",), kwargs=dict(clip_dim=D, embed_dim=C, num_tokens=T, hidden_dim=24), mistakes=mistakes)]


