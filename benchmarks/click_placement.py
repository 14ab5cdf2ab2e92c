"""Does a model only work where the evaluation clicks? One-click scores at off-centre clicks.

    python benchmarks/click_placement.py                                   # the shipped tiny
    python benchmarks/click_placement.py --weights benchmarks/candidates/tiny_interior.safetensors runs/x/model.safetensors
    python benchmarks/click_placement.py --weights sam_lab/weights/tiny.safetensors benchmarks/candidates/tiny_interior.safetensors \\
        --out benchmarks/results_click_placement.json

The evaluation protocol (``tiny_targets.py``) clicks each mask once, at the point farthest from
its boundary. A user does not always: this scores the same models on ``--clicks`` points drawn
uniformly inside each mask (as training draws them; seed 0 for the draws) of ``--images`` unseen
images of seed 10000, and reports per model the one-click oracle (the best of the three
candidates) and the pick (the candidate with the highest predicted IoU), next to the same two at
the centre click. A training change that lifts the centre numbers and lowers these has learnt
where the evaluation clicks, not to segment. Any shipped-size model file (tiny, tiny16, tiny_conv); 2 threads unless
``--threads`` says otherwise; ``--out`` is written atomically.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sam_lab import SamPredictor, load_model
from sam_lab.evaluation import farthest_from_boundary
from sam_lab.inference.masks import mask_iou
from sam_lab.training.data import SyntheticShapes
from sam_lab.weights import write_atomically


@torch.no_grad()
def one_click_scores(predictor, dataset, clicks_per_mask: int, seed: int = 0) -> dict:
    """{"uniform": {"oracle", "pick", "clicks"}, "centre": {...}} over every mask of ``dataset``."""
    rng = np.random.default_rng(seed)
    scores = {"uniform": ([], []), "centre": ([], [])}
    for index in range(len(dataset)):
        item = dataset[index]
        predictor.set_image(item["image"])
        for mask in item["masks"]:
            ys, xs = np.nonzero(mask)
            drawn = [np.array([xs[k] + 0.5, ys[k] + 0.5]) for k in rng.integers(len(xs), size=clicks_per_mask)]
            for kind, points in [("uniform", drawn), ("centre", [farthest_from_boundary(mask)])]:
                for point in points:
                    masks, predicted, _ = predictor.predict(point_coords=point[None], point_labels=np.array([1]),
                                                            multimask_output=True)
                    iou = mask_iou(masks, mask[None])
                    scores[kind][0].append(float(iou.max()))
                    scores[kind][1].append(float(iou[int(np.argmax(predicted))]))
    return {kind: {"oracle": float(np.mean(o)), "pick": float(np.mean(p)), "clicks": len(o)}
            for kind, (o, p) in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", nargs="+", default=["sam_lab/weights/tiny.safetensors"], help="tiny checkpoints")
    parser.add_argument("--images", type=int, default=100, help="unseen images of seed 10000")
    parser.add_argument("--clicks", type=int, default=3, help="uniform clicks per mask")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.images < 1 or args.clicks < 1:
        raise SystemExit(f"--images and --clicks: expected at least 1, got {args.images} and {args.clicks}")
    torch.set_num_threads(args.threads)
    dataset = SyntheticShapes(args.images, seed=10_000)
    result = {"images": args.images, "clicks_per_mask": args.clicks, "models": {}}
    for path in args.weights:
        model = load_model(path)  # the file's stem and grid pick the config: tiny, tiny16 or tiny_conv
        result["models"][path] = one_click_scores(SamPredictor(model), dataset, args.clicks)
        r = result["models"][path]
        print(f"{path}: uniform clicks oracle {r['uniform']['oracle']:.3f} pick {r['uniform']['pick']:.3f} | "
              f"centre click oracle {r['centre']['oracle']:.3f} pick {r['centre']['pick']:.3f}")
    if args.out:
        text = json.dumps(result, indent=1) + "\n"
        write_atomically(Path(args.out), lambda temp: Path(temp).write_text(text))


if __name__ == "__main__":
    main()
