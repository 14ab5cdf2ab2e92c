"""The 11-round click simulation that SAM is trained with.

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

The evaluation protocol (clicks farthest from the error region's boundary, NoC) lives in
:mod:`sam_lab.evaluation.interactive`; lesson 09 puts the two side by side.

Coordinates are (x, y) pixels; masks are (H, W) bool.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt

from ..inference.masks import mask_box, mask_iou, pairwise_mask_iou
from .losses import sam_loss

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


FIRST_CLICKS = ("uniform", "interior", "mixed")


def sample_interior_point(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A pixel (x, y) drawn uniformly from the mask's core: the pixels at least half as far from
    its boundary as its farthest pixel (the evaluation clicks that farthest pixel; an annotator
    clicks near it). Bias towards the interior, as RITM-style point samplers do."""
    if not mask.any():
        raise ValueError("mask: expected at least one foreground pixel, got an empty mask")
    distance = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return sample_point_in(distance >= 0.5 * distance.max(), rng)


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


# ----------------------------------------------------------------------------- training

IOU_TARGETS = ("target", "any_level", "mixed", "expected")
MASK_TARGETS = ("binary", "soft", "full")


def _levels_at_click(logits: torch.Tensor, levels: torch.Tensor, clicks: torch.Tensor):
    """(B, L) which of the levels contain each click, and (B, K, L) each mask's IoU with each level."""
    B, L, h, w = levels.shape
    x = clicks[:, 0].long().clamp(0, w - 1)
    y = clicks[:, 1].long().clamp(0, h - 1)
    contains = levels[torch.arange(B, device=levels.device), :, y, x]
    iou = torch.stack([pairwise_mask_iou(masks > 0, lv) for masks, lv in zip(logits, levels)])
    return contains, iou


def level_iou(logits: torch.Tensor, levels: torch.Tensor, clicks: torch.Tensor) -> torch.Tensor:
    """For a one-click prompt: each predicted mask's IoU with the object, among those of the
    image that contain the click, that it matches best.

    logits (B, K, h, w) low-res; levels (B, L, h, w) bool, the image's masks at the same size
    (the target among them); clicks (B, 2) (x, y) in those pixels. Returns (B, K). A click on a
    part inside a whole is ambiguous: the whole and the part are both right answers, and this
    is the score that does not punish the token for giving the one the target did not happen to be."""
    contains, iou = _levels_at_click(logits, levels, clicks)
    return iou.masked_fill(~contains[:, None, :], 0.0).max(dim=-1).values


def expected_level_iou(logits: torch.Tensor, levels: torch.Tensor, clicks: torch.Tensor) -> torch.Tensor:
    """For a one-click prompt: each predicted mask's IoU with the target *expected* over which
    of the image's masks the click was drawn for. A mask drawn uniformly and then a click
    uniformly inside it make each distinct mask containing the click the target with odds
    1 / area, so this is the least-squares optimum of the usual IoU target with its noise
    (which level the draw happened to be) averaged out: the same head at the optimum, a less
    noisy signal on the way.

    logits (B, K, h, w) low-res; levels (B, L, h, w) bool, the drawn masks of each target's image
    at the same size (repeats allowed: a mask counts once); clicks (B, 2) (x, y) in those pixels.
    Returns (B, K)."""
    L = levels.shape[1]
    contains, iou = _levels_at_click(logits, levels, clicks)
    flat = levels.flatten(2)
    same = (flat[:, :, None] == flat[:, None, :]).all(-1)  # (B, L, L): mask l equals mask l'
    repeat = (same & torch.ones(L, L, dtype=torch.bool, device=levels.device).tril(-1)).any(-1)  # equals an earlier one
    area = flat.sum(-1).clamp(min=1).float()
    weight = torch.where(contains & ~repeat, 1.0 / area, torch.zeros_like(area))
    weight = weight / weight.sum(-1, keepdim=True).clamp(min=1e-12)
    return (iou * weight[:, None, :]).sum(-1)


def round_plan(rng: np.random.Generator, num_rounds: int = NUM_ROUNDS, num_points: int = NUM_ERROR_POINTS) -> List[bool]:
    """For rounds 2..num_rounds: whether each adds a point. The last round adds none, and the
    other mask-only rounds go at random places before it (default: 8 points, 2 mask-only).
    One round means the first prompt only (an empty plan)."""
    if num_rounds < 1:
        raise ValueError(f"num_rounds: expected at least 1, got {num_rounds}")
    if num_rounds == 1:
        return []
    later = num_rounds - 1
    extra_empty = later - num_points - 1  # mask-only rounds besides the final one
    if extra_empty < 0:
        raise ValueError(f"num_points: expected at most num_rounds - 2 = {num_rounds - 2}, got {num_points}")
    plan = np.ones(later - 1, dtype=bool)
    plan[rng.choice(later - 1, size=extra_empty, replace=False)] = False
    return plan.tolist() + [False]


GRAD_ROUNDS = ("all", "first_last", "last", "first_random")


def graded_rounds(grad_rounds: str, num_rounds: int, rng: Optional[np.random.Generator] = None) -> set:
    """The (0-based) rounds whose loss is backpropagated, for ``grad_rounds`` in GRAD_ROUNDS
    (``"first_random"``: round 1 and one later round drawn with ``rng``, so that over many steps
    every click count learns, at first_last's cost)."""
    if grad_rounds == "all":
        return set(range(num_rounds))
    if grad_rounds == "first_last":
        return {0, num_rounds - 1}
    if grad_rounds == "last":
        return {num_rounds - 1}
    if grad_rounds == "first_random":
        if rng is None:
            raise ValueError("rng: grad_rounds 'first_random' draws its round with a generator, got None")
        return {0, int(rng.integers(1, num_rounds))} if num_rounds > 1 else {0}
    raise ValueError(f"grad_rounds: expected one of {GRAD_ROUNDS}, got {grad_rounds!r}")


def simulate_training_episode(
    model,
    embeddings: torch.Tensor,
    gt_masks: torch.Tensor,
    rng: np.random.Generator,
    num_rounds: int = NUM_ROUNDS,
    num_points: int = NUM_ERROR_POINTS,
    use_box: Optional[bool] = None,
    single_output: bool = False,
    grad_rounds: str = "all",
    focal_alpha: float = 0.25,
    iou_weight: float = 1.0,
    level_masks: Optional[torch.Tensor] = None,
    level_weight: Optional[float] = 1.0,
    mask_target: str = "binary",
    first_click: str = "uniform",
    stop_after_graded: bool = False,
) -> Dict[str, torch.Tensor]:
    """Run the 11-round simulation for a batch and return the averaged loss.

    embeddings: (B, C, h, w) image embeddings (with gradient if the encoder is trained);
    gt_masks: (B, S, S) bool, one target per image, in model-input pixels (S = img_size).
    ``use_box`` forces the first prompt's kind (default: a fair coin per batch).
    ``single_output`` is the ablation without ambiguity handling: every round, the first
    included, trains the single-output token only.
    ``grad_rounds`` says which rounds the loss backpropagates through: ``"all"`` (the paper's
    description: every round's loss is averaged), ``"first_last"`` (round 1, where the three
    ambiguity tokens learn, and the final round; the others run under ``torch.no_grad`` only to
    place the next click, as RITM/SimpleClick do), ``"first_random"`` (round 1 and one later round
    drawn per step: every click count learns) or ``"last"``. ``focal_alpha`` weighs the
    focal loss's positives (0.25 in the focal-loss paper, 0.5 in RITM's normalised focal loss).
    ``level_masks`` (B, L, S, S) bool, the masks of each target's image (its own among them): if
    given, the IoU head of a one-click round learns :func:`level_iou` (the best IoU with any of
    them that contains the click) instead of the IoU with the target; ``level_weight`` below 1
    blends the two (``level_weight * level_iou + (1 - level_weight) * IoU with the target``);
    ``level_weight=None`` makes it :func:`expected_level_iou` instead (the target's IoU averaged
    over which containing mask the click was drawn for).
    ``mask_target`` says what the mask loss compares the low-res logits with: ``"binary"`` the
    target area-downsampled to the low-res size and thresholded at half coverage (a boundary
    known only to the nearest low-res pixel: with 64x64 masks of a 256-px input, 18 % of the
    synthetic targets cannot reach IoU 0.9 even when every low-res pixel is right);
    ``"soft"`` the same coverage left as a fraction (0.3 = 30 % of that pixel is the object), so
    the logits learn where inside a pixel the boundary runs; ``"full"`` the logits upsampled
    (bilinear, as the predictor does) to the input size against the full-size target, with the
    IoU head's target measured there too.
    ``first_click`` says where a first point prompt is drawn: ``"uniform"`` anywhere in the mask
    (the paper), ``"interior"`` in its core (:func:`sample_interior_point`), ``"mixed"`` one or the
    other by a fair coin per mask.
    ``stop_after_graded`` ends the episode after the last round whose loss is backpropagated: the
    rounds after it only place clicks nobody learns from, so the gradient is the same and the step
    cheaper (with ``"first_random"`` 6.5 rounds run on average instead of 11); ``miou_last`` is
    then the IoU after the last round that ran.
    Returns ``loss`` (scalar, over the rounds with gradient), ``miou_first`` (IoU of the best first-round mask) and
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
        if first_click not in FIRST_CLICKS:
            raise ValueError(f"first_click: expected one of {FIRST_CLICKS}, got {first_click!r}")
        if first_click == "mixed":  # a fair coin per mask: its core, or anywhere in it
            points = [(sample_interior_point if rng.random() < 0.5 else sample_point_in)(m, rng) for m in gt_np]
        else:
            sampler = sample_point_in if first_click == "uniform" else sample_interior_point
            points = [sampler(m, rng) for m in gt_np]
        coords = torch.as_tensor(np.stack(points)[:, None], dtype=torch.float, device=device)
        labels = torch.ones(B, 1, dtype=torch.int, device=device)
    mask_inputs = None
    if mask_target not in MASK_TARGETS:
        raise ValueError(f"mask_target: expected one of {MASK_TARGETS}, got {mask_target!r}")
    low_size = tuple(4 * n for n in model.prompt_encoder.image_embedding_size)
    coverage = F.interpolate(gt_masks[:, None].float(), low_size, mode="area")[:, 0]  # (B, h, w) in [0, 1]
    gt_low = coverage >= 0.5
    loss_target = {"binary": gt_low, "soft": coverage, "full": gt_masks}[mask_target]
    levels_low = None
    if level_masks is not None:
        levels_low = F.interpolate(level_masks.float(), low_size, mode="area") >= 0.5  # (B, L, h, w)
    losses, first_iou, last_iou = [], None, None
    previous = None  # the last round's thresholded mask, (B, S, S); round 1 has none
    plan = [None] + round_plan(rng, num_rounds, num_points)
    graded = graded_rounds(grad_rounds, len(plan), rng)
    if stop_after_graded:
        plan = plan[: max(graded) + 1]
    for round_index, add_point in enumerate(plan):
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
        with torch.set_grad_enabled(torch.is_grad_enabled() and round_index in graded):
            low_res, iou_pred = model.decode(embeddings, coords, labels, boxes, mask_inputs, multimask_output=multimask)
            # "binary" / "soft": the loss is taken at the low-res mask size against the
            # area-downsampled target (16x cheaper than at full size); "full": at the input size
            iou_target = None
            if levels_low is not None and single_point:
                clicks = coords[:, 0] * (low_size[1] / S)  # model-input pixels -> low-res pixels
                scorer = expected_level_iou if level_weight is None else level_iou
                iou_target = scorer(low_res.detach(), levels_low, clicks)
                if level_weight is not None and level_weight != 1.0:
                    own = mask_iou(low_res.detach() > 0, gt_low[:, None].expand_as(low_res))
                    iou_target = level_weight * iou_target + (1.0 - level_weight) * own
            scored = low_res if mask_target != "full" else F.interpolate(low_res, (S, S), mode="bilinear", align_corners=False)
            out = sam_loss(scored, iou_pred, loss_target, iou_weight=iou_weight, focal_alpha=focal_alpha, iou_target=iou_target)
        if round_index in graded:
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
    return {"loss": torch.stack(losses).mean(), "miou_first": first_iou, "miou_last": last_iou, "rounds_run": len(plan)}
