"""Small building blocks shared by several stages.

LayerNorm2d  layer norm over the channel axis of a (B, C, H, W) map (used in the neck, the
             mask downscaler and the mask decoder's upscaler).
MLPBlock     Linear -> activation -> Linear, the feed-forward half of a transformer block.
MLP          a stack of Linear layers with ReLU between them (hypernetworks, IoU head).
"""
from __future__ import annotations

from typing import Type

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.Module):
    """Normalise each pixel's C channels to zero mean and unit variance, then scale and shift."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4 and x.permute(0, 2, 3, 1).is_contiguous():
            # channels-last memory (the decoder's upscaling, the encoder's neck): each pixel's C
            # values are adjacent, and PyTorch's fused layer_norm over them is one pass instead
            # of the six below; the same formula, equal to ~1e-7
            out = F.layer_norm(x.permute(0, 2, 3, 1), (self.weight.shape[0],), self.weight, self.bias, self.eps)
            return out.permute(0, 3, 1, 2)
        mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLPBlock(nn.Module):
    def __init__(self, embedding_dim: int, mlp_dim: int, act: Type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class MLP(nn.Module):
    """``num_layers`` Linear layers: input_dim -> hidden_dim -> ... -> output_dim, ReLU between."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        widths = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.num_layers = num_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = F.relu(x)
        if self.sigmoid_output:
            x = torch.sigmoid(x)
        return x


def make_stage(factory, **kwargs) -> nn.Module:
    """A stage given as a built module is used as it is; a class or factory is called with
    the keyword arguments our own class takes."""
    if isinstance(factory, nn.Module):
        return factory
    return factory(**kwargs)
