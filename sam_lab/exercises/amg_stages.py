"""Cases for the stages of automatic mask generation (lesson 10): the stability score and NMS.

Both are functions. ``stability_score(logits, threshold, offset)`` returns one score per mask.
``box_nms(boxes, scores, iou_threshold)`` returns the kept indices, highest score first; the
case turns them into a fixed-size ``rank`` per box (its place among the kept, or -1 if
suppressed), so a wrong answer is compared box by box and known mistakes can be recognised.
"""
from __future__ import annotations

from typing import List

import torch

from ..config import SamConfig
from ..inference.amg import box_iou
from .engine import Case, Mistake


def _logits(seed: int, n: int, h: int, w: int) -> torch.Tensor:
    """Smooth blobs of logits, as a decoder gives them: a few masks, one of them empty."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float), torch.arange(w, dtype=torch.float), indexing="ij")
    centres = torch.rand(n, 2, generator=g) * torch.tensor([h, w])
    radius = torch.rand(n, generator=g) * min(h, w) / 3 + 3
    softness = torch.rand(n, generator=g) * 3 + 0.5
    distance = ((ys - centres[:, 0, None, None]) ** 2 + (xs - centres[:, 1, None, None]) ** 2).sqrt()
    logits = (radius[:, None, None] - distance) / softness[:, None, None] + 0.3 * torch.randn(n, h, w, generator=g)
    logits[-1] = -5.0  # a mask that is empty even at the low threshold
    return logits


def stability_cases(cfg: SamConfig) -> List[Case]:
    def score(inner_at, outer_at):
        def fn(logits, threshold, offset):
            inner = (logits > inner_at(threshold, offset)).flatten(-2).sum(-1).float()
            outer = (logits > outer_at(threshold, offset)).flatten(-2).sum(-1).float()
            return torch.where(outer > 0, inner / outer.clamp(min=1), torch.zeros_like(outer))
        return fn

    def planted(fn):
        return lambda ours, run: run(fn)

    mistakes = [
        Mistake("the two thresholds are swapped: the mask at threshold + offset is the smaller one and goes on "
                "top of the fraction, so the score is at most 1",
                planted(score(lambda t, o: t - o, lambda t, o: t + o))),
        Mistake("the outer mask is taken at the threshold itself: SAM compares threshold + offset with "
                "threshold - offset, the same distance on both sides",
                planted(score(lambda t, o: t + o, lambda t, o: t))),
        Mistake("the inner mask is taken at the threshold itself: SAM compares threshold + offset with "
                "threshold - offset, the same distance on both sides",
                planted(score(lambda t, o: t, lambda t, o: t - o))),
        Mistake("the offset is ignored: both masks are taken at the threshold, so every score is 1",
                planted(score(lambda t, o: t, lambda t, o: t))),
    ]

    def hint(name, want, got):
        if got != want:
            return "sum over the last two axes (H, W) only: one score per mask"
        return None

    def case(seed, n, h, w, threshold, offset, label):
        logits = _logits(seed, n, h, w)
        return Case(label, run=lambda fn: fn(logits.clone(), threshold, offset), outputs=("stability",),
                    axes=("N",), mistakes=mistakes, shape_hint=hint)

    return [case(0, 6, 48, 64, 0.0, 1.0, "6 masks, threshold 0, offset 1 (one empty: score 0)"),
            case(1, 5, 40, 40, 0.5, 2.0, "threshold 0.5, offset 2")]


def _ranks(keep, n: int) -> torch.Tensor:
    """rank[i] = where box i comes among the kept (0 = first), -1 if it was suppressed."""
    keep = torch.as_tensor(keep, dtype=torch.long).flatten()
    if len(set(keep.tolist())) != len(keep) or (len(keep) and (keep.min() < 0 or keep.max() >= n)):
        raise ValueError(f"keep: expected distinct indices in [0, {n}), got {keep.tolist()}")
    rank = torch.full((n,), -1, dtype=torch.long)
    rank[keep] = torch.arange(len(keep))
    return rank


def _boxes(seed: int, n: int):
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=g) * 60
    size = torch.rand(n, 2, generator=g) * 30 + 5
    return torch.cat([corner, corner + size], 1), torch.rand(n, generator=g)


def _nms_variant(order_by_score=True, only_kept_suppress=True, suppress_above=True, by_score_order=True, overlap=box_iou):
    def nms(boxes, scores, iou_threshold):
        order = torch.sort(scores, descending=True, stable=True).indices if order_by_score else torch.arange(len(scores))
        kept, alive = [], torch.ones(len(order), dtype=torch.bool)
        for i in range(len(order)):
            if not alive[i] and only_kept_suppress:
                continue
            if alive[i]:
                kept.append(int(order[i]))
            ious = overlap(boxes[order[i]], boxes[order[i + 1 :]])
            alive[i + 1 :] &= ~(ious > iou_threshold) if suppress_above else ~(ious <= iou_threshold)
        return sorted(kept) if not by_score_order else kept
    return nms


def _over_smaller(box, boxes):
    x0, y0 = torch.maximum(box[0], boxes[:, 0]), torch.maximum(box[1], boxes[:, 1])
    x1, y1 = torch.minimum(box[2], boxes[:, 2]), torch.minimum(box[3], boxes[:, 3])
    inter = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / torch.minimum(area(box), area(boxes))


def nms_cases(cfg: SamConfig) -> List[Case]:
    def planted(**variant):
        return lambda ours, run: run(_nms_variant(**variant))

    mistakes = [
        Mistake("the boxes are visited in the order given: visit them from the highest score down, so the "
                "best of each group of duplicates is the one kept", planted(order_by_score=False)),
        Mistake("a suppressed box still suppresses the boxes after it: only boxes you *keep* may remove others",
                planted(only_kept_suppress=False)),
        Mistake("the comparison is the wrong way round: a box is removed when it overlaps a kept box by "
                "*more* than iou_threshold", planted(suppress_above=False)),
        Mistake("the kept indices are sorted by index: return them highest score first, as torchvision's "
                "nms does", planted(by_score_order=False)),
        Mistake("the overlap is the intersection over the *smaller* box: NMS uses intersection over union",
                planted(overlap=_over_smaller)),
    ]

    def case(seed, n, threshold, label):
        boxes, scores = _boxes(seed, n)
        return Case(label, run=lambda fn: _ranks(fn(boxes.clone(), scores.clone(), threshold), n), outputs=("rank",),
                    axes=("N",), mistakes=mistakes)

    return [case(0, 40, 0.5, "40 random boxes, threshold 0.5"), case(1, 60, 0.3, "60 boxes, threshold 0.3"),
            case(2, 60, 0.7, "60 boxes, threshold 0.7")]
