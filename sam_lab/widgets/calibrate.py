"""How long will this image encoder take here? Counted FLOPs over a rate measured just now.

A fixed table of seconds (measured once, on some machine) was 4× off on a busy 2-core machine: the
browser and other kernels share the cores. So the estimate is measured where it will run:

    flops = encoder_flops(config)        # counted by torch's FlopCounterMode on the meta device:
                                         # shapes only, no memory, no arithmetic (ViT-B: ~970 GFLOP)
    rate = measure_rate(config)          # one of its windowed blocks, random weights, on a small
                                         # grid, timed once after a warm-up: FLOP per second
    seconds = flops / rate               # EncodeEstimate(seconds, flops, rate, measured_s)

The block is the encoder's own kind (same width, heads, MLP, window), so the rate includes what a
bare matrix product would leave out (softmax, layer norms, relative positions, window padding).
It takes about a second for ViT-B and two for ViT-H on 2 busy CPU threads.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Union

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..build import build_sam
from ..config import SamConfig, get_config
from ..modeling.image_encoder import Block


@dataclass(frozen=True)
class EncodeEstimate:
    seconds: float  # the estimate for one image through the image encoder
    flops: float  # the encoder's counted FLOPs for one image
    rate: float  # FLOP per second measured on this device, now
    measured_s: float  # how long the measurement itself took


@lru_cache(maxsize=None)
def encoder_flops(config: Union[str, SamConfig]) -> float:
    """FLOPs of one image through the image encoder (a multiply-add counts 2), counted on shapes."""
    config = get_config(config) if isinstance(config, str) else config
    side = config.image_encoder.img_size
    with torch.device("meta"):
        encoder = build_sam(config).image_encoder
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            encoder(torch.empty(1, 3, side, side))
    return float(counter.get_total_flops())


def measure_rate(config: Union[str, SamConfig], device: Union[str, torch.device] = "cpu",
                 budget_s: float = 0.5) -> float:
    """FLOP per second of one windowed encoder block of ``config`` on ``device``, measured now on
    a grid of two windows by two (the whole grid when that is smaller): the best of 2 to 7 runs,
    as many as fit in ``budget_s``."""
    config = get_config(config) if isinstance(config, str) else config
    encoder, device = config.image_encoder, torch.device(device)
    grid = encoder.img_size // encoder.patch_size
    side = min(grid, 2 * encoder.window_size) if encoder.window_size > 0 else grid
    block = Block(encoder.embed_dim, encoder.num_heads, encoder.mlp_ratio, encoder.qkv_bias,
                  use_rel_pos=encoder.use_rel_pos, window_size=encoder.window_size,
                  input_size=(side, side)).to(device).eval()
    tokens = torch.randn(1, side, side, encoder.embed_dim, device=device)  # (1, h, w, D)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:  # also the warm-up run
            block(tokens)
        times = []
        while len(times) < 2 or (len(times) < 7 and sum(times) < budget_s):  # the best of a few runs
            _synchronize(device)
            start = time.perf_counter()
            block(tokens)
            _synchronize(device)
            times.append(time.perf_counter() - start)
    # the best run: the full grid's larger products (and global blocks) run faster than this small
    # grid, so the typical run made estimates 1.5-2x too long in the browser tests
    return counter.get_total_flops() / max(min(times), 1e-9)


def estimate_encode(config: Union[str, SamConfig], device: Union[str, torch.device] = "cpu") -> EncodeEstimate:
    """Seconds for one image through ``config``'s image encoder on ``device``, measured now."""
    start = time.perf_counter()
    flops = encoder_flops(config)
    rate = measure_rate(config, device)
    return EncodeEstimate(flops / rate, flops, rate, time.perf_counter() - start)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
