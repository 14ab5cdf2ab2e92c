"""Attention explorer: where each token of the two-way transformer looks, for your prompt.

Paper §3 and appendix A (figure 14), lesson 05. The mask decoder's tokens (IoU token, 4 mask
tokens, one token per prompt point or box corner, a padding point without a box) and the image
embedding's h x w cells attend to each other in 7 attentions (2 blocks of self, token -> image,
image -> token; then a final token -> image). ``sam_lab.record_attention()`` keeps their weights;
this explorer draws one (layer, head, token) at a time over the image:

    token -> image   where the chosen token looks: its weights over the cells (they sum to 1)
    image -> token   how much every cell listens to the chosen token
    token -> token   the chosen token's weights over the tokens (self-attention)

    state = AttentionState(predictor, image)
    state.set_prompt([[215, 130, 1]])
    grid = state.attention_map("two_way.final_attn_token_to_image", head=-1, token=5)  # (h, w)
    heat = state.overlay(grid)               # (H, W) in [0, 1], over the original image

The grid covers the model's padded square input; the image fills its top-left corner, so the
overlay is upsampled to the input, cropped and resized exactly like SAM's masks. The statistics
count only the cells over the image (``image_cells``): the strongest cell is one a learner can see,
and the share of the weight that falls on padding is said. Each map is drawn against the uniform
baseline (every cell alike): the colour scale runs from 0 to the peak but never below 10× the
uniform weight, so a near-uniform map stays dim instead of being stretched to look strong.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import traitlets

from ..modeling.kernels import record_attention
from ..modeling.sam import to_original_size
from .base import PROMPT_ERRORS, ClickableWidget
from .images import HERE, es_module, heatmap_url, png_data_url
from .prompt_state import PromptState

OUTPUT_TOKENS = ["IoU token", "mask token 0 (single)", "mask token 1", "mask token 2", "mask token 3"]
DEFAULT_LAYER = "two_way.final_attn_token_to_image"
BASELINE_CONTRAST = 10  # the colour scale's top is at least this many times the uniform weight


def attention_kind(name: str) -> str:
    if "image_to_token" in name:
        return "image → token"
    if "token_to_image" in name:
        return "token → image"
    return "token → token"


def token_labels(points, box) -> List[str]:
    """The decoder's tokens, in order: output tokens, points, then a padding point or box corners."""
    labels = list(OUTPUT_TOKENS)
    labels += [f"point {i + 1} ({'object' if p[2] == 1 else 'background'})" for i, p in enumerate(points)]
    if box is None and points:
        labels.append("padding point")
    elif box is not None:
        labels += ["box corner (x0, y0)", "box corner (x1, y1)"]
    return labels


class AttentionState:
    """A :class:`PromptState` whose every prediction also keeps the two-way attention maps."""

    def __init__(self, predictor, image=None) -> None:
        self.prompt = PromptState(predictor, image)
        self._maps: Dict[int, List[Tuple[str, torch.Tensor]]] = {}  # id(prediction) -> maps

    def set_prompt(self, points=(), box=None) -> None:
        with record_attention() as record:
            prediction = self.prompt.set_prompt(points, box)
        recorded = [(name, weights[0]) for name, weights in record if name.startswith("two_way.")]
        if prediction is not None and recorded:  # (an unchanged prompt records nothing)
            self._maps[id(prediction)] = recorded  # each (heads, queries, keys)
        alive = {id(p) for p in [*self.prompt.history, self.prompt.current] if p is not None}
        self._maps = {key: maps for key, maps in self._maps.items() if key in alive}

    def undo(self) -> bool:
        return self.prompt.undo()

    def reset(self) -> None:
        self.prompt.reset()
        self._maps.clear()

    @property
    def maps(self) -> List[Tuple[str, torch.Tensor]]:
        """(name, weights (heads, queries, keys)) of each attention of the current prediction."""
        return self._maps.get(id(self.prompt.current), [])

    @property
    def layers(self) -> List[str]:
        return [name for name, _ in self.maps]

    @property
    def tokens(self) -> List[str]:
        labels = token_labels(self.prompt.points, self.prompt.box)
        if self.maps:  # a swapped-in decoder may have other tokens: then just number them
            count = next(w.shape[-1] for n, w in self.maps if attention_kind(n) == "token → token")
            labels = labels if len(labels) == count else [f"token {i}" for i in range(count)]
        return labels

    @property
    def grid_size(self) -> Tuple[int, int]:
        return tuple(self.prompt.predictor.model.prompt_encoder.image_embedding_size)

    @property
    def image_cells(self) -> Tuple[int, int]:
        """(rows, cols) of the grid's top-left cells that lie over the image (any part of it);
        the rest cover the padding of the square input."""
        predictor = self.prompt.predictor
        side = predictor.model.image_encoder.img_size
        (h, w), (input_h, input_w) = self.grid_size, predictor.input_size
        return min(h, -(-input_h * h // side)), min(w, -(-input_w * w // side))

    def weights(self, layer: str) -> torch.Tensor:
        for name, weights in self.maps:
            if name == layer:
                return weights
        raise ValueError(f"layer: expected one of {self.layers or 'the layers of a prediction (click first)'}, got {layer!r}")

    def attention_map(self, layer: str, head: int = -1, token: int = 0) -> np.ndarray:
        """(h, w) for attentions between tokens and image, (N,) for token self-attention.
        ``head`` -1 averages the heads."""
        weights = self.weights(layer)  # (heads, queries, keys)
        heads, queries, keys = weights.shape
        if not -1 <= head < heads:
            raise ValueError(f"head: expected -1 (mean) or 0..{heads - 1}, got {head}")
        weights = weights.mean(0) if head == -1 else weights[head]  # (queries, keys)
        kind = attention_kind(layer)
        count = keys if kind == "image → token" else queries
        if not 0 <= token < count:
            raise ValueError(f"token: expected 0..{count - 1}, got {token}")
        if kind == "token → token":
            return weights[token].numpy()
        values = weights[:, token] if kind == "image → token" else weights[token]  # (h * w,)
        return values.reshape(self.grid_size).numpy()

    def overlay(self, grid: np.ndarray, size: Optional[Tuple[int, int]] = None,
                vmax: Optional[float] = None) -> np.ndarray:
        """An (h, w) map over the embedding grid -> (H, W) over the original image (or ``size``),
        scaled to [0, 1] by its maximum, or by ``vmax`` (values above it are clipped to 1)."""
        predictor = self.prompt.predictor
        values = torch.as_tensor(np.asarray(grid, dtype=np.float32))[None, None]
        values = to_original_size(values, predictor.model.image_encoder.img_size, predictor.input_size,
                                  size or predictor.original_size)
        values = values[0, 0].clamp(min=0)
        top = values.max() if vmax is None else torch.tensor(float(vmax))
        return (values / top.clamp(min=1e-12)).clamp(max=1).numpy()


class AttentionExplorer(ClickableWidget):
    """Click to prompt; pick a layer, a head and a token; see its attention over the image."""

    _esm = es_module("attention.js")
    _css = HERE / "widgets.css"

    layers = traitlets.List([]).tag(sync=True)  # [{"name": ..., "kind": ...}]
    layer = traitlets.Unicode(DEFAULT_LAYER).tag(sync=True)
    heads = traitlets.Int(0).tag(sync=True)
    head = traitlets.Int(-1).tag(sync=True)  # -1: the mean over heads
    tokens = traitlets.List([]).tag(sync=True)
    token = traitlets.Int(5).tag(sync=True)  # default: the first prompt token
    map_url = traitlets.Unicode("").tag(sync=True)  # heat map over the image (PNG data URL)
    token_weights = traitlets.List([]).tag(sync=True)  # for token -> token attention
    stats = traitlets.Unicode("").tag(sync=True)

    def __init__(self, predictor, image, display_width: int = 480, overlay_side: int = 160, **kwargs) -> None:
        super().__init__(display_width=display_width, **kwargs)
        self.overlay_side = overlay_side  # the heat map's long side; the page smooths it up
        self.state = AttentionState(predictor, image)
        H, W = self.state.prompt.image_hw
        self.image_url, self.image_size = png_data_url(self.state.prompt.image), [W, H]
        self._handle(lambda: None)

    def _apply_prompt(self, points, box) -> None:
        self.state.set_prompt(points, box)

    def _commands(self):
        return {"undo": self.state.undo, "reset": self.state.reset}

    @traitlets.observe("layer", "head", "token")
    def _choice_changed(self, change) -> None:
        if not self._pushing:
            self.received = f"kernel received {change['name']} = {change['new']}"
            self._handle(self._draw)

    def _push_state(self) -> None:
        state = self.state
        self.points = [list(p) for p in state.prompt.points]
        self.box = None if state.prompt.box is None else list(state.prompt.box)
        self.layers = [{"name": name, "kind": attention_kind(name)} for name in state.layers]
        self.heads = 0 if not state.maps else int(state.maps[0][1].shape[0])
        self.tokens = state.tokens if state.maps else []
        if self.layers and self.layer not in state.layers:
            self.layer = DEFAULT_LAYER if DEFAULT_LAYER in state.layers else state.layers[-1]
        self.head = self.head if -1 <= self.head < max(self.heads, 1) else -1
        if self.tokens and not 0 <= self.token < self._token_count():
            self.token = min(5, self._token_count() - 1)
        try:
            self._draw()
        except PROMPT_ERRORS as exc:  # the choice does not fit this prediction: say so, draw nothing
            self.stats = str(exc)

    def _token_count(self) -> int:
        weights = self.state.weights(self.layer)
        return weights.shape[-1] if attention_kind(self.layer) == "image → token" else weights.shape[1]

    def _draw(self) -> None:
        """Compute the chosen (layer, head, token) map; a bad choice raises (and is shown)."""
        self.map_url, self.token_weights, self.stats = "", [], ""
        if not self.state.maps:
            self.stats = "click on the image to run the decoder"
            return
        values = self.state.attention_map(self.layer, self.head, self.token)
        who = self.tokens[self.token]
        if values.ndim == 1:
            self.token_weights = [round(float(v), 4) for v in values]
            self.stats = f"{who}: weights over the {len(values)} tokens (sum 1)"
            return
        if attention_kind(self.layer) == "token → image":
            uniform, summary = 1 / values.size, "weights over the cells sum to 1"
        else:
            uniform, summary = 1 / len(self.tokens), "each cell's weights over the tokens sum to 1"
        rows, cols = self.state.image_cells
        inside = values[:rows, :cols]  # the cells over the image; the rest cover padding
        peak = float(inside.max())
        vmax = min(max(peak, BASELINE_CONTRAST * uniform), 1.0)
        H, W = self.state.prompt.image_hw
        scale = self.overlay_side / max(H, W)
        heat = self.state.overlay(values, (max(1, round(H * scale)), max(1, round(W * scale))), vmax=vmax)
        self.map_url = heatmap_url(heat, 0.0, 1.0, cmap="magma", alpha=165)
        row, col = np.unravel_index(int(np.argmax(inside)), inside.shape)
        padding = ""
        if attention_kind(self.layer) == "token → image" and inside.size < values.size:
            padding = f"; {1 - float(inside.sum()):.0%} of it on the padding"
        self.stats = (f"{who}: strongest cell over the image (row {row}, col {col}): {peak:.4f}, "
                      f"{peak / uniform:.1f}× the uniform {uniform:.4f}; colour scale 0 to {vmax:.4f}; "
                      f"{summary}{padding}")
