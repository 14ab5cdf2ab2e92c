"""Our SAM against Meta's reference package on identical random weights.

This is the test that proves a from-scratch SAM is SAM: copy a reference model's weights into
ours with strict keys, feed both the same image and prompts, and compare every output.
The tiny config runs in a second; ViT-B runs at the full 1024 px (about a minute on 2 cores).
"""
import numpy as np
import pytest
import torch
from skimage import data
from skimage.transform import resize

from reference import build_reference, twin_models
from sam_lab import SamPredictor, attention_kernel, build_sam

torch.set_num_threads(2)

POINT = np.array([[250.0, 140.0]])
POSITIVE = np.array([1])


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def max_diff(a, b) -> float:
    a, b = _numpy(a), _numpy(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def assert_same_prediction(ref_out, our_out, tol):
    masks_r, iou_r, low_r = (_numpy(x) for x in ref_out)
    masks_o, iou_o, low_o = (_numpy(x) for x in our_out)
    assert max_diff(low_r, low_o) <= tol, "low-res logits differ"
    assert max_diff(iou_r, iou_o) <= tol, "IoU predictions differ"
    if masks_r.dtype == bool:
        # thresholded masks may only differ where the logit is within tol of 0
        assert (masks_r != masks_o).mean() < 1e-4
    else:
        assert max_diff(masks_r, masks_o) <= tol * 10, "upsampled mask logits differ"


class Twins:
    """Reference and our predictor, same weights, same image set once."""

    def __init__(self, config, image, kernel="math"):
        from segment_anything import SamPredictor as ReferencePredictor

        self.reference, self.ours = twin_models(config)
        self.ref = ReferencePredictor(self.reference)
        self.our = SamPredictor(self.ours)
        self.image = image
        self.ref.set_image(image)
        with attention_kernel(kernel):
            self.our.set_image(image)

    def predict_both(self, kernel="math", **prompt):
        ref = self.ref.predict(**prompt)
        with attention_kernel(kernel):
            ours = self.our.predict(**prompt)
        return ref, ours


def prompt_cases(twins: Twins, kernel: str, tol: float):
    """The four prompt situations of the parity deliverable, checked on one twin pair."""
    # 1. one point, three candidates
    ref, ours = twins.predict_both(kernel, point_coords=POINT, point_labels=POSITIVE, multimask_output=True)
    assert_same_prediction(ref, ours, tol)
    # 2. points + the previous best low-res logits fed back as mask_input
    best = ref[1].argmax()
    points = np.array([[250.0, 140.0], [300.0, 420.0]])
    ref2, ours2 = twins.predict_both(
        kernel,
        point_coords=points,
        point_labels=np.array([1, 1]),
        mask_input=ref[2][best][None],
        multimask_output=False,
        return_logits=True,
    )
    assert_same_prediction(ref2, ours2, tol)
    # 3. box + negative point
    ref3, ours3 = twins.predict_both(
        kernel,
        point_coords=np.array([[200.0, 300.0]]),
        point_labels=np.array([0]),
        box=np.array([100, 50, 400, 480]),
        multimask_output=False,
    )
    assert_same_prediction(ref3, ours3, tol)
    # 4. batched boxes through predict_torch
    boxes = torch.tensor([[10, 20, 200, 220], [150, 100, 500, 500], [0, 0, 511, 511]], dtype=torch.float)
    ref_boxes = twins.ref.transform.apply_boxes_torch(boxes, twins.image.shape[:2])
    our_boxes = twins.our.transform.apply_boxes_torch(boxes, twins.image.shape[:2])
    assert max_diff(ref_boxes, our_boxes) == 0.0
    ref4 = twins.ref.predict_torch(None, None, boxes=ref_boxes, multimask_output=True)
    with attention_kernel(kernel):
        ours4 = twins.our.predict_torch(None, None, boxes=our_boxes, multimask_output=True)
    assert ours4[0].shape == (3, 3, 512, 512)
    assert_same_prediction(ref4, ours4, tol)


def batched_records(model, images, seed=0):
    """A Sam.__call__ input list: each image with its own batch of point and box prompts."""
    from sam_lab.transforms import ResizeLongestSide

    rng = np.random.default_rng(seed)
    transform = ResizeLongestSide(model.image_encoder.img_size)
    records = []
    for image in images:
        h, w = image.shape[:2]
        coords = rng.uniform([0, 0], [w, h], size=(2, 3, 2))
        boxes = np.array([[5, 5, w // 2, h // 2], [w // 4, h // 4, w - 1, h - 1]], dtype=float)
        resized = torch.as_tensor(transform.apply_image(image)).permute(2, 0, 1).contiguous()
        records.append(
            {
                "image": resized,
                "original_size": (h, w),
                "point_coords": torch.as_tensor(transform.apply_coords(coords, (h, w)), dtype=torch.float),
                "point_labels": torch.tensor([[1, 0, 1], [1, 1, 0]]),
                "boxes": torch.as_tensor(transform.apply_boxes(boxes, (h, w)), dtype=torch.float),
            }
        )
    return records


def assert_same_batched_call(reference, ours, records, tol):
    ref_out = reference(records, multimask_output=True)
    our_out = ours(records, multimask_output=True)
    assert len(ref_out) == len(our_out) == len(records)
    for r, o, rec in zip(ref_out, our_out, records):
        assert o["masks"].shape == (2, 3, *rec["original_size"])
        assert max_diff(r["low_res_logits"], o["low_res_logits"]) <= tol
        assert max_diff(r["iou_predictions"], o["iou_predictions"]) <= tol
        assert (r["masks"] != o["masks"]).float().mean() < 1e-4


# ----------------------------------------------------------------------------- tiny config

@pytest.fixture(scope="module")
def tiny_twins():
    return Twins("tiny", data.astronaut())


def test_tiny_image_embedding_matches_reference(tiny_twins):
    assert max_diff(tiny_twins.ref.features, tiny_twins.our.features) <= 1e-4


def test_tiny_prompts_match_reference_with_math_kernel(tiny_twins):
    prompt_cases(tiny_twins, "math", 1e-4)


def test_tiny_prompts_match_reference_with_sdpa_kernel():
    prompt_cases(Twins("tiny", data.astronaut(), kernel="sdpa"), "sdpa", 1e-3)


def test_tiny_batched_call_matches_reference(tiny_twins):
    images = [data.astronaut(), (resize(data.coffee(), (200, 300)) * 255).astype(np.uint8), data.chelsea()]
    records = batched_records(tiny_twins.ours, images)
    assert_same_batched_call(tiny_twins.reference, tiny_twins.ours, records, 1e-4)


def test_parity_test_notices_a_wrong_weight(tiny_twins):
    """The comparison is sensitive: change one offset's relative-position vector and outputs move.
    (Shifting the *whole* table would not: it adds the same logit to every key, and softmax
    ignores that.)"""
    _, ours = twin_models("tiny")
    with torch.no_grad():
        ours.image_encoder.blocks[1].attn.rel_pos_h[3].add_(0.5)
    predictor = SamPredictor(ours)
    predictor.set_image(tiny_twins.image)
    assert max_diff(tiny_twins.ref.features, predictor.features) > 1e-3


# ----------------------------------------------------------------------------- ViT-B, 1024 px

@pytest.fixture(scope="module")
def vit_b_twins():
    return Twins("vit_b", data.astronaut())


@pytest.mark.slow
def test_vit_b_image_embedding_matches_reference_at_1024(vit_b_twins):
    assert vit_b_twins.our.features.shape == (1, 256, 64, 64)
    assert max_diff(vit_b_twins.ref.features, vit_b_twins.our.features) <= 1e-4


@pytest.mark.slow
def test_vit_b_prompts_match_reference_with_math_kernel(vit_b_twins):
    prompt_cases(vit_b_twins, "math", 1e-4)


@pytest.mark.slow
def test_vit_b_matches_reference_with_sdpa_kernel(vit_b_twins):
    predictor = SamPredictor(vit_b_twins.ours)
    with attention_kernel("sdpa"):
        predictor.set_image(vit_b_twins.image)
    assert max_diff(vit_b_twins.ref.features, predictor.features) <= 1e-3
    sdpa_twins = Twins.__new__(Twins)
    sdpa_twins.ref, sdpa_twins.our, sdpa_twins.image = vit_b_twins.ref, predictor, vit_b_twins.image
    prompt_cases(sdpa_twins, "sdpa", 1e-3)


@pytest.mark.slow
def test_vit_b_batched_call_matches_reference(vit_b_twins):
    images = [(resize(data.coffee(), (150, 200)) * 255).astype(np.uint8), data.camera()[::4, ::4, None].repeat(3, 2)]
    records = batched_records(vit_b_twins.ours, images)
    assert_same_batched_call(vit_b_twins.reference, vit_b_twins.ours, records, 1e-4)


# ----------------------------------------------------------------------------- sizes and keys

@pytest.mark.parametrize(
    "variant, count", [("vit_b", 93_735_472), ("vit_l", 312_342_832), ("vit_h", 641_090_608)]
)
def test_parameter_counts_equal_meta_release(variant, count):
    model = build_sam(variant)
    assert sum(p.numel() for p in model.parameters()) == count
    del model


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["vit_l", "vit_h"])
def test_large_state_dicts_interchangeable_both_ways(variant):
    from segment_anything import sam_model_registry as reference_registry

    reference = reference_registry[variant]()
    ours = build_sam(variant)
    ours.load_state_dict(reference.state_dict(), strict=True)  # reference -> ours
    reference.load_state_dict(ours.state_dict(), strict=True)  # ours -> reference
    for (name_r, t_r), (name_o, t_o) in zip(reference.state_dict().items(), ours.state_dict().items()):
        assert name_r == name_o and t_r.shape == t_o.shape


def test_tiny_config_is_expressible_with_reference_classes():
    reference = build_reference("tiny")
    ours = build_sam("tiny")
    assert list(reference.state_dict()) == list(ours.state_dict())
    assert [t.shape for t in reference.state_dict().values()] == [t.shape for t in ours.state_dict().values()]
