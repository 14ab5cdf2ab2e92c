"""Two-way attention: prompt tokens and image embedding update each other.

Paper §3 and appendix A, figure 14. The decoder's tokens (IoU token, mask tokens, prompt
tokens; (B, N, C)) and the image embedding flattened to (B, HW, C) pass through ``depth``
blocks of four steps each:

    1. self-attention among the tokens
    2. cross-attention token -> image   (tokens are queries, image cells keys/values)
    3. an MLP on every token
    4. cross-attention image -> token   (image cells are queries, tokens keys/values)

then a final token -> image attention. Positional information is re-added at every attention:
the prompt tokens' original embeddings to the tokens and the dense Fourier features to the image
(the first block's self-attention skips it, its tokens *are* those embeddings). The
cross-attentions work at half width (C/2) to save compute: ``attention_downsample_rate=2``.
"""
from __future__ import annotations

from typing import Optional, Tuple, Type

import torch
import torch.nn as nn

from .kernels import attend
from .layers import MLPBlock, make_stage


class DecoderAttention(nn.Module):
    """The mask decoder's multi-head attention between two sets of tokens, optionally in a
    narrower space (``downsample_rate``). Not the ViT's :class:`~sam_lab.modeling.attention.Attention`:
    no relative positions, separate q/k/v projections, queries and keys from different sets."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(
                f"num_heads: must divide embedding_dim / downsample_rate = {self.internal_dim}, got {num_heads}"
            )
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)
        self.name = "two_way"  # label for recorded attention maps; set by the transformer

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        return x.reshape(B, N, self.num_heads, C // self.num_heads).transpose(1, 2)  # (B, h, N, d)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Nq, C), k and v (B, Nk, C). One of them may have batch 1 where it is the same for
        every prompt set (the image side of the first block): it is projected once, then shared."""
        q = self._split_heads(self.q_proj(q))
        k = self._split_heads(self.k_proj(k))
        v = self._split_heads(self.v_proj(v))
        batch = max(q.shape[0], k.shape[0], v.shape[0])
        q, k, v = (x.expand(batch, -1, -1, -1) for x in (q, k, v))
        out = attend(q, k, v, name=self.name)  # (B, h, Nq, d)
        B, h, N, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, N, h * d))


class TwoWayAttentionBlock(nn.Module):
    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: Type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = DecoderAttention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = DecoderAttention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = DecoderAttention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """queries: tokens (B, N, C); keys: image (B, HW, C); *_pe: their positional encodings.

        keys may have batch 1, shared by all B prompt sets: the image side of steps 2 and 4 is then
        computed once, and step 4's residual gives each prompt set its own keys (B, HW, C)."""
        # 1. token self-attention (the first block's tokens already are their positions)
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)
        # 2. tokens look at the image
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys))
        # 3. MLP on each token
        queries = self.norm3(queries + self.mlp(queries))
        # 4. the image looks at the tokens
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: Type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        block: Optional[type] = None,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            make_stage(
                block or TwoWayAttentionBlock,
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = DecoderAttention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)
        self._name_attentions()

    def _name_attentions(self) -> None:
        for name, module in self.named_modules():
            if isinstance(module, DecoderAttention):
                module.name = f"two_way.{name}"  # e.g. two_way.layers.0.cross_attn_token_to_image

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """image_embedding, image_pe: (B, C, h, w) or (1, C, h, w) when every prompt set has the
        same one (no mask prompt): its image-side projections are then computed once, not B times.
        point_embedding: tokens (B, N, C).

        Returns the updated tokens (B, N, C) and image (B, hw, C).
        """
        keys = image_embedding.flatten(2).permute(0, 2, 1)  # (B, hw, C)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding, key_pe=key_pe)
        q, k = queries + point_embedding, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q=q, k=k, v=keys))
        return queries, keys.expand(queries.shape[0], -1, -1)
