"""Draw SAM's inputs and outputs on matplotlib axes: masks, point prompts, boxes, candidates.

Everything is in the original image's pixels, the frame ``SamPredictor.predict`` takes prompts
in and returns masks in:

    show_mask(mask, ax)                  mask (H, W) bool -> a translucent coloured layer
    show_points(coords, labels, ax)      coords (N, 2) as (x, y); labels (N,) 1 = fg, 0 = bg
    show_box(box, ax)                    box (4,) as x0, y0, x1, y1
    show_candidates(image, masks, scores, points=(coords, labels), box=box) -> Figure
                                         one panel per mask (C, H, W), titled with its score
    show_anns(records, ax)               the mask generator's records, one colour each (10)

Lessons import these; they do not copy plotting code into cells.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

DEFAULT_MASK_COLOR = (0.12, 0.47, 0.91, 0.55)  # RGBA: a blue that shows on most photos
POSITIVE_COLOR = "limegreen"  # point label 1: "this is part of the object"
NEGATIVE_COLOR = "red"  # point label 0: "this is not"
BOX_COLOR = "gold"

Color = Union[str, Sequence[float]]


def show_mask(mask, ax: Axes, color: Optional[Color] = None) -> AxesImage:
    """Overlay a binary mask on ``ax`` as one RGBA image layer.

    mask: (H, W) bool (or 0/1, or a (1, H, W) array), in image pixels. color: any matplotlib
    color; with no alpha of its own it gets 0.55. Pixels where the mask is False are fully
    transparent, so the image underneath shows through. Returns the drawn ``AxesImage``.
    """
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"mask: expected shape (H, W), got {mask.shape}")
    if color is None:
        rgba = DEFAULT_MASK_COLOR
    else:
        has_alpha = not isinstance(color, str) and len(color) == 4
        rgba = to_rgba(color) if has_alpha else to_rgba(color, alpha=DEFAULT_MASK_COLOR[3])
    layer = np.zeros((*mask.shape, 4), dtype=np.float32)  # (H, W, RGBA), transparent
    layer[mask.astype(bool)] = rgba
    return ax.imshow(layer, interpolation="nearest")


def show_points(coords, labels, ax: Axes, marker_size: float = 220.0) -> None:
    """Draw point prompts: positive (label 1) as green stars, negative (label 0) as red crosses.

    coords: (N, 2) as (x, y) pixels; labels: (N,). Other labels (-1 padding, 2/3 box corners)
    are not clicks and are not drawn.
    """
    coords = np.asarray(coords, dtype=float).reshape(-1, 2)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(coords):
        raise ValueError(f"labels: expected {len(coords)} labels for {len(coords)} points, got {len(labels)}")
    for label, color, marker in ((1, POSITIVE_COLOR, "*"), (0, NEGATIVE_COLOR, "X")):
        chosen = coords[labels == label]
        ax.scatter(chosen[:, 0], chosen[:, 1], s=marker_size, c=color, marker=marker,
                   edgecolors="white", linewidths=1.2, zorder=3)


def show_box(box, ax: Axes, color: Color = BOX_COLOR) -> Rectangle:
    """Draw a box prompt (4,) given as x0, y0, x1, y1 pixels; returns the ``Rectangle``."""
    x0, y0, x1, y1 = np.asarray(box, dtype=float).reshape(4)
    rectangle = Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=2.5, zorder=3)
    ax.add_patch(rectangle)
    return rectangle


def show_candidates(
    image,
    masks,
    scores,
    points: Optional[Union[Tuple[np.ndarray, np.ndarray], np.ndarray]] = None,
    box=None,
    panel_size: float = 4.0,
) -> Figure:
    """One panel per candidate mask over the image, titled with the model's predicted IoU.

    image: (H, W, 3); masks: (C, H, W) bool, as ``SamPredictor.predict`` returns them (C = 3
    with ``multimask_output``, else 1); scores: (C,) predicted IoU. points: the prompt as
    ``(coords (N, 2), labels (N,))``, or coords alone (all positive); box: (4,) x0, y0, x1, y1.
    The highest-scoring panel says so in its title. Returns the ``Figure``.
    """
    masks = np.asarray(masks)
    scores = np.asarray(scores).reshape(-1)
    if masks.ndim == 2:
        masks = masks[None]
    if len(scores) != len(masks):
        raise ValueError(f"scores: expected one score per mask ({len(masks)}), got {len(scores)}")
    if points is not None and not isinstance(points, tuple):
        points = (points, np.ones(len(np.asarray(points).reshape(-1, 2)), dtype=int))

    fig, axes = plt.subplots(1, len(masks), figsize=(panel_size * len(masks), panel_size), squeeze=False)
    best = int(np.argmax(scores))
    for i, (ax, mask, score) in enumerate(zip(axes[0], masks, scores)):
        ax.imshow(image)
        show_mask(mask, ax)
        if points is not None:
            show_points(*points, ax)
        if box is not None:
            show_box(box, ax)
        ax.set_title(f"mask {i}: IoU score {score:.3f}" + (" (best)" if i == best else ""))
        ax.axis("off")
    fig.tight_layout()
    return fig


def show_anns(records, ax: Axes, alpha: float = 0.55, seed: int = 0) -> np.ndarray:
    """Draw the records of ``SamAutomaticMaskGenerator.generate`` on ``ax``, one random colour
    per mask, largest first so that small masks stay visible on top. ``segmentation`` may be
    a bool array or a COCO RLE dict. Returns the (N, 3) colours, in the order of ``records``."""
    from .inference.rle import rle_to_mask

    colours = np.random.default_rng(seed).uniform(0.15, 1.0, size=(len(records), 3))
    if not records:
        return colours
    first = records[0]["segmentation"]
    shape = tuple(first["size"]) if isinstance(first, dict) else np.asarray(first).shape
    layer = np.zeros((*shape, 4), dtype=np.float32)
    for k in sorted(range(len(records)), key=lambda i: -records[i]["area"]):
        mask = records[k]["segmentation"]
        mask = rle_to_mask(mask) if isinstance(mask, dict) else np.asarray(mask, dtype=bool)
        layer[mask] = (*colours[k], alpha)
    ax.imshow(layer, interpolation="nearest")
    return colours


def show_embedding_map(values, ax: Axes, predictor, cmap: str = "magma", alpha: float = 0.6,
                       vmin: Optional[float] = None, vmax: Optional[float] = None) -> AxesImage:
    """Overlay a map over the image-embedding grid (one value per cell, e.g. an attention map or
    a similarity) on the image drawn in ``ax``, in the original image's pixels.

    values: (h, w), the embedding grid (32x32 for tiny, 64x64 at full size); predictor: a
    ``SamPredictor`` with an image set. The grid covers the padded, square model input; the
    image fills its top-left ``predictor.input_size``, so the cells over the padding are cut off.
    """
    values = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values: expected shape (h, w), got {values.shape}")
    (H, W), (h_in, w_in) = predictor.original_size, predictor.input_size
    side = predictor.model.image_encoder.img_size  # the padded model input's side in pixels
    extent = (0, side * W / w_in, side * H / h_in, 0)  # the whole grid, in original pixels
    layer = ax.imshow(values, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax, extent=extent,
                      interpolation="nearest")
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    return layer


def show_grid_map(values, ax: Axes, mark: Optional[Tuple[int, int]] = None, cmap: str = "viridis",
                  title: Optional[str] = None, colorbar: bool = True) -> AxesImage:
    """Draw one value per cell of a token grid, e.g. the relative-position bias of one query or
    how similar one position's encoding is to every other position's.

    values: (h, w); mark: (row, col) of a cell to mark with a white cross (the query). Returns the
    drawn ``AxesImage``.
    """
    values = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values: expected shape (h, w), got {values.shape}")
    layer = ax.imshow(values, cmap=cmap, interpolation="nearest")
    if mark is not None:
        ax.scatter([mark[1]], [mark[0]], marker="x", s=80, c="white", linewidths=2.0, zorder=3)
    if title is not None:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(layer, ax=ax, fraction=0.046, pad=0.04)
    return layer


def show_token_windows(ax: Axes, grid_size: int, window_size: int, patch_size: int = 16,
                       image_hw: Optional[Tuple[int, int]] = None) -> None:
    """Draw how a square token grid is cut into windows, in the model input's pixels.

    A grid of ``grid_size`` tokens per side (each ``patch_size`` pixels) is padded up to a
    multiple of ``window_size`` tokens; window borders are drawn every ``window_size *
    patch_size`` pixels and the padding tokens are hatched. ``image_hw``: (h, w) of the resized
    image inside the padded input: the input's own zero padding around it is drawn grey.
    """
    padded = -(-grid_size // window_size) * window_size  # round up to a multiple
    side, padded_side, step = grid_size * patch_size, padded * patch_size, window_size * patch_size
    for extra in (Rectangle((side, 0), padded_side - side, padded_side),
                  Rectangle((0, side), side, padded_side - side)):
        extra.set(fill=False, hatch="//", edgecolor="grey", linewidth=0)
        ax.add_patch(extra)
    for position in range(0, padded_side + 1, step):
        ax.axhline(position, color="gold", linewidth=1.5)
        ax.axvline(position, color="gold", linewidth=1.5)
    if image_hw is not None:  # the input's own padding in grey, behind the image
        h, w = image_hw
        ax.add_patch(Rectangle((0, 0), side, side, facecolor="lightgrey", edgecolor="none", zorder=-1))
        ax.add_patch(Rectangle((0, 0), w, h, fill=False, edgecolor="white", linestyle="--", linewidth=1.5))
    ax.set_xlim(0, padded_side)
    ax.set_ylim(padded_side, 0)


def show_iou_matrix(values, ax: Axes, row_labels: Sequence[str], col_labels: Sequence[str],
                    title: Optional[str] = None, cmap: str = "viridis", vmin: float = 0.0,
                    vmax: float = 1.0) -> AxesImage:
    """A small table of numbers as coloured cells with each value written in its cell, e.g. the
    IoU of each candidate mask (rows) with each ground-truth level (columns).

    values: (R, C); row_labels: R strings; col_labels: C strings. Returns the ``AxesImage``.
    """
    values = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float)
    if values.ndim != 2 or values.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"values: expected shape ({len(row_labels)}, {len(col_labels)}) to match the labels, "
                         f"got {values.shape}")
    layer = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    middle = (vmin + vmax) / 2
    for (row, col), value in np.ndenumerate(values):
        ax.text(col, row, f"{value:.2f}", ha="center", va="center",
                color="black" if value > middle else "white", fontsize=11)
    ax.set_xticks(range(len(col_labels)), col_labels)
    ax.set_yticks(range(len(row_labels)), row_labels)
    if title is not None:
        ax.set_title(title)
    return layer


def show_mask_probability(logits, ax: Axes, title: Optional[str] = None, colorbar: bool = False) -> AxesImage:
    """Draw sigmoid(logits) of one mask, (H, W), from 0 (black) to 1 (white): where a model is
    sure (0 or 1) and where it hesitates (grey). Returns the ``AxesImage``."""
    logits = np.asarray(logits.detach().cpu() if hasattr(logits, "detach") else logits, dtype=float)
    if logits.ndim == 3 and logits.shape[0] == 1:
        logits = logits[0]
    if logits.ndim != 2:
        raise ValueError(f"logits: expected shape (H, W), got {logits.shape}")
    layer = ax.imshow(1 / (1 + np.exp(-logits)), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    if title is not None:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(layer, ax=ax, fraction=0.046, pad=0.04)
    ax.axis("off")
    return layer


def show_click_curves(curves, ax: Axes, thresholds: Sequence[float] = (0.85, 0.90)) -> None:
    """mIoU after each click, one line per model, as in the paper's interactive evaluation.

    curves: {name: (K,) mean IoU after 1..K clicks} (``InteractiveResult.iou_per_click``).
    Dotted horizontal lines mark the IoU ``thresholds`` that NoC@85 / NoC@90 count clicks to.
    """
    for name, curve in curves.items():
        curve = np.asarray(curve, dtype=float).reshape(-1)
        ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", markersize=3, label=name)
    for threshold in thresholds:
        ax.axhline(threshold, color="grey", linestyle=":", linewidth=1)
        ax.text(1, threshold, f"{threshold:.0%}", color="grey", va="bottom", fontsize=9)
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean IoU")
    ax.set_ylim(0, 1)
    ax.legend()
