"""Synthetic nested shapes, the COCO-format loader and COCO run-length encoding."""
import json

import numpy as np
import pytest
from PIL import Image

from sam_lab.training.data import CocoSegmentation, SyntheticShapes
from sam_lab.training.data.coco import CocoFormatError
from sam_lab.inference.rle import area, compress_counts, decompress_counts, mask_to_counts, mask_to_rle, rle_to_mask


# ----------------------------------------------------------------------------- synthetic

@pytest.fixture(scope="module")
def items():
    dataset = SyntheticShapes(12, seed=5, image_size=128)
    return [dataset[i] for i in range(len(dataset))]


def test_synthetic_items_have_the_documented_fields_and_types(items):
    for item in items:
        H, W = item["image"].shape[:2]
        assert item["image"].dtype == np.uint8 and item["image"].shape == (128, 128, 3)
        K = len(item["masks"])
        assert item["masks"].dtype == bool and item["masks"].shape == (K, H, W)
        assert item["parent"].shape == item["level"].shape == (K,)
        assert len(item["captions"]) == K and all(" " in c for c in item["captions"])


def test_synthetic_items_are_deterministic_per_seed_and_index():
    a, b = SyntheticShapes(3, seed=7)[2], SyntheticShapes(3, seed=7)[2]
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["masks"], b["masks"])
    assert not np.array_equal(a["image"], SyntheticShapes(3, seed=8)[2]["image"])


def test_parts_lie_inside_their_parents_one_level_down(items):
    nested = 0
    for item in items:
        for k, parent in enumerate(item["parent"]):
            if parent < 0:
                assert item["level"][k] == 0
                continue
            nested += 1
            assert item["level"][k] == item["level"][parent] + 1
            assert not (item["masks"][k] & ~item["masks"][parent]).any()  # inside
            assert item["masks"][k].sum() < item["masks"][parent].sum()  # and smaller
    assert nested > 5  # the data really has parts


def test_later_objects_occlude_earlier_ones(items):
    wholes_overlap = 0
    for item in items:
        wholes = [m for m, lvl in zip(item["masks"], item["level"]) if lvl == 0]
        for i in range(len(wholes)):
            for j in range(i + 1, len(wholes)):
                wholes_overlap += int((wholes[i] & wholes[j]).any())
    assert wholes_overlap == 0  # visible regions of different objects never share a pixel


def test_masks_respect_the_minimum_area(items):
    assert all(m.sum() >= 80 for item in items for m in item["masks"])


def test_synthetic_arguments_are_checked():
    with pytest.raises(ValueError, match="num_images"):
        SyntheticShapes(0)
    with pytest.raises(IndexError, match="index"):
        SyntheticShapes(2)[2]


# ----------------------------------------------------------------------------- RLE

def test_rle_counts_are_column_major_and_start_with_zeros():
    mask = np.array([[0, 1], [1, 1]], bool)  # column-major: 0, 1, 1, 1
    assert mask_to_counts(mask) == [1, 3]
    assert mask_to_counts(np.ones((2, 2), bool)) == [0, 4]


def test_compressed_counts_match_a_hand_worked_string():
    # 2 -> '2', 3 -> '3'; the 4th count is stored as 1 - counts[1] = -1 -> 0x1f -> 'O'
    assert compress_counts([1, 2, 3, 1]) == "123O"
    assert decompress_counts("123O") == [1, 2, 3, 1]
    big = [70000, 3, 123456, 9]
    assert decompress_counts(compress_counts(big)) == big


def test_rle_round_trips_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 13), (64, 48)]:
        mask = rng.random(shape) > 0.6
        for compressed in (True, False):
            rle = mask_to_rle(mask, compressed=compressed)
            assert rle["size"] == list(shape)
            assert np.array_equal(rle_to_mask(rle), mask)
            assert area(rle) == mask.sum()
        as_bytes = {"size": list(shape), "counts": mask_to_rle(mask)["counts"].encode("ascii")}  # pycocotools' form
        assert np.array_equal(rle_to_mask(as_bytes), mask) and area(as_bytes) == mask.sum()


def test_rle_agrees_with_the_reference_packages_uncompressed_counts():
    import torch
    from segment_anything.utils.amg import mask_to_rle_pytorch

    mask = np.random.default_rng(1).random((20, 30)) > 0.5
    reference = mask_to_rle_pytorch(torch.as_tensor(mask)[None])[0]
    assert mask_to_rle(mask, compressed=False)["counts"] == reference["counts"]


def test_bad_rle_is_named():
    with pytest.raises(ValueError, match="counts: run lengths add up"):
        rle_to_mask({"size": [2, 2], "counts": [1, 1]})
    with pytest.raises(ValueError, match="rle: expected a dict with 'size' and 'counts'"):
        area({"counts": [1, 1]})


# ----------------------------------------------------------------------------- COCO

def _coco_folder(tmp_path, annotations, images=None):
    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(tmp_path / "img" / "a.png")
    spec = {
        "images": images or [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}],
        "annotations": annotations,
        "categories": [{"id": 3, "name": "cat"}],
    }
    (tmp_path / "instances.json").write_text(json.dumps(spec))
    return tmp_path / "img", tmp_path / "instances.json"


def test_coco_polygons_and_both_rle_forms_decode(tmp_path):
    square = np.zeros((20, 30), bool)
    square[5:10, 10:20] = True
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "segmentation": [[10, 5, 19, 5, 19, 9, 10, 9]]},
        {"id": 2, "image_id": 1, "category_id": 3, "segmentation": mask_to_rle(square)},
        {"id": 3, "image_id": 1, "category_id": 3, "segmentation": mask_to_rle(square, compressed=False)},
    ]
    dataset = CocoSegmentation(*_coco_folder(tmp_path, anns))
    item = dataset[0]
    assert item["masks"].shape == (3, 20, 30) and item["captions"] == ["cat"] * 3
    assert np.array_equal(item["masks"][0], square)  # PIL fills polygon edges inclusively
    assert np.array_equal(item["masks"][1], square) and np.array_equal(item["masks"][2], square)


def test_coco_bad_entries_name_the_file_and_entry_or_are_skipped_and_counted(tmp_path):
    wrong_size = mask_to_rle(np.ones((5, 5), bool))
    anns = [
        {"id": 7, "image_id": 1, "category_id": 3, "segmentation": wrong_size},
        {"id": 8, "image_id": 1, "category_id": 3, "segmentation": mask_to_rle(np.zeros((20, 30), bool))},  # empty
        {"id": 9, "image_id": 1, "category_id": 3, "segmentation": [[0, 0, 29, 0, 29, 19]]},
    ]
    folders = _coco_folder(tmp_path, anns)
    with pytest.raises(CocoFormatError, match=r"annotation 7 of a\.png: mask of shape \(5, 5\)"):
        CocoSegmentation(*folders)[0]
    lenient = CocoSegmentation(*folders, skip_invalid=True)
    assert len(lenient[0]["masks"]) == 1
    assert lenient.skipped == {"annotation": 1, "empty": 1}


def test_coco_missing_image_file_is_named(tmp_path):
    anns = [{"id": 1, "image_id": 2, "category_id": 3, "segmentation": [[0, 0, 5, 0, 5, 5]]}]
    images = [{"id": 2, "file_name": "missing.png"}]
    with pytest.raises(FileNotFoundError, match="missing.png"):
        CocoSegmentation(*_coco_folder(tmp_path, anns, images))[0]
