"""Lesson 11, the data engine: how good are the automatic masks? Precision and recall at an IoU."""
from __future__ import annotations

import numpy as np

from ...data_engine.engine import truth_overlap
from ..turns import Turn, compare_function


def precision_recall(masks, truths, target=0.9):
    """masks (N, H, W) and the image's true objects truths (K, H, W), both boolean ->
    (precision, recall): the share of masks within IoU ``target`` of some object, and the share of
    objects that some mask matches at IoU ``target``."""
    masks, truths = np.asarray(masks, bool), np.asarray(truths, bool)
    if len(masks) == 0 or len(truths) == 0:
        return 0.0, 0.0
    flat_masks = masks.reshape(len(masks), -1).astype(np.float64)
    flat_truths = truths.reshape(len(truths), -1).astype(np.float64)
    intersection = flat_masks @ flat_truths.T  # (N, K) shared pixels
    union = flat_masks.sum(1)[:, None] + flat_truths.sum(1)[None, :] - intersection
    iou = intersection / np.maximum(union, 1)
    precision = float((iou.max(axis=1) >= target).mean())  # best object for each mask
    recall = float((iou.max(axis=0) >= target).mean())  # best mask for each object
    return precision, recall


def _ours(masks, truths, target=0.9):
    if len(masks) == 0 or len(truths) == 0:
        return 0.0, 0.0
    overlap = truth_overlap(np.asarray(masks, bool), np.asarray(truths, bool))
    return float((overlap.max(axis=1) >= target).mean()), float((overlap.max(axis=0) >= target).mean())


def _box(top, left, bottom, right, size=32):
    mask = np.zeros((size, size), bool)
    mask[top:bottom, left:right] = True
    return mask


def _cases():
    truths = np.stack([_box(2, 2, 12, 12), _box(16, 4, 30, 14), _box(4, 18, 28, 30)])
    masks = np.stack([
        _box(2, 2, 12, 12),  # object 0, exactly
        _box(2, 2, 12, 12),  # object 0 again: a duplicate the NMS missed
        _box(16, 4, 30, 13),  # object 1 less one column: IoU 0.9 exactly
        _box(0, 16, 32, 32),  # around object 2: IoU 0.56
        _box(28, 28, 32, 32),  # nothing
        _box(18, 6, 22, 10),  # a small piece inside object 1
    ])
    return [("6 masks against 3 objects", (masks, truths), {}),
            ("the same at IoU 0.5", (masks, truths), {"target": 0.5}),
            ("no masks at all", (masks[:0], truths), {})]


def _mistakes():
    def per_mask_recall(masks, truths, target=0.9):  # counts good masks, so a duplicate counts twice
        overlap = truth_overlap(np.asarray(masks, bool), np.asarray(truths, bool))
        return float((overlap.max(axis=1) >= target).mean()), float((overlap.max(axis=1) >= target).sum() / len(truths))

    def swapped(masks, truths, target=0.9):
        precision, recall = _ours(masks, truths, target)
        return recall, precision

    def over_mask_area(masks, truths, target=0.9):  # "IoU" = shared pixels / the mask's own area
        m = np.asarray(masks, bool).reshape(len(masks), -1).astype(float)
        t = np.asarray(truths, bool).reshape(len(truths), -1).astype(float)
        share = (m @ t.T) / np.maximum(m.sum(1)[:, None], 1)
        return float((share.max(1) >= target).mean()), float((share.max(0) >= target).mean())

    def strict(masks, truths, target=0.9):
        overlap = truth_overlap(np.asarray(masks, bool), np.asarray(truths, bool))
        return float((overlap.max(axis=1) > target).mean()), float((overlap.max(axis=0) > target).mean())

    return [
        ("recall counts masks, not objects: a duplicate of one object counts twice. Recall is the share "
         "of true objects whose best mask reaches the IoU (take the max over masks, per object)", per_mask_recall),
        ("precision and recall are swapped: precision is about the masks (N), recall about the objects (K)",
         swapped),
        ("the overlap is divided by the mask's own area, not by the union: a small mask inside a big object "
         "would count as a match. IoU = |mask ∩ object| / |mask ∪ object|", over_mask_area),
        ("a mask at exactly the target IoU is not counted: 'within IoU 0.9' means IoU >= 0.9", strict),
    ]


def check_precision_recall(yours):
    return compare_function("precision_recall", yours, _ours, _cases(), _mistakes())


TURNS = [
    Turn("precision_recall", "11", "the precision and recall of automatic masks against the true objects",
         precision_recall, check=check_precision_recall),
]
