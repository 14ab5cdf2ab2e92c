"""The dynamic mask head (mask decoder): tokens in, masks and IoU scores out.

Paper §3 and appendix A. Output tokens are learned: one IoU token and 4 mask tokens (one for a
single unambiguous answer, three for whole / part / subpart). They are put in front of the
prompt tokens and run through the two-way transformer with the image embedding (plus the dense
prompt). Then:

    image (B, C, 64, 64) --ConvT x2, LN, GELU, ConvT x2, GELU--> (B, C/8, 256, 256)
    each mask token --its own 3-layer MLP (hypernetwork)--> a C/8 weight vector w_i
    mask_i = w_i . upscaled image at every pixel               -> (B, 4, 256, 256) logits
    IoU token --3-layer MLP--> predicted IoU of each of the 4 masks

The hypernetwork makes a tiny per-prompt linear classifier over the upscaled image features.
With ``multimask_output`` the three ambiguity masks (1..3) are returned, else mask 0.
"""
from __future__ import annotations

from typing import Optional, Tuple, Type

import torch
import torch.nn as nn

from .layers import MLP, LayerNorm2d
from .two_way_transformer import ImageSide, TwoWayTransformer


class MaskDecoder(nn.Module):
    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        activation: Type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        image_side: Optional[ImageSide] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """image_embeddings (1 or B, C, h, w); image_pe (1, C, h, w); sparse (B, N, C);
        dense (B, C, h, w). Returns mask logits (B, 3 or 1, 4h, 4w) and IoU (B, 3 or 1).
        ``image_side``: :meth:`prepare_image` of this image and dense prompt, kept by a predictor
        across prompts; the result is the same as without it."""
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, image_side
        )
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, chosen], iou_pred[:, chosen]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        image_side: Optional[ImageSide] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """All 4 masks and IoU predictions, before the multimask selection."""
        B = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)  # (5, C)
        output_tokens = output_tokens.unsqueeze(0).expand(B, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)  # (B, 5 + N, C)

        # the image embedding plus the dense prompt, per prompt set; when no prompt set has a mask
        # prompt the dense prompt is one learned vector for all (an expanded view, batch stride 0),
        # and one shared (1, C, h, w) map lets the transformer do its image-side work once
        _, c, h, w = image_embeddings.shape
        if image_side is not None:
            src = pos_src = None  # already in image_side
        elif self.shares_image_side(image_embeddings, dense_prompt_embeddings):
            src = image_embeddings + dense_prompt_embeddings[:1]  # (1, C, h, w)
            pos_src = image_pe[:1]
        else:
            src = _per_prompt(image_embeddings, B) + dense_prompt_embeddings  # (B, C, h, w)
            pos_src = _per_prompt(image_pe, B)

        extra = {} if image_side is None else {"image_side": image_side}
        hs, src = self.transformer(src, pos_src, tokens, **extra)  # (B, 5 + N, C), (B, hw, C)
        b = src.shape[0]
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        # (B, hw, C) is already channels-last memory: viewed as (B, C, h, w) with those strides, the
        # transposed convolutions run about 3x faster on CPU than on a channels-first copy
        src_map = src.reshape(b, h, w, c).permute(0, 3, 1, 2)
        upscaled = self.output_upscaling(src_map)  # (B, C/8, 4h, 4w)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, 4, C/8): one linear classifier per mask token
        b, c8, H, W = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c8, H * W)).reshape(b, -1, H, W)
        iou_pred = self.iou_prediction_head(iou_token_out)
        return masks, iou_pred

    @staticmethod
    def shares_image_side(image_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor) -> bool:
        """One image for every prompt set and no mask prompt: the image side is then the same for
        all of them and can be prepared once."""
        return image_embeddings.shape[0] == 1 and _same_for_every_prompt(dense_prompt_embeddings)

    def prepare_image(
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, dense_prompt_embeddings: torch.Tensor
    ) -> Optional[ImageSide]:
        """The prompt-independent image work for ``forward(..., image_side=...)``: the image plus the
        dense prompt, flattened, and the transformer's first-block projections. None where it does
        not apply: a mask prompt (its dense prompt differs per set), or a transformer that is not
        exactly our :class:`TwoWayTransformer` (a learner's own, or a subclass whose ``forward``
        may not take ``image_side``)."""
        if type(self.transformer) is not TwoWayTransformer or not self.shares_image_side(image_embeddings, dense_prompt_embeddings):
            return None
        return self.transformer.prepare_image(image_embeddings + dense_prompt_embeddings[:1], image_pe[:1])


def _same_for_every_prompt(dense: torch.Tensor) -> bool:
    """True for a (1, C, h, w) map or one expanded over the batch (stride 0), as the prompt
    encoder makes when there is no mask prompt."""
    return dense.shape[0] == 1 or dense.stride(0) == 0


def _per_prompt(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Repeat a (1, C, h, w) map to (batch, C, h, w); a map already of that batch is kept."""
    if x.shape[0] == batch:
        return x
    if x.shape[0] != 1:
        raise ValueError(
            f"image_embeddings: expected batch 1 or {batch} (one per prompt set), got {x.shape[0]}"
        )
    return x.expand(batch, -1, -1, -1)
