"""What every predictor keeps about its current image (torch-free, shared by SamPredictor and
OnnxPredictor): the embedding, the original and resized sizes, and whether one is set."""
from __future__ import annotations

from typing import Tuple


class ImageState:
    """``features`` (1, C, h, w), ``original_size`` (H, W), ``input_size`` (resized h, w)."""

    def get_image_embedding(self):
        """The cached (1, C, h, w) image embedding (a tensor or an array, as the predictor computes it)."""
        self._require_image()
        return self.features

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features = None
        self.original_size = None
        self.input_size = None

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("No image is set: call predictor.set_image(image) before predicting.")

    def _embedding_grid(self) -> Tuple[int, int]:
        raise NotImplementedError

    @property
    def low_res_size(self) -> Tuple[int, int]:
        """The low-res mask side: 4x the embedding grid (256 x 256 for full-size SAM)."""
        return tuple(4 * s for s in self._embedding_grid())
