"""Training levers for the tiny SAM, compared at an equal wall-clock budget on a fixed unseen seed.

    python benchmarks/train_levers.py --minutes 6 --levers baseline last_round alpha_half first_last_alpha_half
    python benchmarks/train_levers.py --list
    python -m sam_lab.training.mae --steps 600 --out runs/mae && \
        python benchmarks/train_levers.py --levers mae_init --mae-encoder runs/mae/encoder.safetensors

Each lever is a set of TrainConfig changes on top of one base recipe, at the 16 x 16 token grid
(config tiny16, where training from scratch starts; a "patch 8" lever overrides it) (the shipped model's then:
2 images x 8 prompted masks per step, lr 4e-3, 50 warm-up steps, no decay inside the budget).
Every run trains from the same seed on the same synthetic images for ``--minutes`` of training
(data preparation excluded), then is evaluated on ``--eval-images`` images of seed 10000, which
no run trains on: 1-click mIoU (oracle and predicted-best), NoC@90 with a 20-click cap, the
Pearson correlation of predicted and true IoU over the 1-click candidates, and the step at which
the run left the "predict nothing" plateau (first step whose 25-step mean first-round IoU
exceeds 0.3). Results are appended to ``OUT/levers.json`` (written atomically) and printed as
a markdown table. Runs are resumable only as a whole: a finished lever is skipped on rerun.

Runs use both cores: run nothing else meanwhile.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sam_lab import SamPredictor
from sam_lab.evaluation import evaluate_interactive, iou_calibration
from sam_lab.training.data import SyntheticShapes
from sam_lab.training.train import TrainConfig, train
from sam_lab.weights import write_atomically

BASE = dict(config="tiny16", batch_size=2, masks_per_image=8, lr=4e-3, warmup=50, num_images=600,
            milestones=[10.0, 10.0], steps=100_000, checkpoint_every=100_000, attention="sdpa", threads=2)
R1_RECIPE = {"rounds": 1, "error_points": 0, "lr": 1e-3, "decoder_init": "tied_qk", "focal_alpha": 0.5, "augment": True}
LEVERS = {
    "baseline": {},  # the paper's description: every round backpropagated, focal alpha 0.25
    "last_round": {"grad_rounds": "last"},
    "first_last": {"grad_rounds": "first_last"},
    "alpha_half": {"focal_alpha": 0.5},
    "first_last_alpha_half": {"grad_rounds": "first_last", "focal_alpha": 0.5},
    "masks_4": {"masks_per_image": 4, "batch_size": 4},
    "rounds_1": {"rounds": 1, "error_points": 0},  # the first prompt only: ~6x the steps
    "rounds_1_batch_8": {"rounds": 1, "error_points": 0, "batch_size": 8},
    "rounds_3_first_last": {"rounds": 3, "error_points": 1, "grad_rounds": "first_last"},
    # the first prompt only (cheap, ~0.15 s/step), to find the learning rate and the init quickly;
    # measured with --minutes 3.5 --eval-images 20 --max-clicks 1
    "r1_tied_qk": {"rounds": 1, "error_points": 0, "decoder_init": "tied_qk"},
    "r1_lr1e-3": {"rounds": 1, "error_points": 0, "lr": 1e-3},
    "r1_lr3e-4": {"rounds": 1, "error_points": 0, "lr": 3e-4},
    "r1_lr2e-3": {"rounds": 1, "error_points": 0, "lr": 2e-3},
    "r1_lr1e-3_tied_qk": {"rounds": 1, "error_points": 0, "lr": 1e-3, "decoder_init": "tied_qk"},
    "r1_lr1e-3_alpha_half": {"rounds": 1, "error_points": 0, "lr": 1e-3, "focal_alpha": 0.5},
    "mae_init": {"init_encoder": None},  # the encoder from sam_lab.training.mae (--mae-encoder PATH)
    # model sizes and supervision per step, on the shipped recipe's first stage (lr 1e-3, tied_qk,
    # focal alpha 0.5, --augment); measured with --minutes 8 --eval-images 40 --max-clicks 1
    "r1_recipe": R1_RECIPE,
    "r1_patch8": {**R1_RECIPE, "config_overrides": "image_encoder.patch_size=8"},  # 32x32 tokens
    "r1_width192": {**R1_RECIPE, "config_overrides": "image_encoder.embed_dim=192, image_encoder.num_heads=8"},
    "r1_depth8": {**R1_RECIPE, "config_overrides": "image_encoder.depth=8, image_encoder.global_attn_indexes=(1, 3, 5, 7)"},
    "r1_decoder128": {**R1_RECIPE, "config_overrides": "image_encoder.out_chans=128, prompt_encoder.embed_dim=128, "
                      "mask_decoder.transformer_dim=128, mask_decoder.transformer_mlp_dim=512, mask_decoder.iou_head_hidden_dim=128"},
    "r1_masks16": {**R1_RECIPE, "masks_per_image": 16},
    "r1_iou_weight4": {**R1_RECIPE, "iou_weight": 4.0},
    # the two model levers that left the plateau soonest at 8 minutes, each with 16 masks per image;
    # measured with --minutes 12 (with r1_masks16 and r1_recipe at 12 minutes to compare)
    "r1_patch8_masks16": {**R1_RECIPE, "masks_per_image": 16, "config_overrides": "image_encoder.patch_size=8"},
    "r1_depth8_masks16": {**R1_RECIPE, "masks_per_image": 16,
                          "config_overrides": "image_encoder.depth=8, image_encoder.global_attn_indexes=(1, 3, 5, 7)"},
    # the issue's levers not measured before 2026-12-06, on the same first stage, 8 minutes
    "r1_fresh_data": {**R1_RECIPE, "fresh_data": True},  # new images every step, no fixed 600-image set
    "r1_mask_prior": {**R1_RECIPE, "mask_prior": 0.05},  # output-bias init: logits start at log(0.05 / 0.95)
    "r1_conv_stem": {**R1_RECIPE, "stem": "conv"},  # 3x3 stride-2 convolutions instead of the patch projection
    "r1_conv_stem_fresh_data": {**R1_RECIPE, "stem": "conv", "fresh_data": True},  # the two that helped, combined
    "r1_recipe_seed1": {**R1_RECIPE, "seed": 1},  # the control from another seed (init and images): run-to-run noise
    "r1_conv_stem_seed1": {**R1_RECIPE, "stem": "conv", "seed": 1},  # the conv stem from that seed (2026-12-07)
}


def plateau_exit(history, window: int = 25, level: float = 0.3):
    first = np.array([r["miou_first"] for r in history])
    if len(first) < window:
        return None
    means = np.convolve(first, np.ones(window) / window, mode="valid")
    above = np.flatnonzero(means > level)
    return int(above[0] + window) if len(above) else None


def run(name: str, minutes: float, out: Path, eval_images: int, mae_encoder=None, max_clicks: int = 20) -> dict:
    changes = dict(LEVERS[name])
    if "init_encoder" in changes:
        if mae_encoder is None:
            raise SystemExit("mae_init: pass --mae-encoder PATH (OUT/encoder.safetensors of sam_lab.training.mae)")
        changes["init_encoder"] = str(mae_encoder)
    cfg = replace(TrainConfig(**BASE), out=str(out / name), **changes)
    result = train(cfg, resume=False, progress=False, time_limit=minutes * 60)
    model = result["model"].eval()
    torch.set_num_threads(2)
    test = SyntheticShapes(eval_images, seed=10_000, image_size=256)
    metrics = evaluate_interactive(SamPredictor(model), test, max_clicks=max_clicks)
    first = np.array([r["miou_first"] for r in result["history"]])
    return {
        "lever": name,
        "changes": changes,
        "minutes": minutes,
        "steps": result["step"],
        "s_per_step": result["seconds"] / max(result["step"], 1),
        "plateau_exit_step": plateau_exit(result["history"]),
        "miou1_oracle": metrics.miou_1click_oracle,
        "miou1_predicted": metrics.miou_1click_predicted,
        "noc90": metrics.noc90 if max_clicks > 1 else None,
        "iou_pearson": iou_calibration(SamPredictor(model), test)["pearson"],
        "targets": metrics.num_targets,
        "eval_images": eval_images,
        "max_clicks": max_clicks,
        # the training curve: mean first-round IoU of every 100 steps
        "curve": [round(float(first[i : i + 100].mean()), 3) for i in range(0, len(first), 100)],
    }


def table(rows) -> str:
    lines = ["| lever | steps in budget | s/step | plateau left at step | mIoU@1 oracle | mIoU@1 predicted | NoC@90 | IoU Pearson |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        noc = "—" if r.get("noc90") is None else f"{r['noc90']:.2f}"
        pearson = "—" if r.get("iou_pearson") is None else f"{r['iou_pearson']:.2f}"
        lines.append(f"| {r['lever']} ({r['minutes']:g} min) | {r['steps']} | {r['s_per_step']:.2f} | {r['plateau_exit_step']} | "
                     f"{r['miou1_oracle']:.3f} | {r['miou1_predicted']:.3f} | {noc} | {pearson} |")
    return "\n".join(lines)


def chosen_levers(args, levers: dict) -> bool:
    """``--list`` prints the levers (False: nothing to run); unknown ``--levers`` names end the
    script with an error naming them; else True."""
    if args.list:
        for name, changes in levers.items():
            print(f"{name:24} {changes}")
        return False
    unknown = [name for name in args.levers if name not in levers]
    if unknown:
        raise SystemExit(f"levers: expected names from {sorted(levers)}, got {unknown}")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levers", nargs="+", default=["baseline", "last_round", "first_last", "alpha_half"])
    parser.add_argument("--minutes", type=float, default=6.0, help="training wall time per lever")
    parser.add_argument("--eval-images", type=int, default=40)
    parser.add_argument("--max-clicks", type=int, default=20, help="1 = the 1-click mIoUs only (quick)")
    parser.add_argument("--out", default="runs/levers")
    parser.add_argument("--mae-encoder", default=None, help="encoder.safetensors for the mae_init lever")
    parser.add_argument("--list", action="store_true", help="print the levers and exit")
    args = parser.parse_args()
    if not chosen_levers(args, LEVERS):
        return
    out = Path(args.out)
    results_path = out / "levers.json"
    rows = json.loads(results_path.read_text()) if results_path.exists() else []
    for name in args.levers:
        if any(r["lever"] == name and r["minutes"] == args.minutes for r in rows):
            print(f"{name}: already measured, skipped")
            continue
        started = time.time()
        rows.append(run(name, args.minutes, out, args.eval_images, args.mae_encoder, args.max_clicks))
        text = json.dumps(rows, indent=2)
        write_atomically(results_path, lambda temp: Path(temp).write_text(text))
        print(f"{name}: done in {time.time() - started:.0f} s", flush=True)
        print(table(rows), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
