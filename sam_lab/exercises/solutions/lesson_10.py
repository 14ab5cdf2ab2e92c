"""Lesson 10, automatic mask generation: greedy non-maximum suppression over boxes."""
from __future__ import annotations

import torch

from ..turns import Turn


def box_nms(boxes, scores, iou_threshold):
    """boxes (N, 4) as x0, y0, x1, y1; scores (N,) -> the kept indices, highest score first."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    areas = (x1 - x0) * (y1 - y0)
    kept = []
    for i in scores.argsort(descending=True, stable=True).tolist():
        overlaps_a_kept_box = False
        for j in kept:
            width = (torch.minimum(x1[i], x1[j]) - torch.maximum(x0[i], x0[j])).clamp(min=0)
            height = (torch.minimum(y1[i], y1[j]) - torch.maximum(y0[i], y0[j])).clamp(min=0)
            intersection = width * height
            if intersection / (areas[i] + areas[j] - intersection) > iou_threshold:
                overlaps_a_kept_box = True
                break
        if not overlaps_a_kept_box:
            kept.append(i)
    return torch.tensor(kept, dtype=torch.long)


TURNS = [
    Turn("box_nms", "10", "greedy box NMS: keep the best-scoring boxes no kept box overlaps too much",
         box_nms, stage="box_nms"),
]
