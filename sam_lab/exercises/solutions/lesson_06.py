"""Lesson 06, the dynamic mask head: tokens -> masks (the hypernetwork product) and mask selection."""
from __future__ import annotations

import torch

from ...modeling.layers import MLP
from ...weights.random_init import randomize
from ..engine import CheckResult
from ..turns import Turn, compare_function


def masks_from_tokens(mask_tokens_out, hypernetworks, features):
    """mask_tokens_out (B, 4, C), hypernetworks (4 MLPs C -> C/8), features (B, C/8, H, W)
    -> mask logits (B, 4, H, W): token i's MLP makes a classifier w_i, the logit is w_i . f(pixel)."""
    classifiers = torch.stack(
        [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(hypernetworks)], dim=1
    )  # (B, 4, C/8): one linear classifier per mask token
    B, c8, H, W = features.shape
    masks = classifiers @ features.reshape(B, c8, H * W)  # (B, 4, C/8) @ (B, C/8, HW) -> (B, 4, HW)
    return masks.reshape(B, -1, H, W)


def select_masks(masks, iou_pred, multimask_output):
    """masks (B, 4, H, W), iou_pred (B, 4) -> masks 1..3 (multimask) or mask 0 (single), with their
    scores: (B, 3 or 1, H, W), (B, 3 or 1)."""
    chosen = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, chosen], iou_pred[:, chosen]


# ----------------------------------------------------------------------------- likely mistakes

def _one_mlp_for_all(tokens, hypernetworks, features):
    return masks_from_tokens(tokens, [hypernetworks[0]] * len(hypernetworks), features)


def _transposed(tokens, hypernetworks, features):
    return masks_from_tokens(tokens, hypernetworks, features.transpose(-2, -1))


def _sigmoid(tokens, hypernetworks, features):
    return masks_from_tokens(tokens, hypernetworks, features).sigmoid()


def _reversed(tokens, hypernetworks, features):
    return masks_from_tokens(tokens, list(hypernetworks)[::-1], features)


def _iou_token_included(tokens, hypernetworks, features):  # read the tokens one place too early
    shifted = torch.cat([torch.zeros_like(tokens[:, :1]), tokens[:, :-1]], dim=1)
    return masks_from_tokens(shifted, hypernetworks, features)


PRODUCT_MISTAKES = [
    ("every mask token went through the same MLP: token i needs its own hypernetwork, "
     "hypernetworks[i](mask_tokens_out[:, i])", _one_mlp_for_all),
    ("the masks are transposed (x and y swapped): flatten the features as (B, C/8, H*W) with "
     "reshape, in row-major order, and reshape the product back to (B, 4, H, W)", _transposed),
    ("the masks went through a sigmoid: the decoder returns logits (positive inside, negative "
     "outside); the predictor thresholds them at 0 later", _sigmoid),
    ("the tokens and the MLPs are paired in reverse: mask token i goes through hypernetworks[i]",
     _reversed),
]

SELECT_MISTAKES = [
    ("with multimask_output=True SAM returns masks 1, 2, 3 (the ambiguity candidates); mask 0 is "
     "the single-answer token", lambda m, s, multi: (m[:, :3], s[:, :3]) if multi else (m[:, :1], s[:, :1])),
    ("with multimask_output=False SAM returns mask 0 (the token trained on unambiguous prompts), "
     "not the highest-scoring candidate",
     lambda m, s, multi: select_masks(m, s, True) if multi else _best(m, s)),
    ("with multimask_output=False SAM returns mask 0, the first mask token, not the last",
     lambda m, s, multi: select_masks(m, s, True) if multi else (m[:, -1:], s[:, -1:])),
]


def _best(masks, scores):
    best = scores.argmax(dim=1)
    rows = torch.arange(len(masks))
    return masks[rows, best][:, None], scores[rows, best][:, None]


def _product_cases():
    g = torch.Generator().manual_seed(60)
    C = 16
    mlps = [randomize(MLP(C, C, C // 8, num_layers=3), seed=61 + i).eval() for i in range(4)]
    tokens = torch.randn(2, 4, C, generator=g)
    return [
        ("2 prompt sets, 4 mask tokens, 8x8 features", (tokens, mlps, torch.randn(2, C // 8, 8, 8, generator=g)), {}),
        ("a 6x10 feature map", (tokens[:1], mlps, torch.randn(1, C // 8, 6, 10, generator=g)), {}),
    ]


def _select_cases():
    g = torch.Generator().manual_seed(70)
    masks, scores = torch.randn(2, 4, 5, 5, generator=g), torch.rand(2, 4, generator=g)
    scores[:, 0] = 0.0  # mask 0 scores lowest, so "the best" is never mask 0
    return [("multimask_output=True", (masks, scores, True), {}),
            ("multimask_output=False", (masks, scores, False), {})]


def check_masks_from_tokens(yours) -> CheckResult:
    with torch.no_grad():
        return compare_function("masks_from_tokens", yours, masks_from_tokens, _product_cases(), PRODUCT_MISTAKES)


def check_select_masks(yours) -> CheckResult:
    return compare_function("select_masks", yours, select_masks, _select_cases(), SELECT_MISTAKES)


TURNS = [
    Turn("masks_from_tokens", "06", "the hypernetwork product: each mask token's MLP makes a classifier "
         "w_i, the mask logit at a pixel is w_i . features", masks_from_tokens, check=check_masks_from_tokens),
    Turn("select_masks", "06", "multimask selection: masks 1-3 for an ambiguous prompt, mask 0 otherwise",
         select_masks, check=check_select_masks),
]
