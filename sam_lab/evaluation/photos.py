"""Real photos with ground truth: does a model trained on synthetic shapes transfer?

SyntheticShapes is where the tiny model learns; this set is where it is tested on the sample
photos that ship with scikit-image, offline. Their ground truth is made here with classical
segmentation (thresholds, watershed, hole filling, the largest component), so every mask can
be re-derived and looked at (``python -m sam_lab.evaluation.photos --show FILE`` draws them):

    coins       24 coins             Sobel elevation + watershed from dark/bright markers
    coffee       2 nested masks      the cup's white rim with what it holds, and the coffee in it
    camera       1 the cameraman     Otsu threshold, largest dark component, holes filled
    horse        1 the horse         the silhouette of the binary image
    retina       1 the fundus        everything brighter than the black surround
    colorwheel   1 the wheel         everything that is not the black page
    cell         1 the cell          Otsu on a smoothed image, plus a margin, largest component

Items look like SyntheticShapes items (``image`` uint8 RGB at the photo's own size, ``masks``,
``parent``, ``level``, ``captions``), so :func:`~sam_lab.evaluation.evaluate_interactive`
runs on them unchanged. Nested masks have a parent (the coffee inside the cup).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Dict, List, Tuple

import numpy as np

from ..inference.validation import as_rgb

PHOTOS = ("coins", "coffee", "camera", "horse", "retina", "colorwheel", "cell")


def _largest(mask: np.ndarray) -> np.ndarray:
    from skimage import measure

    labels = measure.label(mask)
    if labels.max() == 0:
        raise RuntimeError("the classical segmentation found no component")
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    return labels == int(areas.argmax())


def _coins():
    from scipy import ndimage as ndi
    from skimage import data, filters, measure, segmentation

    image = data.coins()
    markers = np.zeros_like(image)
    markers[image < 30] = 1  # surely background
    markers[image > 150] = 2  # surely coin
    coins = ndi.binary_fill_holes(segmentation.watershed(filters.sobel(image), markers) == 2)
    labels = measure.label(coins)
    masks = [labels == r.label for r in measure.regionprops(labels) if r.area > 200]
    return image, masks, [-1] * len(masks), ["coin"] * len(masks)


def _coffee():
    from scipy import ndimage as ndi
    from skimage import color, data, morphology

    image = data.coffee()
    hsv = color.rgb2hsv(image)
    white = ndi.binary_opening((hsv[..., 1] < 0.25) & (hsv[..., 2] > 0.55), morphology.disk(3))
    cup = ndi.binary_fill_holes(_largest(white))  # the rim and everything it encloses
    coffee = ndi.binary_fill_holes(_largest(ndi.binary_opening(cup & ~white, morphology.disk(4))))
    return image, [cup, coffee], [-1, 0], ["cup", "coffee"]


def _camera():
    from scipy import ndimage as ndi
    from skimage import data, filters, morphology

    image = data.camera()
    dark = ndi.binary_opening(image < filters.threshold_otsu(image), morphology.disk(2))
    return image, [ndi.binary_fill_holes(_largest(dark))], [-1], ["cameraman"]


def _horse():
    from skimage import data

    silhouette = data.horse()  # True is the white page, False the horse
    return silhouette, [_largest(~silhouette)], [-1], ["horse"]


def _retina():
    from scipy import ndimage as ndi
    from skimage import color, data

    image = data.retina()
    return image, [ndi.binary_fill_holes(_largest(color.rgb2gray(image) > 0.08))], [-1], ["retina"]


def _colorwheel():
    from scipy import ndimage as ndi
    from skimage import data

    image = data.colorwheel()
    return image, [ndi.binary_fill_holes(_largest(image.max(axis=2) > 8))], [-1], ["colour wheel"]


def _cell():
    from scipy import ndimage as ndi
    from skimage import data, filters

    image = data.cell()
    smooth = filters.gaussian(image, 3)
    bright = smooth > filters.threshold_otsu(smooth) + 0.15
    return image, [ndi.binary_fill_holes(_largest(bright))], [-1], ["cell"]


_MAKERS: Dict[str, Callable[[], Tuple]] = {
    "coins": _coins, "coffee": _coffee, "camera": _camera, "horse": _horse,
    "retina": _retina, "colorwheel": _colorwheel, "cell": _cell,
}


@lru_cache(maxsize=None)
def photo_item(name: str) -> dict:
    """One photo and its classical ground truth (cached; treat the arrays as read-only)."""
    if name not in _MAKERS:
        raise ValueError(f"name: expected one of {PHOTOS}, got {name!r}")
    image, masks, parent, captions = _MAKERS[name]()
    masks = np.stack([np.asarray(m, dtype=bool) for m in masks])
    return {
        "name": name,
        "image": as_rgb(image),
        "masks": masks,
        "parent": np.array(parent, dtype=np.int64),
        "level": np.array([0 if p < 0 else 1 for p in parent], dtype=np.int64),
        "captions": list(captions),
    }


class SamplePhotos:
    """scikit-image's sample photos with classical ground truth (see the module docstring)."""

    def __init__(self, names=PHOTOS) -> None:
        names = tuple(names)
        unknown = [n for n in names if n not in _MAKERS]
        if unknown or not names:
            raise ValueError(f"names: expected a non-empty selection of {PHOTOS}, got {list(names)}")
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.names):
            raise IndexError(f"index: expected 0 <= index < {len(self.names)}, got {index}")
        return photo_item(self.names[index])

    @property
    def num_masks(self) -> int:
        return sum(len(self[i]["masks"]) for i in range(len(self)))


def evaluate_boxes(predictor, dataset) -> Dict[str, float]:
    """Box-prompt mIoU: each mask prompted with its tight box, one output (the paper's box
    evaluation). Returns ``miou`` and ``num_targets``; ``per_target`` lists every IoU."""
    import torch

    from ..inference.masks import mask_box, mask_iou

    ious: List[float] = []
    for index in range(len(dataset)):
        item = dataset[index]
        predictor.set_image(item["image"])
        boxes = np.stack([mask_box(m) for m in item["masks"]])
        boxes_t = predictor.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float), predictor.original_size)
        masks, _, _ = predictor.predict_torch(None, None, boxes=boxes_t.to(predictor.device), multimask_output=False)
        ious.extend(mask_iou(masks[:, 0].cpu().numpy(), item["masks"]).tolist())
    return {"miou": float(np.mean(ious)), "num_targets": len(ious), "per_target": ious}


def draw(dataset, path) -> None:
    """Every photo with its ground-truth masks overlaid, to check them by eye."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(dataset)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, range(n)):
        item = dataset[index]
        overlay = np.zeros(item["image"].shape[:2] + (4,))
        for k, mask in enumerate(item["masks"]):
            overlay[mask] = list(plt.cm.tab20(k % 20))[:3] + [0.55]
        ax.imshow(item["image"])
        ax.imshow(overlay)
        ax.set_title(f"{item['name']}: {len(item['masks'])} mask(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="scikit-image photos with classical ground truth")
    parser.add_argument("--show", required=True, help="write the photos with their masks to this PNG")
    args = parser.parse_args()
    photos = SamplePhotos()
    draw(photos, args.show)
    print(f"{len(photos)} photos, {photos.num_masks} masks -> {args.show}")
