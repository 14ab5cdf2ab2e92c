"""``python -m sam_lab.data_engine``: run (or resume) the simulated data engine.

    python -m sam_lab.data_engine --num-images 300 --out runs/engine
    python -m sam_lab.data_engine --num-images 40 --out runs/small --stages 1,3 --budget-minutes 5

Writes ``OUT/annotations.json`` (COCO, compressed RLE masks, each annotation with its ``stage``,
``source`` and the annotator's ``effort``), ``OUT/report.json`` (per step: images, masks, masks
per image, clicks and simulated seconds per mask, the model on unseen images), ``OUT/images/``
and ``OUT/engine_state.pt`` (what a rerun resumes from). Rerun the same command to resume.
Exit status 2 with a one-line message for a bad option or an output folder holding a run with
other settings.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import List, Optional

from .annotator import SimulatedAnnotator
from .engine import EngineConfig, run_engine
from .retrain import RetrainConfig


def _stages(text: str) -> tuple:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected stage numbers from 1, 2, 3 separated by commas, got {text!r}") from None
    return values


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(prog="python -m sam_lab.data_engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, required=True, help="images to label, over all stages")
    parser.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
    parser.add_argument("--stages", type=_stages, default=(1, 2, 3), help="which stages, e.g. 1,2,3 (default) or 1,3")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="stop cleanly after the step that passes this much wall time; rerun to go on")
    parser.add_argument("--data", default="synthetic", help="'synthetic' or coco:IMAGE_DIR:ANNOTATIONS.json")
    parser.add_argument("--skip-invalid", action="store_true", help="COCO input: skip and count bad entries")
    parser.add_argument("--model", default="tiny", help="the starting model: a shipped name or a checkpoint")
    parser.add_argument("--seed", type=int, default=20_000)
    parser.add_argument("--stage1-rounds", type=int, default=4)
    parser.add_argument("--stage2-rounds", type=int, default=2)
    parser.add_argument("--retrain-steps", type=int, default=RetrainConfig.steps)
    parser.add_argument("--train-encoder", action="store_true", help="retrain the image encoder too (slower)")
    parser.add_argument("--max-clicks", type=int, default=SimulatedAnnotator.max_clicks, help="annotator's clicks per object")
    parser.add_argument("--image-seconds", type=float, default=SimulatedAnnotator.image_seconds,
                        help="annotator's simulated seconds per image")
    parser.add_argument("--ablation-steps", type=int, default=EngineConfig.ablation_steps)
    parser.add_argument("--eval-images", type=int, default=EngineConfig.eval_images)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.budget_minutes is not None and not args.budget_minutes >= 0:
        parser.error(f"--budget-minutes: expected minutes >= 0, got {args.budget_minutes}")
    try:
        cfg = EngineConfig(
            num_images=args.num_images, stages=args.stages, data=args.data, skip_invalid=args.skip_invalid,
            model=args.model, seed=args.seed, stage1_rounds=args.stage1_rounds, stage2_rounds=args.stage2_rounds,
            annotator=SimulatedAnnotator(max_clicks=args.max_clicks, image_seconds=args.image_seconds),
            retrain=replace(RetrainConfig(), steps=args.retrain_steps, train_encoder=args.train_encoder),
            ablation_steps=args.ablation_steps, eval_images=args.eval_images,
        )
    except ValueError as error:
        name, _, rest = str(error).partition(":")
        parser.error(f"--{name.replace('_', '-')}:{rest}")
    return cfg, args


def table(report: dict) -> str:
    """The report as a plain-text table, one line per step."""
    lines = [f"{'step':34s} {'images':>6s} {'masks/img':>9s} {'clicks/mask':>11s} {'s/mask':>7s} {'NoC@90':>7s} {'mIoU@1 oracle':>13s}"]
    for row in report["steps"]:
        model = row.get("model", {})
        if row["stage"] == "ablation":
            for arm in ("automatic_only", "all_stages"):
                a = row["ablation"][arm]
                if "noc90" not in a:
                    lines.append(f"{'ablation: ' + arm:34s} {a['images']:6d}  ({a.get('note', '')})")
                    continue
                lines.append(f"{'ablation: ' + arm:34s} {a['images']:6d} {'':>9s} {'':>11s} {'':>7s} {a['noc90']:7.2f} {a['miou_1click_oracle']:13.3f}")
            continue
        def cell(value, width, digits):
            return f"{value:{width}.{digits}f}" if value is not None else " " * width

        lines.append(
            f"{row['name'][:34]:34s} {cell(row.get('images'), 6, 0)} {cell(row.get('masks_per_image'), 9, 2)} "
            f"{cell(row.get('clicks_per_mask'), 11, 2)} {cell(row.get('seconds_per_mask'), 7, 1)} "
            f"{cell(model.get('noc90'), 7, 2)} {cell(model.get('miou_1click_oracle'), 13, 3)}"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    import torch

    cfg, args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        report = run_engine(cfg, args.out, progress=not args.quiet, budget_minutes=args.budget_minutes)
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table(report))
    if not report["complete"]:
        print(f"stopped after {report['steps_done']} of {report['steps_planned']} steps; rerun the same command to go on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
