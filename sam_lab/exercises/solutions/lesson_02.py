"""Lesson 02, positional encoding: the decomposed relative-position lookup."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..turns import Turn


def get_rel_pos(q_size, k_size, rel_pos):
    """rel_pos: (L, C) table, one row per offset -> (q_size, k_size, C)."""
    rows_needed = 2 * max(q_size, k_size) - 1
    table = rel_pos
    if rel_pos.shape[0] != rows_needed:  # resize the table along its offset axis
        table = F.interpolate(rel_pos.T[None], size=rows_needed, mode="linear")[0].T  # (rows_needed, C)
    q_scale = max(k_size / q_size, 1.0)  # stretch the smaller grid to the larger one's scale
    k_scale = max(q_size / k_size, 1.0)
    q_coords = torch.arange(q_size)[:, None] * q_scale  # (q_size, 1)
    k_coords = torch.arange(k_size)[None, :] * k_scale  # (1, k_size)
    row = (q_coords - k_coords) + (k_size - 1) * k_scale  # the offset, shifted to start at row 0
    return table[row.long()]


TURNS = [
    Turn("rel_pos", "02", "look up the relative-position table for every (query, key) offset",
         get_rel_pos, stage="rel_pos"),
]
