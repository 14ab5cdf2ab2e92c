"""A COCO-format segmentation dataset: an image folder plus an ``instances_*.json``.

Train SAM on your own data by pointing this at a folder of images and a COCO annotation file
(polygons, uncompressed RLE or compressed RLE segmentations). Items have the same form as
:class:`SyntheticShapes` items (``image``, ``masks``, ``parent`` all -1, ``captions`` from the
category names).

Bad entries are errors that name the file and the annotation, unless ``skip_invalid=True``:
then they are skipped and counted in ``self.skipped`` (and logged).
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image, ImageDraw

from ...inference.rle import rle_to_mask

log = logging.getLogger(__name__)


class CocoFormatError(ValueError):
    """A malformed entry in a COCO-format dataset."""


class CocoSegmentation:
    def __init__(self, image_dir, annotation_file, skip_invalid: bool = False, min_area: int = 1) -> None:
        self.image_dir = Path(image_dir)
        self.annotation_file = Path(annotation_file)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image_dir: no such folder {self.image_dir}")
        if not self.annotation_file.is_file():
            raise FileNotFoundError(f"annotation_file: no such file {self.annotation_file}")
        try:
            spec = json.loads(self.annotation_file.read_text())
        except json.JSONDecodeError as error:
            raise CocoFormatError(f"{self.annotation_file}: not valid JSON ({error})") from None
        for key in ("images", "annotations"):
            if key not in spec:
                raise CocoFormatError(f"{self.annotation_file}: missing the '{key}' list")
        self.skip_invalid = skip_invalid
        self.min_area = min_area
        self.skipped: Dict[str, int] = defaultdict(int)
        self.categories = {c["id"]: c.get("name", str(c["id"])) for c in spec.get("categories", [])}
        self.images = {img["id"]: img for img in spec["images"]}
        self.annotations: Dict[int, List[dict]] = defaultdict(list)
        for ann in spec["annotations"]:
            if ann.get("image_id") not in self.images:
                self._invalid("annotation", f"annotation {ann.get('id')} names image_id {ann.get('image_id')}, which is not in 'images'")
                continue
            self.annotations[ann["image_id"]].append(ann)
        self.ids = [i for i in self.images if self.annotations.get(i)]

    def _invalid(self, kind: str, message: str) -> None:
        if not self.skip_invalid:
            raise CocoFormatError(f"{self.annotation_file}: {message}")
        self.skipped[kind] += 1
        log.warning("skipping %s: %s", kind, message)

    def __len__(self) -> int:
        return len(self.ids)

    def _decode(self, ann: dict, h: int, w: int) -> np.ndarray:
        seg = ann.get("segmentation")
        if isinstance(seg, list):  # polygons [[x0, y0, x1, y1, ...], ...]
            canvas = Image.new("L", (w, h), 0)
            draw = ImageDraw.Draw(canvas)
            for poly in seg:
                if len(poly) < 6 or len(poly) % 2:
                    raise CocoFormatError(f"polygon with {len(poly)} numbers (need an even count >= 6)")
                draw.polygon([float(v) for v in poly], fill=1)
            return np.asarray(canvas, dtype=bool)
        if isinstance(seg, dict):
            mask = rle_to_mask(seg)
            if mask.shape != (h, w):
                raise CocoFormatError(f"mask of shape {mask.shape} but the image is {(h, w)}")
            return mask
        raise CocoFormatError(f"segmentation of type {type(seg).__name__} (expected polygons or RLE)")

    def __getitem__(self, index: int) -> dict:
        info = self.images[self.ids[index]]
        path = self.image_dir / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"{self.annotation_file}: image {info['id']} names {path}, which does not exist")
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        if (info.get("height"), info.get("width")) not in ((None, None), (h, w)):
            raise CocoFormatError(
                f"{self.annotation_file}: image {info['id']} ({path.name}) is {h}x{w}, "
                f"the JSON says {info.get('height')}x{info.get('width')}"
            )
        masks, captions = [], []
        for ann in self.annotations[info["id"]]:
            where = f"annotation {ann.get('id')} of {path.name}"
            try:
                mask = self._decode(ann, h, w)
            except (CocoFormatError, ValueError) as error:
                self._invalid("annotation", f"{where}: {error}")
                continue
            if mask.sum() < self.min_area:
                self._invalid("empty", f"{where}: empty mask (area {int(mask.sum())})")
                continue
            masks.append(mask)
            captions.append(self.categories.get(ann.get("category_id"), "object"))
        return {
            "image": image,
            "masks": np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool),
            "parent": -np.ones(len(masks), dtype=np.int64),
            "level": np.zeros(len(masks), dtype=np.int64),
            "captions": captions,
        }
