"""Lesson 13, text prompts: the projection from a CLIP vector to prompt tokens."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..turns import Turn


class TextProjection(nn.Module):
    """CLIP embedding (B, clip_dim) -> (B, num_tokens, embed_dim) text prompt tokens."""

    def __init__(self, clip_dim, embed_dim, num_tokens=2, hidden_dim=256):
        super().__init__()
        self.num_tokens, self.embed_dim = num_tokens, embed_dim
        self.register_buffer("center", torch.zeros(clip_dim))  # set from the training captions
        self.register_buffer("scale", torch.ones(clip_dim))
        self.register_buffer("tower_fingerprint", torch.zeros(3, clip_dim))  # which tower it was trained for
        self.proj = nn.Sequential(nn.Linear(clip_dim, hidden_dim), nn.GELU(),
                                  nn.Linear(hidden_dim, num_tokens * embed_dim))
        self.type_embed = nn.Parameter(torch.zeros(1, 1, embed_dim))

    def forward(self, clip_embeddings):  # (B, clip_dim)
        x = (clip_embeddings - self.center) / self.scale  # standardised
        tokens = self.proj(x).view(len(x), self.num_tokens, self.embed_dim)  # (B, T, C), token by token
        return tokens + self.type_embed  # "this token is text"


TURNS = [
    Turn("text_projection", "13", "standardise the CLIP vector, run the MLP, cut it into tokens, add the type",
         TextProjection, stage="text_projection"),
]
