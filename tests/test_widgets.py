"""The widgets without a browser: drive their state objects and traitlets as a click would.

Real-browser tests (what the page draws, clicks mapped at device scale factors 1 and 2) are in
tests/test_browser.py.
"""
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import sam_lab
import sam_lab.widgets
from sam_lab.inference.rle import rle_to_mask
from sam_lab.widgets import PromptState, PromptWidget, demo_image, pick_model
from sam_lab.widgets.images import es_module, heatmap, mask_overlay


class RecordingPredictor(sam_lab.SamPredictor):
    """A real predictor that remembers the arguments of every ``predict`` call."""

    def __init__(self, model):
        super().__init__(model)
        self.calls = []

    def predict(self, **kwargs):
        self.calls.append({**kwargs, "threads": torch.get_num_threads()})
        return super().predict(**kwargs)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return sam_lab.build_sam("tiny").eval()


@pytest.fixture(scope="module")
def image():
    return demo_image()  # (240, 320, 3)


@pytest.fixture
def predictor(tiny):
    return RecordingPredictor(tiny)


@pytest.fixture
def widget(predictor, image):
    return PromptWidget(predictor, image, model_label="tiny · untrained (random weights)")


# ------------------------------------------------------------------------------ PromptState
def test_points_reach_the_predictor_in_original_image_pixels(predictor, image):
    state = PromptState(predictor, image)
    state.add_point(100.5, 80.25)
    state.add_point(210, 150, label=0)
    call = predictor.calls[-1]
    np.testing.assert_array_equal(call["point_coords"], [[100.5, 80.25], [210, 150]])
    np.testing.assert_array_equal(call["point_labels"], [1, 0])
    assert state.masks.shape == (3, 240, 320) and state.masks.dtype == bool
    assert state.scores.shape == (3,) and state.selected == int(np.argmax(state.scores))


def test_refinement_feeds_the_chosen_masks_low_res_logits_back_as_mask_input(predictor, image):
    state = PromptState(predictor, image)
    first = state.add_point(100, 80)
    assert predictor.calls[-1]["mask_input"] is None and not first.refined
    state.select(2)
    second = state.add_point(150, 120, label=0)
    assert second.refined
    np.testing.assert_array_equal(predictor.calls[-1]["mask_input"], first.low_res_logits[2][None])
    state.set_box([20, 20, 300, 220])  # a box added to the points refines too
    np.testing.assert_array_equal(predictor.calls[-1]["mask_input"], second.low_res_logits[second.selected][None])


def test_a_prompt_that_replaces_the_previous_one_starts_fresh(predictor, image):
    state = PromptState(predictor, image)
    state.add_point(100, 80)
    state.set_prompt([[200, 100, 1]])  # not an extension of [(100, 80)]
    assert predictor.calls[-1]["mask_input"] is None and not state.current.refined


def test_undo_restores_the_previous_masks_and_reset_clears_everything(predictor, image):
    state = PromptState(predictor, image)
    first = state.add_point(100, 80)
    state.add_point(150, 120, label=0)
    calls = len(predictor.calls)
    assert state.undo()
    assert state.current is first and state.points == ((100.0, 80.0, 1),)
    assert len(predictor.calls) == calls  # undo replays nothing
    assert state.undo() and state.current is None and state.masks is None
    assert not state.undo()  # nothing left to undo
    state.add_point(10, 10)
    state.reset()
    assert state.current is None and state.history == [] and state.points == ()


def test_picking_a_candidate_changes_the_mask_that_is_shown_and_exported(predictor, image):
    state = PromptState(predictor, image)
    state.add_point(100, 80)
    for index in range(3):
        state.select(index)
        assert np.array_equal(state.mask, state.masks[index])
    with pytest.raises(ValueError, match="candidate index 0..2"):
        state.select(3)


def test_export_png_and_coco_rle_round_trip(predictor, image, tmp_path):
    from PIL import Image

    state = PromptState(predictor, image)
    with pytest.raises(ValueError, match="no mask yet"):
        state.export_coco_rle()
    state.add_point(100, 80)
    state.select(1)
    path = state.export_png(tmp_path / "mask.png")
    png = np.asarray(Image.open(path))
    assert png.shape == (240, 320) and set(np.unique(png)) <= {0, 255}
    np.testing.assert_array_equal(png > 0, state.mask)
    rle = state.export_coco_rle()
    assert rle["size"] == [240, 320] and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(rle_to_mask(rle), state.mask)


@pytest.mark.parametrize(
    "points, box, message",
    [
        ([[400, 10, 1]], None, "lies outside the image"),  # a click on the frame, right of the image
        ([[-3, 10, 1]], None, "lies outside the image"),
        ([], [50, 60, 50, 120], "x1 > x0"),  # a zero-area box
        ([], [10, 10, 330, 100], "reaches outside the image"),
        ([[10, 10, 2]], None, "label"),
        ([[10, 10]], None, r"\[x, y, label\]"),
        ([["a", 10, 1]], None, "numbers"),
    ],
)
def test_a_bad_prompt_raises_a_readable_error_and_leaves_the_state_unchanged(predictor, image, points, box, message):
    state = PromptState(predictor, image)
    good = state.add_point(100, 80)
    with pytest.raises((ValueError, TypeError), match=message):
        state.set_prompt(list(state.points) + points, box)
    assert state.current is good and len(state.history) == 1


def test_a_bad_click_costs_no_encoding_on_a_lazy_state(predictor, image):
    state = PromptState(predictor, image, lazy=True)
    with pytest.raises(ValueError):
        state.add_point(1000, 1000)
    assert not state.encoded and state.encode_ms is None
    state.add_point(10, 10)
    assert state.encoded and state.encode_ms > 0


def test_two_states_sharing_a_predictor_each_keep_their_own_image(tiny, image):
    predictor = sam_lab.SamPredictor(tiny)
    first, second = PromptState(predictor, image), PromptState(predictor, image[:100, :150])
    first.add_point(300, 200)  # outside the second image: works only if the first is re-encoded
    assert first.masks.shape == (3, 240, 320)
    second.add_point(10, 10)
    assert second.masks.shape == (3, 100, 150)


def test_clicks_run_on_decoder_threads_and_restore_torchs_setting(predictor, image):
    before = torch.get_num_threads()
    PromptState(predictor, image).add_point(10, 10)
    assert predictor.calls[-1]["threads"] == 1 and torch.get_num_threads() == before
    PromptState(predictor, image, decoder_threads=None).add_point(10, 10)
    assert predictor.calls[-1]["threads"] == before


def test_tiny_predict_latency_is_well_under_100_ms(tiny, image):
    state = PromptState(sam_lab.SamPredictor(tiny), image)
    timings = []
    for i in range(8):
        start = time.perf_counter()
        state.set_prompt([[50 + 10 * i, 60, 1]])
        timings.append((time.perf_counter() - start) * 1000)
    assert statistics.median(timings[1:]) < 100, timings  # one decoder thread: fast on a busy machine too
    print(f"tiny predict: median {statistics.median(timings[1:]):.1f} ms, best {min(timings[1:]):.1f} ms")


# ------------------------------------------------------------------------------ PromptWidget
def test_widget_sends_the_image_as_a_png_data_url(widget):
    assert widget.image_url.startswith("data:image/png;base64,")
    assert widget.image_size == [320, 240] and widget.encode_ms > 0
    assert widget.error == "" and widget.scores == [] and widget.mask_urls == []


def test_setting_points_as_a_click_would_predicts_and_syncs_light_results(widget, predictor):
    widget.points = [[100.5, 80.5, 1]]
    np.testing.assert_array_equal(predictor.calls[-1]["point_coords"], [[100.5, 80.5]])
    assert widget.received == "kernel received point (x=100.50, y=80.50), label 1"
    assert widget.masks.shape == (3, 240, 320)  # Python only, not a traitlet
    assert "masks" not in widget.keys
    assert len(widget.scores) == 3 and widget.selected == int(np.argmax(widget.scores))
    assert len(widget.mask_urls) == 3 and all(u.startswith("data:image/png;base64,") for u in widget.mask_urls)
    assert 0 < widget.latency_ms and widget.revision == 2  # the image, then the click


def test_widget_shift_click_negative_box_undo_reset_and_select(widget, predictor):
    widget.points = [[100, 80, 1]]
    widget.points = widget.points + [[150, 120, 0]]
    np.testing.assert_array_equal(predictor.calls[-1]["point_labels"], [1, 0])
    assert widget.refined and widget.can_undo
    widget.box = [20, 20, 300, 220]
    np.testing.assert_array_equal(predictor.calls[-1]["box"], [20, 20, 300, 220])
    assert widget.received.startswith("kernel received box (x0=20.00")
    widget.selected = 0
    assert np.array_equal(widget.mask, widget.masks[0])
    widget.command = {"name": "undo", "count": 1}  # the undo button
    assert widget.box is None and widget.points == [[100.0, 80.0, 1], [150.0, 120.0, 0]]
    widget.command = {"name": "reset", "count": 2}  # the reset button
    assert widget.points == [] and widget.box is None and widget.scores == [] and widget.masks is None
    assert not widget.can_undo


def test_a_bad_click_shows_the_error_keeps_the_state_and_the_widget_stays_usable(widget):
    widget.points = [[100, 80, 1]]
    scores, urls = widget.scores, widget.mask_urls
    widget.points = widget.points + [[-7, 30, 1]]  # a click on the frame, left of the image
    assert "lies outside the image" in widget.error and "x=-7" in widget.error
    assert widget.points == [[100.0, 80.0, 1]] and widget.scores == scores and widget.mask_urls == urls
    widget.box = [50, 60, 50, 120]  # a zero-area box
    assert "x1 > x0" in widget.error and widget.box is None
    widget.selected = 7
    assert "candidate index" in widget.error and widget.selected == int(np.argmax(scores))
    widget.points = widget.points + [[200, 100, 1]]  # still works
    assert widget.error == "" and len(widget.points) == 2 and widget.refined


def test_a_bad_image_is_reported_not_raised(predictor, image):
    widget = PromptWidget(predictor, image.astype(np.float32))
    assert "uint8" in widget.error and widget.image_url == ""
    widget.points = [[10, 10, 1]]
    assert "No image is set" in widget.error and widget.points == []
    widget.set_image(image)
    assert widget.error == "" and widget.image_size == [320, 240]
    widget.set_image(np.zeros((5, 5, 7), np.uint8))
    assert "expected shape" in widget.error and widget.image_size == [320, 240]  # the old image stays


def test_widget_exports_the_selected_mask(widget, tmp_path):
    widget.add_point(100, 80)
    widget.select(2)
    np.testing.assert_array_equal(rle_to_mask(widget.export_coco_rle()), widget.masks[2])
    assert widget.export_png(tmp_path / "m.png").is_file()


# ------------------------------------------------------------------------------ the page's code
NODE = shutil.which("node")
STAGE_JS = Path(sam_lab.widgets.__file__).parent / "stage.js"


@pytest.mark.skipif(NODE is None, reason="node is not installed (the browser tests click for real)")
@pytest.mark.parametrize(
    "rect, natural, client, expected",
    [
        ((29, 419, 480, 360), (320, 240), (29 + 1.5 * 215.5, 419 + 1.5 * 130.5), (215.5, 130.5)),  # shown 1.5x
        ((10, 20, 160, 120), (320, 240), (10 + 50, 20 + 60), (100, 120)),  # shown at half size
        ((0, 0, 320, 240), (320, 240), (-5, 10), (-5, 10)),  # the frame, left of the image: outside
        ((5, 5, 640, 480), (0, 0), (5 + 64, 5 + 48), (32, 24)),  # not loaded yet: image_size instead
    ],
)
def test_clicks_map_to_original_image_pixels_whatever_the_display_size(rect, natural, client, expected):
    """stage.js's toImagePixels, run by node on a stand-in <img>: CSS pixels in, image pixels out."""
    left, top, width, height = rect
    script = (
        f"import {{ toImagePixels }} from {json.dumps(STAGE_JS.as_uri())};\n"
        f"const img = {{ naturalWidth: {natural[0]}, naturalHeight: {natural[1]},\n"
        f"  getBoundingClientRect: () => ({{ left: {left}, top: {top}, width: {width}, height: {height} }}) }};\n"
        f"console.log(JSON.stringify(toImagePixels({client[0]}, {client[1]}, img, [320, 240])));"
    )
    result = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == pytest.approx(list(expected))


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@pytest.mark.parametrize("name", ["prompt.js", "compare.js", "attention.js", "positional.js"])
def test_each_es_module_parses(name, tmp_path):
    path = tmp_path / (name.replace(".js", ".mjs"))
    path.write_text(es_module(name))
    result = subprocess.run([NODE, "--check", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_es_module_inlines_the_shared_stage_once():
    source = es_module("prompt.js")
    assert "from \"./stage.js\"" not in source and source.count("function createStage") == 1
    assert "export default" in source and "export function" not in source


def test_mask_overlay_is_clear_outside_the_mask_and_outlined():
    mask = np.zeros((10, 12), bool)
    mask[2:8, 3:9] = True
    layer = mask_overlay(mask, (10, 20, 30), alpha=100)
    assert layer.shape == (10, 12, 4) and (layer[~mask, 3] == 0).all()
    assert layer[2, 3, 3] == 255 and layer[4, 5, 3] == 100  # border opaque, inside translucent
    assert heatmap(np.arange(6.0).reshape(2, 3)).shape == (2, 3, 4)


def test_pick_model_labels_random_weights_untrained(monkeypatch, tmp_path):
    monkeypatch.setenv("SAM_LAB_CHECKPOINTS", str(tmp_path))
    choice = pick_model("vit_h", folder=tmp_path, build=False)
    assert choice.trained is False and "untrained" in choice.label and not choice.built
    assert 636e6 < choice.parameters < 642e6
    tiny = pick_model("tiny")
    assert tiny.trained == sam_lab.weights.pretrained.shipped_weights_available("tiny")
    assert ("untrained" in tiny.label) != tiny.trained


# ------------------------------------------------------------------------------ CompareWidget
def test_compare_fans_the_same_clicks_out_to_every_model(tiny, image):
    from sam_lab.widgets import CompareState

    torch.manual_seed(1)
    other = sam_lab.build_sam("tiny").eval()
    state = CompareState({"ours": (tiny, "seed 0"), "other": (other, "seed 1")}, image)
    assert all(panel.state is None for panel in state.panels.values())  # nothing encoded before a click
    state.add_point(215, 130)
    state.add_point(245, 115, label=0)
    for panel in state.panels.values():
        assert panel.state.points == ((215.0, 130.0, 1), (245.0, 115.0, 0)) and panel.status == "ready"
        assert panel.state.masks.shape == (3, 240, 320) and panel.state.current.refined
        assert panel.state.encode_ms > 0 and panel.state.latency_ms > 0
    ours, theirs = (state.panels[k].state.current.scores for k in ("ours", "other"))
    assert not np.allclose(ours, theirs)  # two models really answered
    assert state.undo() and all(p.state.points == ((215.0, 130.0, 1),) for p in state.panels.values())
    state.reset()
    assert state.points == () and all(p.state.masks is None for p in state.panels.values())


def test_compare_encodes_lazily_with_progress_and_refuses_bad_clicks_before_any_work(image):
    from sam_lab.widgets import CompareState

    events = []
    state = CompareState(["tiny"], image, on_change=lambda key: events.append(state.panels[key].progress))
    panel = state.panels["tiny"]
    assert not panel.choice.built and "on the first click" in panel.status
    with pytest.raises(ValueError, match="outside the image"):
        state.add_point(500, 10)
    assert not panel.choice.built and events == [] and state.points == ()
    state.add_point(100, 100)
    progress = [p for p in events if p is not None]
    assert progress == [0.0, 0.25, 0.5, 0.75, 1.0]  # tiny has 4 encoder blocks
    assert panel.progress is None and panel.choice.built


def test_compare_labels_models_without_weights_untrained_and_estimates_encoder_time(image, tmp_path, monkeypatch):
    from sam_lab.weights import find_checkpoint
    from sam_lab.widgets import CompareWidget, estimate_encode_seconds

    monkeypatch.setenv("SAM_LAB_CHECKPOINTS", str(tmp_path / "empty"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    widget = CompareWidget({"B": "vit_b", "H": "vit_h"}, image, folder=tmp_path)
    b, h = widget.panels
    assert b["trained"] is False and b["weights"] == "untrained (random weights)"
    assert b["parameters"] == "93.7 M parameters" and h["parameters"] == "641.1 M parameters"
    assert "about 60.0 s on this CPU (2 threads)" in h["status"]
    assert estimate_encode_seconds("vit_h", threads=4) == 30.0 and estimate_encode_seconds("vit_l", "cuda") is None
    assert not widget.state.panels["H"].choice.built  # ViT-H is not even built before a click

    checkpoint = tmp_path / "sam_vit_b_01ec64.pth"
    checkpoint.write_bytes(b"")  # found by name; not loaded until a click needs it
    assert find_checkpoint("vit_b", tmp_path) == checkpoint
    found = CompareWidget({"B": "vit_b"}, image, folder=tmp_path).panels[0]
    assert found["trained"] is True and found["weights"] == "Meta checkpoint sam_vit_b_01ec64.pth"


def test_compare_widget_syncs_panels_and_masks_and_reports_bad_clicks(tiny, image):
    from sam_lab.widgets import CompareWidget

    widget = CompareWidget({"tiny": (tiny, "random")}, image)
    widget.points = [[215, 130, 1]]
    (panel,) = widget.panels
    assert widget.received == "kernel received point (x=215.00, y=130.00), label 1"
    assert len(panel["scores"]) == 3 and panel["decoder"].endswith("ms") and panel["encoder"]
    assert widget.mask_urls[0].startswith("data:image/png;base64,")
    widget.points = widget.points + [[-4, 10, 1]]
    assert "outside the image" in widget.error and widget.points == [[215.0, 130.0, 1]]
    widget.command = {"name": "reset", "count": 1}
    assert widget.points == [] and widget.mask_urls == [""] and widget.error == ""


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
    grid = state.grid_size  # (16, 16) for tiny
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
    assert widget.map_url.startswith("data:image/png") and "point 1 (object): max" in widget.stats
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
    assert state.grid("fourier") == (16, 16) == state.grid("absolute")
    similarity = state.similarity("fourier", 3, 12)
    assert similarity.shape == (16, 16) and similarity[3, 12] == pytest.approx(1)
    assert similarity.max() <= 1 + 1e-9 and similarity.min() >= -1 - 1e-9
    assert np.argmax(np.delete(similarity.ravel(), 3 * 16 + 12)) in {2 * 16 + 12, 3 * 16 + 11, 3 * 16 + 12, 4 * 16 + 12}
    assert state.is_zero("absolute")  # random init: Meta's pos_embed starts at zero
    assert not state.similarity("absolute", 3, 12).any() and "untrained" in state.describe("absolute", 3, 12)
    with torch.no_grad():
        trained = sam_lab.build_sam("tiny")
        trained.image_encoder.pos_embed.normal_()
    learned = PositionalEncodingState(trained).similarity("absolute", 0, 0)
    assert learned[0, 0] == pytest.approx(1) and np.abs(learned).max() <= 1 + 1e-9
    with pytest.raises(ValueError, match="position"):
        state.similarity("fourier", 16, 0)


def test_positional_encoding_explorer_follows_clicks_and_refuses_cells_outside(tiny):
    from sam_lab.widgets import PositionalEncodingExplorer

    widget = PositionalEncodingExplorer(tiny)
    assert widget.grids == {"fourier": [16, 16], "absolute": [16, 16]} and widget.position == [8, 8]
    first = dict(widget.maps)
    widget.position = [2, 5]  # what a click on cell (row 2, col 5) sends
    assert widget.error == "" and widget.maps["fourier"] != first["fourier"]
    assert widget.received == "kernel received position [2, 5]"
    widget.position = [2, 16]
    assert "position" in widget.error and widget.position == [2, 5]


def test_the_trained_tiny_model_is_used_automatically_once_its_weights_ship(tiny, tmp_path, monkeypatch):
    from sam_lab.weights import save_checkpoint

    weights = save_checkpoint(tiny, tmp_path / "tiny.safetensors")
    monkeypatch.setitem(sam_lab.weights.pretrained.SHIPPED, "tiny", weights)  # as if training had shipped them
    choice = pick_model("tiny")
    assert choice.trained is True and choice.label == "tiny · trained (shipped weights)"
    for name, value in tiny.state_dict().items():
        assert torch.equal(choice.model.state_dict()[name], value), name


def test_compare_shows_a_fast_models_mask_while_a_slow_one_still_encodes(tiny, image):
    from sam_lab.widgets import CompareWidget

    torch.manual_seed(2)
    widget = CompareWidget({"fast": (tiny, "a"), "slow": (sam_lab.build_sam("tiny").eval(), "b")}, image)
    seen = []
    widget.observe(lambda change: seen.append((change["new"][1]["progress"], list(widget.mask_urls))), "panels")
    widget.points = [[215, 130, 1]]
    while_encoding = [urls for progress, urls in seen if progress is not None]
    assert while_encoding and all(urls[0].startswith("data:image/png") and urls[1] == "" for urls in while_encoding)
