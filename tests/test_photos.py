"""The real-photo evaluation set: classical ground truth on scikit-image's sample photos."""
import numpy as np
import pytest
import torch

from sam_lab import SamPredictor, build_sam
from sam_lab.evaluation import SamplePhotos, evaluate_boxes, grid_filter_survivors, stability_score
from sam_lab.evaluation.photos import PHOTOS, photo_item

torch.set_num_threads(2)


def test_every_photo_has_sane_ground_truth():
    photos = SamplePhotos()
    assert len(photos) == len(PHOTOS) and photos.num_masks == 31
    for index in range(len(photos)):
        item = photos[index]
        H, W = item["image"].shape[:2]
        assert item["image"].dtype == np.uint8 and item["image"].shape[2] == 3
        assert item["masks"].shape[1:] == (H, W) and item["masks"].dtype == bool
        areas = item["masks"].reshape(len(item["masks"]), -1).sum(1)
        assert (areas > 0.001 * H * W).all() and (areas < 0.9 * H * W).all(), item["name"]
        for k, p in enumerate(item["parent"]):  # a child lies inside its parent
            if p >= 0:
                assert not (item["masks"][k] & ~item["masks"][p]).any()


def test_coins_are_24_separate_round_objects():
    item = photo_item("coins")
    masks = item["masks"]
    assert len(masks) == 24
    assert masks.sum(0).max() == 1  # no pixel belongs to two coins
    for mask in masks:
        ys, xs = np.nonzero(mask)
        h, w = np.ptp(ys) + 1, np.ptp(xs) + 1
        assert 0.75 < h / w < 1.33  # round, not two coins merged
        assert mask.sum() / (np.pi * h * w / 4) > 0.85  # filled like a disc


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="names: expected"):
        SamplePhotos(["coins", "zebra"])
    with pytest.raises(ValueError, match="name: expected one of"):
        photo_item("zebra")


def test_box_evaluation_and_grid_filters_run_and_score_a_perfect_oracle_as_one():
    predictor = SamPredictor(build_sam("tiny").eval())
    photos = SamplePhotos(["cell", "horse"])
    result = evaluate_boxes(predictor, photos)
    assert result["num_targets"] == 2 and 0.0 <= result["miou"] <= 1.0
    grid = grid_filter_survivors(predictor, photos[0]["image"], points_per_side=4)
    assert grid["candidates"] == 48 and 0 <= grid["survivors"] <= 48


def test_stability_score_is_the_area_ratio_of_the_two_thresholds():
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]]])  # > +1: one pixel; > -1: three pixels
    assert stability_score(logits).item() == pytest.approx(1 / 3)
    assert stability_score(torch.full((1, 2, 2), -5.0)).item() == 0.0
