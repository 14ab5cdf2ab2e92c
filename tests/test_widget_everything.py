"""EverythingWidget and EverythingState: generate, click to select, records, errors, the page."""
import numpy as np
import pytest
import torch

import sam_lab
from sam_lab import SamAutomaticMaskGenerator
from sam_lab.widgets import EverythingState, EverythingWidget, demo_image
from sam_lab.widgets.images import es_module

torch.set_num_threads(2)
OPEN = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.fixture(scope="module")
def model():
    return sam_lab.load_model("tiny")


@pytest.fixture(scope="module")
def image():
    return demo_image()  # (240, 320, 3)


def test_the_state_generates_sorts_and_selects_the_smallest_mask_under_a_click(model, image):
    state = EverythingState(SamAutomaticMaskGenerator(model, **OPEN))
    state.set_image(image)
    assert state.records == [] and not state.generated
    state.generate()
    areas = [r["area"] for r in state.records]
    assert state.generated and len(areas) > 5 and areas == sorted(areas, reverse=True)
    record = [r for r in state.records if r["area"]][-1]  # the smallest mask: click one of its pixels
    ys, xs = np.nonzero(record["segmentation"])
    state.select_at(xs[0] + 0.5, ys[0] + 0.5)
    chosen = state.records[state.selected]
    assert chosen["segmentation"][ys[0], xs[0]] and chosen["area"] == min(
        r["area"] for r in state.records if r["segmentation"][ys[0], xs[0]])
    assert "segmentation" not in state.record and state.record["area"] == chosen["area"]
    overlay = state.overlay()
    assert overlay.shape == (240, 320, 4) and (overlay[chosen["segmentation"], 3] >= 200).all()
    assert (overlay[..., :3][chosen["segmentation"]] == 255).all(axis=1).any()  # the white outline
    state.select(-1)
    assert state.record is None


def test_the_state_refuses_bad_input(model, image):
    with pytest.raises(TypeError, match="generator"):
        EverythingState(model)
    with pytest.raises(ValueError, match="output_mode"):
        EverythingState(SamAutomaticMaskGenerator(model, output_mode="coco_rle"))
    state = EverythingState(SamAutomaticMaskGenerator(model, **OPEN))
    with pytest.raises(RuntimeError, match="set_image"):
        state.generate()
    state.set_image(image)
    with pytest.raises(ValueError, match="outside the image"):
        state.select_at(400, 10)
    with pytest.raises(ValueError, match="selected"):
        state.select(3)  # nothing generated yet


def test_the_widget_answers_the_page(model, image):
    widget = EverythingWidget(model, image, model_label="tiny", **OPEN)
    assert widget.image_size == [320, 240] and widget.image_url.startswith("data:image/png;base64,")
    assert not widget.generated and widget.overlay_url == ""
    revision = widget.revision
    widget.command = {"name": "generate", "count": 1}  # the "segment everything" button
    assert widget.revision == revision + 1 and widget.generated and widget.count == len(widget.records) > 0
    assert widget.stats["candidates"] == 192 and widget.stats["final"] == widget.count
    assert widget.overlay_url.startswith("data:image/png;base64,") and widget.generate_ms > 0
    ys, xs = np.nonzero(widget.records[0]["segmentation"])
    widget.points = [[float(xs[0]) + 0.5, float(ys[0]) + 0.5, 1]]  # a click on the page
    assert widget.selected >= 0 and widget.record["area"] > 0 and widget.points == []
    assert widget.received.startswith("kernel received point")
    widget.points = [[1000.0, 5.0, 1]]  # outside: an error, not an exception
    assert "outside the image" in widget.error
    widget.box = [1.0, 1.0, 50.0, 50.0]
    assert "box" in widget.error and widget.box is None
    widget.command = {"name": "reset", "count": 2}
    assert widget.selected == -1 and widget.record == {} and widget.error == ""


def test_the_widget_can_generate_at_once_or_take_a_generator(model, image):
    generator = SamAutomaticMaskGenerator(model, **OPEN)
    widget = EverythingWidget(generator, image, generate=True)
    assert widget.count > 0 and widget.state.generator is generator
    with pytest.raises(ValueError, match="options"):
        EverythingWidget(generator, image, points_per_side=4)
    empty = EverythingWidget(model, np.full((64, 64, 3), 128, np.uint8), generate=True, points_per_side=4)
    assert empty.generated and empty.count == 0 and "best_predicted_iou" in empty.stats


def test_the_page_module_inlines_the_stage():  # (node --check runs on it in test_widget_prompt.py)
    source = es_module("everything.js")
    assert "from \"./stage.js\"" not in source and source.count("function createStage") == 1
    assert "export default" in source
