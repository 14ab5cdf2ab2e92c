"""Levers that need a trained model, compared at an equal wall-clock budget: each fine-tunes the
patch-16 model (tiny16: the shipped recipe's first two stages, the shipped tiny before it moved to
patch 8) the same way, changing one thing, then is measured by tiny_targets.py.

    python benchmarks/finetune_levers.py --minutes 10 --levers binary soft full
    python benchmarks/finetune_levers.py --list

Every run starts from sam_lab/weights/tiny16.safetensors and trains the 11-round simulation with
``--grad-rounds first_random`` (round 1 and one later round backpropagated per step), lr 3e-4
without drops, 20 warm-up steps, 2 images x 8 prompted masks, 1,000 augmented synthetic images
of seed 0, focal alpha 0.5, for ``--minutes`` of training (data preparation excluded). Then
:func:`tiny_targets.measure` on ``--images`` unseen images (seed 10000) and the photos. The
lever "binary" changes nothing: it is the control, the fine-tune itself.

Results are written to ``OUT`` (JSON, atomically) after every lever; a finished lever is skipped
on rerun. Runs use both cores: run nothing else meanwhile.

The lever "patch8" moves those weights to a finer token grid first (:func:`regrid_init`:
32x32 tokens and 128x128 low-res masks at 256 px, starting out equal to the patch-16 model on the
image upsampled 2x) and fine-tunes that the same way; each of its steps costs more. It won, and
is now the shipped recipe's last stage (sam_lab.training.recipe).

A wider decoder cannot start from the patch-16 decoder. ``--trunk-init OUT [--config-overrides S]``
writes a starting point for that comparison instead: the patch-16 encoder's trunk (patch embedding,
positions, blocks), with the neck, prompt encoder and mask decoder freshly initialised (seed 0,
``tied_qk``) at the given config. The README's decoder-width table trains one such file per
width with the same ``python -m sam_lab.training ... --init OUT`` command.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_targets import measure  # noqa: E402
from train_levers import chosen_levers  # noqa: E402

from sam_lab.training.train import TrainConfig, train  # noqa: E402
from sam_lab.weights import save_checkpoint, write_atomically  # noqa: E402

BASE = dict(config="tiny16", init="sam_lab/weights/tiny16.safetensors", steps=100_000, batch_size=2, masks_per_image=8,
            lr=3e-4, warmup=20, seed=1, num_images=1000, augment=True, grad_rounds="first_random", focal_alpha=0.5,
            threads=2, attention="sdpa", checkpoint_every=100_000, milestones=[10.0, 10.0])
LEVERS = {
    # what the mask loss compares the 64x64 logits with (TrainConfig.mask_target)
    "binary": {"mask_target": "binary"},  # the control: the area-downsampled target thresholded at 0.5
    "soft": {"mask_target": "soft"},  # the area coverage as a soft target
    "full": {"mask_target": "full"},  # the logits upsampled to 256 px against the full-size target
    # the evaluation clicks up to 20 times; the paper's simulation trains up to 9 points (11 rounds)
    "rounds_21": {"rounds": 21, "error_points": 18},  # 18 error-region points, 2 mask-only rounds
    "frozen_encoder": {"freeze_encoder": True},  # more decoder steps a minute: no encoder backward
    # a finer token grid for the small and nested masks: the patch-16 weights moved to patch 8
    # (32x32 tokens, 128x128 low-res masks) by regrid_init, then fine-tuned like the others
    "patch8": {"regrid": 8},
}
COLUMNS = ("synthetic_oracle", "synthetic_predicted", "synthetic_noc90", "synthetic_iou_pearson", "photos_oracle", "photos_box")


def trunk_init(out: str, overrides: str = "") -> dict:
    """Write (atomically, :func:`save_checkpoint`) a model at ``tiny16`` + ``overrides`` whose image-encoder
    trunk is the patch-16 model's and whose neck, prompt encoder and mask decoder are new; returns counts."""
    from sam_lab import build_sam, load_model
    from sam_lab.config import override_config
    from sam_lab.training.train import tie_query_key

    torch.manual_seed(0)
    model = build_sam(override_config("tiny16", overrides))
    tie_query_key(model)
    shipped = load_model("tiny16").state_dict()
    state = model.state_dict()
    trunk = [k for k in state if k.startswith("image_encoder.") and not k.startswith("image_encoder.neck.")]
    mismatched = [k for k in trunk if shipped[k].shape != state[k].shape]
    if mismatched:
        raise ValueError(f"overrides: the encoder trunk must keep the shipped shapes to be copied, but {mismatched[:3]} differ")
    state.update({k: shipped[k].clone() for k in trunk})
    model.load_state_dict(state, strict=True)
    save_checkpoint(model, out)
    return {"copied": len(trunk), "tensors": len(state), "parameters": sum(p.numel() for p in model.parameters())}


def regrid_init(out: str, patch_size: int = 8) -> dict:
    """Write (atomically, :func:`save_checkpoint`) the patch-16 weights (tiny16, the recipe's first
    two stages) moved to a finer token grid by :func:`sam_lab.training.regrid.regrid`, ready to
    fine-tune: ``patch_size`` 8 at 256 px gives 32x32 tokens and 128x128 low-res masks, the
    starting point of the shipped recipe's last stage. Returns the new config's overrides of
    ``tiny16`` and counts."""
    from sam_lab import load_model
    from sam_lab.training.regrid import regrid

    model, config = regrid(load_model("tiny16"), "tiny16", patch_size)
    save_checkpoint(model, out)
    enc = config.image_encoder
    overrides = f"image_encoder.patch_size={enc.patch_size}, image_encoder.window_size={enc.window_size}"
    return {"overrides": overrides, "tensors": len(model.state_dict()), "parameters": sum(p.numel() for p in model.parameters())}


def train_config(name: str, work: Path) -> TrainConfig:
    """The fine-tune of lever ``name``, training into ``work / name``. A "regrid" lever first
    writes its starting point there (:func:`regrid_init`) and starts from it at the new grid."""
    changes = dict(LEVERS[name])
    if "regrid" in changes:
        start = work / name / "regrid_init.safetensors"
        made = regrid_init(str(start), changes.pop("regrid"))
        changes.update(init=str(start), config_overrides=made["overrides"])
    return TrainConfig(**{**BASE, **changes, "out": str(work / name)})


def run(name: str, minutes: float, images: int, work: Path) -> dict:
    cfg = train_config(name, work)
    result = train(cfg, resume=False, progress=False, time_limit=minutes * 60)
    metrics = measure(result["model"].eval(), images, readout=False)
    return {"lever": name, "changes": LEVERS[name], "steps": result["step"], "train_seconds": result["seconds"],
            "s_per_step": result["seconds"] / max(result["step"], 1), **metrics}


def table(rows) -> str:
    head = "| lever | steps | s/step | " + " | ".join(COLUMNS) + " | IoU after 5 / 10 / 20 clicks |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 4)]
    for r in rows:
        after = " / ".join(f"{v:.3f}" for v in r["synthetic_iou_after_5_10_20"])
        lines.append(f"| {r['lever']} | {r['steps']} | {r['s_per_step']:.2f} | " + " | ".join(f"{r[c]:.3f}" for c in COLUMNS) + f" | {after} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levers", nargs="+", default=list(LEVERS))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--images", type=int, default=40, help="unseen synthetic images (seed 10000)")
    parser.add_argument("--work", default="runs/finetune_levers", help="training folders")
    parser.add_argument("--out", default="runs/finetune_levers/levers.json")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--trunk-init", default=None, metavar="OUT", help="write a trunk-only starting point and exit")
    parser.add_argument("--config-overrides", default="", help="with --trunk-init: the model's config changes")
    parser.add_argument("--regrid-init", default=None, metavar="OUT",
                        help="write the patch-16 weights (tiny16) moved to --patch-size (regrid_init) and exit; prints the overrides of tiny16 to train it with")
    parser.add_argument("--patch-size", type=int, default=8, help="with --regrid-init")
    args = parser.parse_args()
    if args.trunk_init:
        print(trunk_init(args.trunk_init, args.config_overrides))
        return
    if args.regrid_init:
        print(regrid_init(args.regrid_init, args.patch_size))
        return
    if not chosen_levers(args, LEVERS):
        return
    torch.set_num_threads(BASE["threads"])
    out = Path(args.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    for name in args.levers:
        if any(r["lever"] == name for r in rows):
            continue
        rows.append(run(name, args.minutes, args.images, Path(args.work)))
        text = json.dumps(rows, indent=1, default=float)
        write_atomically(out, lambda temp: Path(temp).write_text(text))
        print(table(rows), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
