"""The data engine, simulated end to end: assisted-manual, semi-automatic, fully automatic.

Paper §4. SAM's dataset was made in three stages, and the model was retrained as it grew:

1. **Assisted-manual.** Annotators click with a SAM-powered tool (:mod:`.annotator`). After each
   round the model is retrained on everything annotated so far (:mod:`.retrain`), so the next
   round needs fewer clicks and less time per mask (paper: 34 s -> 14 s per mask, 20 -> 44 masks
   per image).
2. **Semi-automatic.** A first automatic pass with strict filters pre-fills the masks the model is
   sure of (the paper used a box detector); the annotator labels only what is still missing, so
   masks per image rise (paper: 72 per image). Retrained after each round too.
3. **Fully automatic.** The mask generator (a point grid, zoomed crops, predicted-IoU and
   stability filters, NMS; :class:`~sam_lab.inference.amg.SamAutomaticMaskGenerator`) labels the
   remaining images alone (SA-1B: ~100 masks per image).

Then the paper's ablation: the engine's starting model retrained on the automatic masks alone,
and on the masks of every stage, for the same number of steps, both measured on an unseen seed.

The images come from :class:`~sam_lab.training.data.SyntheticShapes` (``data="synthetic"``; by
default up to 6 objects per image, twice the shipped model's training images: more, smaller
and more occluded objects, like SA-1B's next to the public datasets SAM started from) or from
a COCO-format folder (``data="coco:IMAGE_DIR:ANNOTATIONS.json"``). Their ground truth is the
simulated annotator's eyes; it is never trained on.

The run is a list of steps (:func:`plan_steps`): the starting model's measurement, each round of
stages 1 and 2, stage 3, the ablation. After every step the model, the annotations and the
report so far are written at once to ``OUT/engine_state.pt`` (atomically), and then
``OUT/annotations.json`` and ``OUT/report.json`` are written from it (atomically too). A rerun
with the same settings resumes after the last finished step and gives the same result as a run
that never stopped: each step is a pure function of the state before it (every random draw is
seeded by the step). A folder holding a run with other settings is refused.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from ..evaluation.interactive import evaluate_interactive
from ..inference.amg import SamAutomaticMaskGenerator
from ..inference.masks import mask_box, pairwise_mask_iou
from ..inference.predictor import SamPredictor
from ..inference.rle import mask_to_rle, rle_to_mask
from ..weights.io import write_atomically
from .annotator import SimulatedAnnotator
from .retrain import EmbeddingCache, RetrainConfig, retrain, to_model_input

STAGES = (1, 2, 3)
STAGE_NAMES = {1: "assisted-manual", 2: "semi-automatic", 3: "fully automatic"}
STATE_FILE = "engine_state.pt"
#: the report of the full run that ships with sam_lab (lesson 11, the README's table)
SHIPPED_REPORT = Path(__file__).parent / "report_full.json"

#: The filters are set for the shipped tiny model, whose predicted IoU and logits are far less
#: confident than SAM's: at the paper's thresholds (predicted IoU 0.88, stability 0.95) it keeps
#: no mask at all. Measured on 8 images of another seed (30,000) with a 16 x 16 grid: at
#: predicted IoU > 0.6 and stability >= 0.7 it keeps 0.75 masks per image, half of them within
#: IoU 0.9 of a true object; at 0.5 / 0.6, 5 per image, 7 % of them within 0.9 and 37 % within 0.75.
#: the first pass of stage 2: only masks the model is surest of (the paper's "confident masks")
PREFILL_GENERATOR = dict(points_per_side=16, pred_iou_thresh=0.6, stability_score_thresh=0.7, box_nms_thresh=0.5,
                         min_mask_region_area=20)
#: stage 3: the paper's generator (a 32 x 32 grid, one layer of crops, the filters, NMS, small regions)
AUTO_GENERATOR = dict(points_per_side=32, pred_iou_thresh=0.5, stability_score_thresh=0.6, box_nms_thresh=0.7,
                      crop_n_layers=1, crop_n_points_downscale_factor=2, min_mask_region_area=20)


class EngineSettingsError(ValueError):
    """The output folder holds a run with other settings."""


@dataclass(frozen=True)
class EngineConfig:
    num_images: int = 300  # images the engine labels, split over the stages by stage_shares
    stages: Tuple[int, ...] = STAGES
    data: str = "synthetic"  # or "coco:IMAGE_DIR:ANNOTATIONS.json"
    seed: int = 20_000  # which synthetic images (the shipped model never saw this seed)
    max_objects: int = 6  # objects per synthetic image (the shipped model's training images have <= 3)
    skip_invalid: bool = False  # a COCO input: skip and count bad entries instead of refusing them
    model: str = "tiny"  # the starting model (a shipped name or a checkpoint path)
    stage_shares: Tuple[float, ...] = (0.3, 0.2, 0.5)  # of num_images, for stages 1, 2, 3 (of those run)
    stage1_rounds: int = 4  # the paper retrained 6 times in stage 1
    stage2_rounds: int = 2  # and 5 times in stage 2
    annotator: SimulatedAnnotator = field(default_factory=SimulatedAnnotator)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    prefill: Tuple[Tuple[str, object], ...] = tuple(PREFILL_GENERATOR.items())
    prefill_covers: float = 0.5  # an object a pre-filled mask overlaps at this IoU counts as labelled
    automatic: Tuple[Tuple[str, object], ...] = tuple(AUTO_GENERATOR.items())
    ablation_steps: int = 300  # fine-tune steps of each arm of the ablation
    eval_images: int = 40  # unseen images the model is measured on after every step
    eval_seed: int = 10_000
    eval_clicks: int = 20

    def __post_init__(self) -> None:
        if isinstance(self.num_images, bool) or not isinstance(self.num_images, int) or self.num_images < 1:
            raise ValueError(f"num_images: expected a positive number of images, got {self.num_images!r}")
        stages = tuple(self.stages)
        if not stages or any(s not in STAGES for s in stages) or len(set(stages)) != len(stages):
            raise ValueError(f"stages: expected distinct stages from {list(STAGES)}, got {list(stages)!r}")
        object.__setattr__(self, "stages", tuple(sorted(stages)))
        if len(self.stage_shares) != 3 or any(not s > 0 for s in self.stage_shares):
            raise ValueError(f"stage_shares: expected 3 positive shares (stages 1, 2, 3), got {self.stage_shares!r}")
        for name in ("stage1_rounds", "stage2_rounds", "eval_images", "eval_clicks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a whole number >= 1, got {value!r}")
        if isinstance(self.ablation_steps, bool) or not isinstance(self.ablation_steps, int) or self.ablation_steps < 0:
            raise ValueError(f"ablation_steps: expected a whole number >= 0, got {self.ablation_steps!r}")
        if not 0 < self.prefill_covers <= 1:
            raise ValueError(f"prefill_covers: expected an IoU in (0, 1], got {self.prefill_covers!r}")
        if not (self.data == "synthetic" or self.data.startswith("coco:")):
            raise ValueError(f"data: expected 'synthetic' or 'coco:IMAGE_DIR:ANNOTATIONS.json', got {self.data!r}")

    def settings(self) -> dict:
        """Everything that decides the result, as plain JSON values."""
        out = asdict(self)
        out["stages"] = list(self.stages)
        out["stage_shares"] = list(self.stage_shares)
        out["prefill"] = dict(self.prefill)
        out["automatic"] = dict(self.automatic)
        return json.loads(json.dumps(out))


# ----------------------------------------------------------------------------- the data

class Source:
    """The images the engine labels and the unseen images it measures on, with hidden truth.
    ``skipped`` holds, per image read, what a COCO input's bad entries cost it (with
    ``skip_invalid``), so that each image is counted once however often it is read."""

    def __init__(self, cfg: EngineConfig) -> None:
        from ..training.data import CocoSegmentation, SyntheticShapes

        self.skipped: Dict[str, Dict[str, int]] = {}  # image key -> {kind: count}
        if cfg.data == "synthetic":
            self.dataset = SyntheticShapes(cfg.num_images, seed=cfg.seed, max_objects=cfg.max_objects)
            self.evaluation = SyntheticShapes(cfg.eval_images, seed=cfg.eval_seed, max_objects=cfg.max_objects)
            self.indices = list(range(cfg.num_images))
            return
        _, image_dir, annotations = cfg.data.split(":", 2)
        coco = CocoSegmentation(image_dir, annotations, skip_invalid=cfg.skip_invalid)
        # the last eval_images are held out for measuring; the engine labels the first ones
        if len(coco) < cfg.eval_images + cfg.num_images:
            raise ValueError(
                f"num_images: the COCO set {annotations} has {len(coco)} usable images, fewer than num_images "
                f"{cfg.num_images} + eval_images {cfg.eval_images} (held out to measure the model)"
            )
        self.dataset = coco
        self.indices = list(range(cfg.num_images))
        self.evaluation = _Subset(self, list(range(len(coco) - cfg.eval_images, len(coco))))
        self.coco = coco
        # entries refused when the file was read (an annotation naming an unknown image)
        self.skipped["file"] = dict(coco.skipped)

    def item(self, index: int) -> dict:
        if not hasattr(self, "coco"):
            return self.dataset[index]
        before = dict(self.coco.skipped)
        item = self.dataset[index]
        cost = {k: v - before.get(k, 0) for k, v in self.coco.skipped.items() if v - before.get(k, 0)}
        if cost:
            self.skipped[str(index)] = cost
        return item

    def skipped_total(self) -> Dict[str, int]:
        total: Dict[str, int] = {}
        for counts in self.skipped.values():
            for kind, count in counts.items():
                total[kind] = total.get(kind, 0) + count
        return total


class _Subset:
    def __init__(self, source: Source, indices: List[int]) -> None:
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.source.item(self.indices[i])


# ----------------------------------------------------------------------------- the plan

def stage_images(cfg: EngineConfig) -> Dict[int, List[int]]:
    """Which image indices each stage labels: consecutive blocks, sized by ``stage_shares``
    among the stages that run (every stage gets at least one image)."""
    shares = np.array([cfg.stage_shares[s - 1] for s in cfg.stages], dtype=np.float64)
    if cfg.num_images < len(cfg.stages):
        raise ValueError(f"num_images: expected at least one image per stage ({len(cfg.stages)}), got {cfg.num_images}")
    counts = np.maximum(1, np.floor(shares / shares.sum() * cfg.num_images).astype(int))
    counts[-1] = cfg.num_images - counts[:-1].sum()
    out, start = {}, 0
    for stage, count in zip(cfg.stages, counts):
        out[stage] = list(range(start, start + int(count)))
        start += int(count)
    return out


def plan_steps(cfg: EngineConfig) -> List[dict]:
    """The run, step by step: ``{"stage": 0}`` measures the starting model; stages 1 and 2 run in
    rounds (label a block of images, retrain, measure); stage 3 labels its images in one step;
    ``{"stage": "ablation"}`` ends a run that has stage 3 and an earlier stage."""
    steps: List[dict] = [{"stage": 0, "round": 0, "images": []}]
    for stage, images in stage_images(cfg).items():
        rounds = {1: cfg.stage1_rounds, 2: cfg.stage2_rounds, 3: 1}[stage]
        for r, block in enumerate(np.array_split(np.array(images), min(rounds, len(images)))):
            steps.append({"stage": stage, "round": r + 1, "images": [int(i) for i in block]})
    if 3 in cfg.stages and len(cfg.stages) > 1 and cfg.ablation_steps > 0:
        steps.append({"stage": "ablation", "round": 0, "images": []})
    return steps


# ----------------------------------------------------------------------------- the state

@dataclass
class EngineState:
    settings: dict
    model: Dict[str, torch.Tensor]
    images: List[dict] = field(default_factory=list)  # COCO image records
    annotations: List[dict] = field(default_factory=list)  # COCO annotation records (+ stage, effort)
    steps: List[dict] = field(default_factory=list)  # the report's rows, one per finished step
    skipped: Dict[str, Dict[str, int]] = field(default_factory=dict)  # a COCO input's bad entries, per image

    def save(self, folder: Path) -> None:
        payload = {
            "settings": json.dumps(self.settings), "images": json.dumps(self.images),
            "annotations": json.dumps(self.annotations), "steps": json.dumps(self.steps),
            "skipped": json.dumps(self.skipped),
            "model": {k: v.detach().cpu().clone() for k, v in self.model.items()},
        }
        write_atomically(folder / STATE_FILE, lambda temp: torch.save(payload, temp))

    @classmethod
    def load(cls, folder: Path) -> Optional["EngineState"]:
        path = folder / STATE_FILE
        if not path.exists():
            return None
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return cls(json.loads(payload["settings"]), payload["model"], json.loads(payload["images"]),
                   json.loads(payload["annotations"]), json.loads(payload["steps"]), json.loads(payload["skipped"]))


def _settings_difference(old: dict, new: dict) -> List[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)]


# ----------------------------------------------------------------------------- measuring

def measure(model, source: Source, cfg: EngineConfig) -> dict:
    """The model on the unseen images: 1-click mIoU (the predicted pick and the oracle) and NoC."""
    result = evaluate_interactive(SamPredictor(model), source.evaluation, max_clicks=cfg.eval_clicks)
    return {
        "miou_1click_pick": round(result.miou_1click_predicted, 4),
        "miou_1click_oracle": round(result.miou_1click_oracle, 4),
        "noc85": round(result.noc85, 3), "noc90": round(result.noc90, 3),
        "iou_5_clicks": round(float(result.iou_per_click[min(4, cfg.eval_clicks - 1)]), 4),
        "eval_targets": result.num_targets,
    }


def truth_overlap(masks: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """(N, K) IoU of each of N masks with each of the image's K true masks (the simulation knows
    them; a real engine would not)."""
    if len(masks) == 0 or len(truths) == 0:
        return np.zeros((len(masks), len(truths)))
    return pairwise_mask_iou(torch.as_tensor(masks), torch.as_tensor(truths)).numpy()


def best_truth_iou(masks: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """(N,) for each of N masks, the best IoU with any of the image's true masks."""
    overlap = truth_overlap(masks, truths)
    return overlap.max(axis=1) if overlap.shape[1] else np.zeros(len(masks))


# ----------------------------------------------------------------------------- the engine

class DataEngine:
    """``DataEngine(cfg, out).run()``: see the module docstring. ``run`` returns the report."""

    def __init__(self, cfg: EngineConfig, out, progress: bool = True) -> None:
        from ..weights.pretrained import load_model

        self.cfg, self.out, self.progress = cfg, Path(out), progress
        if self.out.exists() and not self.out.is_dir():
            raise NotADirectoryError(f"out: expected a folder, got the file {self.out}")
        self.source = Source(cfg)
        self.plan = plan_steps(cfg)
        self.model = load_model(cfg.model).eval()
        self.start_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        state = EngineState.load(self.out)
        if state is not None:
            difference = _settings_difference(state.settings, cfg.settings())
            if difference:
                raise EngineSettingsError(
                    f"out: {self.out} holds a data-engine run with other settings ({'; '.join(difference)}); "
                    "use another folder, or the same settings to resume it"
                )
            self.model.load_state_dict(state.model)
            self.source.skipped.update(state.skipped)
        else:
            state = EngineState(cfg.settings(), self.model.state_dict())
        self.state = state
        self.cache = EmbeddingCache()
        self._pixels: Dict[int, np.ndarray] = {}

    # -------------------------------------------------------------------- the loop
    def run(self, budget_minutes: Optional[float] = None, stop_after: Optional[int] = None) -> dict:
        """Run the steps not yet done. ``budget_minutes`` stops (cleanly, after the step in progress)
        once that much wall time has passed; ``stop_after`` after that many steps of this call.
        Either way a rerun resumes."""
        from tqdm.auto import tqdm

        if budget_minutes is not None and (isinstance(budget_minutes, bool) or not budget_minutes >= 0):
            raise ValueError(f"budget_minutes: expected a number of minutes >= 0, got {budget_minutes!r}")
        started = time.time()
        done = len(self.state.steps)
        bar = tqdm(total=len(self.plan), initial=done, desc="data engine", unit="step", disable=not self.progress)
        ran = 0
        for step in self.plan[done:]:
            if budget_minutes is not None and time.time() - started >= budget_minutes * 60:
                break
            if stop_after is not None and ran >= stop_after:
                break
            bar.set_postfix_str(self._describe(step))
            row = self._run_step(step)
            self.state.steps.append(row)
            self.state.model = self.model.state_dict()
            self.state.skipped = dict(self.source.skipped)
            self._save()
            bar.update(1)
            ran += 1
        bar.close()
        return self.report()

    @staticmethod
    def _describe(step: dict) -> str:
        if step["stage"] == 0:
            return "measuring the starting model"
        if step["stage"] == "ablation":
            return "the ablation"
        return f"stage {step['stage']} ({STAGE_NAMES[step['stage']]}), round {step['round']}"

    def _run_step(self, step: dict) -> dict:
        t0 = time.time()
        row = {"stage": step["stage"], "round": step["round"], "name": self._describe(step)}
        if step["stage"] == 0:
            row["model"] = measure(self.model, self.source, self.cfg)
            return row
        if step["stage"] == "ablation":
            row.update(self._ablation())
            row["seconds"] = {"total": round(time.time() - t0, 1)}
            return row
        if step["stage"] in (1, 2):
            row.update(self._label_manually(step))
        else:
            row.update(self._label_automatically(step))
        t1 = time.time()
        retrained = None
        if step["stage"] in (1, 2):
            items = self._training_items(lambda a: True)
            if items:  # nothing collected yet (every object given up): the model stays as it is
                key = (int(step["stage"]), int(step["round"]))
                retrained = retrain(self.model, items, self.cfg.retrain, key=key, seed=self.cfg.seed, cache=self.cache,
                                    progress=self.progress)
                self.model.eval()
            row["retrained"] = items != []
        t2 = time.time()
        if retrained is not None:
            row["model"] = measure(self.model, self.source, self.cfg)
        else:  # the model did not change: stage 3 labels with it, nothing is retrained
            row["model"] = self.state.steps[-1]["model"]
        row["seconds"] = {"labelling": round(t1 - t0, 1), "retraining": round(t2 - t1, 1),
                          "measuring": round(time.time() - t2, 1)}
        row.update(self._totals())
        return row

    # -------------------------------------------------------------------- stages 1 and 2
    def _label_manually(self, step: dict) -> dict:
        from tqdm.auto import tqdm

        cfg, annotator = self.cfg, self.cfg.annotator
        predictor = SamPredictor(self.model)
        prefill = SamAutomaticMaskGenerator(self.model, **dict(cfg.prefill)) if step["stage"] == 2 else None
        manual_masks = prefilled = clicks = skipped = attempted = brushed = 0
        seconds = 0.0
        prefill_good = 0
        for index in tqdm(step["images"], desc=f"stage {step['stage']} images", leave=False, disable=not self.progress):
            item = self.source.item(index)
            truths = item["masks"]
            image_id = self._add_image(index, item["image"], step)
            done = np.zeros(len(truths), dtype=bool)
            if prefill is not None:
                records = prefill.generate(item["image"])
                if records:
                    masks = np.stack([r["segmentation"] for r in records])
                    overlap = truth_overlap(masks, truths)  # (pre-fills, objects)
                    truth_iou = overlap.max(axis=1) if len(truths) else np.zeros(len(masks))
                    done = (overlap >= cfg.prefill_covers).any(axis=0)
                    for record, iou in zip(records, truth_iou):
                        self._add_annotation(image_id, record["segmentation"], step, "prefill", 0, 0.0,
                                             record["predicted_iou"], float(iou), record["stability_score"])
                    prefilled += len(records)
                    prefill_good += int((truth_iou >= annotator.iou_target).sum())
            result = annotator.annotate_image(predictor, item["image"], truths, done=done)
            seconds += result.seconds
            for obj in result.objects:
                attempted += 1
                clicks += obj.clicks
                if not obj.accepted:
                    skipped += 1
                    continue
                manual_masks += 1
                brushed += obj.brushed_pixels
                kept_iou = float(best_truth_iou(obj.kept_mask[None], truths)[0])
                self._add_annotation(image_id, obj.kept_mask, step, "manual", obj.clicks, annotator.cost(obj),
                                     obj.predicted_iou, kept_iou, brush_pixels=obj.brushed_pixels, model_iou=obj.iou)
        n = len(step["images"])
        row = {
            "images": n,
            "masks": manual_masks + prefilled,
            "masks_per_image": round((manual_masks + prefilled) / n, 3),
            "manual_masks_per_image": round(manual_masks / n, 3),
            "clicks_per_mask": round(clicks / max(manual_masks, 1), 3),  # every click, skipped objects' too
            "seconds_per_mask": round(seconds / max(manual_masks, 1), 2),  # the annotator's time per kept mask
            "brush_pixels_per_mask": round(brushed / max(manual_masks, 1), 1),
            "skipped": skipped,
            "skip_rate": round(skipped / max(attempted, 1), 3),
        }
        if prefill is not None:
            row["prefilled_per_image"] = round(prefilled / n, 3)
            row["prefill_precision"] = round(prefill_good / max(prefilled, 1), 3)  # share with truth IoU >= target
        return row

    # -------------------------------------------------------------------- stage 3
    def _label_automatically(self, step: dict) -> dict:
        from tqdm.auto import tqdm

        generator = SamAutomaticMaskGenerator(self.model, **dict(self.cfg.automatic))
        masks_total = good = found = objects = 0
        for index in tqdm(step["images"], desc="stage 3 images", leave=False, disable=not self.progress):
            item = self.source.item(index)
            image_id = self._add_image(index, item["image"], step)
            records = generator.generate(item["image"])
            truths = item["masks"]
            if records:
                masks = np.stack([r["segmentation"] for r in records])
                overlap = truth_overlap(masks, truths)  # (masks, objects): one table for both directions
                truth_iou = overlap.max(axis=1) if len(truths) else np.zeros(len(masks))
                for record, iou in zip(records, truth_iou):
                    self._add_annotation(image_id, record["segmentation"], step, "automatic", 0, 0.0,
                                         record["predicted_iou"], float(iou), record["stability_score"])
                good += int((truth_iou >= self.cfg.annotator.iou_target).sum())
                if len(truths):
                    found += int((overlap.max(axis=0) >= self.cfg.annotator.iou_target).sum())
            masks_total += len(records)
            objects += len(truths)
        n = len(step["images"])
        return {
            "images": n, "masks": masks_total, "masks_per_image": round(masks_total / n, 3),
            "clicks_per_mask": 0.0, "seconds_per_mask": 0.0,
            "precision": round(good / max(masks_total, 1), 3),  # masks with truth IoU >= target
            "recall": round(found / max(objects, 1), 3),  # true objects some mask matches at >= target
        }

    # -------------------------------------------------------------------- the ablation
    def _ablation(self) -> dict:
        """The starting model retrained on the automatic masks alone and on every stage's masks,
        ``ablation_steps`` each (paper §5: automatic masks alone cost 0.5 mIoU)."""
        arms = {}
        saved = {k: v.clone() for k, v in self.model.state_dict().items()}
        cfg = replace(self.cfg.retrain, steps=self.cfg.ablation_steps)
        for k, (name, keep) in enumerate((("automatic_only", lambda a: a["stage"] == 3), ("all_stages", lambda a: True))):
            self.model.load_state_dict(self.start_state)
            cache = EmbeddingCache()  # the starting model's encoder (the engine's may differ if it trained)
            items = self._training_items(keep)
            if not items:  # e.g. stage 3 kept no mask: nothing to train this arm on
                arms[name] = {"images": 0, "masks": 0, "seconds": 0.0, "note": "no masks to train on"}
                continue
            t0 = time.time()
            retrain(self.model, items, cfg, key=(9, k), seed=self.cfg.seed, cache=cache, progress=self.progress)
            arms[name] = {"images": len(items), "masks": int(sum(len(i["masks"]) for i in items)),
                          "seconds": round(time.time() - t0, 1), **measure(self.model, self.source, self.cfg)}
        self.model.load_state_dict(saved)
        return {"ablation": {"steps": cfg.steps, **arms}}

    # -------------------------------------------------------------------- bookkeeping
    def _add_image(self, index: int, image: np.ndarray, step: dict) -> int:
        image_id = len(self.state.images) + 1
        name = f"{index:06d}.png"
        path = self.out / "images" / name
        if not path.exists():
            write_atomically(path, lambda temp: Image.fromarray(image).save(temp, format="PNG"))
        self.state.images.append({"id": image_id, "file_name": name, "height": int(image.shape[0]),
                                  "width": int(image.shape[1]), "source_index": int(index),
                                  "stage": int(step["stage"]), "round": int(step["round"])})
        return image_id

    def _add_annotation(self, image_id: int, mask: np.ndarray, step: dict, source: str, clicks: int,
                        seconds: float, predicted_iou: float, truth_iou: float, stability: Optional[float] = None,
                        brush_pixels: int = 0, model_iou: Optional[float] = None) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        x0, y0, x1, y1 = mask_box(mask)
        record = {
            "id": len(self.state.annotations) + 1, "image_id": image_id, "category_id": 1,
            "segmentation": mask_to_rle(mask), "area": int(mask.sum()),
            "bbox": [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)], "iscrowd": 0,
            "stage": int(step["stage"]), "round": int(step["round"]), "source": source,
            "effort": {"clicks": int(clicks), "brush_pixels": int(brush_pixels), "seconds": round(float(seconds), 2)},
            "predicted_iou": round(float(predicted_iou), 4), "truth_iou": round(float(truth_iou), 4),
        }
        if stability is not None:
            record["stability_score"] = round(float(stability), 4)
        if model_iou is not None:  # the model's mask before brushing
            record["model_iou"] = round(float(model_iou), 4)
        self.state.annotations.append(record)

    def _training_items(self, keep) -> List[dict]:
        """Every labelled image with its kept masks (those ``keep`` accepts), at the model's input size."""
        size = self.model.image_encoder.img_size
        by_image: Dict[int, List[dict]] = {}
        for ann in self.state.annotations:
            if keep(ann):
                by_image.setdefault(ann["image_id"], []).append(ann)
        items = []
        for image in self.state.images:
            anns = by_image.get(image["id"])
            if not anns:
                continue
            image_id = image["id"]
            if image_id not in self._pixels:  # the image as written: the same after a resume
                self._pixels[image_id] = np.array(Image.open(self.out / "images" / image["file_name"]).convert("RGB"))
            masks = np.stack([rle_to_mask(a["segmentation"]) for a in anns])
            pixels, masks = to_model_input(self._pixels[image_id], masks, size)
            items.append({"key": image_id, "image": pixels, "masks": masks})
        return items

    def _totals(self) -> dict:
        stages = sorted({a["stage"] for a in self.state.annotations})
        return {"total_images": len(self.state.images), "total_masks": len(self.state.annotations),
                "total_masks_by_stage": {str(s): sum(a["stage"] == s for a in self.state.annotations) for s in stages}}

    def _save(self) -> None:
        self.state.save(self.out)
        coco = {
            "info": {"description": "sam_lab simulated data engine", "settings": self.state.settings},
            "images": self.state.images, "annotations": self.state.annotations,
            "categories": [{"id": 1, "name": "object"}],
        }
        write_atomically(self.out / "annotations.json", lambda temp: Path(temp).write_text(json.dumps(coco)))
        report = self.report()
        write_atomically(self.out / "report.json", lambda temp: Path(temp).write_text(json.dumps(report, indent=1)))

    def report(self) -> dict:
        return {
            "settings": self.state.settings,
            "complete": len(self.state.steps) == len(self.plan),
            "steps_done": len(self.state.steps), "steps_planned": len(self.plan),
            "steps": self.state.steps,
            "skipped_input": self.source.skipped_total(),
            "seconds": round(sum(sum(s.get("seconds", {}).values()) for s in self.state.steps if isinstance(s.get("seconds"), dict)), 1),
        }


def run_engine(cfg: EngineConfig, out, progress: bool = True, budget_minutes: Optional[float] = None,
               stop_after: Optional[int] = None) -> dict:
    """Run (or resume) the data engine into ``out`` and return its report (see the module docstring)."""
    return DataEngine(cfg, out, progress=progress).run(budget_minutes=budget_minutes, stop_after=stop_after)


def load_shipped_report() -> dict:
    """The report of the full run shipped with sam_lab (``python -m sam_lab.data_engine
    --num-images 300``, default settings): lesson 11 draws it, the README tabulates it."""
    if not SHIPPED_REPORT.is_file():
        raise FileNotFoundError(f"the shipped data-engine report is missing ({SHIPPED_REPORT}); reinstall sam_lab")
    return json.loads(SHIPPED_REPORT.read_text())
