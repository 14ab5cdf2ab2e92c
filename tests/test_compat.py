"""sam_lab and Meta's ``segment_anything`` are drop-ins for each other, both ways.

On the tiny config with identical random weights (``twin_models``):

* Meta's ``SamPredictor`` and ``SamAutomaticMaskGenerator`` run on OUR model object unchanged
  and give what they give on Meta's model;
* OUR ``SamPredictor`` drives Meta's model object (the reference backend) and gives what Meta's
  predictor gives;
* code written for the reference runs after changing only the import.

And ``sam_lab.backends`` builds either implementation behind the same predictor.
"""
from __future__ import annotations

import numpy as np
import pytest
import segment_anything
import torch
from segment_anything import SamAutomaticMaskGenerator
from skimage import data, transform

import sam_lab
from reference import twin_models
from sam_lab.backends import MODEL_BACKENDS, build_model, make_predictor

torch.set_num_threads(2)

TOL = 1e-5


@pytest.fixture(scope="module")
def twins():
    """(meta_model, our_model) on the tiny config, identical random weights."""
    return twin_models("tiny")


@pytest.fixture(scope="module")
def image():
    """skimage's coffee cup, 85 x 128 uint8 RGB."""
    coffee = data.coffee()
    h, w = coffee.shape[:2]
    size = (round(h * 128 / w), 128)
    return (transform.resize(coffee, size, anti_aliasing=True) * 255).round().astype(np.uint8)


def prompt_session(predictor, image) -> list:
    """Set the image and answer a fixed run of prompts (including a refinement with the best
    low-res logits of an earlier answer); every answer and the embedding, as numpy."""
    h, w = image.shape[:2]
    predictor.set_image(image)
    answers = [predictor.get_image_embedding().detach().numpy()]
    click = predictor.predict(point_coords=np.array([[w * 0.5, h * 0.4]]), point_labels=np.array([1]))
    answers += [click]
    best = click[2][np.argmax(click[1])][None]
    answers += [
        predictor.predict(
            point_coords=np.array([[w * 0.5, h * 0.4], [w * 0.2, h * 0.8]]),
            point_labels=np.array([1, 0]),
            mask_input=best,
            multimask_output=False,
        ),
        predictor.predict(box=np.array([w * 0.1, h * 0.2, w * 0.7, h * 0.9]), multimask_output=False),
        predictor.predict(
            point_coords=np.array([[w * 0.3, h * 0.5]]),
            point_labels=np.array([0]),
            box=np.array([0, 0, w - 1, h - 1]),
            return_logits=True,
        ),
        predictor.predict(),
    ]
    return answers


def assert_same_answers(got: list, expected: list) -> None:
    np.testing.assert_allclose(got[0], expected[0], atol=TOL, rtol=0)  # the embedding
    for (masks, scores, logits), (masks_ref, scores_ref, logits_ref) in zip(got[1:], expected[1:]):
        assert masks.shape == masks_ref.shape and masks.dtype == masks_ref.dtype
        if masks.dtype == bool:
            np.testing.assert_array_equal(masks, masks_ref)
        else:
            np.testing.assert_allclose(masks, masks_ref, atol=TOL, rtol=0)
        np.testing.assert_allclose(scores, scores_ref, atol=TOL, rtol=0)
        np.testing.assert_allclose(logits, logits_ref, atol=TOL, rtol=0)


@pytest.fixture(scope="module")
def meta_answers(twins, image):
    """Meta's predictor on Meta's model: the oracle."""
    meta_model, _ = twins
    return prompt_session(segment_anything.SamPredictor(meta_model), image)


# ------------------------------------------------------------------------------ predictor both ways

def test_meta_predictor_on_our_model_gives_meta_answers(twins, image, meta_answers):
    _, our_model = twins
    assert_same_answers(prompt_session(segment_anything.SamPredictor(our_model), image), meta_answers)


def test_our_predictor_on_meta_model_gives_meta_answers(twins, image, meta_answers):
    meta_model, _ = twins
    assert_same_answers(prompt_session(sam_lab.SamPredictor(meta_model), image), meta_answers)


def test_our_predictor_on_our_model_gives_meta_answers(twins, image, meta_answers):
    _, our_model = twins
    assert_same_answers(prompt_session(sam_lab.SamPredictor(our_model), image), meta_answers)


# ------------------------------------------------------------------------------ automatic masks

@pytest.mark.parametrize("box_nms_thresh", [0.7, 1.0], ids=["default-nms", "keep-all"])
def test_meta_automatic_mask_generator_on_our_model_gives_the_same_masks(twins, image, box_nms_thresh):
    """Random weights give arbitrary masks, but the same ones. With the default NMS most of the
    64 x 3 candidates collapse into a few; ``keep-all`` (NMS threshold 1) compares all of them."""
    records = []
    for model in twins:
        generator = SamAutomaticMaskGenerator(
            model, points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=box_nms_thresh
        )
        records.append(generator.generate(image))
    meta, ours = records
    assert len(ours) == len(meta) > 0
    if box_nms_thresh == 1.0:
        assert len(ours) == 8 * 8 * 3  # nothing suppressed
    for mine, theirs in zip(ours, meta):
        np.testing.assert_array_equal(mine["segmentation"], theirs["segmentation"])
        assert mine["area"] == theirs["area"]
        assert mine["bbox"] == theirs["bbox"]
        assert mine["point_coords"] == theirs["point_coords"]
        assert mine["crop_box"] == theirs["crop_box"]
        assert abs(mine["predicted_iou"] - theirs["predicted_iou"]) < 1e-4
        assert abs(mine["stability_score"] - theirs["stability_score"]) < 1e-4


# ------------------------------------------------------------------------------ change only the import

def reference_workflow(S, image) -> dict:
    """Code as written for Meta's package (README style); ``S`` is the module it imported."""
    sam = S.sam_model_registry["vit_b"](checkpoint=None)
    sam.to(device="cpu")
    predictor = S.SamPredictor(sam)
    predictor.set_image(image)
    h, w = image.shape[:2]
    out = {"sizes": (tuple(predictor.original_size), tuple(predictor.input_size))}

    input_point = np.array([[w // 2, h // 2]])
    input_label = np.array([1])
    masks, scores, logits = predictor.predict(point_coords=input_point, point_labels=input_label,
                                              multimask_output=True)
    out["click"] = (masks, scores, logits)

    mask_input = logits[np.argmax(scores), :, :]
    out["refined"] = predictor.predict(
        point_coords=np.array([[w // 2, h // 2], [w // 5, h // 5]]),
        point_labels=np.array([1, 0]),
        mask_input=mask_input[None, :, :],
        multimask_output=False,
    )
    input_box = np.array([w // 8, h // 8, w - w // 8, h - h // 6])
    out["box"] = predictor.predict(point_coords=None, point_labels=None, box=input_box[None, :],
                                   multimask_output=False)
    out["box_and_point"] = predictor.predict(point_coords=np.array([[w // 3, h // 2]]), point_labels=np.array([0]),
                                             box=input_box, multimask_output=False)

    input_boxes = torch.tensor([[0, 0, w // 2, h // 2], [w // 4, h // 4, w - 1, h - 1], [5, 5, 60, 40]],
                               device=predictor.device)
    transformed_boxes = predictor.transform.apply_boxes_torch(input_boxes, image.shape[:2])
    masks, scores, logits = predictor.predict_torch(point_coords=None, point_labels=None,
                                                    boxes=transformed_boxes, multimask_output=False)
    out["batched_boxes"] = (masks.cpu().numpy(), scores.cpu().numpy(), logits.cpu().numpy())

    points = torch.tensor([[[w / 2, h / 2]], [[w / 4, h / 3]]], device=predictor.device)
    transformed_points = predictor.transform.apply_coords_torch(points, image.shape[:2])
    labels = torch.ones(points.shape[:2], dtype=torch.int, device=predictor.device)
    masks, scores, logits = predictor.predict_torch(transformed_points, labels, multimask_output=True,
                                                    return_logits=True)
    out["batched_points"] = (masks.cpu().numpy(), scores.cpu().numpy(), logits.cpu().numpy())

    out["embedding"] = predictor.get_image_embedding().cpu().numpy()
    predictor.reset_image()
    out["is_image_set_after_reset"] = predictor.is_image_set
    try:
        predictor.predict(point_coords=input_point, point_labels=input_label)
        out["predict_after_reset"] = "answered"
    except RuntimeError:
        out["predict_after_reset"] = "RuntimeError"
    return out


def test_reference_code_runs_on_sam_lab_after_changing_only_the_import(twins, image, monkeypatch):
    results = {}
    for module, model in [(segment_anything, twins[0]), (sam_lab, twins[1])]:
        # inject the tiny twin where the code asks the registry for ViT-B
        monkeypatch.setitem(module.sam_model_registry, "vit_b", lambda checkpoint=None, model=model: model)
        results[module.__name__] = reference_workflow(module, image)
    meta, ours = results["segment_anything"], results["sam_lab"]
    assert ours.keys() == meta.keys()
    for key in meta:
        if isinstance(meta[key], tuple) and isinstance(meta[key][0], np.ndarray):
            assert_same_answers([ours["embedding"], ours[key]], [meta["embedding"], meta[key]])
        elif isinstance(meta[key], np.ndarray):
            np.testing.assert_allclose(ours[key], meta[key], atol=TOL, rtol=0)
        else:
            assert ours[key] == meta[key], key
    assert ours["is_image_set_after_reset"] is False
    assert ours["predict_after_reset"] == "RuntimeError"


# ------------------------------------------------------------------------------ model backends

@pytest.fixture(scope="module")
def vit_b_pair():
    """ViT-B built by each backend (random init), ours holding Meta's weights (strict keys)."""
    meta = build_model("vit_b", backend="segment_anything")
    ours = build_model("vit_b", backend="sam_lab")
    ours.load_state_dict(meta.state_dict(), strict=True)
    return meta, ours


def stub_image_encoder(monkeypatch, model) -> None:
    """Replace the ViT-B encoder's forward (half a minute on 2 cores) by a fixed random
    embedding; everything around it (resize, preprocess, prompts, decoder) runs for real."""
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))

    def forward(x):
        assert x.shape == (1, 3, 1024, 1024)
        return embedding

    monkeypatch.setattr(model.image_encoder, "forward", forward)


def test_reference_backend_builds_meta_sam_driven_by_our_predictor(vit_b_pair, image, monkeypatch):
    meta, ours = vit_b_pair
    assert isinstance(meta, segment_anything.modeling.Sam) and isinstance(ours, sam_lab.Sam)
    for model in vit_b_pair:
        stub_image_encoder(monkeypatch, model)
    predictor = make_predictor(meta)
    assert isinstance(predictor, sam_lab.SamPredictor) and predictor.model is meta

    answers = prompt_session(predictor, image)
    click_logits = answers[1][2]
    assert click_logits.shape == (3, 256, 256)  # vit_b's low-res masks: mask_input is (1, 256, 256)
    assert_same_answers(answers, prompt_session(segment_anything.SamPredictor(meta), image))
    assert_same_answers(prompt_session(make_predictor(ours), image), answers)
    with pytest.raises(ValueError, match=r"^mask_input: expected shape \(1, 256, 256\).*got \(1, 64, 64\)$"):
        predictor.predict(mask_input=np.zeros((1, 64, 64), dtype=np.float32))


@pytest.mark.parametrize("backend", ["detectron2", "segment-anything", "", "SAM_LAB"])
def test_unknown_backend_is_a_value_error_naming_backend(backend):
    with pytest.raises(ValueError) as excinfo:
        build_model("vit_b", backend=backend)
    message = str(excinfo.value)
    assert message.startswith("backend: expected one of")
    assert all(name in message for name in MODEL_BACKENDS) and f"got {backend!r}" in message


def test_unknown_variant_for_reference_backend_is_a_value_error_naming_variant():
    with pytest.raises(ValueError, match=r"^variant: expected one of .*got 'vit_xl'$"):
        build_model("vit_xl", backend="segment_anything")
