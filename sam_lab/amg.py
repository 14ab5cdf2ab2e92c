"""``python -m sam_lab.amg``: segment everything in an image or a folder of images.

    python -m sam_lab.amg photo.jpg --model tiny --out masks/
    python -m sam_lab.amg photos/ --model vit_h --checkpoint sam_vit_h_4b8939.pth --out masks/ --png

For each image it writes ``OUT/<name>.json``, a COCO file (``images``, ``annotations``,
``categories``) whose annotations carry the generator's records: a compressed COCO RLE
``segmentation`` (pycocotools decodes it), ``area``, ``bbox`` (x, y, w, h), ``predicted_iou``,
``stability_score``, ``point_coords`` and ``crop_box``. ``--png`` also writes
``OUT/<name>.png``, the masks drawn over the image. Every file is written atomically, the PNG
before the JSON, so a rerun skips each image whose JSON exists: an interrupted folder run
resumes where it stopped. Files that cannot be read as images are skipped with a message
and counted at the end; the exit status is 1 if there were any, and 2 (with a one-line
message) for a missing input or checkpoint or a bad option.

The generator's options are flags of the same names (``--points-per-side 16``,
``--pred-iou-thresh 0.8``, ``--crop-n-layers 1``, ...). See
:class:`sam_lab.inference.amg.SamAutomaticMaskGenerator`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

MODELS = ("tiny", "vit_b", "vit_l", "vit_h")
OPTIONS = {  # flag -> (type, default), the generator's options
    "points_per_side": (int, 32),
    "points_per_batch": (int, 64),
    "pred_iou_thresh": (float, 0.88),
    "stability_score_thresh": (float, 0.95),
    "stability_score_offset": (float, 1.0),
    "box_nms_thresh": (float, 0.7),
    "crop_n_layers": (int, 0),
    "crop_nms_thresh": (float, 0.7),
    "crop_overlap_ratio": (float, 512 / 1500),
    "crop_n_points_downscale_factor": (int, 1),
    "min_mask_region_area": (int, 0),
}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sam_lab.amg", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="an image file or a folder of images")
    parser.add_argument("--model", choices=MODELS, default="tiny")
    parser.add_argument("--checkpoint", default=None, help="weights file (default: shipped tiny / Meta's file found on disk)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--png", action="store_true", help="also write the masks drawn over each image")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    for name, (kind, default) in OPTIONS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=default)
    parser.add_argument("--single-mask", action="store_true", help="one mask per point (multimask_output=False)")
    parser.add_argument("--m2m", action="store_true", help="SAM 2's mask-to-mask refinement (use_m2m)")
    return parser.parse_args(argv)


def list_inputs(path: Path) -> List[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    raise FileNotFoundError(f"input: expected an image file or a folder, got {str(path)!r} (does not exist)")


def output_names(paths: List[Path]) -> List[str]:
    """``<stem>``, or the full file name where two inputs share a stem (a.png and a.jpg)."""
    stems = [p.stem for p in paths]
    return [p.stem if stems.count(p.stem) == 1 else p.name for p in paths]


def read_image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def coco_document(file_name: str, image: np.ndarray, records: List[dict]) -> dict:
    height, width = image.shape[:2]
    annotations = []
    for index, record in enumerate(records, start=1):
        annotation = {"id": index, "image_id": 1, "category_id": 1, "iscrowd": 0}
        annotation.update(record)
        annotations.append(annotation)
    return {
        "images": [{"id": 1, "file_name": file_name, "height": int(height), "width": int(width)}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object"}],
    }


def overlay(image: np.ndarray, records: List[dict], alpha: float = 0.5, seed: int = 0) -> np.ndarray:
    """The masks in random colours over the image, largest first so small ones stay visible."""
    from .inference.rle import rle_to_mask

    out = image.astype(np.float32)
    colours = np.random.default_rng(seed).uniform(40, 255, size=(len(records), 3))
    for k, record in sorted(enumerate(records), key=lambda item: -item[1]["area"]):
        mask = record["segmentation"]
        mask = rle_to_mask(mask) if isinstance(mask, dict) else mask
        out[mask] = (1 - alpha) * out[mask] + alpha * colours[k]
    return out.round().astype(np.uint8)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import torch
    from tqdm.auto import tqdm

    from .inference.amg import SamAutomaticMaskGenerator
    from .weights import load_checkpoint
    from .weights.io import write_atomically
    from .weights.pretrained import load_model

    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:  # bad input, a missing checkpoint, a bad option: one line naming it, exit status 2
        paths = list_inputs(Path(args.input))
        if args.checkpoint is not None:
            model = load_model(args.model, pretrained=False)
            load_checkpoint(model, args.checkpoint)
            model = model.to(args.device).eval()
        else:
            model = load_model(args.model, device=args.device)
        options = {name: getattr(args, name) for name in OPTIONS}
        generator = SamAutomaticMaskGenerator(model, output_mode="coco_rle", multimask_output=not args.single_mask,
                                              use_m2m=args.m2m, **options)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done = skipped = 0
    unreadable = []
    for path, name in tqdm(list(zip(paths, output_names(paths))), desc="images", unit="image"):
        target = out / f"{name}.json"
        if target.exists():
            skipped += 1
            continue
        try:
            image = read_image(path)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            tqdm.write(f"skipping {path}: not a readable image ({type(error).__name__}: {error})")
            unreadable.append(path)
            continue
        records = generator.generate(image)
        if args.png:
            picture = Image.fromarray(overlay(image, records))
            write_atomically(out / f"{name}.png", lambda temp: picture.save(temp, format="PNG"))
        text = json.dumps(coco_document(path.name, image, records))
        write_atomically(target, lambda temp: Path(temp).write_text(text))
        done += 1
    print(f"{done} segmented, {skipped} already done (skipped), {len(unreadable)} unreadable -> {out}")
    for path in unreadable:
        print(f"  unreadable: {path}")
    return 1 if unreadable else 0


if __name__ == "__main__":
    sys.exit(main())
