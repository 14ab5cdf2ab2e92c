"""Could an IoU head that sees its own masks score them better? A post-hoc measurement.

    python benchmarks/iou_calibrator.py                       # the shipped tiny, 1,000 fitting images
    python benchmarks/iou_calibrator.py --out benchmarks/results_iou_calibrator.json   # writes the shipped numbers

SAM's IoU head reads one token of the decoder and nothing else. On the synthetic evaluation it
correlates 0.26 with the true IoU, while the best head the training's clicks allow would reach
0.47 on the same masks (``iou_calibration``'s head ceiling). This script asks whether what the
masks themselves show closes that gap, before anyone changes the architecture: it fits a small
regression from features of the three candidates of a click to each candidate's IoU, on images
of a seed of their own drawn the way training draws (a mask uniformly, a click uniformly inside
it), and scores it on the evaluation's clicks (seed 10000, the point farthest from each mask's
boundary), with the same Pearson and pick as ``tiny_targets.py``.

Features of a candidate, with those of its two siblings: the head's score, the mask's area
(log), its stability (IoU of the masks at logit -1 and +1), the mean logit inside it, which token
it is, and its IoUs with the two other candidates. Two fits: a ridge regression, and a one-hidden-
layer MLP (64 units, Adam, weight decay); both are scored, and the one better on a held-out fifth
of the fitting clicks (where the model's own head is scored too) is named ``chosen``. Runs on 2 threads unless ``--threads`` says otherwise; writes ``--out`` atomically.
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

EVAL_SEED, FIT_SEED = 10_000, 20_000


def candidate_features(logits: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(3, F) features of a click's three candidates from their logits (3, H, W) and scores (3,)."""
    masks = logits > 0
    area = masks.reshape(3, -1).sum(1).astype(np.float64)
    stable = np.array([mask_iou((l > 1)[None], (l > -1)[None])[0] if (l > -1).any() else 0.0 for l in logits])
    inside = np.array([l[m].mean() if m.any() else -10.0 for l, m in zip(logits, masks)])
    pair = np.array([[mask_iou(masks[i][None], masks[j][None])[0] if (masks[i].any() or masks[j].any()) else 0.0
                      for j in range(3)] for i in range(3)])
    own = np.stack([scores, np.log1p(area), stable, np.tanh(inside / 10.0)], 1)  # (3, 4)
    rows = []
    for k in range(3):
        others = [j for j in range(3) if j != k]
        rows.append(np.concatenate([own[k], own[others].ravel(), np.eye(3)[k], pair[k, others]]))
    return np.asarray(rows, dtype=np.float32)


@torch.no_grad()
def collect(predictor, dataset, clicks: str, rng=None):
    """Features (N, F), true IoU (N,), and click ids (N,) of every candidate. ``clicks`` is
    "training" (per mask of each image, a point drawn uniformly inside it) or "evaluation" (the
    point farthest from each mask's boundary)."""
    features, targets, ids = [], [], []
    for index in range(len(dataset)):
        item = dataset[index]
        predictor.set_image(item["image"])
        for mask in item["masks"]:
            if clicks == "training":
                ys, xs = np.nonzero(mask)
                k = rng.integers(len(xs))
                click = np.array([xs[k] + 0.5, ys[k] + 0.5])
            else:
                click = farthest_from_boundary(mask)
            logits, scores, _ = predictor.predict(point_coords=click[None], point_labels=np.array([1]),
                                                  multimask_output=True, return_logits=True)
            features.append(candidate_features(logits, scores))
            targets.append(mask_iou(logits > 0, mask[None]))
            ids.append(np.full(3, len(ids)))
    return np.concatenate(features), np.concatenate(targets).astype(np.float32), np.concatenate(ids)


def fit_ridge(x, y, alpha: float = 1e-2):
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = np.c_[(x - mean) / std, np.ones(len(x))]
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ y)
    return lambda q: np.c_[(q - mean) / std, np.ones(len(q))] @ w


def fit_mlp(x, y, steps: int = 3000, seed: int = 0):
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    xt, yt = torch.as_tensor((x - mean) / std), torch.as_tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(xt)[:, 0], yt)
        loss.backward()
        opt.step()
    return lambda q: net(torch.as_tensor((q - mean) / std, dtype=torch.float32))[:, 0].detach().numpy()


def scored(predicted, true, ids) -> dict:
    """Pearson of predicted and true IoU, and the mean true IoU of each click's top-scored candidate."""
    picks = [true[ids == i][np.argmax(predicted[ids == i])] for i in np.unique(ids)]
    return {"pearson": float(np.corrcoef(predicted, true)[0, 1]), "pick": float(np.mean(picks))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit-images", type=int, default=1000, help="images of seed 20000 to fit on")
    parser.add_argument("--images", type=int, default=40, help="evaluation images of seed 10000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.fit_images < 5 or args.images < 1:
        raise SystemExit(f"--fit-images: expected at least 5 and --images at least 1, got {args.fit_images} and {args.images}")
    torch.set_num_threads(args.threads)
    predictor = SamPredictor(load_model("tiny"))
    fit_x, fit_y, fit_ids = collect(predictor, SyntheticShapes(args.fit_images, seed=FIT_SEED), "training",
                                    np.random.default_rng(0))
    eval_x, eval_y, eval_ids = collect(predictor, SyntheticShapes(args.images, seed=EVAL_SEED), "evaluation")
    held = fit_ids % 5 == 0  # a fifth of the fitting clicks, whole clicks, to choose the fit
    results = {"head": scored(eval_x[:, 0], eval_y, eval_ids)}
    validation = {"head": scored(fit_x[held, 0], fit_y[held], fit_ids[held])}
    for name, fitter in [("ridge", fit_ridge), ("mlp", fit_mlp)]:
        validation[name] = scored(fitter(fit_x[~held], fit_y[~held])(fit_x[held]), fit_y[held], fit_ids[held])
        results[name] = scored(fitter(fit_x, fit_y)(eval_x), eval_y, eval_ids)
    best = max(("ridge", "mlp"), key=lambda n: validation[n]["pearson"])
    result = {"model": "tiny (shipped)", "fit_images": args.fit_images, "fit_seed": FIT_SEED, "images": args.images,
              "eval_seed": EVAL_SEED, "fit_clicks": int(len(np.unique(fit_ids))), "eval_clicks": int(len(np.unique(eval_ids))),
              "validation": validation, "chosen": best, "evaluation": results}
    print(json.dumps(result, indent=1))
    if args.out:
        text = json.dumps(result, indent=1) + "\n"
        write_atomically(Path(args.out), lambda temp: Path(temp).write_text(text))


if __name__ == "__main__":
    main()
