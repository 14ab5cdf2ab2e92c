"""The interactive click simulation: how SAM is trained and how it is evaluated.

Training (paper §3 "Training", appendix A). For each ground-truth mask SAM is prompted 11 times:
    1. a first prompt: with equal probability a point drawn uniformly inside the mask, or the
       mask's box with noise (std 10 % of the box side, capped at 20 px per coordinate);
    2. 8 rounds that each add a point drawn uniformly from the error region of the previous
       prediction (a missed pixel gives a positive point, a wrong pixel a negative one);
    3. 2 rounds that add no point (one at a random place in the sequence, one at the end), so
       the model learns to refine from its own mask alone.
From round 2 on, the previous prediction's unthresholded low-res logits (of the mask with the
highest predicted IoU) are fed back as the mask prompt. Only the first round, when the prompt
is a single point, asks for 3 masks; later rounds have several prompts and train the single-
output token (see ``losses.sam_loss`` for min-over-masks).

Evaluation (paper §7.1 and appendix D): clicks are placed at the point *farthest from the
boundary* of the error region (the first click: farthest from the object's boundary), up to 20.
NoC@85 / NoC@90 = clicks needed to reach that IoU (20 if never); mIoU at 1 click is reported for
the mask with the highest predicted IoU and for the oracle best of the 3.

Coordinates are (x, y) pixels; masks are (H, W) bool.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt

from .losses import mask_iou, sam_loss

NUM_ROUNDS = 11
NUM_ERROR_POINTS = 8
BOX_NOISE_FRACTION = 0.1
BOX_NOISE_MAX = 20.0


# ----------------------------------------------------------------------------- sampling

def sample_point_in(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A pixel (x, y) drawn uniformly from a non-empty (H, W) mask."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("mask: expected at least one foreground pixel, got an empty mask")
    i = int(rng.integers(len(ys)))
    return np.array([xs[i], ys[i]], dtype=np.float64)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight box (x0, y0, x1, y1) around a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def noisy_box(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mask's box with each coordinate moved by N(0, (10 % of the side)^2), capped at 20 px."""
    box = mask_box(mask)
    w, h = box[2] - box[0], box[3] - box[1]
    std = np.array([w, h, w, h]) * BOX_NOISE_FRACTION
    noise = np.clip(rng.normal(0.0, 1.0, size=4) * std, -BOX_NOISE_MAX, BOX_NOISE_MAX)
    H, W = mask.shape
    box = np.clip(box + noise, 0, [W - 1, H - 1, W - 1, H - 1])
    x0, x1 = sorted(box[[0, 2]])
    y0, y1 = sorted(box[[1, 3]])
    return np.array([x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)])


def sample_error_point(pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator):
    """A point drawn uniformly from the error region, labelled 1 if the model missed it (false
    negative) and 0 if it wrongly included it (false positive). None if there is no error."""
    error = pred != gt
    ys, xs = np.nonzero(error)
    if len(ys) == 0:
        return None
    i = int(rng.integers(len(ys)))
    return np.array([xs[i], ys[i]], dtype=np.float64), int(gt[ys[i], xs[i]])


def farthest_from_boundary(region: np.ndarray) -> np.ndarray:
    """The pixel (x, y) of a non-empty region farthest from the region's boundary (and from the
    image border): where an annotator would click."""
    distance = distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return np.array([x, y], dtype=np.float64)


def next_eval_click(pred: np.ndarray, gt: np.ndarray):
    """The evaluation protocol's next click: farthest from the error region's boundary."""
    error = pred != gt
    if not error.any():
        return None
    point = farthest_from_boundary(error)
    return point, int(gt[int(point[1]), int(point[0])])


# ----------------------------------------------------------------------------- training

def round_plan(rng: np.random.Generator, num_rounds: int = NUM_ROUNDS, num_points: int = NUM_ERROR_POINTS) -> List[bool]:
    """For rounds 2..num_rounds: whether each adds a point. The last round adds none, and the
    other mask-only rounds go at random places before it (default: 8 points, 2 mask-only)."""
    later = num_rounds - 1
    extra_empty = later - num_points - 1  # mask-only rounds besides the final one
    if extra_empty < 0:
        raise ValueError(f"num_points: expected at most num_rounds - 2 = {num_rounds - 2}, got {num_points}")
    plan = np.ones(later - 1, dtype=bool)
    plan[rng.choice(later - 1, size=extra_empty, replace=False)] = False
    return plan.tolist() + [False]


def simulate_training_episode(
    model,
    embeddings: torch.Tensor,
    gt_masks: torch.Tensor,
    rng: np.random.Generator,
    num_rounds: int = NUM_ROUNDS,
    num_points: int = NUM_ERROR_POINTS,
    use_box: Optional[bool] = None,
    single_output: bool = False,
) -> Dict[str, torch.Tensor]:
    """Run the 11-round simulation for a batch and return the averaged loss.

    embeddings: (B, C, h, w) image embeddings (with gradient if the encoder is trained);
    gt_masks: (B, S, S) bool, one target per image, in model-input pixels (S = img_size).
    ``use_box`` forces the first prompt's kind (default: a fair coin per batch).
    ``single_output`` is the ablation without ambiguity handling: every round, the first
    included, trains the single-output token only.
    Returns ``loss`` (scalar), ``miou_first`` (IoU of the best first-round mask) and
    ``miou_last`` (IoU after the last round).
    """
    B, S = gt_masks.shape[0], gt_masks.shape[-1]
    device = embeddings.device
    gt_np = gt_masks.cpu().numpy()
    if use_box is None:
        use_box = bool(rng.random() < 0.5)
    coords = labels = boxes = None
    if use_box:
        boxes = torch.as_tensor(np.stack([noisy_box(m, rng) for m in gt_np]), dtype=torch.float, device=device)
    else:
        coords = torch.as_tensor(np.stack([sample_point_in(m, rng) for m in gt_np])[:, None], dtype=torch.float, device=device)
        labels = torch.ones(B, 1, dtype=torch.int, device=device)
    mask_inputs = None
    low_size = tuple(4 * n for n in model.prompt_encoder.image_embedding_size)
    gt_low = F.interpolate(gt_masks[:, None].float(), low_size, mode="area")[:, 0] >= 0.5  # (B, h, w)
    losses, first_iou, last_iou = [], None, None
    for round_index, add_point in enumerate([None] + round_plan(rng, num_rounds, num_points)):
        if add_point:
            new_coords, new_labels = [], []
            for b in range(B):
                sampled = sample_error_point(previous[b], gt_np[b], rng)
                if sampled is None:  # already perfect: repeat a positive point inside the mask
                    sampled = (sample_point_in(gt_np[b], rng), 1)
                new_coords.append(sampled[0])
                new_labels.append(sampled[1])
            new_coords = torch.as_tensor(np.stack(new_coords)[:, None], dtype=torch.float, device=device)
            new_labels = torch.as_tensor(new_labels, dtype=torch.int, device=device)[:, None]
            coords = new_coords if coords is None else torch.cat([coords, new_coords], 1)
            labels = new_labels if labels is None else torch.cat([labels, new_labels], 1)
        single_point = boxes is None and coords is not None and coords.shape[1] == 1
        multimask = single_point and not single_output
        low_res, iou_pred = model.decode(embeddings, coords, labels, boxes, mask_inputs, multimask_output=multimask)
        # the loss is taken at the low-res mask size against the area-downsampled target:
        # 16x cheaper than at full size, and what the decoder actually predicts
        out = sam_loss(low_res, iou_pred, gt_low)
        losses.append(out["loss"])
        # feed back the low-res logits of the mask the model itself rates best
        best = iou_pred.detach().argmax(dim=1)
        pick = torch.arange(B, device=device)
        mask_inputs = low_res.detach()[pick, best][:, None]
        full = F.interpolate(mask_inputs, (S, S), mode="bilinear", align_corners=False)
        previous = (full[:, 0] > 0).cpu().numpy()  # next error points come from this mask
        if round_index == 0:
            first_iou = out["iou_true"].max(dim=1).values.mean()
        last_iou = out["iou_true"][pick, best].mean()
    return {"loss": torch.stack(losses).mean(), "miou_first": first_iou, "miou_last": last_iou}


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
    ious_all, oracle_first, noc85, noc90 = [], [], [], []
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
            inter = (masks & gts[:, None]).sum((-1, -2))
            union = (masks | gts[:, None]).sum((-1, -2))
            candidate_iou = inter / np.maximum(union, 1)
            ious[:, k] = candidate_iou[np.arange(T), best]
            if k == 0:
                oracle_first.extend(candidate_iou.max(axis=1).tolist())
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
    )


def _clicks_to_reach(ious: np.ndarray, threshold: float, max_clicks: int) -> int:
    reached = np.flatnonzero(ious >= threshold)
    return int(reached[0]) + 1 if len(reached) else max_clicks


# ----------------------------------------------------------------------------- ambiguity

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
            ious = (masks & levels).sum((-2, -1)) / np.maximum((masks | levels).sum((-2, -1)), 1)  # (L, C)
            row = np.full(3, np.nan)
            row[: len(ious)] = ious.max(axis=1)
            rows.append(row)
            chosen = torch.as_tensor(logits[int(np.argmax(scores))], dtype=torch.float)
            blur.extend(in_between(torch.sigmoid(chosen).numpy(), item["masks"], chain))
    rows = np.array(rows) if rows else np.zeros((0, 3))
    return AmbiguityResult(per_level_iou=rows, blur=float(np.mean(blur)) if blur else float("nan"), num_chains=len(rows))
