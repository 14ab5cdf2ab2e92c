"""Positional encoding explorer: click a position, see how alike its code is to every other.

Paper appendix A, lessons 02 and 04. SAM tells positions apart in two ways:

    random Fourier features   ``prompt_encoder.get_dense_pe()``: (C, h, w), sin and cos of
                              2π B p for a fixed Gaussian B; the same code for prompts and cells
    learned absolute          ``image_encoder.pos_embed``: (1, h, w, D), one learned vector per
                              patch, added to the patch tokens

For the clicked cell, the cosine similarity of its code with every cell's code is drawn as a map.
Fourier features give a smooth bump around the cell (the same shape everywhere: the similarity
depends only on the offset); a trained ``pos_embed`` learns something similar; an untrained one
is all zeros (Meta's initialisation), which the explorer says rather than draws noise.

    state = PositionalEncodingState(model)
    state.similarity("fourier", row=8, col=8)        # (h, w) in [-1, 1], 1 at (8, 8)
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch
import traitlets

from .base import KernelWidget
from .images import HERE, es_module, heatmap_url

KINDS = {
    "fourier": "random Fourier features (prompt_encoder.get_dense_pe())",
    "absolute": "learned absolute embedding (image_encoder.pos_embed)",
}


class PositionalEncodingState:
    """The two positional codes of a SAM, each as (h, w, channels), and their similarities."""

    def __init__(self, model) -> None:
        with torch.no_grad():
            dense = model.prompt_encoder.get_dense_pe()[0]  # (C, h, w)
            self.encodings: Dict[str, np.ndarray] = {"fourier": dense.permute(1, 2, 0).float().cpu().numpy()}
            pos_embed = getattr(model.image_encoder, "pos_embed", None)
            if pos_embed is not None:  # (1, h, w, D); None when the encoder has no absolute position
                self.encodings["absolute"] = pos_embed[0].float().cpu().numpy()

    def grid(self, kind: str) -> Tuple[int, int]:
        return tuple(self._encoding(kind).shape[:2])

    def _encoding(self, kind: str) -> np.ndarray:
        if kind not in self.encodings:
            raise ValueError(f"kind: expected one of {sorted(self.encodings)}, got {kind!r}")
        return self.encodings[kind]

    def is_zero(self, kind: str) -> bool:
        return not np.any(self._encoding(kind))

    def similarity(self, kind: str, row: int, col: int) -> np.ndarray:
        """(h, w) cosine similarity of cell (row, col)'s code with every cell's; zeros when the
        codes are all zero (an untrained ``pos_embed``)."""
        codes = self._encoding(kind)
        h, w, channels = codes.shape
        if not (isinstance(row, (int, np.integer)) and isinstance(col, (int, np.integer))) or not (0 <= row < h and 0 <= col < w):
            raise ValueError(f"position: expected a cell (row, col) in 0..{h - 1} x 0..{w - 1}, got ({row!r}, {col!r})")
        flat = codes.reshape(-1, channels).astype(np.float64)
        norms = np.linalg.norm(flat, axis=1)
        query = flat[row * w + col]
        if norms[row * w + col] == 0:
            return np.zeros((h, w))
        cosine = flat @ query / np.maximum(norms * norms[row * w + col], 1e-12)
        return cosine.reshape(h, w)

    def describe(self, kind: str, row: int, col: int) -> str:
        h, w, channels = self._encoding(kind).shape
        text = f"{KINDS[kind]}: {channels} channels on a {h}×{w} grid"
        if self.is_zero(kind):
            return text + "; all zeros: this model's pos_embed is untrained (initialised to zero)"
        values = self.similarity(kind, row, col)
        others = np.delete(values.ravel(), row * w + col)
        return text + f"; similarity with the other cells from {others.min():.2f} to {others.max():.2f}"


class PositionalEncodingExplorer(KernelWidget):
    """Click a cell of either map: both show how alike that position's code is to all others."""

    _esm = es_module("positional.js")
    _css = HERE / "widgets.css"

    grids = traitlets.Dict({}).tag(sync=True)  # kind -> [h, w]
    position = traitlets.List([8, 8]).tag(sync=True)  # [row, col] in the Fourier grid
    maps = traitlets.Dict({}).tag(sync=True)  # kind -> PNG data URL of the similarity map
    notes = traitlets.Dict({}).tag(sync=True)  # kind -> description

    def __init__(self, model, display_width: int = 256, **kwargs) -> None:
        super().__init__(display_width=display_width, **kwargs)
        self.state = PositionalEncodingState(model)
        self.grids = {kind: list(self.state.grid(kind)) for kind in self.state.encodings}
        h, w = self.state.grid("fourier")
        self.position = [h // 2, w // 2]
        self._handle(lambda: None)

    @traitlets.observe("position")
    def _position_changed(self, change) -> None:
        if not self._pushing:
            self.received = f"kernel received position {change['new']}"
            self._handle(lambda: self._check(change["new"], change["old"]))

    def _check(self, position, previous) -> None:
        try:
            row, col = (int(v) for v in position)
            self.state.similarity("fourier", row, col)
        except (TypeError, ValueError) as exc:
            self._pushing = True
            self.position = previous  # refused: back to the last good position
            self._pushing = False
            raise ValueError(str(exc) if isinstance(exc, ValueError) else f"position: expected [row, col], got {position!r}") from None

    def _push_state(self) -> None:
        row, col = self.position
        h, w = self.state.grid("fourier")
        maps, notes = {}, {}
        for kind in self.state.encodings:
            kh, kw = self.state.grid(kind)  # the same grid as the Fourier one in SAM; scaled if not
            r, c = min(row * kh // h, kh - 1), min(col * kw // w, kw - 1)
            maps[kind] = heatmap_url(self.state.similarity(kind, r, c), -1.0, 1.0, cmap="coolwarm")
            notes[kind] = self.state.describe(kind, r, c)
        self.maps, self.notes = maps, notes
