"""The interactive evaluation protocol: NoC@85/90 and mIoU against the number of clicks.

Paper §7.1 and appendix D. A simulated annotator clicks at the point *farthest from the
boundary* of the error region (the first click: farthest from the object's boundary), a positive
click on a missed pixel, a negative one on a wrongly included pixel, up to 20 clicks. Each round
feeds back the previous round's low-res logits as the mask prompt.

NoC@85 / NoC@90 = clicks needed to reach that IoU (20 if never); mIoU at 1 click is reported for
the mask with the highest predicted IoU and for the oracle best of the 3.

The training simulation (clicks drawn *uniformly* from the error region, 11 rounds) is
:mod:`sam_lab.training.clicks`. Coordinates are (x, y) pixels; masks are (H, W) bool.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from ..inference.masks import mask_iou


# ----------------------------------------------------------------------------- clicks

def farthest_from_boundary(region: np.ndarray) -> np.ndarray:
    """The pixel (x, y) of a non-empty region farthest from the region's boundary (and from the
    image border): where an annotator would click."""
    distance = distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return np.array([x, y], dtype=np.float64)


def masks_at(masks: np.ndarray, click) -> np.ndarray:
    """(K,) bool: which of an image's masks (K, H, W) contain the click (x, y). More than one
    means the click is ambiguous: it lies in a part and in its whole."""
    return masks[:, int(click[1]), int(click[0])]


def next_eval_click(pred: np.ndarray, gt: np.ndarray):
    """The evaluation protocol's next click: farthest from the error region's boundary."""
    error = pred != gt
    if not error.any():
        return None
    point = farthest_from_boundary(error)
    return point, int(gt[int(point[1]), int(point[0])])



# ----------------------------------------------------------------------------- evaluation

@dataclass
class InteractiveResult:
    noc85: float
    noc90: float
    miou_1click_predicted: float
    miou_1click_oracle: float
    iou_per_click: np.ndarray  # (max_clicks,) mean IoU after k clicks
    num_targets: int
    per_target_noc90: List[int] = field(default_factory=list)
    # per target, at the first click: does it also lie inside another of the image's masks (a part
    # or a whole of the same object)? Then every level is a right answer, and the predicted pick
    # can only guess which one the target is.
    first_click_ambiguous: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # per target, the predicted pick's IoU with the best-matching mask that contains the click
    first_click_any_object: np.ndarray = field(default_factory=lambda: np.zeros(0))
    first_click_predicted: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the pick's IoU with the target
    per_target_iou: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (targets, max_clicks): the pick's IoU after each click

    @property
    def unambiguous_share(self) -> float:
        return float(np.mean(~self.first_click_ambiguous)) if len(self.first_click_ambiguous) else float("nan")

    @property
    def miou_1click_predicted_unambiguous(self) -> float:
        """The predicted pick's 1-click mIoU over targets whose click lies in no other mask."""
        keep = ~self.first_click_ambiguous
        return float(self.first_click_predicted[keep].mean()) if keep.any() else float("nan")

    @property
    def miou_1click_predicted_any_object(self) -> float:
        """The predicted pick scored against whichever level containing the click it matches best."""
        return float(self.first_click_any_object.mean()) if len(self.first_click_any_object) else float("nan")

    def summary(self) -> str:
        return (
            f"{self.num_targets} targets: mIoU@1 click {self.miou_1click_predicted:.3f} (predicted best), "
            f"{self.miou_1click_oracle:.3f} (oracle); NoC@85 {self.noc85:.2f}, NoC@90 {self.noc90:.2f}"
        )


@torch.no_grad()
def evaluate_interactive(
    predictor,
    dataset,
    max_clicks: int = 20,
    num_images: Optional[int] = None,
    levels: Optional[Sequence[int]] = None,
    progress: bool = False,
    multimask: bool = True,
) -> InteractiveResult:
    """NoC@85/90 and 1-click mIoU of a predictor over a dataset's masks (all targets of one image
    are simulated together as a batch of prompt sets). ``multimask=False`` asks for a single
    mask at the first click too (for models trained without ambiguity handling)."""
    from tqdm.auto import tqdm

    count = len(dataset) if num_images is None else min(num_images, len(dataset))
    ious_all, oracle_first, noc85, noc90, ambiguous, any_object = [], [], [], [], [], []
    for index in tqdm(range(count), disable=not progress, desc="interactive eval"):
        item = dataset[index]
        keep = [k for k in range(len(item["masks"])) if levels is None or item["level"][k] in levels]
        if not keep:
            continue
        gts = item["masks"][keep]  # (T, H, W)
        predictor.set_image(item["image"])
        T = len(gts)
        clicks = [[farthest_from_boundary(gt)] for gt in gts]
        labels = [[1] for _ in gts]
        mask_input = None
        ious = np.zeros((T, max_clicks))
        for k in range(max_clicks):
            transform = predictor.transform
            coords_t = torch.as_tensor(
                transform.apply_coords(np.array(clicks), predictor.original_size), dtype=torch.float, device=predictor.device
            )
            labels_t = torch.as_tensor(np.array(labels), dtype=torch.int, device=predictor.device)
            masks, scores, low_res = predictor.predict_torch(coords_t, labels_t, mask_input=mask_input, multimask_output=(k == 0 and multimask))
            masks, scores = masks.cpu().numpy(), scores.cpu().numpy()
            best = scores.argmax(axis=1)
            chosen = masks[np.arange(T), best]  # (T, H, W)
            candidate_iou = mask_iou(masks, gts[:, None])  # (T, candidates)
            ious[:, k] = candidate_iou[np.arange(T), best]
            if k == 0:
                oracle_first.extend(candidate_iou.max(axis=1).tolist())
                for t in range(T):
                    containing = masks_at(item["masks"], clicks[t][0])  # every mask of the image, not only the kept levels
                    ambiguous.append(int(containing.sum()) > 1)
                    any_object.append(float(mask_iou(chosen[t][None], item["masks"][containing]).max()))
            mask_input = low_res[torch.arange(T), torch.as_tensor(best)][:, None]
            for t in range(T):
                nxt = next_eval_click(chosen[t], gts[t])
                if nxt is None:  # perfect: click the object again (changes nothing)
                    nxt = (farthest_from_boundary(gts[t]), 1)
                clicks[t].append(nxt[0])
                labels[t].append(nxt[1])
        ious_all.append(ious)
        for row in ious:
            noc85.append(_clicks_to_reach(row, 0.85, max_clicks))
            noc90.append(_clicks_to_reach(row, 0.90, max_clicks))
    ious_all = np.concatenate(ious_all) if ious_all else np.zeros((0, max_clicks))
    return InteractiveResult(
        noc85=float(np.mean(noc85)) if noc85 else float("nan"),
        noc90=float(np.mean(noc90)) if noc90 else float("nan"),
        miou_1click_predicted=float(ious_all[:, 0].mean()) if len(ious_all) else float("nan"),
        miou_1click_oracle=float(np.mean(oracle_first)) if oracle_first else float("nan"),
        iou_per_click=ious_all.mean(axis=0) if len(ious_all) else np.zeros(max_clicks),
        num_targets=len(ious_all),
        per_target_noc90=noc90,
        first_click_ambiguous=np.asarray(ambiguous, dtype=bool),
        first_click_any_object=np.asarray(any_object, dtype=float),
        first_click_predicted=ious_all[:, 0].copy(),
        per_target_iou=ious_all,
    )


def _clicks_to_reach(ious: np.ndarray, threshold: float, max_clicks: int) -> int:
    reached = np.flatnonzero(ious >= threshold)
    return int(reached[0]) + 1 if len(reached) else max_clicks
