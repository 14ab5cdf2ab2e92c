"""The prompt encoder: points, boxes and masks become embeddings.

Paper §3 and appendix A.
Sparse prompts (points and boxes) become tokens of width C = 256:
    point  -> Fourier features of its position + a learned embedding of its type
              (negative / positive); a (0, 0) padding point of type "not a point" is
              appended when no box comes with the points.
    box    -> two tokens: its top-left and bottom-right corners, each with its own learned
              corner embedding.
    Pixel coordinates are shifted by +0.5 first, so a click names the *centre* of a pixel.
Dense prompts (a mask, e.g. the previous prediction's low-res logits, 256x256) are
downscaled by strided convs to the 64x64 embedding grid and added to the image embedding; with
no mask a learned "no mask" vector is added at every cell instead.

    points (B, N, 2) + labels (B, N)  ->  sparse (B, N(+1), C)
    boxes (B, 4)                      ->  sparse (B, 2, C)
    masks (B, 1, 256, 256)            ->  dense  (B, C, 64, 64)

Point labels: 1 positive, 0 negative, -1 padding ("not a point"); 2 and 3 name box
corners (top-left, bottom-right) and are what a box's two tokens are internally.
"""
from __future__ import annotations

from typing import Optional, Tuple, Type

import torch
import torch.nn as nn

from .layers import LayerNorm2d, make_stage
from .positional_encoding import PositionEmbeddingRandom


class PromptEncoder(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: Tuple[int, int],
        input_image_size: Tuple[int, int],
        mask_in_chans: int,
        activation: Type[nn.Module] = nn.GELU,
        positional_encoding: Optional[nn.Module | type] = None,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size  # (1024, 1024): the padded model input
        self.image_embedding_size = image_embedding_size  # (64, 64)
        self.pe_layer = make_stage(
            positional_encoding or PositionEmbeddingRandom, num_pos_feats=embed_dim // 2
        )
        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right
        self.num_point_embeddings = 4
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        # the mask prompt is 4x the embedding grid: two stride-2 convs bring it down
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),  # 256 -> 128
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),  # 128 -> 64
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),  # to C channels
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Fourier features of every image-embedding cell: (1, C, 64, 64)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        points = points + 0.5  # pixel index -> pixel centre
        if pad:
            B = points.shape[0]
            points = torch.cat([points, points.new_zeros(B, 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(B, 1)], dim=1)
        embedding = self.pe_layer.forward_with_coords(points, self.input_image_size)  # (B, N, C)
        # padding points carry no position at all, only the "not a point" vector
        embedding = torch.where((labels == -1)[..., None], torch.zeros_like(embedding), embedding)
        embedding = embedding + (labels == -1)[..., None] * self.not_a_point_embed.weight
        for kind in range(self.num_point_embeddings):
            embedding = embedding + (labels == kind)[..., None] * self.point_embeddings[kind].weight
        return embedding

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = (boxes + 0.5).reshape(-1, 2, 2)  # (B, 2 corners, xy)
        embedding = self.pe_layer.forward_with_coords(corners, self.input_image_size)  # (B, 2, C)
        corner_type = torch.stack(
            [self.point_embeddings[2].weight[0], self.point_embeddings[3].weight[0]]
        )  # (2, C)
        return embedding + corner_type

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        return self.mask_downscaling(masks)

    def _get_batch_size(self, points, boxes, masks) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def _get_device(self) -> torch.device:
        return self.point_embeddings[0].weight.device

    def forward(
        self,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        boxes: Optional[torch.Tensor],
        masks: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embed any mix of prompts.

        points: (coords (B, N, 2) in model-input pixels, labels (B, N)) or None
        boxes: (B, 4) as x0, y0, x1, y1 in model-input pixels, or None
        masks: (B, 1, 256, 256) low-res mask logits, or None
        Returns sparse (B, N_tokens, C) and dense (B, C, 64, 64) embeddings.
        """
        bs = self._get_batch_size(points, boxes, masks)
        sparse = torch.empty((bs, 0, self.embed_dim), device=self._get_device())
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
