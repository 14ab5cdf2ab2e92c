"""AttentionExplorer and PositionalEncodingExplorer, driven without a browser. (Shared
fixtures: widget_support.py.)"""

import numpy as np
import pytest
import torch

import sam_lab
import sam_lab.widgets
from widget_support import RecordingPredictor, image, tiny  # noqa: F401  (fixtures)


# ------------------------------------------------------------------------------ explorers
def test_attention_state_keeps_the_seven_maps_of_each_prediction(tiny, image):
    from sam_lab.widgets import AttentionState

    state = AttentionState(sam_lab.SamPredictor(tiny), image)
    assert state.maps == []
    state.set_prompt([[215, 130, 1]])
    assert len(state.layers) == 7 and state.layers[-1] == "two_way.final_attn_token_to_image"
    assert state.tokens == ["IoU token", "mask token 0 (single)", "mask token 1", "mask token 2", "mask token 3",
                            "point 1 (object)", "padding point"]
    first = state.maps
    state.set_prompt([[215, 130, 1]], [150, 60, 300, 200])
    assert state.tokens[-2:] == ["box corner (x0, y0)", "box corner (x1, y1)"] and len(state.tokens) == 8
    assert state.undo() and state.maps is first  # undo brings the earlier maps back, no rerun


def test_attention_maps_have_the_grid_shape_and_sum_to_one(tiny, image):
    from sam_lab.widgets import AttentionState

    state = AttentionState(sam_lab.SamPredictor(tiny), image)
    state.set_prompt([[215, 130, 1]])
    grid = state.grid_size  # (32, 32) for tiny
    token_to_image = state.attention_map("two_way.final_attn_token_to_image", head=2, token=5)
    assert token_to_image.shape == grid and token_to_image.sum() == pytest.approx(1, abs=1e-5)
    mean = state.attention_map("two_way.layers.0.cross_attn_token_to_image", head=-1, token=1)
    assert mean.sum() == pytest.approx(1, abs=1e-5)
    cells = [state.attention_map("two_way.layers.1.cross_attn_image_to_token", -1, t) for t in range(7)]
    assert cells[0].shape == grid and np.allclose(sum(cells), 1, atol=1e-5)  # each cell: 1 over the tokens
    tokens = state.attention_map("two_way.layers.0.self_attn", head=0, token=5)
    assert tokens.shape == (7,) and tokens.sum() == pytest.approx(1, abs=1e-5)
    heat = state.overlay(token_to_image)
    assert heat.shape == (240, 320) and heat.max() == pytest.approx(1) and heat.min() >= 0
    assert state.overlay(token_to_image, (60, 80)).shape == (60, 80)
    for bad in [dict(head=4), dict(token=7), dict(head=-2)]:
        with pytest.raises(ValueError):
            state.attention_map("two_way.final_attn_token_to_image", **{"head": -1, "token": 0, **bad})
    with pytest.raises(ValueError, match="layer"):
        state.attention_map("encoder.blocks.0", -1, 0)


def test_attention_explorer_draws_the_chosen_map_and_refuses_bad_choices(tiny, image):
    from sam_lab.widgets import AttentionExplorer

    widget = AttentionExplorer(sam_lab.SamPredictor(tiny), image)
    assert widget.layers == [] and "click" in widget.stats
    widget.points = [[215, 130, 1]]
    assert widget.layer == "two_way.final_attn_token_to_image" and widget.heads == 4 and widget.token == 5
    assert widget.map_url.startswith("data:image/png") and "point 1 (object): strongest cell over the image" in widget.stats
    widget.layer = "two_way.layers.0.self_attn"
    assert widget.map_url == "" and len(widget.token_weights) == 7
    widget.head = 9
    assert "head: expected -1 (mean) or 0..3" in widget.error and widget.head == -1
    widget.points = widget.points + [[400, 10, 1]]
    assert "outside the image" in widget.error and len(widget.points) == 1
    widget.command = {"name": "reset", "count": 1}
    assert widget.layers == [] and widget.map_url == "" and widget.error == ""


def test_positional_encoding_similarity_is_one_at_the_cell_and_bounded(tiny):
    from sam_lab.widgets import PositionalEncodingState

    state = PositionalEncodingState(tiny)
    assert state.grid("fourier") == (32, 32) == state.grid("absolute")
    similarity = state.similarity("fourier", 3, 12)
    assert similarity.shape == (32, 32) and similarity[3, 12] == pytest.approx(1)
    assert similarity.max() <= 1 + 1e-9 and similarity.min() >= -1 - 1e-9
    others = similarity.copy()
    others[3, 12] = -np.inf
    assert np.unravel_index(np.argmax(others), others.shape) in {(2, 12), (4, 12), (3, 11), (3, 13)}  # a neighbour
    assert state.is_zero("absolute")  # random init: Meta's pos_embed starts at zero
    assert not state.similarity("absolute", 3, 12).any() and "untrained" in state.describe("absolute", 3, 12)
    with torch.no_grad():
        trained = sam_lab.build_sam("tiny")
        trained.image_encoder.pos_embed.normal_()
    learned = PositionalEncodingState(trained).similarity("absolute", 0, 0)
    assert learned[0, 0] == pytest.approx(1) and np.abs(learned).max() <= 1 + 1e-9
    with pytest.raises(ValueError, match="position"):
        state.similarity("fourier", 32, 0)


def test_positional_encoding_explorer_follows_clicks_and_refuses_cells_outside(tiny):
    from sam_lab.widgets import PositionalEncodingExplorer

    widget = PositionalEncodingExplorer(tiny)
    assert widget.grids == {"fourier": [32, 32], "absolute": [32, 32]} and widget.position == [16, 16]
    first = dict(widget.maps)
    widget.position = [2, 5]  # what a click on cell (row 2, col 5) sends
    assert widget.error == "" and widget.maps["fourier"] != first["fourier"]
    assert widget.received == "kernel received position [2, 5]"
    widget.position = [2, 32]
    assert "position" in widget.error and widget.position == [2, 5]




def test_attention_statistics_stay_inside_the_image_and_show_the_uniform_baseline(tiny, image):
    from sam_lab.widgets import AttentionExplorer

    widget = AttentionExplorer(sam_lab.SamPredictor(tiny), image)
    state = widget.state
    assert state.image_cells == (24, 32)  # 240x320 resized to 192x256 of the 256 input: 24 of 32 rows
    widget.points = [[215, 130, 1]]
    grid = state.attention_map(widget.layer, widget.head, widget.token)
    padded = grid.copy()
    padded[24:] = 0  # the explorer must not see what lies on the padding
    row, col = np.unravel_index(int(np.argmax(padded)), grid.shape)
    assert f"strongest cell over the image (row {row}, col {col}): {grid[row, col]:.4f}" in widget.stats
    uniform = 1 / grid.size
    assert f"the uniform {uniform:.4f}" in widget.stats and "on the padding" in widget.stats

    uniform_map = np.full(state.grid_size, uniform)  # a map with no preference stays dim
    assert state.overlay(uniform_map, vmax=10 * uniform).max() == pytest.approx(0.1, abs=1e-3)
    assert state.overlay(uniform_map).max() == pytest.approx(1.0)  # (stretched, it would look strong)
