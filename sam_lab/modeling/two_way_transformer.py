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

Much of the image side does not depend on the prompt: the flattened image and its positions, and
the first block's projections of them (token->image keys and values, image->token queries).
:meth:`TwoWayTransformer.prepare_image` computes them once as an :class:`ImageSide`, which a
predictor keeps for every prompt on the same image; ``forward(..., image_side=...)`` starts from it
and gives the same numbers as starting from the image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Type

import torch
import torch.nn as nn

from .kernels import attend, folded_few_keys, folded_few_queries, folding_applies
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

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        return self._split_heads(self.q_proj(x))

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        return self._split_heads(self.k_proj(x))

    def values(self, x: torch.Tensor) -> torch.Tensor:
        return self._split_heads(self.v_proj(x))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Nq, C), k and v (B, Nk, C). One of them may have batch 1 where it is the same for
        every prompt set (the image side of the first block): it is projected once, then shared.
        Between a few tokens and many image cells the image-side projections are folded into the
        tokens where that is faster (``kernels.folding_applies``); the answer is the same."""
        if self._folds(few=q.shape[1], many=k.shape[1], like=q):
            return self.attend_heads_out(folded_few_queries(
                self.queries(q), k, v, self.k_proj.weight, self.v_proj.weight, self.v_proj.bias
            ))
        if self._folds(few=k.shape[1], many=q.shape[1], like=q):
            shared = q.shape[0] == 1  # one image for all prompt sets: its queries are projected once
            return folded_few_keys(
                self.queries(q) if shared else q, self.keys(k), self.values(v), self.q_proj.weight, self.q_proj.bias,
                self.out_proj.weight, self.out_proj.bias, projected=shared,
            )
        return self.attend_heads(self.queries(q), self.keys(k), self.values(v))

    def attend_prepared_queries(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Image query heads already projected (1, h, N, d) against token keys and values (B, T, C)."""
        if self._folds(few=k.shape[1], many=q.shape[2], like=k):
            return folded_few_keys(
                q, self.keys(k), self.values(v), None, None, self.out_proj.weight, self.out_proj.bias, projected=True
            )
        return self.attend_heads(q, self.keys(k), self.values(v))

    def _folds(self, few: int, many: int, like: torch.Tensor) -> bool:
        # exactly this class: a learner's subclass may have its own projections, which must run
        return type(self) is DecoderAttention and folding_applies(self.num_heads, few, many, self.internal_dim, like.device)

    def attend_heads_out(self, out: torch.Tensor) -> torch.Tensor:
        """Attention output heads (B, h, N, d) -> the output projection (B, N, C)."""
        B, h, N, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, N, h * d))

    def attend_heads(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention on projected heads (B or 1, h, N, d), then the output projection."""
        batch = max(q.shape[0], k.shape[0], v.shape[0])
        q, k, v = (x.expand(batch, -1, -1, -1) for x in (q, k, v))
        return self.attend_heads_out(attend(q, k, v, name=self.name))  # (B, h, Nq, d) heads


@dataclass
class ImageSide:
    """The prompt-independent image work of one image, shared by every prompt set on it.

    keys (1, hw, C) the image embedding plus the dense prompt, flattened; key_pe (1, hw, C) its
    positional encoding; keys_with_pe their sum. first_block: the first block's projections of the
    image, (token->image keys, token->image values, image->token queries) as (1, h, hw, d) heads,
    or None when that block or its attentions are not exactly ours (a learner's own) or have hooks."""

    keys: torch.Tensor
    key_pe: torch.Tensor
    keys_with_pe: torch.Tensor
    first_block: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None


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
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        image_side: Optional[ImageSide] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """queries: tokens (B, N, C); keys: image (B, HW, C); *_pe: their positional encodings.

        keys may have batch 1, shared by all B prompt sets: the image side of steps 2 and 4 is then
        computed once, and step 4's residual gives each prompt set its own keys (B, HW, C).
        ``image_side`` (this block's input image, prepared): its projections are used, not redone."""
        # 1. token self-attention (the first block's tokens already are their positions)
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)
        # 2. tokens look at the image. The image with its positions is step 2's keys and step 4's
        # queries (the image does not change in between), so it is added once.
        t2i, i2t = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        q = queries + query_pe
        image_queries = None
        # (prepared projections are used only while both attentions are still plain: a hook added
        # or a class swapped since the image side was prepared sends them through forward again)
        if image_side is not None and image_side.first_block is not None and _plain(t2i) and _plain(i2t):
            image_keys, image_values, image_queries = image_side.first_block
            attn = t2i.attend_heads(t2i.queries(q), image_keys, image_values)
        else:
            keys_with_pe = image_side.keys_with_pe if image_side is not None else keys + key_pe
            attn = t2i(q=q, k=keys_with_pe, v=keys)
        queries = self.norm2(queries + attn)
        # 3. MLP on each token
        queries = self.norm3(queries + self.mlp(queries))
        # 4. the image looks at the tokens
        q = queries + query_pe
        if image_queries is not None:
            attn = i2t.attend_prepared_queries(image_queries, q, queries)
        else:
            attn = i2t(q=keys_with_pe, k=q, v=queries)
        keys = self.norm4(keys + attn)
        return queries, keys

    def prepare_image(self, keys: torch.Tensor, keys_with_pe: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """This block's projections of an image that every prompt set shares (see :class:`ImageSide`);
        None when an attention here is not exactly :class:`DecoderAttention` (a learner's own, whose
        ``forward`` must then run as written) or has hooks on its forward."""
        if not (_plain(self.cross_attn_token_to_image) and _plain(self.cross_attn_image_to_token)):
            return None
        return (
            self.cross_attn_token_to_image.keys(keys_with_pe),
            self.cross_attn_token_to_image.values(keys),
            self.cross_attn_image_to_token.queries(keys_with_pe),
        )


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

    def prepare_image(self, image_embedding: torch.Tensor, image_pe: torch.Tensor) -> ImageSide:
        """The prompt-independent work on a (1, C, h, w) image and its (1, C, h, w) positions,
        for ``forward(..., image_side=...)``. Valid while the image and this module's weights stay
        as they are: a predictor keeps it for one image and drops it when either changes."""
        if image_embedding.shape[0] != 1:
            raise ValueError(f"image_embedding: expected batch 1 (one image for every prompt set), got {image_embedding.shape[0]}")
        keys, key_pe = _rows(image_embedding), _rows(image_pe)  # (1, hw, C)
        keys_with_pe = keys + key_pe
        first = self.layers[0] if len(self.layers) else None
        first_block = first.prepare_image(keys, keys_with_pe) if type(first) is TwoWayAttentionBlock else None
        return ImageSide(keys, key_pe, keys_with_pe, first_block)

    def forward(
        self,
        image_embedding: Optional[torch.Tensor],
        image_pe: Optional[torch.Tensor],
        point_embedding: torch.Tensor,
        image_side: Optional[ImageSide] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """image_embedding, image_pe: (B, C, h, w) or (1, C, h, w) when every prompt set has the
        same one (no mask prompt): its image-side projections are then computed once, not B times.
        point_embedding: tokens (B, N, C). ``image_side``: that shared image already prepared
        (:meth:`prepare_image`), in place of image_embedding and image_pe.

        Returns the updated tokens (B, N, C) and image (B, hw, C).
        """
        if image_side is not None:
            keys, key_pe = image_side.keys, image_side.key_pe
        else:
            keys = _rows(image_embedding)  # (B, hw, C)
            key_pe = _rows(image_pe)
        queries = point_embedding
        for index, layer in enumerate(self.layers):
            prepared = {"image_side": image_side} if index == 0 and image_side is not None and type(layer) is TwoWayAttentionBlock else {}
            queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding, key_pe=key_pe, **prepared)
        q, k = queries + point_embedding, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q=q, k=k, v=keys))
        return queries, keys.expand(queries.shape[0], -1, -1)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, hw, C): one row per image cell, in contiguous memory, so that the
    projections read it without copying it again (a (1, C, h, w) map expanded over B stays 1)."""
    if x.shape[0] > 1 and x.stride(0) == 0:
        return _rows(x[:1]).expand(x.shape[0], -1, -1)
    return x.flatten(2).transpose(1, 2).contiguous()


def _plain(module: nn.Module) -> bool:
    """Exactly our DecoderAttention, with no hooks on its forward: its work may then be split into
    projections done ahead and :meth:`DecoderAttention.attend_heads`."""
    return type(module) is DecoderAttention and not module._forward_hooks and not module._forward_pre_hooks
