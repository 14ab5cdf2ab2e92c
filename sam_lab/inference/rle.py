"""Run-length encoding of binary masks, in the COCO format.

COCO stores a mask of size (H, W) as the lengths of alternating runs of 0s and 1s, reading the
mask column by column (Fortran order), always starting with a run of 0s (possibly empty).
``counts`` is either that list of ints ("uncompressed") or a compact string ("compressed"):
each count, after the first two, is stored as the difference to the count two places before,
and written 5 bits at a time as printable characters (48 + value, bit 0x20 = "more follows").

    rle = mask_to_rle(mask)               # {"size": [H, W], "counts": "..."}
    mask = rle_to_mask(rle)               # (H, W) bool
"""
from __future__ import annotations

from typing import Dict, List, Union

import numpy as np


def mask_to_counts(mask: np.ndarray) -> List[int]:
    """Alternating run lengths (0s first) of a 2-D boolean mask read in column-major order."""
    if mask.ndim != 2:
        raise ValueError(f"mask: expected a 2-D (H, W) array, got shape {mask.shape}")
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # where a new run starts
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts  # COCO runs always start with 0s
    return counts


def counts_to_mask(counts: List[int], size) -> np.ndarray:
    H, W = int(size[0]), int(size[1])
    if sum(counts) != H * W:
        raise ValueError(f"counts: run lengths add up to {sum(counts)}, but size {H}x{W} needs {H * W}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((W, H)).T  # undo column-major order


def compress_counts(counts: List[int]) -> str:
    out = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            # stop once the rest is pure sign extension of the last chunk
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def decompress_counts(text: str) -> List[int]:
    counts: List[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                raise ValueError("counts: compressed RLE string ends in the middle of a number")
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)  # negative: sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def mask_to_rle(mask: np.ndarray, compressed: bool = True) -> Dict[str, Union[List[int], str]]:
    """COCO RLE of an (H, W) mask; ``compressed`` gives the string form pycocotools writes."""
    counts = mask_to_counts(mask)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": compress_counts(counts) if compressed else counts}


def rle_counts(rle: Dict) -> List[int]:
    """The run lengths of a COCO RLE dict, whether its counts are a list, a string or bytes."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"rle: expected a dict with 'size' and 'counts', got {type(rle).__name__}")
    counts = rle["counts"]
    if isinstance(counts, bytes):  # pycocotools hands compressed counts back as bytes
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        return decompress_counts(counts)
    return [int(c) for c in counts]


def rle_to_mask(rle: Dict) -> np.ndarray:
    """(H, W) bool mask from a COCO RLE dict (compressed string or bytes, or list of counts)."""
    return counts_to_mask(rle_counts(rle), rle["size"])


def area(rle: Dict) -> int:
    """Foreground pixels of a COCO RLE dict (compressed string or bytes, or list of counts)."""
    return int(sum(rle_counts(rle)[1::2]))
