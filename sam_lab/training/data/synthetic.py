"""Synthetic images of objects with nested parts: whole, part, subpart.

The paper (§3, "resolving ambiguity") notes that one click often names several valid objects:
a shirt *or* the person wearing it. SAM answers with three masks, one per level of nesting.
This dataset makes that ambiguity explicit and cheap: every object has up to three nested
levels, each with its own ground-truth mask, so a click on a subpart is equally a click on the
part and on the whole.

Each item is a dict:
    image     (H, W, 3) uint8
    masks     (K, H, W) bool   visible region of each whole / part / subpart
    parent    (K,) int         index of the enclosing mask, -1 for a whole object
    level     (K,) int         0 whole, 1 part, 2 subpart
    captions  K strings        e.g. "red circle"

Items are deterministic: item i of a dataset with seed s is always the same image.
Objects may occlude each other (a later object hides what it covers; masks are what is
visible); fills are flat, noisy, striped or checked, backgrounds are gradients or crops of the
photos that ship with scikit-image.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (150, 60, 190),
    "orange": (250, 140, 30),
    "cyan": (40, 200, 210),
    "pink": (245, 130, 180),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
    "brown": (130, 80, 40),
    "gray": (128, 128, 128),
}
SHAPES = ("circle", "ellipse", "square", "rectangle", "triangle", "pentagon", "hexagon")
_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "horse", "camera", "moon", "page", "text", "coins")


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    from skimage import data

    from ...inference.validation import as_rgb

    return as_rgb(getattr(data, name)())


def shape_mask(kind: str, centre, size: float, aspect: float, angle: float, hw) -> np.ndarray:
    """Rasterise one shape: ``size`` is its half-extent in pixels, ``angle`` in radians."""
    H, W = hw
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    dx, dy = xs - centre[0], ys - centre[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)  # rotate into the shape's own axes
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    if kind == "circle":
        return u * u + v * v <= size * size
    if kind == "ellipse":
        return (u / size) ** 2 + (v / (size * aspect)) ** 2 <= 1.0
    if kind == "square":
        return (np.abs(u) <= size) & (np.abs(v) <= size)
    if kind == "rectangle":
        return (np.abs(u) <= size) & (np.abs(v) <= size * aspect)
    sides = {"triangle": 3, "pentagon": 5, "hexagon": 6}[kind]
    inside = np.ones((H, W), dtype=bool)
    for k in range(sides):  # a regular polygon is the intersection of half-planes
        theta = 2 * np.pi * k / sides
        inside &= u * np.cos(theta) + v * np.sin(theta) <= size * np.cos(np.pi / sides)
    return inside


class SyntheticShapes:
    """``num_images`` deterministic images of nested, occluding shapes (see module docstring)."""

    def __init__(
        self,
        num_images: int,
        seed: int = 0,
        image_size: int = 256,
        max_objects: int = 3,
        min_area: int = 80,
    ) -> None:
        if num_images < 1:
            raise ValueError(f"num_images: expected a positive count, got {num_images}")
        if image_size < 32:
            raise ValueError(f"image_size: expected at least 32 pixels, got {image_size}")
        self.num_images = num_images
        self.seed = seed
        self.image_size = image_size
        self.max_objects = max_objects
        self.min_area = min_area

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index: expected 0 <= index < {self.num_images}, got {index}")
        rng = np.random.default_rng([self.seed, index])
        S = self.image_size
        image = self._background(rng).astype(np.float32)
        objects = []  # each: list of (mask, level, caption) from whole to subpart
        for _ in range(int(rng.integers(1, self.max_objects + 1))):
            objects.append(self._object(rng, image))
        # occlusion: what a later object covers is hidden in every earlier mask
        masks: List[np.ndarray] = []
        parent: List[int] = []
        level: List[int] = []
        captions: List[str] = []
        for i, levels in enumerate(objects):
            covered = np.zeros((S, S), dtype=bool)
            for later in objects[i + 1 :]:
                covered |= later[0][0]
            previous = -1
            for mask, lvl, caption in levels:
                visible = mask & ~covered
                if visible.sum() < self.min_area:
                    break  # too little left to be an object; its inner levels are smaller still
                masks.append(visible)
                parent.append(previous)
                level.append(lvl)
                captions.append(caption)
                previous = len(masks) - 1
        return {
            "image": np.clip(image, 0, 255).astype(np.uint8),
            "masks": np.stack(masks) if masks else np.zeros((0, S, S), dtype=bool),
            "parent": np.array(parent, dtype=np.int64),
            "level": np.array(level, dtype=np.int64),
            "captions": captions,
        }

    # -- drawing --------------------------------------------------------------------------
    def _background(self, rng) -> np.ndarray:
        S = self.image_size
        if rng.random() < 0.5:
            photo = _photo(_PHOTOS[int(rng.integers(len(_PHOTOS)))])
            side = int(rng.integers(min(photo.shape[:2]) // 3, min(photo.shape[:2]) + 1))
            y = int(rng.integers(0, photo.shape[0] - side + 1))
            x = int(rng.integers(0, photo.shape[1] - side + 1))
            crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((S, S), Image.BILINEAR)
            return np.asarray(crop).astype(np.float32) * 0.6 + 50  # muted, so objects stand out
        a, b = rng.uniform(40, 215, size=(2, 3))
        t = np.linspace(0, 1, S, dtype=np.float32)
        ramp = t[None, :, None] if rng.random() < 0.5 else t[:, None, None]
        return a + (b - a) * ramp + rng.normal(0, 6, size=(S, S, 3))

    def _fill(self, rng, image: np.ndarray, mask: np.ndarray, colour_name: str) -> None:
        colour = np.array(COLOURS[colour_name], dtype=np.float32)
        S = self.image_size
        style = rng.random()
        if style < 0.45:
            pixels = colour + rng.normal(0, 8, size=(S, S, 3))
        elif style < 0.7:  # stripes of the colour and a darker shade
            period = int(rng.integers(6, 16))
            ys, xs = np.mgrid[0:S, 0:S]
            stripes = ((xs + ys * rng.choice([0, 1])) // period) % 2
            pixels = np.where(stripes[..., None] == 1, colour, colour * 0.6)
        elif style < 0.85:  # checks
            period = int(rng.integers(5, 12))
            ys, xs = np.mgrid[0:S, 0:S]
            checks = ((xs // period) + (ys // period)) % 2
            pixels = np.where(checks[..., None] == 1, colour, colour * 0.7 + 30)
        else:  # a photo texture tinted with the colour
            photo = _photo(_PHOTOS[int(rng.integers(len(_PHOTOS)))])
            texture = np.asarray(Image.fromarray(photo).resize((S, S), Image.BILINEAR)).astype(np.float32)
            pixels = 0.55 * colour + 0.45 * texture
        image[mask] = pixels[mask]

    def _object(self, rng, image: np.ndarray) -> List[Tuple[np.ndarray, int, str]]:
        S = self.image_size
        size = rng.uniform(0.14, 0.30) * S
        centre = rng.uniform(size * 0.6, S - size * 0.6, size=2)
        levels = []
        used_colours: List[str] = []
        num_levels = 1 + int(rng.random() < 0.8) + int(rng.random() < 0.6)
        for lvl in range(num_levels):
            kind = SHAPES[int(rng.integers(len(SHAPES)))]
            colour = str(rng.choice([c for c in COLOURS if c not in used_colours]))
            used_colours.append(colour)
            mask = shape_mask(kind, centre, size, rng.uniform(0.55, 0.9), rng.uniform(0, np.pi), (S, S))
            if levels:
                mask &= levels[-1][0]  # a part lies inside what contains it
            if mask.sum() < self.min_area:
                break
            self._fill(rng, image, mask, colour)
            levels.append((mask, lvl, f"{colour} {kind}"))
            # the next level: smaller, shifted a little off centre but inside this one
            shift = rng.uniform(-0.25, 0.25, size=2) * size
            centre = centre + shift
            size = size * rng.uniform(0.45, 0.65)
        return levels
