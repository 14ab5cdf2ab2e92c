"""The assembled Segment Anything Model.

Paper §3, figure 4: a heavy image encoder runs once per image; a light prompt encoder and mask
decoder run per prompt, fast enough to answer every click.

    Sam.preprocess        normalise pixels, pad the resized image to 1024x1024 (bottom/right)
    image_encoder         (B, 3, 1024, 1024) -> (B, 256, 64, 64)
    prompt_encoder        points / boxes / masks -> sparse tokens and a dense map
    mask_decoder          -> low-res mask logits (B, 3 or 1, 256, 256) + predicted IoU
    Sam.postprocess_masks upsample to 1024, crop the padding, resize to the original image

The attribute names (``image_encoder``, ``prompt_encoder``, ``mask_decoder``, ``pixel_mean``,
``mask_threshold``, ``image_format``, ``preprocess``, ``postprocess_masks``, ``device``) are the
ones Meta's predictor and automatic mask generator use, so those run on this model unchanged.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .text_prompt import text_mask_prior


def to_original_size(
    maps: torch.Tensor, img_size: int, input_size: Tuple[int, ...], original_size: Tuple[int, ...]
) -> torch.Tensor:
    """Any (B, C, h, w) map over the padded model input -> (B, C, H, W) over the original image.

    Three steps: bilinear upsampling to the padded input (img_size x img_size), cropping the
    padding away (the resized image is input_size = (h', w') at the top left), and bilinear
    resizing to original_size = (H, W). Mask logits and attention maps both go this way.
    """
    h, w = maps.shape[-2:]
    if h == w and img_size % h == 0:
        # Same numbers, less work: bilinear upsampling by an integer factor s maps output row y to
        # input row (y + 0.5) / s - 0.5, so the rows kept after the crop (y < h') read input rows
        # up to ceil(h' / s) only. Cropping those first and upsampling with scale_factor=s gives
        # exactly the values of upsampling everything and cropping (tests/test_parity.py).
        s = img_size // h
        rows, cols = min(h, -(-input_size[0] // s) + 1), min(w, -(-input_size[1] // s) + 1)
        maps = F.interpolate(maps[..., :rows, :cols], scale_factor=s, mode="bilinear", align_corners=False)
    else:
        maps = F.interpolate(maps, (img_size, img_size), mode="bilinear", align_corners=False)
    maps = maps[..., : input_size[0], : input_size[1]]  # drop the padding
    if tuple(maps.shape[-2:]) == tuple(original_size):
        return maps.contiguous()  # a bilinear resize to the same size is the identity: skip it
    return F.interpolate(maps, tuple(original_size), mode="bilinear", align_corners=False)


def with_text_tokens(sparse: torch.Tensor, dense: torch.Tensor, text_tokens: torch.Tensor | None):
    """Append text tokens (B, T, C) to the sparse prompt tokens (B or 1, N, C); a prompt encoder
    that saw no points, box or mask answers for a batch of one, which is repeated to B."""
    if text_tokens is None:
        return sparse, dense
    batch = len(text_tokens)
    if len(sparse) != batch:
        if len(sparse) != 1:
            raise ValueError(f"text_tokens: expected {len(sparse)} prompt sets like the points and boxes, got {batch}")
        sparse = sparse.expand(batch, -1, -1)
        dense = dense.expand(batch, -1, -1, -1)
    return torch.cat([sparse, text_tokens.to(sparse.dtype)], dim=1), dense


class Sam(nn.Module):
    mask_threshold: float = 0.0  # logits above this are foreground
    image_format: str = "RGB"

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
        pixel_mean: Sequence[float] = (123.675, 116.28, 103.53),
        pixel_std: Sequence[float] = (58.395, 57.12, 57.375),
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        # not part of the checkpoint (persistent=False): Meta's files do not hold them
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)
        self.config = None  # the SamConfig it was built from, set by build_sam

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(3, h, w) or (B, 3, h, w) pixels in 0..255, long side already img_size ->
        normalised and zero-padded to (…, 3, img_size, img_size)."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))

    def postprocess_masks(
        self, masks: torch.Tensor, input_size: Tuple[int, ...], original_size: Tuple[int, ...]
    ) -> torch.Tensor:
        """Low-res logits (B, C, 256, 256) -> logits at the original image size (B, C, H, W).

        input_size: (h, w) of the resized image before padding; original_size: (H, W).
        """
        return to_original_size(masks, self.img_size, input_size, original_size)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed (B, 3, S, S) -> image embeddings (B, C, S/16, S/16)."""
        return self.image_encoder(images)

    def decode(
        self,
        image_embedding: torch.Tensor,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
        multimask_output: bool = True,
        text_tokens: torch.Tensor | None = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder for one image embedding (1, C, h, w) and a batch of
        prompt sets. Coordinates are in model-input pixels. ``text_tokens`` (B, T, C) are a text
        path's tokens (``modeling.text_prompt``), put beside the point and box tokens; a text path
        with a grounding also gives the mask prompt when ``mask_inputs`` is None. Returns
        low-res logits and IoU."""
        points = (point_coords, point_labels) if point_coords is not None else None
        mask_inputs = text_mask_prior(self, image_embedding, text_tokens, mask_inputs)
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_inputs)
        sparse, dense = with_text_tokens(sparse, dense, text_tokens)
        return self.mask_decoder(
            image_embeddings=image_embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )

    @torch.no_grad()
    def forward(self, batched_input: List[Dict[str, Any]], multimask_output: bool) -> List[Dict[str, torch.Tensor]]:
        """Segment a list of images end to end, each with its own prompts.

        Each record: ``image`` (3, h, w) already resized so the long side is img_size;
        ``original_size`` (H, W); optionally ``point_coords`` (B, N, 2) with ``point_labels``
        (B, N), ``boxes`` (B, 4) and ``mask_inputs`` (B, 1, 256, 256), in resized-image pixels.
        Returns per image: ``masks`` (B, C, H, W) bool, ``iou_predictions`` (B, C),
        ``low_res_logits`` (B, C, 256, 256).
        """
        images = torch.stack([self.preprocess(record["image"]) for record in batched_input])
        embeddings = self.encode_images(images)
        outputs = []
        for record, embedding in zip(batched_input, embeddings):
            low_res, iou = self.decode(
                embedding.unsqueeze(0),
                point_coords=record.get("point_coords"),
                point_labels=record.get("point_labels"),
                boxes=record.get("boxes"),
                mask_inputs=record.get("mask_inputs"),
                multimask_output=multimask_output,
            )
            masks = self.postprocess_masks(low_res, record["image"].shape[-2:], record["original_size"])
            outputs.append(
                {
                    "masks": masks > self.mask_threshold,
                    "iou_predictions": iou,
                    "low_res_logits": low_res,
                }
            )
        return outputs
