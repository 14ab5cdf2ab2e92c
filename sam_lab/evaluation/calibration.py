"""Can the model's own scores be trusted? The IoU head and the stability of its masks.

The automatic mask generator (paper §7.1 and appendix B) keeps a candidate only if the IoU head
predicts at least 0.88 and the mask is stable: thresholding the logits at -1 and at +1 gives
almost the same mask (IoU >= 0.95). Both filters are only as good as these two numbers.

    iou_calibration      Pearson correlation of predicted and true IoU over 1-click candidates
    stability_score      IoU of the masks at logit thresholds +offset and -offset
    grid_filter_survivors   candidates of a point grid that pass both of the paper's filters
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from ..inference.amg import stability_score
from .interactive import farthest_from_boundary, masks_at


@torch.no_grad()
def iou_calibration(predictor, dataset, num_images=None) -> Dict[str, float]:
    """Pearson r of predicted and true IoU over every 1-click multimask candidate (a click at
    the point farthest from each mask's boundary). Returns ``pearson``, ``mean_abs_error``,
    ``count``, and two views that separate the IoU head from the ambiguity of a click:
    ``pearson_unambiguous`` over the targets whose click lies in no other mask of the image, and
    ``pearson_any_object`` with each candidate's true IoU taken against the best-matching mask
    that contains the click (a part, its whole: any right answer, as the mask generator needs).

    And the ceiling of a better IoU head on the same masks: training draws a mask uniformly and
    a point uniformly inside it, so the best any head can predict from a click (the least squares
    answer) is each candidate's IoU averaged over the masks containing the click, weighted by
    1 / area (how likely that mask is the one the click was drawn for). ``pearson_head_ceiling``
    is that ideal head's Pearson with the true IoU, ``pick_head_ceiling`` the mean true IoU of the
    candidate it would pick (to read against the model's own predicted pick)."""
    from ..inference.masks import mask_iou

    predicted, true, any_object, unambiguous, ideal, ideal_pick = [], [], [], [], [], []
    count = len(dataset) if num_images is None else min(num_images, len(dataset))
    for index in range(count):
        item = dataset[index]
        predictor.set_image(item["image"])
        for mask in item["masks"]:
            click = farthest_from_boundary(mask)
            masks, scores, _ = predictor.predict(point_coords=click[None], point_labels=np.array([1]), multimask_output=True)
            containing = masks_at(item["masks"], click)
            predicted.extend(scores.tolist())
            own = mask_iou(masks, mask[None])  # (3,) each candidate against the target
            true.extend(own.tolist())
            against_containing = mask_iou(masks[:, None], item["masks"][containing][None])  # (3, masks containing)
            any_object.extend(against_containing.max(axis=1).tolist())
            weight = 1.0 / item["masks"][containing].reshape(int(containing.sum()), -1).sum(1)
            expected = against_containing @ (weight / weight.sum())
            ideal.extend(expected.tolist())
            ideal_pick.append(float(own[int(np.argmax(expected))]))
            unambiguous.extend([int(containing.sum()) == 1] * len(scores))
    predicted, true, any_object, ideal = (np.asarray(v) for v in (predicted, true, any_object, ideal))
    unambiguous = np.asarray(unambiguous, dtype=bool)

    def pearson(a, b):
        return float(np.corrcoef(a, b)[0, 1]) if len(a) > 1 else float("nan")

    return {"pearson": pearson(predicted, true),
            "mean_abs_error": float(np.abs(predicted - true).mean()), "count": int(len(true)),
            "pearson_unambiguous": pearson(predicted[unambiguous], true[unambiguous]),
            "pearson_any_object": pearson(predicted, any_object),
            "unambiguous_count": int(unambiguous.sum()),
            "pearson_head_ceiling": pearson(ideal, true),
            "pick_head_ceiling": float(np.mean(ideal_pick)) if ideal_pick else float("nan")}


@torch.no_grad()
def grid_filter_survivors(predictor, image: np.ndarray, points_per_side: int = 16,
                          pred_iou_thresh: float = 0.88, stability_thresh: float = 0.95,
                          points_per_batch: int = 64) -> Dict[str, float]:
    """Decode one click at each point of a regular grid (3 masks each) and count the candidates
    that pass the mask generator's two filters with the reference's default thresholds."""
    predictor.set_image(image)
    H, W = image.shape[:2]
    offsets = (np.arange(points_per_side) + 0.5) / points_per_side
    points = np.stack(np.meshgrid(offsets * W, offsets * H), -1).reshape(-1, 2)
    stability, iou = [], []
    for start in range(0, len(points), points_per_batch):  # full-size logits of a batch at a time
        chunk = torch.as_tensor(points[start : start + points_per_batch], dtype=torch.float)[:, None]
        coords = predictor.transform.apply_coords_torch(chunk, predictor.original_size).to(predictor.device)
        labels = torch.ones(len(chunk), 1, dtype=torch.int, device=predictor.device)
        logits, scores, _ = predictor.predict_torch(coords, labels, multimask_output=True, return_logits=True)
        stability.append(stability_score(logits.float()))
        iou.append(scores)
    stability, iou = torch.cat(stability), torch.cat(iou)
    keep = (iou >= pred_iou_thresh) & (stability >= stability_thresh)
    return {"candidates": int(iou.numel()), "survivors": int(keep.sum()),
            "best_stability": float(stability.max()), "best_predicted_iou": float(iou.max())}
