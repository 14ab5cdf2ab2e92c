"""Lesson 01, patching: the window functions."""
from __future__ import annotations

import torch.nn.functional as F

from ..turns import Turn


def window_partition(x, window_size):
    """(B, H, W, C) -> windows (B * nWindows, w, w, C) and the padded size (Hp, Wp)."""
    B, H, W, C = x.shape
    pad_h = (window_size - H % window_size) % window_size
    pad_w = (window_size - W % window_size) % window_size
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # F.pad starts at the last axis: C, then W, then H
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window_size, window_size, Wp // window_size, window_size, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, C)
    return windows, (Hp, Wp)


def window_unpartition(windows, window_size, padded_hw, hw):
    """Windows (B * nWindows, w, w, C) -> (B, H, W, C), the padding cut away."""
    (Hp, Wp), (H, W) = padded_hw, hw
    nh, nw = Hp // window_size, Wp // window_size
    B = windows.shape[0] // (nh * nw)
    x = windows.reshape(B, nh, nw, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    return x[:, :H, :W, :]


TURNS = [
    Turn("window_partition", "01", "pad the token grid, cut it into windows, stitch it back and crop",
         (window_partition, window_unpartition), stage="window_partition"),
]
