"""The simulated data engine (sam_lab.data_engine): the annotator, each stage, the report, the
COCO output, exact resume after a stop or a crash, and bad input."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import sam_lab
from sam_lab.data_engine import (
    DataEngine,
    EngineConfig,
    EngineSettingsError,
    RetrainConfig,
    SimulatedAnnotator,
    plan_steps,
    retrain,
    run_engine,
    stage_images,
)
from sam_lab.data_engine.__main__ import main as cli_main
from sam_lab.inference.masks import mask_iou
from sam_lab.training.data import CocoSegmentation, SyntheticShapes
from sam_lab.training.data.coco import CocoFormatError

SMALL = EngineConfig(
    num_images=7, stage1_rounds=2, stage2_rounds=1, eval_images=2, eval_clicks=3, ablation_steps=2,
    retrain=RetrainConfig(steps=3, batch_size=2, masks_per_image=2), model="tiny16",
    stage_shares=(0.3, 0.2, 0.5),
    prefill=tuple(dict(points_per_side=8, pred_iou_thresh=0.5, stability_score_thresh=0.5).items()),
    automatic=tuple(dict(points_per_side=8, pred_iou_thresh=0.5, stability_score_thresh=0.5).items()),
)


# ----------------------------------------------------------------------------- the annotator

class TruthPredictor:
    """A predictor stub that answers every prompt with a fixed mask (the truth, or nothing)."""

    def __init__(self, answer):
        self.answer, self.calls = answer, 0

    def set_image(self, image):
        self.image = image

    def predict(self, point_coords, point_labels, mask_input=None, multimask_output=True, return_logits=False):
        self.calls += 1
        count = 3 if multimask_output else 1
        masks = np.stack([self.answer(point_coords, point_labels)] * count)
        return masks, np.full(count, 0.5, np.float32), np.zeros((count, 256, 256), np.float32)


def _disc(shape=(64, 64), centre=(30, 30), radius=12):
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    return (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 <= radius**2


def test_a_perfect_model_needs_one_click_and_a_useless_one_is_given_up():
    truth = _disc()
    annotator = SimulatedAnnotator(max_clicks=4)
    done = annotator.annotate_object(TruthPredictor(lambda c, l: truth), truth)
    assert done.accepted and done.clicks == 1 and done.iou == 1.0
    stub = TruthPredictor(lambda c, l: np.zeros_like(truth))
    given_up = annotator.annotate_object(stub, truth)
    assert not given_up.accepted and given_up.clicks == 4 and stub.calls == 4
    assert given_up.labels.tolist() == [1, 1, 1, 1]  # every error is a missed part: positive clicks


def test_the_brush_fixes_the_accepted_mask_and_costs_time():
    truth = _disc(radius=12)
    close = _disc(radius=12, centre=(31, 30))  # IoU ~0.9: accepted, a few pixels wrong
    wrong = int((close != truth).sum())
    brushed = SimulatedAnnotator(iou_target=0.85).annotate_object(TruthPredictor(lambda c, l: close), truth)
    assert brushed.accepted and brushed.brushed_pixels == wrong and np.array_equal(brushed.kept_mask, truth)
    assert SimulatedAnnotator().cost(brushed) == pytest.approx(5 + 3 + wrong / 100)
    raw = SimulatedAnnotator(iou_target=0.85, brush=False).annotate_object(TruthPredictor(lambda c, l: close), truth)
    assert raw.brushed_pixels == 0 and np.array_equal(raw.kept_mask, close)


def test_clicks_follow_the_protocol_negative_on_spill():
    truth = _disc(radius=8)
    spill = _disc(radius=20)  # the model spills over: the next click is a background click
    annotator = SimulatedAnnotator(max_clicks=2)
    result = annotator.annotate_object(TruthPredictor(lambda c, l: spill if len(c) == 1 else truth), truth)
    assert result.accepted and result.clicks == 2 and result.labels.tolist() == [1, 0]
    assert not truth[int(result.coords[1, 1]), int(result.coords[1, 0])]  # the click is outside the object


def test_objects_in_order_of_size_until_the_time_budget_ends():
    small, large, middle = _disc(radius=5), _disc(centre=(40, 40), radius=15), _disc(centre=(10, 50), radius=8)
    truths = np.stack([small, large, middle])
    annotator = SimulatedAnnotator(seconds_per_mask=5, seconds_per_click=3, image_seconds=17)
    result = annotator.annotate_image(TruthPredictor(lambda c, l: truths[np.argmax(truths[:, int(c[0][1]), int(c[0][0])])]),
                                      np.zeros((64, 64, 3), np.uint8), truths)
    assert [o.truth_index for o in result.objects] == [1, 2]  # largest first; 8 s each, a third would pass 17 s
    assert result.out_of_time and result.seconds == 16
    skip = annotator.annotate_image(TruthPredictor(lambda c, l: large), np.zeros((64, 64, 3), np.uint8), truths,
                                    done=[False, True, False])
    assert skip.objects[0].truth_index == 2  # the labelled object is left alone


def test_the_shipped_model_helps_the_annotator():
    item = SyntheticShapes(1, seed=20_000, max_objects=6)[0]
    predictor = sam_lab.SamPredictor(sam_lab.load_model("tiny"))
    result = SimulatedAnnotator().annotate_image(predictor, item["image"], item["masks"])
    assert result.accepted, "the shipped model should let the annotator finish some mask"
    for obj in result.accepted:
        assert obj.iou >= 0.9 and obj.clicks <= 10
        assert float(mask_iou(obj.mask, item["masks"][obj.truth_index])) == pytest.approx(obj.iou)


@pytest.mark.parametrize("field, value", [("iou_target", 1.5), ("max_clicks", 0), ("seconds_per_click", -1.0),
                                           ("image_seconds", "long"), ("brush", "yes"), ("brush_pixels_per_second", 0)])
def test_annotator_settings_are_checked(field, value):
    with pytest.raises(ValueError, match=field):
        SimulatedAnnotator(**{field: value})


# ----------------------------------------------------------------------------- the plan and settings

def test_images_are_split_over_the_stages_that_run():
    split = stage_images(EngineConfig(num_images=100))
    assert [len(split[s]) for s in (1, 2, 3)] == [30, 20, 50]
    assert sum(split.values(), []) == list(range(100))
    assert list(stage_images(EngineConfig(num_images=10, stages=(3, 1)))) == [1, 3]  # sorted
    plan = plan_steps(EngineConfig(num_images=100))
    assert [s["stage"] for s in plan] == [0, 1, 1, 1, 1, 2, 2, 3, "ablation"]
    assert [len(s["images"]) for s in plan if s["stage"] == 1] == [8, 8, 7, 7]
    assert "ablation" not in [s["stage"] for s in plan_steps(EngineConfig(num_images=10, stages=(1, 2)))]


@pytest.mark.parametrize("kwargs, name", [
    (dict(stages=(1, 4)), "stages"), (dict(stages=(1, 1)), "stages"), (dict(stages=()), "stages"),
    (dict(num_images=0), "num_images"), (dict(stage1_rounds=0), "stage1_rounds"),
    (dict(data="imagenet"), "data"), (dict(ablation_steps=-1), "ablation_steps"),
])
def test_bad_engine_settings_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        EngineConfig(**kwargs)


@pytest.mark.parametrize("argv, name", [
    (["--stages", "1,4"], "--stages"), (["--stages", "one"], "--stages"), (["--budget-minutes", "-1"], "--budget-minutes"),
    (["--num-images", "0"], "--num-images"),
])
def test_bad_cli_options_exit_2_naming_them(tmp_path, capsys, argv, name):
    args = ["--num-images", "5", "--out", str(tmp_path / "out"), *argv]
    with pytest.raises(SystemExit) as stop:
        cli_main(args)
    assert stop.value.code == 2 and name in capsys.readouterr().err


def test_a_negative_budget_is_refused_by_the_api(tmp_path):
    with pytest.raises(ValueError, match="budget_minutes"):
        run_engine(SMALL, tmp_path, progress=False, budget_minutes=-2)


# ----------------------------------------------------------------------------- a whole small run

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("engine") / "run"
    report = run_engine(SMALL, out, progress=False)
    return out, report


def _without_times(report):
    report = json.loads(json.dumps(report))
    report.pop("seconds")
    for step in report["steps"]:
        step.pop("seconds", None)
        for arm in step.get("ablation", {}).values():
            if isinstance(arm, dict):
                arm.pop("seconds", None)
    return report


def test_a_run_writes_a_coco_dataset_with_stages_and_effort(finished):
    out, report = finished
    assert report["complete"] and [s["stage"] for s in report["steps"]] == [0, 1, 1, 2, 3, "ablation"]
    coco = json.loads((out / "annotations.json").read_text())
    assert {a["stage"] for a in coco["annotations"]} <= {1, 2, 3} and coco["categories"] == [{"id": 1, "name": "object"}]
    assert len(coco["images"]) == SMALL.num_images
    manual = [a for a in coco["annotations"] if a["source"] == "manual"]
    assert manual and all(a["truth_iou"] >= 0.9 and a["effort"]["clicks"] >= 1 for a in manual)
    for a in manual:  # 5 s an object, 3 s a click, 100 brushed pixels a second; brushed to the object itself
        effort = a["effort"]
        assert effort["seconds"] == pytest.approx(5.0 + 3.0 * effort["clicks"] + effort["brush_pixels"] / 100, abs=0.01)
        assert a["truth_iou"] == 1.0 and 0.9 <= a["model_iou"] <= 1.0
    assert any(a["effort"]["brush_pixels"] > 0 for a in manual)
    assert all(a["effort"] == {"clicks": 0, "brush_pixels": 0, "seconds": 0.0}
               for a in coco["annotations"] if a["source"] != "manual")
    assert {a["source"] for a in coco["annotations"] if a["stage"] == 3} <= {"automatic"}
    # the folder is a COCO dataset sam_lab (and pycocotools) can read back
    back = CocoSegmentation(out / "images", out / "annotations.json")
    first = next(i for i, img in enumerate(coco["images"]) if any(a["image_id"] == img["id"] for a in coco["annotations"]))
    assert back[first]["masks"].sum() > 0
    # the report's counts agree with the annotations
    stage1 = [s for s in report["steps"] if s["stage"] == 1]
    assert sum(s["masks"] for s in stage1) == sum(a["stage"] == 1 for a in coco["annotations"])
    assert report["steps"][-2]["total_masks"] == len(coco["annotations"])
    for step in report["steps"][1:3]:
        assert step["clicks_per_mask"] >= 1 and step["seconds_per_mask"] >= 8 and "noc90" in step["model"]
    assert "prefilled_per_image" in report["steps"][3] and "precision" in report["steps"][4]
    assert json.loads((out / "report.json").read_text()) == report


def test_the_ablation_trains_both_arms_from_the_starting_model(finished):
    _, report = finished
    arms = report["steps"][-1]["ablation"]
    assert arms["steps"] == SMALL.ablation_steps
    assert arms["all_stages"]["masks"] > arms["automatic_only"]["masks"]


def test_a_stopped_run_resumes_to_the_same_result(finished, tmp_path):
    out, report = finished
    first = run_engine(SMALL, tmp_path, progress=False, stop_after=2)
    assert not first["complete"] and first["steps_done"] == 2
    resumed = run_engine(SMALL, tmp_path, progress=False)
    assert _without_times(resumed) == _without_times(report)
    assert (tmp_path / "annotations.json").read_text() == (out / "annotations.json").read_text()
    a = torch.load(tmp_path / "engine_state.pt", weights_only=True)["model"]
    b = torch.load(out / "engine_state.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_crash_mid_step_leaves_the_last_finished_step_and_resumes(finished, tmp_path, monkeypatch):
    out, report = finished
    import sam_lab.data_engine.engine as engine_module

    calls = {"n": 0}
    real = engine_module.retrain

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "retrain", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_engine(SMALL, tmp_path, progress=False)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["steps_done"] == 2  # the start and round 1; round 2 died before its save
    coco = json.loads((tmp_path / "annotations.json").read_text())
    assert {a["round"] for a in coco["annotations"]} == {1}  # nothing of the killed round
    monkeypatch.setattr(engine_module, "retrain", real)
    assert _without_times(run_engine(SMALL, tmp_path, progress=False)) == _without_times(report)


def test_a_folder_with_other_settings_is_refused(finished):
    out, _ = finished
    with pytest.raises(EngineSettingsError, match="num_images: 7 there, 8 now"):
        DataEngine(replace(SMALL, num_images=8), out, progress=False)


def test_budget_zero_stops_before_any_step(tmp_path):
    report = run_engine(SMALL, tmp_path, progress=False, budget_minutes=0)
    assert report["steps_done"] == 0 and not report["complete"]


def test_the_cli_runs_and_prints_the_table(tmp_path, capsys):
    code = cli_main(["--num-images", "3", "--out", str(tmp_path), "--stages", "1", "--stage1-rounds", "1",
                     "--retrain-steps", "1", "--eval-images", "1", "--model", "tiny16", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "stage 1 (assisted-manual), round 1" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["complete"] and report["settings"]["stages"] == [1]
    code = cli_main(["--num-images", "4", "--out", str(tmp_path), "--stages", "1", "--quiet"])
    assert code == 2 and "other settings" in capsys.readouterr().err


# ----------------------------------------------------------------------------- COCO input

def _coco_folder(tmp_path, bad: bool):
    from PIL import Image

    from sam_lab.inference.rle import mask_to_rle

    shapes = SyntheticShapes(4, seed=5)
    images, annotations = [], []
    (tmp_path / "img").mkdir()
    for i in range(4):
        item = shapes[i]
        Image.fromarray(item["image"]).save(tmp_path / "img" / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": 256, "width": 256})
        for mask in item["masks"]:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1,
                                "segmentation": mask_to_rle(mask)})
    if bad:
        annotations[0]["segmentation"] = [[1, 2, 3]]  # a polygon of three numbers
    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return f"coco:{tmp_path / 'img'}:{tmp_path / 'ann.json'}"


def test_a_coco_input_with_a_bad_entry_is_refused_or_skipped_and_counted(tmp_path):
    data = _coco_folder(tmp_path, bad=True)
    cfg = replace(SMALL, data=data, num_images=2, eval_images=1, stages=(1,))
    with pytest.raises(CocoFormatError, match="annotation 1"):
        run_engine(cfg, tmp_path / "refused", progress=False)
    report = run_engine(replace(cfg, skip_invalid=True), tmp_path / "skipped", progress=False)
    assert report["complete"] and report["skipped_input"] == {"annotation": 1}


def test_too_few_coco_images_is_an_error_naming_num_images(tmp_path):
    data = _coco_folder(tmp_path, bad=False)
    with pytest.raises(ValueError, match="num_images"):
        DataEngine(replace(SMALL, data=data, num_images=4, eval_images=1), tmp_path / "out", progress=False)


# ----------------------------------------------------------------------------- retraining

def test_retraining_is_a_pure_function_and_decoder_only_by_default():
    item = SyntheticShapes(2, seed=3)
    items = [{"key": i, "image": item[i]["image"], "masks": item[i]["masks"]} for i in range(2)]
    cfg = RetrainConfig(steps=2, batch_size=2, masks_per_image=2)
    a, b = sam_lab.load_model("tiny16"), sam_lab.load_model("tiny16")
    start = {k: v.clone() for k, v in a.state_dict().items()}
    retrain(a, items, cfg, key=(1, 1))
    retrain(b, items, cfg, key=(1, 1))
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in start)
    assert all(torch.equal(a.state_dict()[k], start[k]) for k in start if k.startswith("image_encoder."))
    assert any(not torch.equal(a.state_dict()[k], start[k]) for k in start if k.startswith("mask_decoder."))
    retrain(b, items, replace(cfg, train_encoder=True), key=(1, 1))
    assert any(not torch.equal(b.state_dict()[k], start[k]) for k in start if k.startswith("image_encoder."))
    with pytest.raises(ValueError, match="items"):
        retrain(a, [], cfg, key=(1,))


# ----------------------------------------------------------------------------- the learner as annotator

def test_the_annotation_session_records_clicks_seconds_and_truth_iou():
    from sam_lab.widgets import AnnotationSession

    item = SyntheticShapes(1, seed=20_000, max_objects=6)[0]
    now = {"t": 100.0}
    session = AnnotationSession(sam_lab.SamPredictor(sam_lab.load_model("tiny")), item["image"], truths=item["masks"],
                                clock=lambda: now["t"])
    assert session.accept() is None and "click on an object first" in session.message.value
    from sam_lab.evaluation import farthest_from_boundary

    x, y = farthest_from_boundary(item["masks"][0])
    session.widget.points = [[float(x), float(y), 1]]
    now["t"] += 4.5
    record = session.accept()
    assert record["clicks"] == 1 and record["seconds"] == 4.5 and record["simulated_seconds"] == 8.0
    assert 0 < record["truth_iou"] <= 1
    assert session.widget.points == [] and session.widget.mask is None  # ready for the next object
    assert session.accepted_mask.sum() == record["mask"].sum()
    assert session.summary()["masks"] == 1 and "<td>4.5</td>" in session.table.value


def test_the_shipped_report_and_lever_results_match_their_code():
    """The full run's report has every planned step with the default settings; the lever results
    hold every lever the benchmark defines."""
    from pathlib import Path

    from conftest import load_benchmark
    from sam_lab.data_engine import load_shipped_report

    report = load_shipped_report()
    assert report["complete"] and report["settings"] == EngineConfig(num_images=300).settings()
    assert [s["stage"] for s in report["steps"]] == [s["stage"] for s in plan_steps(EngineConfig(num_images=300))]
    levers = load_benchmark("engine_retrain_levers").LEVERS
    results = json.loads((Path(__file__).parents[1] / "benchmarks" / "results_engine_retrain_levers.json").read_text())
    assert set(results) == {"start", *levers}
