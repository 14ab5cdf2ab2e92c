"""Lessons 04-06: the checkers name a learner's likely mistakes in the prompt encoder's point
embedding, the two-way block and transformer, and the mask head's product and selection."""
from __future__ import annotations

import pytest
import torch

from sam_lab import exercises
from sam_lab.exercises.solutions import lesson_04, lesson_05, lesson_06
from sam_lab.modeling.two_way_transformer import TwoWayAttentionBlock, TwoWayTransformer


# ----------------------------------------------------------------------------- lesson 05: two-way block

def block_forward(mistake=None):
    """A learner's two-way block forward, written out, with one mistake (or none)."""

    def forward(block, queries, keys, query_pe, key_pe):
        values_pe = mistake == "pe_in_values"
        if mistake == "pre_norm":  # every step as x + f(norm(x)), the way a GPT block is written
            x = block.norm1(queries)
            if block.skip_first_layer_pe:
                queries = block.self_attn(q=x, k=x, v=x)
            else:
                queries = queries + block.self_attn(q=x + query_pe, k=x + query_pe, v=x)
            x = block.norm2(queries)
            queries = queries + block.cross_attn_token_to_image(q=x + query_pe, k=keys + key_pe, v=keys)
            queries = queries + block.mlp(block.norm3(queries))
            y = block.norm4(keys)
            keys = keys + block.cross_attn_image_to_token(q=y + key_pe, k=queries + query_pe, v=queries)
            return queries, keys
        if block.skip_first_layer_pe:
            attn = block.self_attn(q=queries, k=queries, v=queries)
            queries = block.norm1(queries + attn if mistake == "residual_in_first" else attn)
        else:
            q = queries + query_pe
            attn = block.self_attn(q=q, k=q, v=q if values_pe else queries)
            queries = block.norm1(attn if mistake == "no_residual_later" else queries + attn)
        q, k = queries + query_pe, keys + key_pe
        queries = block.norm2(queries + block.cross_attn_token_to_image(q=q, k=k, v=k if values_pe else keys))
        queries = block.norm3(queries + block.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = block.norm4(keys + block.cross_attn_image_to_token(q=k, k=q, v=q if values_pe else queries))
        return queries, keys

    return forward


def block_class(mistake):
    forward = block_forward(mistake)

    class LearnerBlock(TwoWayAttentionBlock):
        def forward(self, queries, keys, query_pe, key_pe):
            return forward(self, queries, keys, query_pe, key_pe)

    return LearnerBlock


def test_a_correct_two_way_block_forward_passes_the_stage_and_the_turn():
    assert exercises.check("two_way_block", block_class(None), verbose=False).passed
    assert lesson_05.check_block_forward(block_forward(None)).passed


@pytest.mark.parametrize("mistake,explanation", [
    ("pe_in_values", "added to the values too"),
    ("no_residual_later", "the self-attention's residual is missing"),
    ("residual_in_first", "the first self-attention has no residual"),
    ("pre_norm", "pre-norm"),
])
def test_a_two_way_block_mistake_gets_its_explanation(mistake, explanation):
    result = exercises.check("two_way_block", block_class(mistake), verbose=False)
    assert not result.passed and explanation in result.message, result.message
    turn = lesson_05.check_block_forward(block_forward(mistake))  # the lesson's exercise says the same
    assert not turn.passed and explanation in turn.message, turn.message


def test_a_transformer_with_positions_only_in_the_first_block_is_told_so():
    class OnlyFirstBlock(TwoWayTransformer):
        def forward(self, image_embedding, image_pe, point_embedding):
            keys = image_embedding.flatten(2).transpose(1, 2)
            key_pe = image_pe.flatten(2).transpose(1, 2)
            queries = point_embedding
            for index, layer in enumerate(self.layers):
                if index == 0:
                    queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding, key_pe=key_pe)
                else:
                    zero_q, zero_k = torch.zeros_like(point_embedding), torch.zeros_like(key_pe)
                    queries, keys = layer(queries=queries, keys=keys, query_pe=zero_q, key_pe=zero_k)
            queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q=queries, k=keys, v=keys))
            return queries, keys

    result = exercises.check("two_way_attention", OnlyFirstBlock, verbose=False)
    assert not result.passed and "the positions reach only the first block" in result.message, result.message


# ----------------------------------------------------------------------------- lesson 04: point embedding

@pytest.mark.parametrize("explanation,mistaken", lesson_04.MISTAKES, ids=[f"mistake{i}" for i in range(len(lesson_04.MISTAKES))])
def test_a_point_embedding_mistake_gets_its_explanation(explanation, mistaken):
    result = lesson_04.check_embed_points(mistaken)
    assert not result.passed and explanation in result.message, result.message


def test_a_learner_who_forgets_the_shift_is_told_about_pixel_centres():
    def mine(encoder, coords, labels, pad):
        if pad:
            coords = torch.cat([coords, torch.zeros_like(coords[:, :1])], dim=1)
            labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
        tokens = encoder.pe_layer.forward_with_coords(coords, encoder.input_image_size)
        tokens[labels == -1] = 0.0
        tokens[labels == -1] += encoder.not_a_point_embed.weight
        for kind in range(4):
            tokens[labels == kind] += encoder.point_embeddings[kind].weight
        return tokens

    result = lesson_04.check_embed_points(mine)
    assert not result.passed and "pixel-centre shift" in result.message, result.message


def test_the_point_embedding_solution_passes():
    assert lesson_04.check_embed_points(lesson_04.embed_points).passed


# ----------------------------------------------------------------------------- lesson 06: mask head

@pytest.mark.parametrize("explanation,mistaken", lesson_06.PRODUCT_MISTAKES, ids=[f"mistake{i}" for i in range(len(lesson_06.PRODUCT_MISTAKES))])
def test_a_hypernetwork_product_mistake_gets_its_explanation(explanation, mistaken):
    result = lesson_06.check_masks_from_tokens(mistaken)
    assert not result.passed and explanation in result.message, result.message


def test_a_learner_who_uses_einsum_over_the_wrong_axes_is_told_the_masks_are_transposed():
    def mine(tokens, hypernetworks, features):
        w = torch.stack([mlp(tokens[:, i]) for i, mlp in enumerate(hypernetworks)], dim=1)
        return torch.einsum("bnc,bcxy->bnyx", w, features)

    result = lesson_06.check_masks_from_tokens(mine)
    assert not result.passed and "transposed" in result.message, result.message


@pytest.mark.parametrize("explanation,mistaken", lesson_06.SELECT_MISTAKES, ids=[f"mistake{i}" for i in range(len(lesson_06.SELECT_MISTAKES))])
def test_a_mask_selection_mistake_gets_its_explanation(explanation, mistaken):
    result = lesson_06.check_select_masks(mistaken)
    assert not result.passed and explanation in result.message, result.message


def test_the_mask_head_solutions_pass():
    assert lesson_06.check_masks_from_tokens(lesson_06.masks_from_tokens).passed
    assert lesson_06.check_select_masks(lesson_06.select_masks).passed
