"""Random weights *everywhere*, for parity tests and exercise checkers.

A fresh SAM has parameters that start at zero (the absolute and relative position tables) or at
one (norm scales). Compared on such weights, two implementations that differ in how they use
those parameters would agree by accident: the term multiplies by zero. :func:`randomize` gives
every parameter a random value of a sensible scale, so every code path shows in the output.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


@torch.no_grad()
def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter random and of a sensible scale, in place; returns ``module``.

    Norm scales near 1 and biases near 0 (1-D parameters), embeddings and position tables of
    order 1, weight matrices ~ 1/sqrt(fan_in) so activations keep their size through the layers.
    The same ``seed`` gives the same values for the same parameter names and shapes.
    """
    generator = torch.Generator().manual_seed(seed)
    embeddings = {f"{n}.weight" for n, m in module.named_modules() if isinstance(m, nn.Embedding)}
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=generator)
        leaf = name.rsplit(".", 1)[-1]
        if "pos" in leaf or name in embeddings:
            p.copy_(0.5 * noise)
        elif p.ndim == 1:
            p.copy_((1.0 if leaf == "weight" else 0.0) + 0.1 * noise)
        else:
            p.copy_(noise / math.sqrt(p[0].numel()))
    return module
