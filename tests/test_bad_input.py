"""Bad input to ``SamPredictor`` is refused with a message that names the argument.

Every refusal is a ``TypeError`` (wrong kind of thing) or ``ValueError`` (wrong shape or
value) whose message starts with the argument's name, then says what was expected and what
came. The documented conversions (grayscale, RGBA, PIL, BGR) give exactly the embedding of the
explicit RGB image, and a refused call leaves the predictor as it was.

The last test throws random combinations of good and bad prompts at ``predict`` and accepts
only a well-formed result (for a valid draw) or a named ``ValueError``/``TypeError`` (for an
invalid one); validity is worked out by the test itself, not by ``sam_lab.inference.validation``.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from PIL import Image

from sam_lab.weights import randomize
from sam_lab import SamPredictor, build_sam

torch.set_num_threads(2)

H, W = 96, 128  # the test image
LOW = 128  # tiny's low-res mask side: mask_input is (1, 128, 128)
ARGUMENTS = ("point_coords", "point_labels", "box", "mask_input", "multimask_output", "return_logits")


@pytest.fixture(scope="module")
def model():
    return randomize(build_sam("tiny"), seed=0)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def predictor(model, image):
    predictor = SamPredictor(model)
    predictor.set_image(image)
    return predictor


def embedding_of(model, image, **kwargs) -> torch.Tensor:
    predictor = SamPredictor(model)
    predictor.set_image(image, **kwargs)
    return predictor.get_image_embedding().clone()


def assert_message(excinfo, argument: str, *fragments: str) -> None:
    """The message starts with ``argument:`` and contains every fragment (expected / got)."""
    message = str(excinfo.value)
    assert message.startswith(f"{argument}:"), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def one_click():
    return dict(point_coords=np.array([[40.0, 30.0]]), point_labels=np.array([1]))


# ------------------------------------------------------------------------------ no image yet

def test_predicting_before_set_image_says_no_image_is_set(model):
    predictor = SamPredictor(model)
    with pytest.raises(RuntimeError, match="No image is set"):
        predictor.predict(**one_click())
    with pytest.raises(RuntimeError, match="No image is set"):
        predictor.get_image_embedding()
    with pytest.raises(RuntimeError, match="No image is set"):
        predictor.predict_torch(None, None, boxes=torch.tensor([[0.0, 0.0, 10.0, 10.0]]))


def test_predicting_after_reset_image_says_no_image_is_set(model, image):
    predictor = SamPredictor(model)
    predictor.set_image(image)
    predictor.reset_image()
    with pytest.raises(RuntimeError, match="No image is set"):
        predictor.predict(**one_click())


# ------------------------------------------------------------------------------ the image

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint16, bool])
def test_image_of_another_dtype_is_a_type_error_naming_the_dtype(model, image, dtype):
    with pytest.raises(TypeError) as excinfo:
        SamPredictor(model).set_image(image.astype(dtype))
    assert_message(excinfo, "image", "expected dtype uint8", f"got {np.dtype(dtype)}")


def test_float_image_message_says_how_to_convert(model, image):
    with pytest.raises(TypeError) as excinfo:
        SamPredictor(model).set_image(image / 255.0)
    assert_message(excinfo, "image", "astype(np.uint8)")


@pytest.mark.parametrize(
    "shape",
    [(H * W * 3,), (1, H, W, 3), (H, W, 5), (H, W, 2), (0, W, 3), (H, 0, 3), (0, 0)],
    ids=["1-D", "4-D", "5-channels", "2-channels", "no-rows", "no-columns", "empty-grayscale"],
)
def test_image_of_a_wrong_shape_is_a_value_error_showing_the_shape(model, shape):
    with pytest.raises(ValueError) as excinfo:
        SamPredictor(model).set_image(np.zeros(shape, dtype=np.uint8))
    assert_message(excinfo, "image", "expected", str(shape))


def test_image_that_is_not_an_array_is_a_type_error(model, image):
    with pytest.raises(TypeError) as excinfo:
        SamPredictor(model).set_image(image.tolist())
    assert_message(excinfo, "image", "expected a numpy array (H, W, 3) of uint8", "got list")


@pytest.mark.parametrize("make_gray", [lambda g: g, lambda g: g[:, :, None]], ids=["(H,W)", "(H,W,1)"])
def test_grayscale_image_embeds_as_its_explicit_rgb_conversion(model, image, make_gray):
    gray = image[:, :, 0]
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    assert torch.equal(embedding_of(model, make_gray(gray)), embedding_of(model, rgb))


def test_rgba_image_embeds_as_its_rgb_channels(model, image):
    alpha = np.full((H, W, 1), 7, dtype=np.uint8)
    rgba = np.concatenate([image, alpha], axis=2)
    assert torch.equal(embedding_of(model, rgba), embedding_of(model, image))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_pil_image_embeds_as_its_rgb_array(model, image, mode):
    pil = Image.fromarray(image).convert(mode)
    expected = np.asarray(pil.convert("RGB"))
    assert torch.equal(embedding_of(model, pil), embedding_of(model, expected))


def test_bgr_image_embeds_as_the_flipped_rgb_image(model, image):
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    assert torch.equal(embedding_of(model, bgr, image_format="BGR"), embedding_of(model, image))


@pytest.mark.parametrize("image_format", ["rgb", "RGBA", "HSV", "", None])
def test_image_format_other_than_rgb_or_bgr_is_a_value_error(model, image, image_format):
    with pytest.raises(ValueError) as excinfo:
        SamPredictor(model).set_image(image, image_format=image_format)
    assert_message(excinfo, "image_format", "expected 'RGB' or 'BGR'", f"got {image_format!r}")


# ------------------------------------------------------------------------------ points

@pytest.mark.parametrize("shape", [(2,), (1, 3), (0, 2), (2, 2, 2), (1,)])
def test_point_coords_not_n_by_2_is_a_value_error_showing_the_shape(predictor, shape):
    labels = np.ones(shape[0] if len(shape) > 1 else 1, dtype=int)
    with pytest.raises(ValueError) as excinfo:
        predictor.predict(point_coords=np.full(shape, 5.0), point_labels=labels)
    assert_message(excinfo, "point_coords", "expected shape (N, 2)", f"got {shape}")


@pytest.mark.parametrize("labels", [[1, 1, 1], [1], [[1, 0]], 1], ids=["3-for-2", "1-for-2", "(1,2)", "scalar"])
def test_point_labels_not_one_per_point_is_a_value_error(predictor, labels):
    coords = np.array([[10.0, 10.0], [20.0, 20.0]])
    with pytest.raises(ValueError) as excinfo:
        predictor.predict(point_coords=coords, point_labels=np.asarray(labels))
    assert_message(excinfo, "point_labels", "expected shape (2,)", f"got {np.asarray(labels).shape}")


@pytest.mark.parametrize("bad", [2, -1, 0.5, 3])
def test_point_labels_outside_zero_one_is_a_value_error_naming_the_value(predictor, bad):
    with pytest.raises(ValueError) as excinfo:
        predictor.predict(point_coords=np.array([[10, 10], [20, 20]]), point_labels=np.array([1, bad]))
    assert_message(excinfo, "point_labels", "expected 1 (foreground) or 0 (background)", f"got [{bad}]")


def test_point_coords_without_point_labels_is_a_value_error(predictor):
    with pytest.raises(ValueError) as excinfo:
        predictor.predict(point_coords=np.array([[10, 10]]))
    assert_message(excinfo, "point_labels", "without point_labels", "give both or neither")


def test_point_labels_without_point_coords_is_a_value_error(predictor):
    with pytest.raises(ValueError) as excinfo:
        predictor.predict(point_labels=np.array([1]))
    assert_message(excinfo, "point_coords", "without point_coords", "give both or neither")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_point_coords_that_are_not_finite_are_a_value_error(predictor, bad):
    with pytest.raises(ValueError) as excinfo:
        predictor.predict(point_coords=np.array([[10.0, 10.0], [bad, 5.0]]), point_labels=np.array([1, 0]))
    assert_message(excinfo, "point_coords", "expected finite numbers", "got NaN or infinity")


@pytest.mark.parametrize(
    "coords, exception",
    [("10,20", TypeError), ([["a", "b"]], TypeError), ({"x": 1}, TypeError), ([[1, 2], [3]], ValueError),
     (np.array([[1 + 2j, 3]]), TypeError), ([[1, None]], TypeError)],
    ids=["string", "strings", "dict", "ragged", "complex", "None-inside"],
)
def test_point_coords_that_are_not_numbers_are_refused_naming_point_coords(predictor, coords, exception):
    with pytest.raises(exception) as excinfo:
        predictor.predict(point_coords=coords, point_labels=np.array([1]))
    assert_message(excinfo, "point_coords", "expected an (N, 2) array of (x, y) pixels", "got")


@pytest.mark.parametrize(
    "point, index_text",
    [((-1.0, 5.0), "x=-1, y=5"), ((W + 1.0, 5.0), f"x={W + 1}, y=5"), ((5.0, H + 0.5), f"x=5, y={H + 0.5:g}"),
     ((5.0, -0.25), "x=5, y=-0.25")],
)
def test_point_outside_the_image_is_a_value_error_naming_the_point_and_bounds(predictor, point, index_text):
    coords = np.array([[10.0, 10.0], point])
    with pytest.raises(ValueError) as excinfo:
        predictor.predict(point_coords=coords, point_labels=np.array([1, 1]))
    assert_message(excinfo, "point_coords", f"point 2 (row 1) at ({index_text})", f"(x in [0, {W}], y in [0, {H}])")


def test_points_on_the_image_border_are_inside(predictor):
    corners = np.array([[0.0, 0.0], [W, 0.0], [0.0, H], [W, H]])
    masks, _, _ = predictor.predict(point_coords=corners, point_labels=np.array([1, 0, 1, 0]))
    assert masks.shape == (3, H, W)


def test_point_prompts_as_lists_and_tensors_of_any_dtype_give_the_same_masks(predictor):
    expected = predictor.predict(**one_click())
    for coords, labels in [
        ([[40, 30]], [1]),
        (torch.tensor([[40.0, 30.0]], dtype=torch.bfloat16), torch.tensor([1])),
        (torch.tensor([[40.0, 30.0]], dtype=torch.float16), np.array([True])),
        (np.array([[40, 30]], dtype=np.uint8), np.array([1.0])),
    ]:
        got = predictor.predict(point_coords=coords, point_labels=labels)
        for a, b in zip(expected, got):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ box

@pytest.mark.parametrize("box", [[1, 2, 3], [1, 2, 3, 4, 5], [[1, 2], [3, 4]], [[1, 2, 3, 4]] * 2, []],
                         ids=["3", "5", "(2,2)", "(2,4)", "empty"])
def test_box_that_is_not_4_numbers_is_a_value_error_showing_the_shape(predictor, box):
    with pytest.raises(ValueError) as excinfo:
        predictor.predict(box=np.array(box))
    assert_message(excinfo, "box", "expected 4 numbers x0, y0, x1, y1", f"got shape {np.array(box).shape}")


@pytest.mark.parametrize(
    "box, shown",
    [([50, 10, 20, 40], "(50, 10, 20, 40)"), ([10, 40, 50, 20], "(10, 40, 50, 20)"),
     ([10, 10, 10, 40], "(10, 10, 10, 40)"), ([10, 10, 40, 10], "(10, 10, 40, 10)")],
    ids=["x1<x0", "y1<y0", "zero-width", "zero-height"],
)
def test_box_with_corners_swapped_or_no_area_is_a_value_error(predictor, box, shown):
    with pytest.raises(ValueError) as excinfo:
        predictor.predict(box=np.array(box))
    assert_message(excinfo, "box", "expected x1 > x0 and y1 > y0", f"got {shown}")


@pytest.mark.parametrize("box", [[-1, 10, 50, 50], [10, -2, 50, 50], [10, 10, W + 1, 50], [10, 10, 50, H + 3]])
def test_box_reaching_outside_the_image_is_a_value_error_showing_the_bounds(predictor, box):
    with pytest.raises(ValueError) as excinfo:
        predictor.predict(box=np.array(box))
    shown = "(" + ", ".join(str(v) for v in box) + ")"
    assert_message(excinfo, "box", shown, "reaches outside the image", f"(x in [0, {W}], y in [0, {H}])")


@pytest.mark.parametrize("box, exception", [("0 0 9 9", TypeError), ([0, 0, 9, "9"], TypeError),
                                             ([0, 0, np.nan, 9], ValueError)])
def test_box_that_is_not_finite_numbers_is_refused_naming_box(predictor, box, exception):
    with pytest.raises(exception) as excinfo:
        predictor.predict(box=box)
    assert_message(excinfo, "box", "expected")


def test_box_covering_the_whole_image_is_accepted_as_4_or_1x4(predictor):
    flat = predictor.predict(box=np.array([0, 0, W, H]))
    row = predictor.predict(box=[[0, 0, W, H]])
    for a, b in zip(flat, row):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ mask_input

@pytest.mark.parametrize("shape", [(LOW, LOW), (1, 3, LOW, LOW), (1, 1, LOW, LOW), (2, LOW, LOW), (1, 32, 32),
                                   (1, 256, 256)])
def test_mask_input_not_1_by_s_by_s_is_a_value_error_showing_the_shapes(predictor, shape):
    with pytest.raises(ValueError) as excinfo:
        predictor.predict(**one_click(), mask_input=np.zeros(shape, dtype=np.float32))
    assert_message(excinfo, "mask_input", f"expected shape (1, {LOW}, {LOW})", f"got {shape}")


def test_mask_input_with_nan_is_a_value_error(predictor):
    mask = np.zeros((1, LOW, LOW), dtype=np.float32)
    mask[0, 3, 4] = np.nan
    with pytest.raises(ValueError) as excinfo:
        predictor.predict(**one_click(), mask_input=mask)
    assert_message(excinfo, "mask_input", "expected finite logits", "got NaN")


@pytest.mark.parametrize("mask", ["logits", np.zeros((1, LOW, LOW), dtype=complex)], ids=["string", "complex"])
def test_mask_input_that_is_not_real_numbers_is_a_type_error(predictor, mask):
    with pytest.raises(TypeError) as excinfo:
        predictor.predict(**one_click(), mask_input=mask)
    assert_message(excinfo, "mask_input", f"expected a (1, {LOW}, {LOW}) array of mask logits", "got")


def test_previous_low_res_logits_are_accepted_as_mask_input(predictor):
    _, scores, logits = predictor.predict(**one_click())
    masks, _, _ = predictor.predict(**one_click(), mask_input=logits[np.argmax(scores)][None],
                                    multimask_output=False)
    assert masks.shape == (1, H, W)


# ------------------------------------------------------------------------------ flags

@pytest.mark.parametrize("flag", ["multimask_output", "return_logits"])
@pytest.mark.parametrize("value", [1, 0, "yes", None, 1.0], ids=["1", "0", "yes", "None", "1.0"])
def test_flag_that_is_not_a_bool_is_a_type_error(predictor, flag, value):
    if flag == "multimask_output" and value is None:  # None is its documented default: True without text
        masks, _, _ = predictor.predict(**one_click(), multimask_output=None)
        assert len(masks) == 3
        return
    with pytest.raises(TypeError) as excinfo:
        predictor.predict(**one_click(), **{flag: value})
    assert_message(excinfo, flag, "expected True or False", f"got {type(value).__name__} {value!r}")


# ------------------------------------------------------------------------------ predict_torch

def torch_prompts(points: int = 2, boxes: int = 2, masks: int = 2) -> dict:
    prompts = {}
    if points:
        prompts["point_coords"] = torch.full((points, 1, 2), 50.0)
        prompts["point_labels"] = torch.ones(points, 1, dtype=torch.int)
    else:
        prompts["point_coords"] = prompts["point_labels"] = None
    if boxes:
        prompts["boxes"] = torch.tensor([[10.0, 10.0, 200.0, 150.0]]).repeat(boxes, 1)
    if masks:
        prompts["mask_input"] = torch.zeros(masks, 1, LOW, LOW)
    return prompts


@pytest.mark.parametrize(
    "sizes, blamed",
    [((2, 3, 0), "boxes: expected batch size 2 to match point_coords, got 3"),
     ((2, 0, 1), "mask_input: expected batch size 2 to match point_coords, got 1"),
     ((0, 2, 4), "mask_input: expected batch size 2 to match boxes, got 4"),
     ((2, 2, 3), "mask_input: expected batch size 2 to match point_coords, got 3")],
)
def test_predict_torch_with_mismatched_batch_sizes_is_a_value_error_naming_both(predictor, sizes, blamed):
    with pytest.raises(ValueError, match="^" + re.escape(blamed) + "$"):
        predictor.predict_torch(**torch_prompts(*sizes))


def test_predict_torch_with_matching_batch_sizes_gives_one_result_per_prompt(predictor):
    masks, iou, low_res = predictor.predict_torch(**torch_prompts(3, 3, 3), multimask_output=False)
    assert masks.shape == (3, 1, H, W) and iou.shape == (3, 1) and low_res.shape == (3, 1, LOW, LOW)


def test_predict_torch_with_labels_not_matching_coords_is_a_value_error(predictor):
    with pytest.raises(ValueError) as excinfo:
        predictor.predict_torch(torch.zeros(2, 3, 2), torch.ones(2, 2))
    assert_message(excinfo, "point_labels", "expected shape (2, 3)", "got (2, 2)")


# ------------------------------------------------------------------------------ state

def test_a_refused_call_leaves_the_predictor_unchanged(predictor, image):
    embedding = predictor.get_image_embedding().clone()
    before = predictor.predict(**one_click())
    bad_calls = [
        lambda: predictor.set_image(image.astype(np.float32)),
        lambda: predictor.set_image(image, image_format="rgb"),
        lambda: predictor.set_image(np.zeros((H, W, 5), dtype=np.uint8)),
        lambda: predictor.set_image(np.zeros((0, W, 3), dtype=np.uint8)),
        lambda: predictor.predict(point_coords=np.array([[1e6, 0]]), point_labels=np.array([1])),
        lambda: predictor.predict(box=np.array([50, 10, 20, 40])),
        lambda: predictor.predict(**one_click(), mask_input=np.zeros((LOW, LOW))),
        lambda: predictor.predict(**one_click(), multimask_output="yes"),
        lambda: predictor.predict_torch(**torch_prompts(2, 3, 0)),
    ]
    for call in bad_calls:
        with pytest.raises((ValueError, TypeError)):
            call()
    assert predictor.is_image_set
    assert predictor.original_size == (H, W)
    assert torch.equal(predictor.get_image_embedding(), embedding)
    after = predictor.predict(**one_click())
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ random combinations
# A call is drawn all valid, with exactly one bad argument of a given kind (``spoil``: one of
# SPOILS), or with every argument drawn freely (``mixed``). Each strategy returns its value with
# ``ok``: whether the value is acceptable, decided by construction from what was drawn, never
# by asking sam_lab.

def _float_pairs(n: int, x_range, y_range):
    xs = st.lists(st.floats(*x_range), min_size=n, max_size=n)
    ys = st.lists(st.floats(*y_range), min_size=n, max_size=n)
    return st.tuples(xs, ys).map(lambda xy: np.array(list(zip(*xy)), dtype=float).reshape(n, 2))


# (valid kinds, invalid kinds) of each argument
COORDS = (["none", "inside", "inside", "inside-list"], ["outside", "shape", "nan", "string", "nested"])
LABELS = (["fitting"], ["missing", "count", "value", "orphan"])  # fitting: None without coords, else one per point
BOXES = (["none", "valid", "valid"], ["reversed", "length", "outside"])
MASKS = ([None, (1, LOW, LOW)], [(LOW, LOW), (1, 32, 32), (1, 1, LOW, LOW)])
FLAGS = ([True, False], [1, "yes", 0])
SPOILS = ([f"coords:{k}" for k in COORDS[1]] + [f"labels:{k}" for k in LABELS[1]] + [f"box:{k}" for k in BOXES[1]]
          + ["mask:shape", "multimask:bad", "return_logits:bad"])


def _kind(draw, what: str, kinds, spoil, mixed: bool, valid=None):
    """A kind of ``what``: the spoilt one if ``spoil`` names ``what``, any one if ``mixed``,
    else a valid one (from ``valid`` where given)."""
    valid_kinds, invalid_kinds = kinds
    if spoil and spoil.startswith(what + ":"):
        wanted = spoil.split(":", 1)[1]
        return draw(st.sampled_from(invalid_kinds)) if wanted in ("shape", "bad") else wanted
    if mixed:
        return draw(st.sampled_from(valid_kinds + invalid_kinds))
    return draw(st.sampled_from(valid if valid is not None else valid_kinds))


@st.composite
def point_prompts(draw, spoil, mixed):
    """(coords, labels, ok): coords from None / in / out of bounds / wrong shape / NaN / strings /
    nested lists; labels from None / one per point / a wrong count, with values in {-1, 0, 1, 2}."""
    n = draw(st.integers(1, 4))
    coords_for_labels = None  # a spoilt label needs coords it can be wrong for (or none at all)
    if spoil and spoil.startswith("labels:"):
        coords_for_labels = ["none"] if spoil == "labels:orphan" else ["inside", "inside-list"]
    kind = _kind(draw, "coords", COORDS, spoil, mixed, valid=coords_for_labels)
    coords_ok = kind.startswith("inside")
    if kind == "none":
        coords = None
    elif kind.startswith("inside"):
        coords = draw(_float_pairs(n, (0, W), (0, H)))
        coords = coords.tolist() if kind == "inside-list" else coords
    elif kind == "outside":
        coords = draw(_float_pairs(n, (0, W), (0, H)))
        i, axis = draw(st.integers(0, n - 1)), draw(st.integers(0, 1))
        limit = (W, H)[axis]
        coords[i, axis] = draw(st.one_of(st.floats(-1e4, -0.01), st.floats(limit + 0.01, limit + 1e4)))
    elif kind == "shape":
        shape = draw(st.sampled_from([(2,), (n, 3), (0, 2), (n, 2, 1), (n, 1), ()]))
        coords = np.full(shape, 5.0)
    elif kind == "nan":
        coords = draw(_float_pairs(n, (0, W), (0, H)))
        coords[draw(st.integers(0, n - 1)), draw(st.integers(0, 1))] = draw(st.sampled_from([np.nan, np.inf]))
    elif kind == "string":
        coords = draw(st.sampled_from(["10,20", [["10", "20"]] * n, [[10, "x"]] * n, b"\x01\x02"]))
    else:  # nested: ragged or one level too deep
        coords = draw(st.sampled_from([[[1.0, 2.0], [3.0]], [[[1.0, 2.0]]] * n, [[1.0, [2.0, 3.0]]]]))

    labels_kind = _kind(draw, "labels", LABELS, spoil, mixed)
    if labels_kind == "fitting":
        labels_kind = "missing" if kind == "none" else "per-point"
    if labels_kind == "missing":
        labels = None
    else:  # per-point, orphan (per point, but with no coords), count or value
        count = draw(st.sampled_from([n + 1, n - 1])) if labels_kind == "count" else n
        values = draw(st.lists(st.sampled_from([0, 1]), min_size=count, max_size=count))
        if labels_kind == "value":
            values[draw(st.integers(0, n - 1))] = draw(st.sampled_from([-1, 2]))
        labels = np.array(values, dtype=int) if draw(st.booleans()) else values
    labels_ok = labels is not None and len(labels) == n and set(np.asarray(labels).tolist()) <= {0, 1}
    ok = (coords is None and labels is None) or (coords_ok and labels_ok)
    return coords, labels, ok


@st.composite
def boxes(draw, spoil, mixed):
    kind = _kind(draw, "box", BOXES, spoil, mixed)
    if kind == "none":
        return None, True
    x0, y0 = draw(st.floats(0, W - 1)), draw(st.floats(0, H - 1))
    x1, y1 = draw(st.floats(x0 + 0.5, W)), draw(st.floats(y0 + 0.5, H))
    box = [x0, y0, x1, y1]
    if kind == "reversed":
        box = draw(st.sampled_from([[x1, y0, x0, y1], [x0, y1, x1, y0], [x0, y0, x0, y1]]))
    elif kind == "length":
        box = draw(st.sampled_from([box[:3], box + [1.0], box[:2]]))
    elif kind == "outside":
        box = draw(st.sampled_from([[-5.0, y0, x1, y1], [x0, y0, W + 7.0, y1],
                                    [x0, -0.5, x1, y1], [x0, y0, x1, H + 1.0]]))
    as_array = draw(st.booleans())
    return (np.array(box) if as_array else box), kind == "valid"


@st.composite
def mask_inputs(draw, spoil, mixed):
    shape = _kind(draw, "mask", MASKS, spoil, mixed)
    if shape is None:
        return None, True
    seed = draw(st.integers(0, 2**16))
    return np.random.default_rng(seed).normal(0, 4, shape).astype(np.float32), shape == (1, LOW, LOW)


@st.composite
def flags(draw, name, spoil, mixed, default: bool):
    """(value, ok); value None stands for "leave the argument out" (only where it has a default)."""
    value = _kind(draw, name, (FLAGS[0] + [None, None] if default else FLAGS[0], FLAGS[1]), spoil, mixed)
    return value, value is None or isinstance(value, bool)


@st.composite
def predict_calls(draw):
    """(points, box, mask, multimask, return_logits), each drawn as (value, ok) (points as
    (coords, labels, ok)): a third all valid, half with one bad argument, the rest mixed."""
    mode = draw(st.sampled_from(["valid", "valid", "one bad", "one bad", "one bad", "mixed"]))
    spoil = draw(st.sampled_from(SPOILS)) if mode == "one bad" else None
    mixed = mode == "mixed"
    return (draw(point_prompts(spoil, mixed)), draw(boxes(spoil, mixed)), draw(mask_inputs(spoil, mixed)),
            draw(flags("multimask", spoil, mixed, default=False)),
            draw(flags("return_logits", spoil, mixed, default=True)))


@settings(max_examples=60, deadline=None)
@given(call=predict_calls())
def test_random_prompts_give_a_well_formed_result_or_a_named_error(predictor, call):
    (coords, labels, points_ok), box, mask, multimask, return_logits = call
    kwargs = dict(point_coords=coords, point_labels=labels, box=box[0], mask_input=mask[0],
                  multimask_output=multimask[0])
    if return_logits[0] is not None:
        kwargs["return_logits"] = return_logits[0]
    invalid = [name for name, ok in [("point_coords", points_ok), ("point_labels", points_ok), ("box", box[1]),
                                     ("mask_input", mask[1]), ("multimask_output", multimask[1]),
                                     ("return_logits", return_logits[1])] if not ok]
    event("valid call" if not invalid else "invalid call")
    try:
        masks, scores, logits = predictor.predict(**kwargs)
    except (ValueError, TypeError) as error:
        message = str(error)
        assert invalid, f"a valid call raised {error!r}"
        assert message.startswith(ARGUMENTS), message
        assert message.startswith(tuple(invalid)), f"blamed the wrong argument (bad: {invalid}): {message}"
        return
    assert not invalid, f"accepted invalid {invalid}"
    c = 3 if multimask[0] else 1
    assert masks.shape == (c, H, W)
    if return_logits[0]:
        assert masks.dtype == np.float32 and np.isfinite(masks).all()
    else:
        assert masks.dtype == bool
    assert scores.shape == (c,) and np.isfinite(scores).all()
    assert logits.shape == (c, LOW, LOW) and np.isfinite(logits).all()


# ------------------------------------------------------------------------------ predict_batch
def test_predict_batch_equals_one_predict_per_prompt_set(predictor, image):
    H, W = image.shape[:2]
    rng = np.random.default_rng(0)
    coords = rng.uniform(5, [W - 5, H - 5], size=(4, 2, 2))
    labels = np.array([[1, 0], [1, 1], [1, 0], [1, 1]])
    boxes = np.array([[10, 10, 60, 50], [20, 5, W - 1, H - 1], [0, 0, 30, 30], [5, 5, 40, 70]], dtype=float)
    masks, scores, logits = predictor.predict_batch(point_coords=coords, point_labels=labels, boxes=boxes)
    assert masks.shape == (4, 3, H, W) and scores.shape == (4, 3) and logits.shape[:2] == (4, 3)
    for b in range(4):
        m, s, l = predictor.predict(point_coords=coords[b], point_labels=labels[b], box=boxes[b])
        assert np.array_equal(masks[b], m)
        np.testing.assert_allclose(scores[b], s, atol=1e-5)
        np.testing.assert_allclose(logits[b], l, atol=1e-4)
    refined, _, _ = predictor.predict_batch(boxes=boxes[:2], mask_input=logits[:2, :1], multimask_output=False)
    one, _, _ = predictor.predict(box=boxes[1], mask_input=logits[1, :1], multimask_output=False)
    assert refined.shape == (2, 1, H, W) and np.array_equal(refined[1], one)


def test_predict_batch_names_the_bad_prompt_set(predictor, image):
    H, W = image.shape[:2]
    coords = np.array([[[10.0, 10.0]], [[W + 50.0, 10.0]]])
    with pytest.raises(ValueError, match=r"prompt set 2 \(row 1\): point_coords: point 1 \(row 0\) .* lies outside the image"):
        predictor.predict_batch(point_coords=coords, point_labels=np.ones((2, 1)))
    with pytest.raises(ValueError, match=r"point_coords/point_labels: expected shapes \(B, N, 2\)"):
        predictor.predict_batch(point_coords=coords[:, 0], point_labels=np.ones((2, 1)))
    with pytest.raises(ValueError, match="give both or neither"):
        predictor.predict_batch(point_coords=coords)
    with pytest.raises(ValueError, match="one batch size"):
        predictor.predict_batch(point_coords=coords[:1], point_labels=np.ones((1, 1)), boxes=np.array([[0, 0, 5, 5]] * 2))
    with pytest.raises(ValueError, match=r"prompt set 1 \(row 0\): box"):
        predictor.predict_batch(boxes=np.array([[10, 10, 5, 5]]))
    with pytest.raises(ValueError, match="at least one"):
        predictor.predict_batch()


def test_set_images_encodes_in_batches_and_each_image_answers_as_set_image_does():
    import sam_lab

    model = sam_lab.load_model("tiny")
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, shape, dtype=np.uint8) for shape in ((200, 300, 3), (256, 256, 3), (90, 400, 3))]
    batched, single = sam_lab.SamPredictor(model), sam_lab.SamPredictor(model)
    batched.set_images(images, batch_size=2)  # two encoder calls: images 0-1, then image 2
    click = dict(point_coords=np.array([[40, 50]]), point_labels=np.array([1]))
    for index in (2, 0, 1):
        batched.select_image(index)
        single.set_image(images[index])
        assert batched.original_size == single.original_size and batched.input_size == single.input_size
        assert torch.allclose(batched.get_image_embedding(), single.get_image_embedding(), atol=1e-5)
        for a, b in zip(batched.predict(**click, return_logits=True), single.predict(**click, return_logits=True)):
            assert np.abs(a - b).max() <= 1e-4
    with pytest.raises(ValueError, match=r"index: expected an image index in \[0, 3\)"):
        batched.select_image(3)
    with pytest.raises(TypeError, match="image 1: image: expected dtype uint8"):
        batched.set_images([images[0], images[1].astype(np.float32)])
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        batched.set_images(images, batch_size=0)
    with pytest.raises(ValueError, match="images: expected a non-empty list"):
        batched.set_images([])
    batched.set_image(images[0])  # a single image replaces the list
    with pytest.raises(ValueError, match=r"\[0, 0\)"):
        batched.select_image(1)
