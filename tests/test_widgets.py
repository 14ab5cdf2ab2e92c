"""The widgets without a browser: drive their state objects and traitlets as a click would.

Real-browser tests (what the page draws, clicks mapped at device scale factors 1 and 2) are in
tests/test_browser.py.
"""
import statistics
import time

import numpy as np
import pytest
import torch

import sam_lab
from sam_lab.rle import rle_to_mask
from sam_lab.widgets import PromptState, PromptWidget, demo_image, pick_model
from sam_lab.widgets.images import es_module, heatmap, mask_overlay


class RecordingPredictor(sam_lab.SamPredictor):
    """A real predictor that remembers the arguments of every ``predict`` call."""

    def __init__(self, model):
        super().__init__(model)
        self.calls = []

    def predict(self, **kwargs):
        self.calls.append(kwargs)
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


def test_tiny_predict_latency_is_well_under_100_ms(tiny, image):
    state = PromptState(sam_lab.SamPredictor(tiny), image)
    timings = []
    for i in range(8):
        start = time.perf_counter()
        state.set_prompt([[50 + 10 * i, 60, 1]])
        timings.append((time.perf_counter() - start) * 1000)
    # the best of 8 is what the model needs; the machine may be busy with other work
    assert min(timings[1:]) < 100, timings
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


# ------------------------------------------------------------------------------ helpers
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
    assert tiny.trained == sam_lab.pretrained.shipped_weights_available("tiny")
    assert ("untrained" in tiny.label) != tiny.trained
