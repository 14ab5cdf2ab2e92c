"""Resize images and prompts so the long side is the model's input size (1024 for SAM).

SAM's encoder takes a square image. An image of any size is first resized, keeping its aspect
ratio, so its *longest* side is 1024; ``Sam.preprocess`` then pads the short side with zeros.
Points and boxes given in the original image's pixels are scaled by the same factors.
The numpy half needs no torch (the ONNX predictor uses it); the torch half imports it when called.

    get_preprocess_shape(480, 640, 1024) -> (768, 1024)
"""
from __future__ import annotations

from copy import deepcopy
from typing import TYPE_CHECKING, Tuple

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch


def get_preprocess_shape(old_h: int, old_w: int, long_side_length: int) -> Tuple[int, int]:
    """(h, w) after scaling so that max(h, w) == long_side_length, rounded to whole pixels."""
    scale = long_side_length * 1.0 / max(old_h, old_w)
    new_h, new_w = old_h * scale, old_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


class ResizeLongestSide:
    """Resize images (numpy or torch) and coordinates to a longest side of ``target_length``."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    # -- numpy, one image (H, W, C) uint8 --------------------------------------------------
    def apply_image(self, image: np.ndarray) -> np.ndarray:
        h, w = get_preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        # PIL's bilinear filter (antialiased when shrinking), as the released models were fed
        resized = Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.BILINEAR)
        return np.array(resized)

    def apply_coords(self, coords: np.ndarray, original_size: Tuple[int, ...]) -> np.ndarray:
        """coords (..., 2) as (x, y) in original pixels -> resized-image pixels (float)."""
        old_h, old_w = original_size
        new_h, new_w = get_preprocess_shape(old_h, old_w, self.target_length)
        coords = deepcopy(coords).astype(float)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: Tuple[int, ...]) -> np.ndarray:
        """boxes (..., 4) as x0, y0, x1, y1 -> resized-image pixels."""
        return self.apply_coords(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)

    # -- torch, batches (B, C, H, W) -------------------------------------------------------
    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        h, w = get_preprocess_shape(image.shape[2], image.shape[3], self.target_length)
        return F.interpolate(image, (h, w), mode="bilinear", align_corners=False, antialias=True)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: Tuple[int, ...]) -> torch.Tensor:
        old_h, old_w = original_size
        new_h, new_w = get_preprocess_shape(old_h, old_w, self.target_length)
        coords = deepcopy(coords).float()
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: Tuple[int, ...]) -> torch.Tensor:
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)
