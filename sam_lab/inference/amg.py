"""Automatic mask generation, "segment everything" (paper §7.1 and appendix B; lesson 10).

With no prompt at all, SAM can still label a whole image: click every point of a regular grid,
keep the masks the model is sure of, and remove the duplicates. The paper's data engine labelled
SA-1B's 1.1 billion masks this way. Each stage is one small function here:

    build_point_grid, build_all_layer_point_grids   where to click, as fractions of the crop
    generate_crop_boxes      the whole image, then 2x2, 4x4, ... overlapping zoomed-in crops
    stability_score          IoU of a mask thresholded at +offset and at -offset
    masks_to_boxes, box_iou, box_nms    tight boxes and greedy non-maximum suppression
    is_box_near_crop_edge    a mask cut by an inner crop edge is only a piece of an object
    remove_small_regions     fill small holes and drop small islands (scipy.ndimage)
    match_rate               how many of one generator's masks another one found
    SamAutomaticMaskGenerator   all of it, batched, with the reference's options and records

The filters, in order, for the candidates of one batch of grid points (3 masks per point):
predicted IoU > ``pred_iou_thresh``; stability >= ``stability_score_thresh``; not touching an
inner crop edge. Then, per crop, box NMS at ``box_nms_thresh`` (higher predicted IoU wins);
across crops, box NMS at ``crop_nms_thresh`` where the smaller crop wins (it saw the object
at a higher resolution). Last, optionally, holes and islands under ``min_mask_region_area``.

Where the time goes, and what this module does about it. A grid of 32 x 32 points gives 3,072
candidates; most fail the filters. Meta's generator upsamples every candidate to the full image
size before it filters anything. Here the predicted-IoU filter runs on the decoder's output
directly, and the stability score is first computed on the 256 x 256 low-res logits as a
*prefilter*, with a margin (``stability_prefilter_margin``) so that nothing the exact test
would keep is dropped. Only the survivors are upsampled; their stability is then computed
exactly at full size, as the reference does, and the same threshold decides. Kept candidates
are stored as low-res logits, so memory does not grow with the image, and the final masks are
upsampled once more at the end. With the stability filter off (threshold 0), the score is
computed only for the masks that are kept. Every step works on whole batches of tensors.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from .predictor import SamPredictor, items_per_chunk
from .rle import mask_to_rle
from .transforms import get_preprocess_shape
from .validation import check_image

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
#: what ``generator.stats`` counts after each ``generate``, summed over crops (with m2m, the
#: IoU count is of the first decoding; the stability count is after the refinement)
STAGE_COUNTS = ("candidates", "passed_iou", "passed_stability", "passed_crop_edge", "after_nms", "after_crop_nms", "final")
CROP_EDGE_TOLERANCE = 20.0  # pixels: a box side this close to an inner crop edge touches it


# ------------------------------------------------------------------------------ where to click
def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n², 2) points (x, y) in [0, 1]: the centres of an n x n grid of equal cells, x fastest."""
    centres = (np.arange(n_per_side) + 0.5) / n_per_side
    xs, ys = np.meshgrid(centres, centres)  # xs varies along a row
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> List[np.ndarray]:
    """One grid per crop layer; layer i has ``n_per_side / scale_per_layer**i`` points a side,
    so zoomed-in crops can be clicked more sparsely."""
    return [build_point_grid(int(n_per_side / scale_per_layer**i)) for i in range(n_layers + 1)]


def generate_crop_boxes(im_size: Tuple[int, int], n_layers: int, overlap_ratio: float) -> Tuple[List[List[int]], List[int]]:
    """Crop boxes (x0, y0, x1, y1) and their layer: layer 0 is the whole image, layer i cuts it
    into 2^i x 2^i crops that overlap by ``overlap_ratio`` of the short side (scaled by 2 / 2^i)."""
    im_h, im_w = im_size
    boxes, layers = [[0, 0, im_w, im_h]], [0]
    short_side = min(im_h, im_w)
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        crop_w = int(math.ceil((overlap * (per_side - 1) + im_w) / per_side))
        crop_h = int(math.ceil((overlap * (per_side - 1) + im_h) / per_side))
        x0s = [int((crop_w - overlap) * i) for i in range(per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0 in x0s:
            for y0 in y0s:
                boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
                layers.append(layer)
    return boxes, layers


# ------------------------------------------------------------------------------ scores and boxes
def stability_score(logits: torch.Tensor, threshold: float = 0.0, offset: float = 1.0) -> torch.Tensor:
    """IoU between ``logits > threshold + offset`` and ``logits > threshold - offset`` over the
    last two dimensions. The first mask lies inside the second, so this is a ratio of areas; a
    mask that is empty even at the low threshold scores 0."""
    # counting a row in int16 and then the rows in int32 is ~4x faster than one bool sum
    row_type = torch.int16 if logits.shape[-1] <= torch.iinfo(torch.int16).max else torch.int32
    inner = (logits > threshold + offset).sum(-1, dtype=row_type).sum(-1, dtype=torch.int32)
    outer = (logits > threshold - offset).sum(-1, dtype=row_type).sum(-1, dtype=torch.int32)
    return torch.where(outer > 0, inner / outer.clamp(min=1), torch.zeros((), dtype=torch.float32, device=logits.device))


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes (N, 4) int64 (x0, y0, x1, y1), corners included, of boolean masks (N, H, W);
    an empty mask gets (0, 0, 0, 0)."""
    if masks.ndim != 3:
        raise ValueError(f"masks: expected a boolean (N, H, W) tensor, got shape {tuple(masks.shape)}")
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4, dtype=torch.int64, device=masks.device)
    as_bytes = masks.view(torch.uint8)  # a max over bytes is ~8x faster than any() here
    rows, cols = as_bytes.amax(-1).bool(), as_bytes.amax(-2).bool()  # (N, H), (N, W)
    # argmax of a 0/1 row finds its first 1; on the flipped row, its last
    y0 = rows.to(torch.uint8).argmax(-1)
    y1 = h - 1 - rows.flip(-1).to(torch.uint8).argmax(-1)
    x0 = cols.to(torch.uint8).argmax(-1)
    x1 = w - 1 - cols.flip(-1).to(torch.uint8).argmax(-1)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1).to(torch.int64)
    return boxes * rows.any(-1, keepdim=True)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of one box (4,) with each of ``boxes`` (N, 4), as areas (x1 - x0) * (y1 - y0)."""
    x0 = torch.maximum(box[0], boxes[:, 0])
    y0 = torch.maximum(box[1], boxes[:, 1])
    x1 = torch.minimum(box[2], boxes[:, 2])
    y1 = torch.minimum(box[3], boxes[:, 3])
    inter = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    return inter / (box_area(box) + box_area(boxes) - inter)


def box_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression. Visit the boxes from the highest score down (ties keep
    their order); keep a box unless a kept one overlaps it with IoU > ``iou_threshold``.
    Returns the kept indices, highest score first. Boxes of zero area overlap nothing."""
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"boxes/scores: expected (N, 4) and (N,), got {tuple(boxes.shape)} and {tuple(scores.shape)}")
    boxes = boxes.float()
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes[order]
    alive = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(len(order)):  # one vector step per *kept* box; suppressed ones are skipped
        if not alive[i]:
            continue
        keep.append(i)
        rest = boxes[i + 1 :]
        alive[i + 1 :] &= ~(box_iou(boxes[i], rest) > iou_threshold)  # NaN (0 / 0) suppresses nothing
    return order[torch.as_tensor(keep, dtype=torch.long, device=boxes.device)]


def is_box_near_crop_edge(boxes: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int],
                          atol: float = CROP_EDGE_TOLERANCE) -> torch.Tensor:
    """(N,) True where a box (in image pixels) lies within ``atol`` of an edge of ``crop_box``
    that is not also an edge of the image: that mask was probably cut off by the crop."""
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    image = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    boxes = boxes.float()
    near_crop = (boxes - crop).abs() <= atol
    near_image = (boxes - image).abs() <= atol
    return (near_crop & ~near_image).any(dim=1)


# ------------------------------------------------------------------------------ clean-up
_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> Tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or remove islands (``mode="islands"``) smaller than
    ``area_thresh`` pixels in an (H, W) bool mask, with 8-connectivity. If every island is
    small, the largest is kept. Returns the mask and whether anything changed."""
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode: expected 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = ~mask if holes else mask  # the regions to measure: background pieces or foreground pieces
    labels, count = ndimage.label(working, structure=_EIGHT_NEIGHBOURS)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    small = np.flatnonzero(sizes < area_thresh) + 1
    if len(small) == 0:
        return mask, False
    if holes:
        return mask | np.isin(labels, small), True
    big = np.setdiff1d(np.arange(1, count + 1), small)
    if len(big) == 0:
        big = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, big), True


def match_rate(reference: List[Dict[str, Any]], records: List[Dict[str, Any]], iou: float = 0.9) -> float:
    """Share of the masks in ``reference`` (records with bool ``segmentation``) that one of
    ``records`` matches with mask IoU >= ``iou``: how two generators' outputs are compared.
    Two empty lists agree (1.0)."""
    from .masks import pairwise_mask_iou

    if not reference:
        return 1.0 if not records else 0.0
    if not records:
        return 0.0
    ious = pairwise_mask_iou(np.stack([r["segmentation"] for r in reference]), np.stack([r["segmentation"] for r in records]))
    return float((ious.max(1).values >= iou).float().mean())


# ------------------------------------------------------------------------------ the generator
def _check_fraction(name: str, value, upper_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not (0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0):
        interval = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return float(value)


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


class SamAutomaticMaskGenerator:
    """Masks for everything in an image, as records like Meta's ``SamAutomaticMaskGenerator``.

    ``model`` is any SAM (ours, or Meta's ``Sam``). The options and their defaults are the
    reference's; three are new:

    - ``multimask_output`` (True): three candidates per point, or only the single-mask token;
    - ``use_m2m`` (False): SAM 2's mask-to-mask refinement, which decodes each surviving
      candidate once more from its own point and its own low-res logits as the mask prompt
      (single mask), and filters the refined mask again;
    - ``progress`` (False): a tqdm bar over the point batches of every crop;
    - ``stability_prefilter_margin`` (0.1): how far below the threshold a candidate's low-res
      stability may fall and still be checked exactly at full size (see the module docstring).

    ``generate(image)`` takes an (H, W, 3) uint8 RGB image (grayscale and RGBA are converted)
    and returns a list of dicts: ``segmentation`` (an (H, W) bool array, or a COCO RLE dict for
    ``output_mode`` "uncompressed_rle" / "coco_rle"), ``area``, ``bbox`` (x, y, w, h),
    ``predicted_iou``, ``point_coords`` ([[x, y]]), ``stability_score``, ``crop_box`` (x, y, w, h).
    Afterwards ``generator.stats`` says how many candidates each stage kept (``STAGE_COUNTS``)
    and the best predicted IoU seen: why an image got no masks.
    """

    def __init__(
        self,
        model,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[List[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        multimask_output: bool = True,
        use_m2m: bool = False,
        progress: bool = False,
        stability_prefilter_margin: float = 0.1,
    ) -> None:
        self.points_per_batch = _check_count("points_per_batch", points_per_batch, 1)
        self.pred_iou_thresh = _check_fraction("pred_iou_thresh", pred_iou_thresh)
        self.stability_score_thresh = _check_fraction("stability_score_thresh", stability_score_thresh)
        if isinstance(stability_score_offset, bool) or not isinstance(stability_score_offset, Real) or stability_score_offset < 0:
            raise ValueError(f"stability_score_offset: expected a number >= 0, got {stability_score_offset!r}")
        self.stability_score_offset = float(stability_score_offset)
        self.box_nms_thresh = _check_fraction("box_nms_thresh", box_nms_thresh)
        self.crop_n_layers = _check_count("crop_n_layers", crop_n_layers, 0)
        self.crop_nms_thresh = _check_fraction("crop_nms_thresh", crop_nms_thresh)
        self.crop_overlap_ratio = _check_fraction("crop_overlap_ratio", crop_overlap_ratio, upper_open=True)
        self.crop_n_points_downscale_factor = _check_count("crop_n_points_downscale_factor", crop_n_points_downscale_factor, 1)
        self.min_mask_region_area = _check_count("min_mask_region_area", min_mask_region_area, 0)
        self.stability_prefilter_margin = _check_fraction("stability_prefilter_margin", stability_prefilter_margin)
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode: expected one of {', '.join(OUTPUT_MODES)}, got {output_mode!r}")
        self.output_mode = output_mode
        for name, flag in (("multimask_output", multimask_output), ("use_m2m", use_m2m), ("progress", progress)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name}: expected True or False, got {flag!r}")
        self.multimask_output, self.use_m2m, self.progress = multimask_output, use_m2m, progress
        self.point_grids = self._grids(points_per_side, point_grids)
        self.predictor = SamPredictor(model)
        self.stats: Dict[str, float] = {}

    def _grids(self, points_per_side, point_grids) -> List[np.ndarray]:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError(
                "points_per_side/point_grids: expected exactly one of them, got "
                + ("both" if point_grids is not None else "neither")
            )
        if point_grids is None:
            _check_count("points_per_side", points_per_side, 1)
            return build_all_layer_point_grids(int(points_per_side), self.crop_n_layers, self.crop_n_points_downscale_factor)
        if not isinstance(point_grids, (list, tuple)) or len(point_grids) != self.crop_n_layers + 1:
            got = f"{len(point_grids)} grids" if isinstance(point_grids, (list, tuple)) else type(point_grids).__name__
            raise ValueError(f"point_grids: expected a list of crop_n_layers + 1 = {self.crop_n_layers + 1} grids, got {got}")
        grids = []
        for i, grid in enumerate(point_grids):
            grid = np.asarray(grid, dtype=np.float64)
            if grid.ndim != 2 or grid.shape[1] != 2 or len(grid) == 0 or grid.min() < 0 or grid.max() > 1:
                raise ValueError(f"point_grids[{i}]: expected an (N, 2) array of (x, y) in [0, 1] with N >= 1, got shape {grid.shape}")
            grids.append(grid)
        return grids

    # -------------------------------------------------------------------------- the whole image
    @torch.no_grad()
    def generate(self, image) -> List[Dict[str, Any]]:
        image = check_image(image, "RGB")
        height, width = image.shape[:2]
        self.stats = dict.fromkeys(STAGE_COUNTS, 0)
        self.stats["best_predicted_iou"] = float("nan")
        crop_boxes, layers = generate_crop_boxes((height, width), self.crop_n_layers, self.crop_overlap_ratio)
        batches = sum(math.ceil(len(self.point_grids[layer]) / self.points_per_batch) for layer in layers)
        bar = tqdm(total=batches, desc="segment everything", unit="batch", disable=not self.progress, leave=False)
        try:
            parts = [self._crop_candidates(image, box, layer, index, bar) for index, (box, layer) in enumerate(zip(crop_boxes, layers))]
        finally:
            bar.close()
        data = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
        if len(crop_boxes) > 1:  # across crops the smaller crop wins: it saw the object larger
            crop_tensor = torch.as_tensor(crop_boxes, dtype=torch.float, device=data["boxes"].device)
            keep = box_nms(data["boxes"].float(), 1.0 / box_area(crop_tensor[data["crop"]]), self.crop_nms_thresh)
            data = {key: value[keep] for key, value in data.items()}
        self.stats["after_crop_nms"] = len(data["iou"])
        masks = self._full_size_masks(data, crop_boxes, (height, width))
        if self.min_mask_region_area > 0 and len(masks):
            masks, data = self._clean_regions(masks, data)
        self.stats["final"] = len(masks)
        return self._records(masks, data, crop_boxes)

    # -------------------------------------------------------------------------- one crop
    def _crop_candidates(self, image: np.ndarray, crop_box, layer: int, crop_index: int, bar) -> Dict[str, torch.Tensor]:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1]
        crop_hw = crop.shape[:2]
        self.predictor.set_image(crop)
        points = self.point_grids[layer] * np.array([[crop_hw[1], crop_hw[0]]])  # fractions -> crop pixels
        batches = []
        for start in range(0, len(points), self.points_per_batch):
            batches.append(self._batch_candidates(points[start : start + self.points_per_batch], crop_box, image.shape[:2]))
            bar.update()
        self.predictor.reset_image()
        data = {key: torch.cat([batch[key] for batch in batches]) for key in batches[0]}
        keep = box_nms(data["boxes"].float(), data["iou"], self.box_nms_thresh)  # within the crop
        data = {key: value[keep] for key, value in data.items()}
        self.stats["after_nms"] += len(keep)
        offset = torch.as_tensor([x0, y0], device=data["boxes"].device)
        data["boxes"] = data["boxes"] + offset.repeat(2)  # crop pixels -> image pixels
        data["points"] = data["points"] + offset.to(data["points"].dtype)
        data["crop"] = torch.full((len(keep),), crop_index, dtype=torch.long, device=data["boxes"].device)
        return data

    def _score_filter(self, low_res: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
        """Candidates that pass the IoU filter and the low-res stability prefilter."""
        keep = iou > self.pred_iou_thresh if self.pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
        if self.stability_score_thresh > 0:
            scale = low_res.shape[-1] / self.predictor.model.image_encoder.img_size
            h, w = (math.ceil(s * scale) for s in self.predictor.input_size)  # the unpadded part
            rough = stability_score(low_res[:, 0, :h, :w], self.predictor.model.mask_threshold, self.stability_score_offset)
            keep &= rough >= self.stability_score_thresh - self.stability_prefilter_margin
        return keep

    def _batch_candidates(self, points: np.ndarray, crop_box, image_hw) -> Dict[str, torch.Tensor]:
        predictor, device = self.predictor, self.predictor.device
        crop_hw = predictor.original_size
        coords = torch.as_tensor(predictor.transform.apply_coords(points, crop_hw), dtype=torch.float, device=device)
        labels = torch.ones(len(points), 1, dtype=torch.int, device=device)
        low_res, iou = predictor.decode_low_res(coords[:, None], labels, multimask_output=self.multimask_output)
        per_point = low_res.shape[1]
        low_res, iou = low_res.flatten(0, 1)[:, None].float(), iou.flatten().float()  # (B*C, 1, h, w), (B*C,)
        coords = coords.repeat_interleave(per_point, 0)
        points = torch.as_tensor(points, device=device).repeat_interleave(per_point, 0)
        self.stats["candidates"] += len(iou)
        self.stats["best_predicted_iou"] = float(np.fmax(self.stats["best_predicted_iou"], float(iou.max())))
        self.stats["passed_iou"] += int((iou > self.pred_iou_thresh).sum()) if self.pred_iou_thresh > 0 else len(iou)
        keep = self._score_filter(low_res, iou)
        low_res, iou, coords, points = low_res[keep], iou[keep], coords[keep], points[keep]
        if self.use_m2m and len(iou):
            ones = torch.ones(len(coords), 1, dtype=torch.int, device=device)
            low_res, iou = predictor.decode_low_res(coords[:, None], ones, mask_input=low_res, multimask_output=False)
            low_res, iou = low_res.float(), iou[:, 0].float()
            keep = self._score_filter(low_res, iou)
            low_res, iou, points = low_res[keep], iou[keep], points[keep]
        # only the survivors are brought to full size; there the exact stability decides
        stability, boxes = self._full_size_scores(low_res, crop_hw)
        if self.stability_score_thresh > 0:
            keep = stability >= self.stability_score_thresh
        else:  # nothing to filter: score only the masks that are kept in the end (_full_size_masks)
            stability = torch.full_like(iou, float("nan"))
            keep = torch.ones_like(iou, dtype=torch.bool)
        self.stats["passed_stability"] += int(keep.sum())
        crop_offset = torch.as_tensor([crop_box[0], crop_box[1]] * 2, device=device)
        image_box = [0, 0, image_hw[1], image_hw[0]]
        keep &= ~is_box_near_crop_edge(boxes + crop_offset, crop_box, image_box)
        self.stats["passed_crop_edge"] += int(keep.sum())
        return {"low_res": low_res[keep], "iou": iou[keep], "stability": stability[keep], "boxes": boxes[keep], "points": points[keep]}

    #: the most bytes of full-size logits brought up at once (see _full_size_scores)
    UPSAMPLE_CHUNK_BYTES = 16 * 2**20

    def _full_size_scores(self, low_res: torch.Tensor, crop_hw):
        """Each candidate's exact stability score (None with the stability filter off) and box,
        from its logits upsampled to the crop. A few masks at a time: a batch's full-size logits
        are hundreds of MB (192 ViT-B candidates: 537 MB at 683 x 1024), and on the CPU a fresh
        allocation that size is page-faulted in anew each time; in chunks of at most 16 MiB the
        same upsampling took 0.27 s instead of 1.1-1.9 s (2 threads). Same numbers."""
        predictor, model = self.predictor, self.predictor.model
        h, w = predictor.input_size
        chunk = items_per_chunk(4 * h * w, self.UPSAMPLE_CHUNK_BYTES, low_res.device)  # fp32 logits at the input size
        threshold, stabilities, boxes = model.mask_threshold, [], []
        for start in range(0, max(1, len(low_res)), chunk):  # (an empty batch goes through once)
            logits = model.postprocess_masks(low_res[start : start + chunk], predictor.input_size, crop_hw)[:, 0]
            if self.stability_score_thresh > 0:
                stabilities.append(stability_score(logits, threshold, self.stability_score_offset))
            boxes.append(masks_to_boxes(logits > threshold))
        return (torch.cat(stabilities) if stabilities else None), torch.cat(boxes)

    # -------------------------------------------------------------------------- the results
    def _full_size_masks(self, data: Dict[str, torch.Tensor], crop_boxes, image_hw) -> torch.Tensor:
        """(N, H, W) bool: each kept candidate's low-res logits upsampled to its crop, placed in
        the image. With no stability filter, the stability scores are computed here, for the
        kept masks only."""
        model = self.predictor.model
        masks = torch.zeros((len(data["iou"]), *image_hw), dtype=torch.bool, device=data["iou"].device)
        for index, (x0, y0, x1, y1) in enumerate(crop_boxes):
            members = torch.nonzero(data["crop"] == index).flatten()
            if len(members) == 0:
                continue
            crop_hw = (y1 - y0, x1 - x0)
            input_size = get_preprocess_shape(crop_hw[0], crop_hw[1], model.image_encoder.img_size)
            for start in range(0, len(members), self.points_per_batch):  # bounded memory
                chunk = members[start : start + self.points_per_batch]
                logits = model.postprocess_masks(data["low_res"][chunk], input_size, crop_hw)[:, 0]
                masks[chunk, y0:y1, x0:x1] = logits > model.mask_threshold
                if self.stability_score_thresh == 0:
                    data["stability"][chunk] = stability_score(logits, model.mask_threshold, self.stability_score_offset)
        return masks

    def _clean_regions(self, masks: torch.Tensor, data: Dict[str, torch.Tensor]):
        """Fill small holes, drop small islands; where a cleaned mask now duplicates another,
        NMS prefers the masks that needed no cleaning."""
        cleaned, untouched = [], []
        for mask in masks.cpu().numpy():
            mask, filled = remove_small_regions(mask, self.min_mask_region_area, "holes")
            mask, removed = remove_small_regions(mask, self.min_mask_region_area, "islands")
            cleaned.append(mask)
            untouched.append(not (filled or removed))
        masks = torch.as_tensor(np.stack(cleaned), device=masks.device)
        data = dict(data, boxes=masks_to_boxes(masks))
        scores = torch.as_tensor(untouched, dtype=torch.float, device=masks.device)
        keep = box_nms(data["boxes"].float(), scores, max(self.box_nms_thresh, self.crop_nms_thresh))
        return masks[keep], {key: value[keep] for key, value in data.items()}

    def _records(self, masks: torch.Tensor, data: Dict[str, torch.Tensor], crop_boxes) -> List[Dict[str, Any]]:
        masks = masks.cpu().numpy()
        areas = masks.sum((1, 2)).tolist()
        boxes = data["boxes"].cpu().tolist()
        records = []
        for i, mask in enumerate(masks):
            if self.output_mode == "binary_mask":
                segmentation = mask
            else:
                segmentation = mask_to_rle(mask, compressed=self.output_mode == "coco_rle")
            x0, y0, x1, y1 = boxes[i]
            cx0, cy0, cx1, cy1 = crop_boxes[int(data["crop"][i])]
            records.append({
                "segmentation": segmentation,
                "area": int(areas[i]),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "predicted_iou": float(data["iou"][i]),
                "point_coords": [data["points"][i].tolist()],
                "stability_score": float(data["stability"][i]),
                "crop_box": [cx0, cy0, cx1 - cx0, cy1 - cy0],
            })
        return records
