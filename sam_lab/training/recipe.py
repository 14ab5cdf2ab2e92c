"""The shipped tiny model's recipe, start to finish, in one command.

    python -m sam_lab.training.recipe --out runs/tiny          # about 137 min on 2 quiet CPU cores
    python -m sam_lab.training.recipe --out runs/tiny --dry-run   # print the stages, train nothing

Four stages, each a :class:`~sam_lab.training.train.TrainConfig` (or the grid move) that starts
from the one before:

1. ``coarse``: 20,000 steps at 16 x 16 tokens (config ``tiny16``), where a step is cheap. The first
   8,000 give each mask its first prompt only; the rest run the paper's 11-round simulation.
2. ``coarse_finetune``: 600 steps that backpropagate a random later round as well as the first.
   Its weights ship as ``tiny16`` (lesson 08's grid comparison, the lever benchmarks).
3. ``regrid``: the weights moved to 32 x 32 tokens (:func:`sam_lab.training.regrid.regrid`).
4. ``fine``: 4,000 steps at 32 x 32 tokens (config ``tiny``), where small and nested masks can
   finally be drawn. Its weights ship as ``tiny``.

Each stage trains into ``OUT/<stage>`` and is skipped once its ``model.safetensors`` exists, and
each training stage resumes exactly from its ``last.pt`` (sam_lab.training.train), so the same
command continues a killed run where it stopped. At the end ``OUT/model.safetensors`` is the
final model and ``OUT/history.json`` the curve of all training stages, steps numbered on from
stage to stage (shipped as ``sam_lab/weights/tiny_history.json``; lesson 08 draws it).

Lesson 08's ablation pair has its own two recipes, the same shape at a seventh of the steps
(``coarse`` 3,000 steps at ``tiny16`` from scratch, ``regrid``, ``fine`` 600 steps at ``tiny``), one
with SAM's three outputs and min-over-masks and one with a single output token::

    python -m sam_lab.training.recipe --recipe ablation_multimask --out runs/abl_p8_multimask
    python -m sam_lab.training.recipe --recipe ablation_single_output --out runs/abl_p8_single_output

``--threads``, ``--device`` and ``--attention`` change only the speed. ``--steps-scale`` shrinks
every stage's step counts (schedules included) for a quick check of the whole pipeline; the
shipped weights used 1.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List, Optional, Union

from ..build import build_sam
from ..config import override_config
from ..weights.io import load_checkpoint, save_checkpoint, write_atomically
from .regrid import regrid
from .train import TrainConfig, train

#: what the coarse stages share (the shipped runs' settings; sam_lab/weights/tiny_recipe.json
#: records them as read back from the runs' checkpoints)
_COMMON = dict(batch_size=2, masks_per_image=8, weight_decay=0.1, grad_clip=1.0, seed=0, focal_alpha=0.5,
               augment=True, threads=2, attention="sdpa", rounds=11, error_points=8)

STAGES: List[Dict] = [
    {"name": "coarse", "train": TrainConfig(
        config="tiny16", steps=20_000, first_prompt_steps=8_000, grad_rounds="first_last", decoder_init="tied_qk",
        lr=1e-3, warmup=50, num_images=6_000, checkpoint_every=250, **_COMMON)},
    {"name": "coarse_finetune", "train": TrainConfig(
        config="tiny16", steps=600, grad_rounds="first_random", lr=1e-4, warmup=20, num_images=2_000,
        checkpoint_every=100, **_COMMON)},
    {"name": "regrid", "patch_size": 8},
    {"name": "fine", "train": TrainConfig(
        config="tiny", steps=4_000, grad_rounds="first_random", lr=3e-4, warmup=20, num_images=2_000,
        checkpoint_every=100, **_COMMON)},
]
STAGE_NAMES = tuple(stage["name"] for stage in STAGES)


def ablation_stages(single_output: bool) -> List[Dict]:
    """Lesson 08's ablation recipe: the shipped recipe's shape at a seventh of its steps, without
    the coarse fine-tune (its rounds are trained by ``first_random`` from the start); the two
    models of the pair differ in ``single_output`` only."""
    common = dict(_COMMON, single_output=single_output, grad_rounds="first_random", num_images=2_000)
    return [
        {"name": "coarse", "train": TrainConfig(
            config="tiny16", steps=3_000, first_prompt_steps=1_200, decoder_init="tied_qk", lr=1e-3, warmup=50,
            checkpoint_every=250, **common)},
        {"name": "regrid", "patch_size": 8},
        {"name": "fine", "train": TrainConfig(
            config="tiny", steps=600, lr=3e-4, warmup=20, checkpoint_every=100, **common)},
    ]


#: the extra named model ``tiny_conv``: tiny16's 16 x 16 grid reached through a convolutional stem
#: (modeling.patching.ConvStem, not SAM's patch projection), in one stage. The first 18,000 steps
#: give each mask its first prompt only at a constant learning rate, the last 15,000 run the
#: 11-round simulation (``first_random``) with drops at 85 % and 98 % of the run: the shape that
#: beat the patch projection at 16 + 10 minutes (benchmarks/conv_stem_corrections.py), lengthened.
TINY_CONV_STAGES: List[Dict] = [
    {"name": "train", "train": TrainConfig(
        config="tiny16", stem="conv", steps=33_000, first_prompt_steps=18_000, grad_rounds="first_random",
        decoder_init="tied_qk", lr=1e-3, warmup=50, milestones=[0.85, 0.98], num_images=3_000,
        checkpoint_every=250, **_COMMON)},
]


#: every recipe by name: the shipped tiny's, tiny_conv's, and lesson 08's ablation pair
RECIPES: Dict[str, List[Dict]] = {
    "tiny": STAGES,
    "tiny_conv": TINY_CONV_STAGES,
    "ablation_multimask": ablation_stages(single_output=False),
    "ablation_single_output": ablation_stages(single_output=True),
}


def _stages_of(recipe: str) -> List[Dict]:
    if recipe not in RECIPES:
        raise ValueError(f"recipe: expected one of {sorted(RECIPES)}, got {recipe!r}")
    return RECIPES[recipe]


def _scaled(cfg: TrainConfig, scale: float) -> TrainConfig:
    """``cfg`` with every step count (and the image set) shrunk by ``scale``, none below 1."""
    shrink = lambda n: max(1, round(n * scale)) if n else 0  # noqa: E731
    return replace(cfg, steps=shrink(cfg.steps), first_prompt_steps=shrink(cfg.first_prompt_steps), warmup=shrink(cfg.warmup),
                   checkpoint_every=shrink(cfg.checkpoint_every), num_images=max(4, round(cfg.num_images * scale)))


def stage_configs(out: Union[str, Path], steps_scale: float = 1.0, recipe: str = "tiny", **speed) -> List[Dict]:
    """The stages of ``recipe`` (a name in RECIPES) with their folders under ``out`` and each
    one's ``init`` the stage before's model; ``speed`` (threads, device, attention) replaces
    those fields only."""
    if not 0 < steps_scale <= 1:
        raise ValueError(f"steps_scale: expected a number in (0, 1], got {steps_scale!r}")
    unknown = set(speed) - {"threads", "device", "attention"}
    if unknown:
        raise ValueError(f"speed: only threads, device and attention may change, got {sorted(unknown)}")
    chosen = _stages_of(recipe)
    out = Path(out)
    stages, previous = [], None
    for stage in chosen:
        folder = out / stage["name"]
        model = folder / "model.safetensors"
        entry = {**stage, "out": folder, "model": model, "init": previous}
        if "train" in stage:
            cfg = stage["train"]
            if steps_scale != 1:
                cfg = _scaled(cfg, steps_scale)
            entry["train"] = replace(cfg, out=str(folder), init=str(previous) if previous else None, **speed)
        stages.append(entry)
        previous = model
    return stages


def run_recipe(out: Union[str, Path], steps_scale: float = 1.0, progress: bool = True,
               stop_after_stage: Optional[str] = None, recipe: str = "tiny", **speed) -> Dict:
    """Run (or continue) ``recipe`` into ``out``; returns {"model": path, "stages": [...], "seconds": ...}.
    ``stop_after_stage`` ends after that stage (tests; a run in several sittings)."""
    names = tuple(stage["name"] for stage in _stages_of(recipe))
    if stop_after_stage is not None and stop_after_stage not in names:
        raise ValueError(f"stop_after_stage: expected one of {names}, got {stop_after_stage!r}")
    out = Path(out)
    stages = stage_configs(out, steps_scale, recipe, **speed)
    summary = {"stages": [], "model": None}
    started = time.time()
    for stage in stages:
        done = stage["model"].is_file()
        tic = time.time()
        if not done and "train" in stage:
            result = train(stage["train"], resume=True, progress=progress)
            if result["step"] != stage["train"].steps:
                raise RuntimeError(f"stage {stage['name']}: stopped at step {result['step']} of {stage['train'].steps}")
        elif not done:  # the grid move: the stage before's config and weights -> the finer grid
            before = stages[names.index(stage["name"]) - 1]["train"]
            config = override_config(before.config, before.config_overrides)
            coarse = load_checkpoint(build_sam(config), stage["init"])
            fine, _ = regrid(coarse, config, stage["patch_size"])
            save_checkpoint(fine, stage["model"])
        summary["stages"].append({"name": stage["name"], "skipped": done, "seconds": round(time.time() - tic, 1)})
        if stage["name"] == stop_after_stage:
            summary["seconds"] = time.time() - started
            return summary
    final = out / "model.safetensors"
    write_atomically(final, lambda temp: shutil.copyfile(stages[-1]["model"], temp))
    history, offset = [], 0
    for stage in stages:
        if "train" in stage:
            records = json.loads((stage["out"] / "history.json").read_text())
            history += [{**r, "step": r["step"] + offset} for r in records]
            offset += stage["train"].steps
    text = json.dumps(history)
    write_atomically(out / "history.json", lambda temp: Path(temp).write_text(text))
    summary.update(model=final, seconds=time.time() - started)
    return summary


def stage_boundaries(stages: Optional[List[Dict]] = None) -> Dict[str, int]:
    """Training stage name -> the step (numbered on, as in history.json) where it ends."""
    bounds, total = {}, 0
    for stage in stages or STAGES:
        if "train" in stage:
            total += stage["train"].steps
            bounds[stage["name"]] = total
    return bounds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="tiny", choices=sorted(RECIPES),
                        help="the shipped tiny's (default) or one of lesson 08's ablation pair")
    parser.add_argument("--out", default="runs/tiny", help="the run's folder (one sub-folder per stage)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--attention", default="sdpa")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="shrink every stage's steps (a quick check)")
    parser.add_argument("--stop-after-stage", default=None, help="a stage name: end after it")
    parser.add_argument("--dry-run", action="store_true", help="print each stage's settings and exit")
    args = parser.parse_args(argv)
    speed = dict(threads=args.threads, device=args.device, attention=args.attention)
    if args.dry_run:
        for stage in stage_configs(args.out, args.steps_scale, args.recipe, **speed):
            settings = asdict(stage["train"]) if "train" in stage else {"patch_size": stage["patch_size"], "init": str(stage["init"])}
            print(stage["name"], json.dumps(settings))
        return
    summary = run_recipe(args.out, args.steps_scale, stop_after_stage=args.stop_after_stage, recipe=args.recipe, **speed)
    print(json.dumps({**summary, "model": str(summary["model"])}, indent=1))


if __name__ == "__main__":
    main()
