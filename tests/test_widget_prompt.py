"""PromptWidget and its PromptState: clicks, boxes, captions, refinement, undo, export; the
page's code; which model pick_model gives. (Shared fixtures: widget_support.py.)"""
import json
import shutil
import statistics
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import sam_lab
import sam_lab.widgets
from sam_lab.inference.rle import rle_to_mask
from sam_lab.widgets import PromptState, PromptWidget, pick_model
from sam_lab.widgets.images import es_module, heatmap, mask_overlay
from widget_support import RecordingPredictor, image, tiny  # noqa: F401  (fixtures)


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
    assert state.masks.shape == (1, 240, 320) and state.masks.dtype == bool  # two points: one mask
    assert state.scores.shape == (1,) and state.selected == 0


def test_one_point_gets_three_candidates_several_prompts_one_and_the_toggle_asks_for_three(predictor, image):
    state = PromptState(predictor, image)
    assert state.multimask_output == "auto"
    state.add_point(215, 130)
    assert predictor.calls[-1]["multimask_output"] is True and state.masks.shape == (3, 240, 320)
    state.add_point(245, 115, label=0)  # a second prompt says which object: one mask, as SAM does
    assert predictor.calls[-1]["multimask_output"] is False and state.masks.shape == (1, 240, 320)
    refined_from = predictor.calls[-1]["mask_input"]
    state.set_multimask(True)  # the toggle: the same prompt again, three candidates, same refinement
    assert predictor.calls[-1]["multimask_output"] is True and state.masks.shape == (3, 240, 320)
    np.testing.assert_array_equal(predictor.calls[-1]["mask_input"], refined_from)
    assert state.undo() and state.masks.shape == (1, 240, 320)  # undo goes back to one mask
    state.set_multimask(True)
    state.set_box([150, 60, 290, 200])
    assert predictor.calls[-1]["multimask_output"] is True
    calls = len(predictor.calls)
    state.set_multimask(False)
    state.set_multimask(False)  # unchanged: nothing runs again
    assert len(predictor.calls) == calls + 1 and state.masks.shape == (1, 240, 320)
    state.reset()
    state.set_box([150, 60, 290, 200])
    assert predictor.calls[-1]["multimask_output"] is False  # False: one mask for every prompt
    with pytest.raises(ValueError, match="multimask_output: expected 'auto', True or False"):
        state.set_multimask("sometimes")


def test_the_widget_toggle_asks_for_three_candidates_for_every_prompt(widget, predictor):
    widget.points = [[215, 130, 1], [245, 115, 0]]
    assert len(widget.scores) == 1 and widget.always_three is False
    widget.always_three = True  # what the page's checkbox does
    assert widget.received == "kernel received always_three = True" and widget.error == ""
    assert len(widget.scores) == 3 and len(widget.mask_urls) == 3 and widget.can_undo
    widget.always_three = False
    assert len(widget.scores) == 1
    assert PromptWidget(predictor, None, multimask_output=True).always_three is True


def test_error_messages_count_points_from_one_like_the_markers(widget):
    widget.points = [[215, 130, 1], [245, 115, 0], [-6, 40, 1]]  # the third marker is off the image
    assert widget.error.startswith("points: point 3 at (x=-6, y=40) lies outside the image"), widget.error
    widget.points = [[215, 130, 1], [245, 115, 7]]
    assert widget.error.startswith("points: point 2 has label 7"), widget.error


def test_the_download_buttons_get_the_chosen_mask_as_png_and_coco_rle(widget):
    import base64
    import io

    from PIL import Image

    widget.command = {"name": "download", "count": 1}  # nothing chosen yet: said, not sent
    assert "no mask yet" in widget.error and widget.download == {}
    widget.points = [[215, 130, 1]]
    widget.selected = 1
    widget.command = {"name": "download", "count": 2}  # what both download buttons send
    assert widget.error == "" and widget.download["name"] == "mask"
    png = Image.open(io.BytesIO(base64.b64decode(widget.download["png"].split(",", 1)[1])))
    np.testing.assert_array_equal(np.array(png) > 0, widget.masks[1])
    rle = json.loads(widget.download["rle"])
    np.testing.assert_array_equal(rle_to_mask(rle), widget.masks[1])
    assert rle == widget.export_coco_rle()


def test_refinement_feeds_the_chosen_masks_low_res_logits_back_as_mask_input(predictor, image):
    state = PromptState(predictor, image, multimask_output=True)
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


# ------------------------------------------------------------------------------ text prompts
@pytest.fixture(scope="module")
def text_model():
    """A tiny SAM (random weights) with a fresh text path on a random CLIP tower: the plumbing."""
    from sam_lab.modeling.text_prompt import ClipTower, add_text_path

    torch.manual_seed(0)
    model = sam_lab.build_sam("tiny").eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="text tower")
        add_text_path(model, ClipTower())  # ~3 s: once for the module
    return model


@pytest.fixture
def text_predictor(text_model):
    return RecordingPredictor(text_model)


@pytest.fixture
def text_widget(text_predictor, image):
    return PromptWidget(text_predictor, image)


def test_a_caption_alone_predicts_one_mask(text_predictor, image):
    state = PromptState(text_predictor, image)
    prediction = state.set_text("red pentagon")
    call = text_predictor.calls[-1]
    assert call["text"] == "red pentagon" and call["point_coords"] is None and call["box"] is None
    assert call["multimask_output"] is False  # a caption names one mask
    assert prediction.text == state.text == "red pentagon" and not prediction.refined
    assert state.masks.shape == (1, 240, 320) and state.scores.shape == (1,) and state.selected == 0


def test_a_caption_and_clicks_go_to_the_predictor_together(text_predictor, image):
    state = PromptState(text_predictor, image)
    first = state.set_text("red pentagon")
    second = state.add_point(245, 115, label=0)  # a click joins the caption and refines its mask
    call = text_predictor.calls[-1]
    assert call["text"] == "red pentagon" and call["multimask_output"] is False
    np.testing.assert_array_equal(call["point_coords"], [[245, 115]])
    np.testing.assert_array_equal(call["mask_input"], first.low_res_logits[0][None])
    assert second.refined and state.text == "red pentagon" and state.masks.shape == (1, 240, 320)
    state.set_text("yellow hexagon")  # another caption: a new question, not a refinement
    assert text_predictor.calls[-1]["mask_input"] is None and not state.current.refined
    state.set_text(None)  # the click alone again: three candidates, as without text
    assert text_predictor.calls[-1]["text"] is None and text_predictor.calls[-1]["multimask_output"] is True
    assert state.masks.shape == (3, 240, 320) and state.text is None


def test_the_widget_sends_a_caption_and_keeps_it_with_the_clicks(text_widget, text_predictor):
    assert text_widget.has_text and text_widget.text == ""
    text_widget.text = "red pentagon"  # what Enter in the text box does
    assert text_widget.received == "kernel received text 'red pentagon'" and text_widget.error == ""
    assert len(text_widget.scores) == 1 and len(text_widget.mask_urls) == 1 and text_widget.revision == 2
    text_widget.points = [[215, 130, 1]]  # a click
    assert text_predictor.calls[-1]["text"] == "red pentagon" and text_widget.text == "red pentagon"
    assert text_widget.refined and len(text_widget.scores) == 1
    text_widget.set_text("")  # an empty box removes the caption; the click stays
    assert text_widget.received == "kernel received: no text" and text_widget.text == ""
    assert text_predictor.calls[-1]["text"] is None and len(text_widget.scores) == 3
    with pytest.raises(TypeError, match="text: expected a string or None"):
        text_widget.set_text(5)


def test_undo_restores_the_previous_caption_and_reset_clears_it(text_widget):
    text_widget.set_text("red pentagon")
    text_widget.set_text("yellow hexagon")
    text_widget.undo()
    assert text_widget.text == "red pentagon" and len(text_widget.scores) == 1
    text_widget.undo()
    assert text_widget.text == "" and text_widget.scores == [] and not text_widget.can_undo
    text_widget.set_text("blue ellipse")
    text_widget.add_point(100, 80)
    text_widget.command = {"name": "reset", "count": 1}  # the reset button
    assert text_widget.text == "" and text_widget.points == [] and text_widget.masks is None
    assert text_widget.state.text is None and not text_widget.can_undo


@pytest.mark.parametrize("caption, message", [("   ", "text: expected a non-empty string"),
                                              ("\n\t", "text: expected a non-empty string")])
def test_a_bad_caption_shows_the_error_snaps_back_and_the_widget_stays_usable(text_widget, caption, message):
    text_widget.set_text("red pentagon")
    text_widget.add_point(215, 130)
    scores, urls = text_widget.scores, text_widget.mask_urls
    text_widget.text = caption  # as the page sends it
    assert text_widget.error.startswith(message)
    assert text_widget.text == "red pentagon" and text_widget.points == [[215.0, 130.0, 1]]
    assert text_widget.scores == scores and text_widget.mask_urls == urls
    text_widget.set_text("yellow hexagon")  # the next caption works
    assert text_widget.error == "" and text_widget.text == "yellow hexagon"


def test_a_model_without_a_text_path_hides_the_box_and_refuses_a_caption(widget, predictor):
    assert widget.has_text is False
    widget.points = [[100, 80, 1]]
    scores = widget.scores
    widget.set_text("red pentagon")
    assert widget.error.startswith("text: this model has no text path")
    assert widget.text == "" and widget.scores == scores and len(widget.points) == 1
    widget.add_point(150, 120, label=0)  # clicks carry on
    assert widget.error == "" and len(widget.points) == 2 and len(widget.scores) == 1
    assert predictor.calls[-1]["text"] is None and predictor.calls[-1]["multimask_output"] is False


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
@pytest.mark.parametrize("name", ["prompt.js", "compare.js", "attention.js", "positional.js", "everything.js"])
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
    monkeypatch.setitem(sam_lab.weights.pretrained.SHIPPED, "tiny", tmp_path / "missing.safetensors")
    tiny = pick_model("tiny")
    assert tiny.trained is False and tiny.label == "tiny · untrained (random weights)"


def test_pick_model_gives_the_shipped_trained_tiny():
    assert sam_lab.weights.pretrained.SHIPPED["tiny"].is_file()  # the package ships them
    tiny = pick_model("tiny")
    assert tiny.trained is True and tiny.label == "tiny · trained (shipped weights)"


def test_pick_model_loads_whatever_file_is_shipped_as_the_tiny_weights(tiny, tmp_path, monkeypatch):
    from sam_lab.weights import save_checkpoint

    weights = save_checkpoint(tiny, tmp_path / "tiny.safetensors")
    monkeypatch.setitem(sam_lab.weights.pretrained.SHIPPED, "tiny", weights)  # as if a retrain had shipped them
    choice = pick_model("tiny")
    assert choice.trained is True and choice.label == "tiny · trained (shipped weights)"
    for name, value in tiny.state_dict().items():
        assert torch.equal(choice.model.state_dict()[name], value), name


