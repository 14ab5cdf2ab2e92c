"""The interactive evaluation's split of ambiguous clicks, with a predictor whose answers we know."""
import numpy as np
import pytest
import torch

from sam_lab.evaluation import evaluate_interactive, iou_calibration
from sam_lab.inference.transforms import ResizeLongestSide

S = 64


def _item():
    """A whole (a 40x40 square) with a part (a 16x16 square in its middle), and a lone disc."""
    masks = np.zeros((3, S, S), bool)
    masks[0, 4:44, 4:44] = True  # the whole
    masks[1, 16:32, 16:32] = True  # its part: the whole's farthest-from-boundary point lies inside it
    yy, xx = np.mgrid[:S, :S]
    masks[2] = (yy - 54) ** 2 + (xx - 54) ** 2 <= 6**2  # a separate object
    return {"image": np.zeros((S, S, 3), np.uint8), "masks": masks, "level": np.array([0, 1, 0])}


class SmallestFirst:
    """Answers a click with the image's masks that contain it, smallest first, then the whole
    image (a spill) until there are three; it always rates the smallest best: right for parts and
    lone objects, a guess of the wrong level for wholes."""

    device = torch.device("cpu")
    transform = ResizeLongestSide(S)
    original_size = (S, S)

    def __init__(self, item):
        self.masks = item["masks"]

    def set_image(self, image):
        pass

    def _answer(self, x, y):
        inside = [self.masks[k] for k in np.argsort(self.masks.reshape(3, -1).sum(1)) if self.masks[k, int(y), int(x)]]
        spill = np.ones((S, S), bool)
        return np.stack((inside + [spill] * 3)[:3]), np.array([0.9, 0.5, 0.1])

    def predict_torch(self, coords, labels, mask_input=None, multimask_output=True, return_logits=False):
        answers = [self._answer(*c[0].tolist()) for c in coords]
        masks = torch.as_tensor(np.stack([a[0] for a in answers]))
        scores = torch.as_tensor(np.stack([a[1] for a in answers]))
        if not multimask_output:
            masks, scores = masks[:, :1], scores[:, :1]
        return masks, scores, masks.float()

    def predict(self, point_coords, point_labels, multimask_output=True):
        masks, scores = self._answer(*point_coords[0])
        return masks, scores, masks.astype(np.float32)


def test_a_click_inside_a_nested_part_counts_as_ambiguous_and_any_level_can_be_right():
    item = _item()
    result = evaluate_interactive(SmallestFirst(item), [item], max_clicks=1)
    assert result.first_click_ambiguous.tolist() == [True, True, False]
    whole_iou = 16 * 16 / (40 * 40)  # the whole's click answered with its part
    np.testing.assert_allclose(result.first_click_predicted, [whole_iou, 1.0, 1.0])
    assert result.miou_1click_predicted == pytest.approx((whole_iou + 2) / 3)
    assert result.miou_1click_oracle == 1.0  # the whole is among the three answers
    assert result.unambiguous_share == pytest.approx(1 / 3)
    assert result.miou_1click_predicted_unambiguous == 1.0
    assert result.miou_1click_predicted_any_object == 1.0  # the part is a right answer to that click


def test_calibration_scores_candidates_against_the_target_and_against_any_containing_mask():
    item = _item()
    calibration = iou_calibration(SmallestFirst(item), [item])
    whole, part, disc, image = (float(m.sum()) for m in (*item["masks"], np.ones((S, S), bool)))
    # the whole's and the part's click is the same point (the middle): it is answered part, whole,
    # spill; the disc's click is answered disc, spill, spill. Targets in dataset order:
    true = [part / whole, 1, whole / image,  # the whole
            1, part / whole, part / image,  # the part
            1, disc / image, disc / image]  # the disc
    any_object = [1, 1, whole / image, 1, 1, whole / image, 1, disc / image, disc / image]
    scores = [0.9, 0.5, 0.1] * 3
    assert calibration["count"] == 9 and calibration["unambiguous_count"] == 3
    assert calibration["pearson"] == pytest.approx(np.corrcoef(scores, true)[0, 1])
    assert calibration["pearson_any_object"] == pytest.approx(np.corrcoef(scores, any_object)[0, 1])
    assert calibration["pearson_unambiguous"] == pytest.approx(np.corrcoef(scores[6:], true[6:])[0, 1])
    assert calibration["pearson_any_object"] != pytest.approx(calibration["pearson"])
    # the ideal head: the middle click lies in the whole and the part, each the target with odds
    # 1/area; the disc's click lies in the disc alone, so there the ideal is the true IoU
    w_whole, w_part = (1 / whole) / (1 / whole + 1 / part), (1 / part) / (1 / whole + 1 / part)
    middle = [w_whole * (part / whole) + w_part * 1, w_whole * 1 + w_part * (part / whole),
              w_whole * (whole / image) + w_part * (part / image)]
    ideal = middle * 2 + [1, disc / image, disc / image]
    assert calibration["pearson_head_ceiling"] == pytest.approx(np.corrcoef(ideal, true)[0, 1])
    # it picks the part for the middle click (the likelier target): wrong for the whole, right for the rest
    assert calibration["pick_head_ceiling"] == pytest.approx((part / whole + 1 + 1) / 3)


def test_per_target_iou_holds_each_targets_pick_after_every_click():
    """InteractiveResult.per_target_iou: (targets, max_clicks), the picked mask's IoU after each
    click; its columns average to iou_per_click and its first column is first_click_predicted.
    SmallestFirst answers from the first click only, so each row stays what the first click gave."""
    item = _item()
    result = evaluate_interactive(SmallestFirst(item), [item], max_clicks=3)
    whole_iou = 16 * 16 / (40 * 40)
    np.testing.assert_allclose(result.per_target_iou, [[whole_iou] * 3, [1.0] * 3, [1.0] * 3])
    np.testing.assert_allclose(result.per_target_iou.mean(0), result.iou_per_click)
    np.testing.assert_allclose(result.per_target_iou[:, 0], result.first_click_predicted)
