"""Seconds per training step of the shipped recipe's stages, with and without the ungraded tail.

    python benchmarks/step_time.py                  # 40 steps per stage and setting, 2 repeats
    python benchmarks/step_time.py --steps 25 --repeats 3 --out runs/step_time.json

With ``grad_rounds="first_random"`` (the recipe's ``coarse_finetune`` and ``fine`` stages) an
episode backpropagates round 1 and one later round drawn per step; the rounds after that one only
placed clicks that nothing learnt from. ``skip_ungraded_tail`` (TrainConfig, on by default) ends
the episode there: the same weights (tests/test_training_levers.py), fewer decoder calls. This
script trains each stage's TrainConfig from scratch for ``--steps`` steps both ways, interleaved
and repeated so that a busy machine slows both alike, and prints the median seconds per step and
the ratio. Runs on the stage's own thread count (2).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from sam_lab.training.recipe import STAGES
from sam_lab.training.train import train
from sam_lab.weights import write_atomically


def measure(stage_names, steps: int, repeats: int) -> dict:
    stages = {s["name"]: s["train"] for s in STAGES if "train" in s}
    seconds = {name: {False: [], True: []} for name in stage_names}
    with tempfile.TemporaryDirectory() as scratch:
        for rep in range(repeats):
            for name in stage_names:
                for skip in (False, True):
                    cfg = replace(stages[name], steps=steps, num_images=40, checkpoint_every=10**9, init=None,
                                  out=f"{scratch}/{name}_{skip}_{rep}", skip_ungraded_tail=skip)
                    seconds[name][skip].append(train(cfg, resume=False, progress=False)["seconds"] / steps)
    rows = {}
    for name in stage_names:
        full, short = float(np.median(seconds[name][False])), float(np.median(seconds[name][True]))
        rows[name] = {"s_per_step_every_round": full, "s_per_step_skipping_the_tail": short, "ratio": short / full,
                      "runs": {"every_round": seconds[name][False], "skipping_the_tail": seconds[name][True]}}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", default=["coarse_finetune", "fine"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the numbers here as JSON")
    args = parser.parse_args()
    known = [s["name"] for s in STAGES if "train" in s]
    unknown = [name for name in args.stages if name not in known]
    if unknown:
        raise SystemExit(f"stages: expected names from {known}, got {unknown}")
    if args.steps < 1 or args.repeats < 1:
        raise SystemExit(f"steps, repeats: expected positive counts, got {args.steps}, {args.repeats}")
    rows = measure(args.stages, args.steps, args.repeats)
    print("| stage | s/step, every round | s/step, tail skipped | ratio |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['s_per_step_every_round']:.3f} | {r['s_per_step_skipping_the_tail']:.3f} | {r['ratio']:.2f} |")
    if args.out:
        text = json.dumps(rows, indent=2)
        write_atomically(Path(args.out), lambda temp: Path(temp).write_text(text))


if __name__ == "__main__":
    main()
