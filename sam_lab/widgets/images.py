"""What the widgets send to the browser: PNG data URLs, mask overlays, heat maps; and the ES
modules themselves.

Everything crosses to the page as a traitlet, so pictures travel as ``data:image/png;base64,…``
strings that an ``<img>`` shows directly:

    png_data_url(image)                 (H, W, 3|4) uint8 -> "data:image/png;base64,..."
    mask_overlay_url(mask, color)       (H, W) bool -> a translucent RGBA PNG (clear where False)
    heatmap_url(values, vmin, vmax)     (h, w) floats -> a colour-mapped RGBA PNG
    es_module("prompt.js")              the widget's ES module, with ``./stage.js`` inlined
"""
from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
# one colour per candidate mask (whole / part / subpart), RGB 0..255, as the page draws them
CANDIDATE_COLORS = ((30, 120, 232), (245, 130, 32), (46, 170, 80), (170, 60, 200))


def png_data_url(image: np.ndarray, compress_level: int = 1) -> str:
    """(H, W), (H, W, 3) or (H, W, 4) uint8 -> a PNG data URL. Level 1: fast, masks stay small."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"image: expected uint8, got {image.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=compress_level)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def mask_interior(mask: np.ndarray) -> np.ndarray:
    """The pixels of an (H, W) bool mask whose 4 neighbours are all in the mask; the mask's
    border (drawn opaque over images) is ``mask & ~mask_interior(mask)``."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def mask_overlay(mask: np.ndarray, color: Sequence[int] = CANDIDATE_COLORS[0], alpha: int = 140) -> np.ndarray:
    """(H, W) bool -> (H, W, 4) uint8 RGBA: ``color`` at ``alpha`` where True, transparent elsewhere.

    The mask's border is drawn opaque (a pixel of the mask with a neighbour outside it), so the
    outline stays visible over any image."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask: expected shape (H, W), got {mask.shape}")
    inner = mask_interior(mask)
    layer = np.zeros((*mask.shape, 4), dtype=np.uint8)
    layer[mask, :3] = color[:3]
    layer[mask, 3] = 255
    layer[inner, 3] = alpha
    return layer


def mask_overlay_url(mask: np.ndarray, color: Sequence[int] = CANDIDATE_COLORS[0], alpha: int = 140) -> str:
    return png_data_url(mask_overlay(mask, color, alpha))


def heatmap(values: np.ndarray, vmin: Optional[float] = None, vmax: Optional[float] = None,
            cmap: str = "viridis", alpha: int = 255) -> np.ndarray:
    """(h, w) floats -> (h, w, 4) uint8 through a matplotlib colour map, scaled to [vmin, vmax]
    (default: the values' own range; a constant map is drawn at the low end)."""
    from matplotlib import colormaps

    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values: expected shape (h, w), got {values.shape}")
    low = float(values.min()) if vmin is None else float(vmin)
    high = float(values.max()) if vmax is None else float(vmax)
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    rgba = colormaps[cmap](np.clip(scaled, 0.0, 1.0), bytes=True)  # (h, w, 4) uint8
    rgba[..., 3] = alpha
    return rgba


def heatmap_url(values: np.ndarray, vmin: Optional[float] = None, vmax: Optional[float] = None,
                cmap: str = "viridis", alpha: int = 255) -> str:
    return png_data_url(heatmap(values, vmin, vmax, cmap, alpha))


_IMPORT = re.compile(r'^import\s*\{[^}]*\}\s*from\s*"\./([\w.]+)";\s*$', re.MULTILINE)


def es_module(name: str) -> str:
    """The ES module ``name`` (a .js file in this folder) as one string for anywidget's ``_esm``.

    The widgets share their image stage (``stage.js``: clicks to image pixels, markers, boxes). A
    widget's module imports it as ``import { ... } from "./stage.js";``, which a browser cannot
    resolve for a module that arrives as a string; this inlines such imports (once each): no
    build step, and every .js file stays a plain ES module you can read on its own.
    """
    source = (HERE / name).read_text(encoding="utf-8")
    inlined = []

    def inline(match: re.Match) -> str:
        dependency = match.group(1)
        if dependency in inlined:
            return ""
        inlined.append(dependency)
        body = re.sub(r"^export\s+", "", es_module(dependency), flags=re.MULTILINE)  # one module now
        return f"// ---- {dependency} (inlined)\n{body}\n// ---- {name}\n"

    return _IMPORT.sub(inline, source)


def demo_image() -> np.ndarray:
    """A (240, 320, 3) uint8 picture of nested shapes (whole / part / subpart), the kind of
    image the shipped tiny model was trained on: a blue ellipse with a yellow hexagon, and a
    checked square holding a red pentagon holding a brown triangle. Not square, on purpose: the
    widgets map clicks correctly whatever the aspect ratio."""
    from ..training.data.synthetic import SyntheticShapes

    return SyntheticShapes(2, seed=7, image_size=320)[1]["image"][30:270]
