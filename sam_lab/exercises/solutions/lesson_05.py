"""Lesson 05, two-way attention: the forward pass of one two-way block."""
from __future__ import annotations

from ..engine import CheckResult
from ..turns import Turn


def two_way_block_forward(block, queries, keys, query_pe, key_pe):
    """One two-way block on ``block``'s modules. queries: tokens (B, N, C); keys: image cells
    (B, hw, C); query_pe, key_pe: their positions, added to queries and keys, never to values."""
    # 1. self-attention among the tokens (the first block's tokens are their positions already)
    if block.skip_first_layer_pe:
        queries = block.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + block.self_attn(q=q, k=q, v=queries)
    queries = block.norm1(queries)
    # 2. token -> image: tokens ask, image cells answer
    q, k = queries + query_pe, keys + key_pe
    queries = block.norm2(queries + block.cross_attn_token_to_image(q=q, k=k, v=keys))
    # 3. an MLP on every token
    queries = block.norm3(queries + block.mlp(queries))
    # 4. image -> token: image cells ask, tokens answer
    q, k = queries + query_pe, keys + key_pe
    keys = block.norm4(keys + block.cross_attn_image_to_token(q=k, k=q, v=queries))
    return queries, keys


def check_block_forward(yours) -> CheckResult:
    """Your forward inside our TwoWayAttentionBlock, checked as the stage "two_way_block"."""
    from .. import check
    from ...modeling.two_way_transformer import TwoWayAttentionBlock

    if not callable(yours):
        return CheckResult("two_way_block", False, f"✗ two_way_block: expected a function, got {type(yours).__name__}")

    class YourBlock(TwoWayAttentionBlock):
        def forward(self, queries, keys, query_pe, key_pe):
            return yours(self, queries, keys, query_pe, key_pe)

    YourBlock.__name__ = getattr(yours, "__name__", "YourBlock")
    return check("two_way_block", YourBlock, verbose=False)


TURNS = [
    Turn("two_way_block_forward", "05", "the four steps of a two-way block: token self-attention, "
         "token -> image, MLP, image -> token", two_way_block_forward, check=check_block_forward),
]
