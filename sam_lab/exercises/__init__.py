"""Check a stage you built against ours, with friendly feedback.

    result = sam_lab.exercises.check("patch_embed", MyPatchEmbed)
    # ✓ patch_embed: your MyPatchEmbed matches ours on 1 case (largest difference 4.8e-07)
    sam_lab.exercises.assert_passes("patch_embed", MyPatchEmbed)   # for a lesson's assert cell

``learner`` is a class (or any factory) that we call with the same keyword arguments as our
class (see ``sam_lab.config.stage_kwargs``), a module you built yourself (checked on the cases it was
built for), or for the function stages a function (``window_partition`` takes the pair
``(partition, unpartition)``). Our weights, random but fixed and nonzero everywhere, are copied
into your module with strict keys, both run on fixed inputs, and the first difference found is
explained: a wrong shape or layout, a constant factor, a known mistake, or where it differs.
``CHECKS`` lists the stage names that can be checked, with a line each.

The lessons' "your turn" exercises (a stub to write, a reference solution used when
``$SAM_LAB_SOLUTIONS=1``) are in :mod:`sam_lab.exercises.turns`: ``your_turn`` and ``check_turn``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Dict, List

import torch
import torch.nn as nn

from ..modeling.attention import Attention
from ..config import SamConfig, get_config
from ..modeling.image_encoder import Block, ImageEncoder
from ..modeling.mask_decoder import MaskDecoder
from ..modeling.patching import PatchEmbed, window_partition, window_unpartition
from ..modeling.positional_encoding import PositionEmbeddingRandom, get_rel_pos, resize_absolute_pos_embed
from ..modeling.prompt_encoder import PromptEncoder
from ..modeling.text_prompt import TextPromptEncoder
from ..modeling.two_way_transformer import TwoWayAttentionBlock, TwoWayTransformer
from . import amg_stages, image_stages, prompt_stages
from ..inference.amg import box_nms, stability_score
from ..weights.random_init import randomize
from .engine import Case, CheckFailed, CheckResult, compare, load_ours_into
from .turns import SOLUTIONS_ENV, Turn, all_turns, check_turn, solutions_enabled, your_turn

__all__ = ["CHECKS", "CheckResult", "SOLUTIONS_ENV", "Turn", "all_turns", "assert_passes", "check", "check_turn",
           "solutions_enabled", "your_turn"]


@dataclass(frozen=True)
class _Stage:
    description: str
    ours: Any  # our class (module stages) or our function(s)
    cases: Callable[[SamConfig], List[Case]]

    @property
    def is_module(self) -> bool:
        return isinstance(self.ours, type) and issubclass(self.ours, nn.Module)


_STAGES: Dict[str, _Stage] = {
    "patch_embed": _Stage("lesson 01: image (B, 3, H, W) -> patch tokens (B, H/16, W/16, D), like "
                          "sam_lab.modeling.patching.PatchEmbed", PatchEmbed, image_stages.patch_embed_cases),
    "window_partition": _Stage("lesson 01: the pair (window_partition, window_unpartition): pad, split "
                               "into windows, stitch back and crop", (window_partition, window_unpartition),
                               image_stages.window_partition_cases),
    "absolute_pos_embed": _Stage("lesson 02: resize_absolute_pos_embed(pos_embed, size), bicubic resizing "
                                 "of the learned (1, H, W, D) embedding", resize_absolute_pos_embed,
                                 image_stages.absolute_pos_embed_cases),
    "rel_pos": _Stage("lesson 02: get_rel_pos(q_size, k_size, rel_pos) -> (q_size, k_size, C) "
                      "relative-position vectors", get_rel_pos, image_stages.rel_pos_cases),
    "fourier_features": _Stage("lesson 02: random Fourier features, like PositionEmbeddingRandom "
                               "(forward(size) and forward_with_coords)", PositionEmbeddingRandom,
                               image_stages.fourier_features_cases),
    "attention": _Stage("lesson 03: ViT self-attention with decomposed relative positions, like "
                        "sam_lab.modeling.attention.Attention", Attention, image_stages.attention_cases),
    "encoder_block": _Stage("lesson 03: a ViT block, windowed or global, like sam_lab.modeling.image_encoder.Block",
                            Block, image_stages.encoder_block_cases),
    "image_encoder": _Stage("lesson 03: the whole ViT image encoder, like sam_lab.modeling.image_encoder.ImageEncoder",
                            ImageEncoder, image_stages.image_encoder_cases),
    "prompt_encoder": _Stage("lesson 04: points, boxes and masks -> sparse and dense embeddings, like "
                             "sam_lab.modeling.prompt_encoder.PromptEncoder", PromptEncoder,
                             prompt_stages.prompt_encoder_cases),
    "two_way_block": _Stage("lesson 05: one two-way attention block, like "
                            "sam_lab.modeling.two_way_transformer.TwoWayAttentionBlock", TwoWayAttentionBlock,
                            prompt_stages.two_way_block_cases),
    "two_way_attention": _Stage("lesson 05: the two-way transformer, like "
                                "sam_lab.modeling.two_way_transformer.TwoWayTransformer", TwoWayTransformer,
                                prompt_stages.two_way_attention_cases),
    "mask_decoder": _Stage("lesson 06: the dynamic mask head, like sam_lab.modeling.mask_decoder.MaskDecoder",
                           MaskDecoder, prompt_stages.mask_decoder_cases),
    "stability_score": _Stage("lesson 10: stability_score(logits, threshold, offset) -> (N,), the IoU of each "
                              "mask at threshold + offset and at threshold - offset", stability_score,
                              amg_stages.stability_cases),
    "box_nms": _Stage("lesson 10: box_nms(boxes, scores, iou_threshold) -> kept indices, highest score first "
                      "(greedy non-maximum suppression, like torchvision.ops.nms)", box_nms, amg_stages.nms_cases),
    "text_projection": _Stage("lesson 13: a CLIP embedding (B, D) -> text prompt tokens (B, T, C): standardise, "
                              "MLP, cut into tokens, add the type embedding, like "
                              "sam_lab.modeling.text_prompt.TextPromptEncoder", TextPromptEncoder,
                              prompt_stages.text_projection_cases),
}

#: stage name -> what it checks, in lesson order (sam_lab.STAGES maps names to our classes)
CHECKS: Dict[str, str] = {name: stage.description for name, stage in _STAGES.items()}


def check(stage: str, learner: Any, *, config="tiny", verbose: bool = True) -> CheckResult:
    """Compare ``learner`` with our ``stage`` at the sizes of ``config`` and explain the
    first difference. Prints a ✓/✗ message when ``verbose``; returns a :class:`CheckResult`."""
    if stage not in _STAGES:
        raise ValueError(f"stage: expected one of {sorted(_STAGES)}, got {stage!r}")
    spec = _STAGES[stage]
    parts = learner if isinstance(learner, tuple) else (learner,)
    name = ", ".join(getattr(part, "__name__", type(part).__name__) for part in parts)
    name = f"({name})" if isinstance(learner, tuple) else name
    with torch.random.fork_rng(), torch.no_grad():  # leave the caller's random state alone
        torch.manual_seed(0)
        cases = spec.cases(get_config(config))
        checked, worst = 0, 0.0
        for i, case in enumerate(cases):
            try:
                if spec.is_module:
                    last_chance = checked == 0 and i == len(cases) - 1
                    ours, theirs = _build_pair(spec, case, learner, i, last_chance)
                    if theirs is None:
                        continue
                else:
                    ours, theirs = spec.ours, learner
                ours_out = case.run(ours)
                try:
                    theirs_out = case.run(theirs)
                except Exception as error:
                    raise CheckFailed(f"yours raised {type(error).__name__}: {error}") from None
                worst = max(worst, compare(case, ours, ours_out, theirs_out))
                checked += 1
            except CheckFailed as failure:
                message = f"✗ {stage} ({case.label}): {failure}"
                result = CheckResult(stage, False, message, failure.max_abs_diff)
                break
        else:
            plural = "case" if checked == 1 else "cases"
            skipped = len(cases) - checked
            note = (f"; {skipped} case(s) need another configuration - pass the class to check them too"
                    if skipped else "")
            result = CheckResult(stage, True, f"✓ {stage}: your {name} matches ours on {checked} {plural} "
                                              f"(largest difference {worst:.2g}){note}", worst)
    if verbose:
        print(result.message)
    return result


def _build_pair(spec: _Stage, case: Case, learner: Any, seed: int, last_chance: bool):
    """Ours with random weights, and the learner's module holding a copy of them.

    A module built by the learner fits only some cases; the others are skipped (``None``),
    but the last case is not skipped when no case fitted before it."""
    ours = randomize(spec.ours(**copy.deepcopy(case.kwargs)), seed).eval()
    if isinstance(learner, nn.Module):
        theirs = copy.deepcopy(learner)
        try:
            load_ours_into(theirs, ours)
        except CheckFailed:
            if not last_chance:
                return ours, None
            raise
        return ours, theirs.eval()
    if not callable(learner):
        raise CheckFailed(f"expected a class or an nn.Module, got {type(learner).__name__}")
    try:
        theirs = learner(**copy.deepcopy(case.kwargs))
    except Exception as error:
        raise CheckFailed(
            f"building yours with our keyword arguments failed ({type(error).__name__}: {error}); "
            f"ours is built with {sorted(case.kwargs)}"
        ) from None
    if not isinstance(theirs, nn.Module):
        raise CheckFailed(f"calling {getattr(learner, '__name__', learner)} should build an nn.Module, "
                          f"got {type(theirs).__name__}")
    load_ours_into(theirs, ours)
    return ours, theirs.eval()


def assert_passes(stage: str, learner: Any, **kwargs) -> CheckResult:
    """Like :func:`check`, but raise ``AssertionError`` with the explanation if it fails."""
    result = check(stage, learner, **kwargs)
    if not result.passed:
        raise AssertionError(result.message)
    return result
