"""The ambiguity evaluation: one click inside a nested part, where every level is a right answer.

Paper §3 ("Resolving ambiguity") and lesson 08. A click in the middle of the innermost part of
a nested object is inside the part, its parent and maybe a grandparent. A model with three
outputs can answer each level with one of them; a single-output model must pick one, or blur
them. :func:`evaluate_ambiguity` scores the best IoU per level and how blurred the picked answer
is (:func:`in_between`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..inference.masks import mask_iou
from .interactive import farthest_from_boundary


def nested_chains(item: Dict) -> List[List[int]]:
    """Every innermost mask of a nested object with its ancestors: [leaf, parent, grandparent...].

    ``item`` is a dataset item with ``parent`` (K,) and ``level`` (K,). Only masks that have a
    parent count as leaves, so each chain has at least two levels: the clicks on them are ambiguous.
    """
    parent = np.asarray(item["parent"])
    has_child = np.zeros(len(parent), dtype=bool)
    has_child[parent[parent >= 0]] = True
    chains = []
    for k in range(len(parent)):
        if has_child[k] or parent[k] < 0:
            continue
        chain = [k]
        while parent[chain[-1]] >= 0:
            chain.append(int(parent[chain[-1]]))
        chains.append(chain)
    return chains


@dataclass
class AmbiguityResult:
    """One click in the middle of each innermost part; how well can the answer match each level?"""

    per_level_iou: np.ndarray  # (chains, 3) best IoU with the leaf / its parent / grandparent (nan if none)
    blur: float  # mean in-between score of the rings between levels (0 committed, 1 exactly halfway)
    num_chains: int

    @property
    def miou(self) -> float:
        """Mean over every level of every chain."""
        return float(np.nanmean(self.per_level_iou))

    def summary(self) -> str:
        names = ["innermost", "parent", "grandparent"]
        levels = ", ".join(f"{n} {np.nanmean(self.per_level_iou[:, i]):.3f}" for i, n in enumerate(names)
                           if np.isfinite(self.per_level_iou[:, i]).any())
        return f"{self.num_chains} nested clicks: oracle mIoU {self.miou:.3f} ({levels}); blur {self.blur:.3f}"


def in_between(probability: np.ndarray, masks: np.ndarray, chain: Sequence[int], min_ring: int = 20) -> List[float]:
    """How undecided a soft answer is about each ring between two nested levels.

    probability: (H, W) sigmoid of the answer's logits; masks: (K, H, W); chain: [leaf, parent, ...].
    A ring is a parent minus its child. With p_in the mean probability on the leaf and p_out the
    mean outside the outermost level, a ring's mean probability p_ring sits at
    t = (p_ring - p_out) / (p_in - p_out) on the way from "out" to "in"; its score is
    1 - |2 t - 1| (t clipped to [0, 1]): 0 for a ring clearly in or clearly out, 1 for a ring
    exactly halfway, a blur of the two answers. Rings under ``min_ring`` pixels are skipped.
    """
    p_in = probability[masks[chain[0]]].mean()
    p_out = probability[~masks[chain[-1]]].mean()
    scores = []
    for child, parent in zip(chain[:-1], chain[1:]):
        ring = masks[parent] & ~masks[child]
        if ring.sum() < min_ring or p_in - p_out <= 1e-6:  # no ring, or an answer without an inside
            continue
        t = float(np.clip((probability[ring].mean() - p_out) / (p_in - p_out), 0.0, 1.0))
        scores.append(1.0 - abs(2.0 * t - 1.0))
    return scores


@torch.no_grad()
def evaluate_ambiguity(predictor, dataset, num_images: Optional[int] = None, multimask: bool = True) -> AmbiguityResult:
    """The ambiguity test: click once at the middle of each innermost nested part (the point
    farthest from its boundary). That click is inside the part, its parent and maybe a
    grandparent: all are right answers. Each level scores the best IoU among the model's answers
    (3 candidates with ``multimask``, else the single output token's one mask).

    ``blur`` is the mean :func:`in_between` score of the answer the model would pick (the highest
    predicted IoU): how far its rings between levels sit halfway between "in" and "out".
    """
    count = len(dataset) if num_images is None else min(num_images, len(dataset))
    rows, blur = [], []
    for index in range(count):
        item = dataset[index]
        chains = nested_chains(item)
        if not chains:
            continue
        predictor.set_image(item["image"])
        for chain in chains:
            click = farthest_from_boundary(item["masks"][chain[0]])[None]
            logits, scores, _ = predictor.predict(
                point_coords=click, point_labels=np.array([1]), multimask_output=multimask, return_logits=True
            )
            masks = logits > predictor.model.mask_threshold  # (C, H, W)
            levels = item["masks"][chain[:3]][:, None]  # (L, 1, H, W) against (C, H, W)
            ious = mask_iou(masks, levels)  # (L, C)
            row = np.full(3, np.nan)
            row[: len(ious)] = ious.max(axis=1)
            rows.append(row)
            chosen = torch.as_tensor(logits[int(np.argmax(scores))], dtype=torch.float)
            blur.extend(in_between(torch.sigmoid(chosen).numpy(), item["masks"], chain))
    rows = np.array(rows) if rows else np.zeros((0, 3))
    return AmbiguityResult(per_level_iou=rows, blur=float(np.mean(blur)) if blur else float("nan"), num_chains=len(rows))
