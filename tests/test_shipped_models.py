"""Every .safetensors file shipped in sam_lab/weights/ loads and segments.

One click at the middle of each whole object (the point farthest from its boundary) of a few
synthetic images from a seed no model was trained on; the best of the model's answers must
overlap the object better than a fixed floor. Random weights score about 0.10 here; the floors
sit well above that and below what the shipped files reach (tiny 0.58, ablation multimask 0.51,
single output 0.36 when this test was written), so a file that no longer loads, loads into the
wrong place, or was replaced by an untrained one fails.
"""
import numpy as np
import pytest
import torch

import sam_lab
from sam_lab.evaluation import farthest_from_boundary
from sam_lab.inference.masks import mask_iou
from sam_lab.training.data import SyntheticShapes
from sam_lab.weights.pretrained import ABLATION, SHIPPED, WEIGHTS_DIR

torch.set_num_threads(2)

FLOORS = {"tiny": 0.45, "multimask": 0.40, "single_output": 0.25}


@pytest.fixture(scope="module")
def unseen():
    return SyntheticShapes(6, seed=4242, image_size=256)


def one_click_oracle_miou(model, dataset, multimask: bool = True) -> float:
    predictor = sam_lab.SamPredictor(model)
    ious = []
    for index in range(len(dataset)):
        item = dataset[index]
        predictor.set_image(item["image"])
        for mask, level in zip(item["masks"], item["level"]):
            if level != 0:
                continue
            click = farthest_from_boundary(mask)[None]
            masks, _, _ = predictor.predict(point_coords=click, point_labels=np.array([1]), multimask_output=multimask)
            ious.append(float(mask_iou(masks, mask[None]).max()))
    return float(np.mean(ious))


def test_every_shipped_weight_file_is_covered():
    shipped = {path.name for path in WEIGHTS_DIR.glob("*.safetensors")}
    assert shipped == {p.name for p in SHIPPED.values()} | {p.name for p in ABLATION.values()}


def test_shipped_tiny_segments_an_unseen_object_from_one_click(unseen):
    assert one_click_oracle_miou(sam_lab.load_model("tiny"), unseen) > FLOORS["tiny"]


@pytest.mark.parametrize("kind", ["multimask", "single_output"])
def test_shipped_ablation_models_segment_an_unseen_object_from_one_click(unseen, kind):
    model = sam_lab.load_ablation_model(kind)
    assert one_click_oracle_miou(model, unseen, multimask=kind == "multimask") > FLOORS[kind]


def test_the_floor_is_above_what_random_weights_reach(unseen):
    torch.manual_seed(0)
    random_model = sam_lab.load_model("tiny", pretrained=False)
    assert one_click_oracle_miou(random_model, unseen) < min(FLOORS.values())


def test_the_readme_command_reproduces_the_shipped_recipe():
    """The model card's command, parsed by the training CLI, gives the TrainConfig the shipped
    weights were trained with (sam_lab/weights/tiny_recipe.json, written from the run's
    checkpoint), apart from where the run writes."""
    import json
    import re
    import shlex
    from dataclasses import asdict
    from pathlib import Path

    from sam_lab.training.train import parse_args

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| Command |"))
    command = re.search(r"`(python -m sam_lab\.training [^`]+)`", row).group(1)
    config, _ = parse_args(shlex.split(command)[3:])
    recipe = json.loads((WEIGHTS_DIR / "tiny_recipe.json").read_text())
    ours = {k: v for k, v in asdict(config).items() if k != "out"}
    assert ours == {k: v for k, v in recipe.items() if k != "out"}
