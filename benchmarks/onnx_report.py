"""The ONNX export's report: latency on 2 cores, int8 size and accuracy, parity with torch.

    python benchmarks/onnx_report.py                  # the shipped tiny model
    python benchmarks/onnx_report.py --vit-b          # also a random-weight ViT-B (export ~2 min)

For each model it exports fp32 and int8 graphs into a temporary folder, then measures, in one
process with the runs interleaved (medians of --repeats):
    * one-point multimask decode: SamPredictor.predict (torch) vs OnnxPredictor fp32 / int8
      (the paper quotes ~50 ms in a browser for this step);
    * set_image (encoder): torch vs ONNX fp32 / int8;
    * file sizes of both graphs, fp32 and int8;
    * accuracy on the unseen synthetic seed (SyntheticShapes(--images, seed=10000)), tiny only:
      1-click mIoU (predicted pick and oracle) and tight-box mIoU for torch, fp32 and int8,
      and the mean IoU of int8 masks against fp32 masks;
    * parity: max |ONNX fp32 - torch| over the image embedding and the decoder's logits.
Writes benchmarks/results_onnx.json (atomically) and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sam_lab import OnnxPredictor, SamPredictor, load_model
from sam_lab.evaluation.interactive import farthest_from_boundary
from sam_lab.inference.masks import mask_box, mask_iou
from sam_lab.inference.onnx_export import export_onnx
from sam_lab.training.data import SyntheticShapes
from sam_lab.weights import write_atomically

HERE = Path(__file__).parent


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds of each function, runs interleaved so that load hits all of them alike."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name] += timed(fn, 1)
    return {name: statistics.median(t) for name, t in times.items()}


def accuracy(predictors: dict, images: int, image_size: int) -> dict:
    data = SyntheticShapes(images, seed=10_000, image_size=image_size)
    scores = {name: {"predicted": [], "oracle": [], "box": []} for name in predictors}
    agreement = []
    for index in range(len(data)):
        item = data[index]
        gts = item["masks"]
        clicks = np.array([[farthest_from_boundary(gt)] for gt in gts])
        boxes = np.array([mask_box(gt) for gt in gts], dtype=np.float64)
        masks_of = {}
        for name, predictor in predictors.items():
            predictor.set_image(item["image"])
            masks, iou, _ = predictor.predict_batch(point_coords=clicks, point_labels=np.ones(clicks.shape[:2]))
            true = mask_iou(masks, gts[:, None])  # (T, 3)
            scores[name]["predicted"] += true[np.arange(len(gts)), iou.argmax(1)].tolist()
            scores[name]["oracle"] += true.max(1).tolist()
            box_masks = predictor.predict_batch(boxes=boxes, multimask_output=False)[0][:, 0]
            scores[name]["box"] += [float(mask_iou(m, g)) for m, g in zip(box_masks, gts)]
            masks_of[name] = masks
        if "onnx int8" in masks_of:
            agreement += mask_iou(masks_of["onnx int8"], masks_of["onnx fp32"]).ravel().tolist()
    table = {name: {key: float(np.mean(v)) for key, v in s.items()} for name, s in scores.items()}
    return {"targets": len(scores["torch"]["oracle"]), "miou": table,
            "int8_vs_fp32_mask_iou": float(np.mean(agreement)) if agreement else None}


@torch.no_grad()
def report(name: str, model, folder: Path, repeats: int, images: int, threads: int) -> dict:
    export_started = time.time()
    export_onnx(model, folder, quantize="int8")
    export_seconds = time.time() - export_started
    files = json.loads((folder / "sam_onnx.json").read_text())["files"]
    sizes = {key: (folder / entry["file"]).stat().st_size / 1e6 for key, entry in files.items()}
    torch_predictor = SamPredictor(model)
    fp32 = OnnxPredictor(folder, threads=threads)
    int8 = OnnxPredictor(folder, int8=True, threads=threads)
    predictors = {"torch": torch_predictor, "onnx fp32": fp32, "onnx int8": int8}
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    point = dict(point_coords=np.array([[320, 240]]), point_labels=np.array([1]))
    encode = interleaved({key: (lambda p=p: p.set_image(image)) for key, p in predictors.items()}, max(3, repeats // 10))
    decode = interleaved({key: (lambda p=p: p.predict(**point)) for key, p in predictors.items()}, repeats)
    expected = torch_predictor.predict(**point, return_logits=True)
    got = fp32.predict(**point, return_logits=True)
    parity = {
        "embedding": float(np.abs(fp32.get_image_embedding() - torch_predictor.get_image_embedding().numpy()).max()),
        "masks_logits": float(np.abs(expected[0] - got[0]).max()),
        "low_res_logits": float(np.abs(expected[2] - got[2]).max()),
        "iou": float(np.abs(expected[1] - got[1]).max()),
    }
    result = {"model": name, "threads": threads, "export_seconds": export_seconds, "sizes_mb": sizes,
              "encode_ms": {k: 1e3 * v for k, v in encode.items()}, "decode_ms": {k: 1e3 * v for k, v in decode.items()},
              "parity_max_abs": parity}
    if images:
        result["accuracy"] = accuracy(predictors, images, model.image_encoder.img_size)
    return result


def table(results) -> str:
    lines = ["| model | runtime | encode ms | 1-point decode ms | size MB (enc + dec) | 1-click pred / oracle | box |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for runtime, suffix in (("torch", None), ("onnx fp32", ""), ("onnx int8", "_int8")):
            size = "" if suffix is None else f"{r['sizes_mb']['encoder' + suffix]:.1f} + {r['sizes_mb']['decoder' + suffix]:.1f}"
            acc = r.get("accuracy", {}).get("miou", {}).get(runtime)
            acc_text = f"{acc['predicted']:.3f} / {acc['oracle']:.3f} | {acc['box']:.3f}" if acc else "| "
            lines.append(f"| {r['model']} | {runtime} | {r['encode_ms'][runtime]:.1f} | {r['decode_ms'][runtime]:.1f} | {size} | {acc_text} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--vit-b", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results_onnx.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as temp:
        results.append(report("tiny", load_model("tiny"), Path(temp) / "tiny", args.repeats, args.images, args.threads))
        if args.vit_b:
            results.append(report("vit_b (random weights)", load_model("vit_b", pretrained=False), Path(temp) / "vit_b",
                                  max(5, args.repeats // 5), 0, args.threads))
    text = json.dumps(results, indent=1)
    write_atomically(Path(args.out), lambda t: Path(t).write_text(text))
    print(table(results))
    for r in results:
        print(r["model"], "parity (max |onnx - torch|):", r["parity_max_abs"], "int8 vs fp32 mask IoU:",
              r.get("accuracy", {}).get("int8_vs_fp32_mask_iou"))


if __name__ == "__main__":
    main()
