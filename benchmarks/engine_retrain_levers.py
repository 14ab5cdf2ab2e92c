"""Levers for the data engine's retraining (sam_lab.data_engine.retrain), at an equal step budget
on a fixed unseen seed.

    python benchmarks/engine_retrain_levers.py --out runs/engine_levers

The data is what the engine's first stage-1 round collects with the default settings: the
simulated annotator labels the first 23 of the engine's images (seed 20,000, up to 6 objects)
with the shipped tiny model. Each lever fine-tunes the shipped model on those masks, either as the
model drew them (``model_masks``: accepted at IoU >= 0.9) or brushed to the object
(``brushed``, the engine's default), with or without replay of the model's own training data,
at two learning rates, decoder only (the engine's default) or with the image encoder. Every lever is measured on the first ``--eval-images`` images of seed
10,000 (up to 6 objects; the engine measures on 40): 1-click oracle and predicted-pick mIoU,
NoC@90. Results go to ``OUT/levers.json`` atomically after each lever; a finished lever is
skipped on rerun. Uses both cores: run nothing else meanwhile.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

LEVERS = {  # name -> (masks, RetrainConfig overrides)
    "model_masks 300 steps lr 1e-4": ("model", dict(steps=300, lr=1e-4, replay=0.0)),
    "model_masks 100 steps lr 1e-4": ("model", dict(steps=100, lr=1e-4, replay=0.0)),
    "model_masks 300 steps lr 1e-4 replay 0.5": ("model", dict(steps=300, lr=1e-4, replay=0.5)),
    "brushed 150 steps lr 1e-4": ("brushed", dict(steps=150, lr=1e-4, replay=0.0)),
    "brushed 150 steps lr 1e-4 replay 0.5": ("brushed", dict(steps=150, lr=1e-4, replay=0.5)),
    "brushed 150 steps lr 3e-5 replay 0.5 (default)": ("brushed", dict(steps=150, lr=3e-5, replay=0.5)),
    "brushed 150 steps lr 3e-5 replay 0.5, encoder too": ("brushed", dict(steps=150, lr=3e-5, replay=0.5, train_encoder=True)),
}


def first_round(num_images: int = 23):
    """The engine's first stage-1 round: (image, the model's accepted masks, the brushed masks)."""
    import sam_lab
    from sam_lab.data_engine import SimulatedAnnotator
    from sam_lab.training.data import SyntheticShapes

    images = SyntheticShapes(300, seed=20_000, max_objects=6)
    predictor = sam_lab.SamPredictor(sam_lab.load_model("tiny"))
    annotator = SimulatedAnnotator()
    model_items, brushed_items = [], []
    for i in range(num_images):
        item = images[i]
        result = annotator.annotate_image(predictor, item["image"], item["masks"])
        if result.accepted:
            model_items.append({"key": i, "image": item["image"], "masks": np.stack([o.mask for o in result.accepted])})
            brushed_items.append({"key": i, "image": item["image"], "masks": np.stack([o.kept_mask for o in result.accepted])})
    return model_items, brushed_items


def measure(model, eval_images: int) -> dict:
    import sam_lab
    from sam_lab.evaluation import evaluate_interactive
    from sam_lab.training.data import SyntheticShapes

    result = evaluate_interactive(sam_lab.SamPredictor(model), SyntheticShapes(eval_images, seed=10_000, max_objects=6), max_clicks=20)
    return {"miou_1click_oracle": round(result.miou_1click_oracle, 4), "miou_1click_pick": round(result.miou_1click_predicted, 4),
            "noc90": round(result.noc90, 3), "targets": result.num_targets}


def main(argv=None) -> None:
    import sam_lab
    from sam_lab.data_engine import EmbeddingCache, RetrainConfig, retrain
    from sam_lab.weights.io import write_atomically

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/engine_levers")
    parser.add_argument("--eval-images", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    path = out / "levers.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    model_items, brushed_items = first_round()
    base = sam_lab.load_model("tiny")
    if "start" not in results:
        results["start"] = {**measure(base, args.eval_images), "seconds": 0.0,
                            "data": {"images": len(model_items), "masks": int(sum(len(i["masks"]) for i in model_items))}}
    caches = {"model": EmbeddingCache(), "brushed": EmbeddingCache()}
    for name, (masks, overrides) in LEVERS.items():
        if name in results:
            continue
        model = copy.deepcopy(base)
        started = time.time()
        retrain(model, model_items if masks == "model" else brushed_items, RetrainConfig(**overrides), key=(1, 1), seed=20_000,
                cache=caches[masks])
        results[name] = {**measure(model, args.eval_images), "seconds": round(time.time() - started, 1)}
        write_atomically(path, lambda temp: Path(temp).write_text(json.dumps(results, indent=1)))
        print(f"{name:48s} {results[name]}", flush=True)
    write_atomically(path, lambda temp: Path(temp).write_text(json.dumps(results, indent=1)))
    start = results["start"]
    print(f"{'start':48s} {start}")


if __name__ == "__main__":
    main()
