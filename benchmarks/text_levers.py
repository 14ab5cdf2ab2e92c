"""Levers for the text path (sam_lab.training.text), compared at an equal step budget on a fixed unseen seed.

    python benchmarks/text_levers.py --steps 800 --levers encoder decoder projection_only --out runs/text_levers

Every lever trains the shipped tiny model's text path from the same seed on the same synthetic
images (``--images`` of seed 0), for ``--steps`` steps, then is measured on ``--eval-images``
images of seed 10000 that no run saw: text-only mIoU on captions that name one mask (colour and
shape, and relational), one click alone (predicted-IoU pick and oracle) and caption + click;
with ``--probe``, the colour probe of each trained model. The shipped tiny model's own one-click
numbers on the same targets are the first row. Results are written to ``OUT/levers.json``
atomically after each lever; a finished lever is skipped on rerun. Runs use both cores: run
nothing else meanwhile.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

LEVERS = {  # each lever names every switch it sets, so a change of TextTrainConfig's defaults does not move it
    # the first recipe: encoder at lr/10 + decoder + projection, no skip, no grounding
    "encoder": {"train_encoder": True, "colour_skip": False, "grounding": False},
    "decoder": {"train_encoder": False, "colour_skip": False, "grounding": False},  # each image encoded once
    "projection_only": {"train_encoder": False, "train_decoder": False, "point_only": 0.0, "colour_skip": False,
                        "grounding": False},
    "encoder_full_lr": {"train_encoder": True, "encoder_lr_scale": 1.0, "colour_skip": False, "grounding": False},
    "colour_skip": {"train_encoder": False, "colour_skip": True, "grounding": False},  # a ColourSkip gives the embedding colour
    # a diagnosis, not a lever: every caption given as a perfect code (relation, colour, shape one-hot)
    "perfect_captions": {"train_encoder": False, "colour_skip": True, "grounding": False, "_perfect_captions": True},
    "grounding": {"train_encoder": False, "colour_skip": False, "grounding": True},  # a TextGrounding as the mask prompt
    "grounding_colour_skip": {"train_encoder": False, "colour_skip": True, "grounding": True},  # the shipped recipe's
    "decoder_no_clicks": {"point_only": 0.0, "text_and_point": 0.0},
    "one_token": {"num_tokens": 1},
    "four_tokens": {"num_tokens": 4},
}


def perfect_caption_code(text: str) -> torch.Tensor:
    """A caption as a perfect code (512 wide like the tower's vectors): one-hot relation, colour
    and shape. Training on it tells whether the tower is what limits the text path."""
    from sam_lab.training.data.synthetic import COLOURS, SHAPES

    relations = ["the part inside the", "the object around the", "the part around the"]
    code = torch.zeros(512)
    code[next((i + 1 for i, r in enumerate(relations) if text.startswith(r)), 0)] = 1
    colour, kind = text.split()[-2:]
    code[8 + list(COLOURS).index(colour)] = 1
    code[32 + list(SHAPES).index(kind)] = 1
    return code


@contextlib.contextmanager
def perfect_captions():
    """ClipTower.encode_text answers captions of SyntheticShapes with perfect_caption_code (the
    tower's own probe strings still go through the tower)."""
    from sam_lab.modeling.text_prompt import ClipTower
    from sam_lab.training.data.synthetic import SHAPES

    original = ClipTower.encode_text

    def encode_text(self, texts):
        if texts and all(t.split()[-1] in SHAPES for t in texts):
            return torch.stack([perfect_caption_code(t) for t in texts])
        return original(self, texts)

    ClipTower.encode_text = encode_text
    try:
        yield
    finally:
        ClipTower.encode_text = original


def base_row(eval_images: int) -> dict:
    """The shipped model's one-click numbers on the same captioned targets (its text rows are empty)."""
    from sam_lab.training.data.synthetic import SyntheticShapes
    from sam_lab.training.text import TextTrainConfig, build_text_model, evaluate_text

    model, _ = build_text_model(TextTrainConfig())
    summary = evaluate_text(model.eval(), SyntheticShapes(eval_images, seed=10000), progress=False)["summary"]
    return {"lever": "shipped tiny, no text path", "point_pick_miou": summary["point_pick_miou"],
            "point_oracle_miou": summary["point_oracle_miou"], "targets": summary["targets"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levers", nargs="+", default=["encoder", "decoder", "projection_only"], choices=sorted(LEVERS))
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--eval-images", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/text_levers")
    parser.add_argument("--probe", action="store_true", help="also run colour_probe on each trained model")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="text tower")
    from sam_lab.training.text import TextTrainConfig, colour_probe, train_text_path
    from sam_lab.weights.io import write_atomically

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "levers.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    save = lambda: write_atomically(results_path, lambda t: Path(t).write_text(json.dumps(results, indent=2)))
    if not any(r["lever"].startswith("shipped") for r in results):
        results.append(base_row(args.eval_images))
        save()
    for lever in args.levers:
        if any(r["lever"] == lever for r in results):
            continue
        changes = {k: v for k, v in LEVERS[lever].items() if not k.startswith("_")}
        cfg = replace(TextTrainConfig(out=str(out / lever), num_images=args.images, steps=args.steps,
                                      eval_images=args.eval_images, checkpoint_every=max(1, args.steps)), **changes)
        started = time.time()
        with perfect_captions() if LEVERS[lever].get("_perfect_captions") else contextlib.nullcontext():
            model = train_text_path(cfg, progress=False)
        metrics = json.loads((out / lever / "metrics.json").read_text())
        probe = colour_probe(model) if args.probe else {}
        results.append({"lever": lever, "changes": changes, "wall_s": round(time.time() - started, 1), **metrics,
                        **({"colour_probe": probe} if probe else {})})
        save()
    keys = ["text_miou", "text_miou_colour_shape", "text_miou_relational", "point_pick_miou", "point_oracle_miou",
            "text_point_miou", "s_per_step"]
    print("| lever | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for r in results:
        print(f"| {r['lever']} | " + " | ".join(str(r.get(k, "—")) for k in keys) + " |")


if __name__ == "__main__":
    main()
