"""Lesson 04, the prompt encoder: the point embedding (position + type), and its checker."""
from __future__ import annotations

import torch

from ...modeling.prompt_encoder import PromptEncoder
from ...weights.random_init import randomize
from ..engine import CheckResult
from ..turns import Turn, compare_function


def embed_points(encoder, coords, labels, pad):
    """coords (B, N, 2) in model-input pixels, labels (B, N) -> point tokens (B, N (+1), C).

    ``encoder`` holds pe_layer (Fourier features), input_image_size, point_embeddings (4 type
    vectors) and not_a_point_embed."""
    coords = coords + 0.5  # pixel index -> pixel centre
    if pad:  # points without a box: append the padding point (0, 0) with label -1
        coords = torch.cat([coords, torch.zeros_like(coords[:, :1])], dim=1)
        labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
    # forward_with_coords divides by the input size (-> [0, 1]), then takes the Fourier features
    tokens = encoder.pe_layer.forward_with_coords(coords, encoder.input_image_size)  # (B, N, C)
    is_padding = (labels == -1)[..., None]  # (B, N, 1)
    tokens = torch.where(is_padding, torch.zeros_like(tokens), tokens)  # padding carries no position
    tokens = tokens + is_padding * encoder.not_a_point_embed.weight  # ... only "not a point"
    for kind in range(4):  # 0 negative, 1 positive, 2 and 3 box corners
        tokens = tokens + (labels == kind)[..., None] * encoder.point_embeddings[kind].weight
    return tokens


# ----------------------------------------------------------------------------- likely mistakes

def _without(step):
    """embed_points as above with one step left out or done wrong (a planted mistake)."""

    def mistaken(encoder, coords, labels, pad):
        if step != "no_shift":
            coords = coords + 0.5
        if pad:
            coords = torch.cat([coords, torch.zeros_like(coords[:, :1])], dim=1)
            labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
        size = encoder.image_embedding_size if step == "grid_size" else encoder.input_image_size
        tokens = encoder.pe_layer.forward_with_coords(coords, size)
        is_padding = (labels == -1)[..., None]
        if step != "padding_position":
            tokens = torch.where(is_padding, torch.zeros_like(tokens), tokens)
        if step != "no_not_a_point":
            tokens = tokens + is_padding * encoder.not_a_point_embed.weight
        for kind in range(4):
            which = {0: 1, 1: 0}.get(kind, kind) if step == "labels_swapped" else kind
            if step != "no_type":
                tokens = tokens + (labels == kind)[..., None] * encoder.point_embeddings[which].weight
        return tokens

    return mistaken


MISTAKES = [
    ("the +0.5 pixel-centre shift is missing: add 0.5 to the coordinates before encoding them "
     "(a click on pixel i names the centre of that pixel, i + 0.5)", _without("no_shift")),
    ("the coordinates are normalised by the image-embedding grid, not by the model input: pass "
     "encoder.input_image_size to forward_with_coords (it divides by that size)", _without("grid_size")),
    ("positive and negative points use each other's embedding: label 1 adds point_embeddings[1], "
     "label 0 adds point_embeddings[0]", _without("labels_swapped")),
    ("the type embeddings are missing: add point_embeddings[label] to each point's Fourier features "
     "(labels 0..3)", _without("no_type")),
    ("the padding point (label -1) carries a position: zero its Fourier features, it gets only "
     "not_a_point_embed", _without("padding_position")),
    ("the padding point's 'not a point' embedding is missing: a label -1 token is exactly "
     "not_a_point_embed.weight", _without("no_not_a_point")),
]


def _point_cases():
    torch.manual_seed(0)
    encoder = randomize(PromptEncoder(embed_dim=16, image_embedding_size=(8, 8), input_image_size=(64, 64),
                                      mask_in_chans=8), seed=4).eval()
    g = torch.Generator().manual_seed(40)
    coords = torch.rand(2, 3, 2, generator=g) * 63
    labels = torch.tensor([[1, 0, 1], [0, 1, -1]])
    corners = torch.rand(2, 2, 2, generator=g) * 63
    return [
        ("3 clicks, no box: a padding point is appended", (encoder, coords, labels, True), {}),
        ("3 points, one of them padding, with a box (no padding appended)", (encoder, coords, labels, False), {}),
        ("box corners (labels 2 and 3)", (encoder, corners, torch.tensor([[2, 3], [2, 3]]), False), {}),
    ]


def _ours(encoder, coords, labels, pad):
    return encoder._embed_points(coords, labels, pad)  # the library's PromptEncoder


def check_embed_points(yours) -> CheckResult:
    with torch.no_grad():
        return compare_function("point_embedding", yours, _ours, _point_cases(), MISTAKES)


TURNS = [
    Turn("point_embedding", "04", "a point's token: shift to the pixel centre, Fourier features of the "
         "normalised position, the padding point, the label's type embedding", embed_points,
         check=check_embed_points),
]
