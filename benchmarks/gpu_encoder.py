"""Image-encoder throughput on a GPU: images/s, peak memory and the fraction of the bf16 roofline.

    python benchmarks/gpu_encoder.py                          # ViT-B/L/H, batch 1 and 8, bf16 + sdpa
    python benchmarks/gpu_encoder.py --variants vit_h --batches 8 --compile
    python benchmarks/gpu_encoder.py --smoke                  # CPU, tiny config, one batch (the test)

For each variant and batch size: random weights (throughput does not depend on their values),
built directly on the device; ``--dtype bf16`` (the default) runs under ``sam_lab.autocast``,
``--kernel sdpa`` picks PyTorch's fused attention (flash / memory-efficient where the shapes
allow); ``--compile`` wraps the encoder in ``torch.compile`` with static shapes. After
``--warmup`` passes, the median of ``--repeats`` timed passes (CUDA-synchronised) gives
images/s; ``torch.cuda.max_memory_allocated`` the peak. The work per image is counted with
``torch.utils.flop_counter`` (ViT-B about 0.97, ViT-L 2.99, ViT-H 5.96 TFLOP per 1024-px image), so
``roofline = achieved FLOP/s / --peak-tflops`` (default: the dense bf16 peak of the device's
name in PEAK_TFLOPS, else give it). Issue 12's targets at batch 8 on an H100/H200: ViT-H >= 80
images/s, ViT-B >= 400. Results are written atomically to ``--out`` as JSON and printed as a
markdown table for benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sam_lab  # noqa: E402
from sam_lab.weights import write_atomically  # noqa: E402

# dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
TARGETS = {("vit_h", 8): 80.0, ("vit_b", 8): 400.0}  # images/s on one H100/H200-class GPU


def peak_tflops(device: torch.device, given):
    if given is not None:
        return float(given)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_TFLOPS.items():  # the most specific names come first
        if key in name:
            return value
    return None


def flops_per_image(config) -> float:
    """Floating-point operations of one image-encoder pass, counted on the meta device."""
    with torch.device("meta"):
        encoder = sam_lab.build_sam(config).image_encoder
        size = encoder.img_size
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            encoder(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure(config, batch: int, device: torch.device, dtype: str, kernel: str, compile_: bool, warmup: int, repeats: int) -> dict:
    with torch.device(device):
        encoder = sam_lab.build_sam(config).image_encoder.eval()
    size = encoder.img_size
    run = torch.compile(encoder, dynamic=False) if compile_ else encoder
    images = torch.randn(batch, 3, size, size, device=device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    with sam_lab.attention_kernel(kernel), sam_lab.autocast(device, dtype):
        for index in range(warmup + repeats):
            start = time.perf_counter()
            out = run(images)
            synchronize(device)
            if index >= warmup:
                seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del encoder, run, images
    return {"batch": batch, "seconds_per_batch": median, "images_per_s": batch / median, "peak_gib": peak,
            "embedding_shape": list(out.shape)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["vit_b", "vit_l", "vit_h"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--kernel", choices=("math", "sdpa"), default="sdpa")
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder (static shapes)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak (default: by name)")
    parser.add_argument("--device", default=None, help="default: the best available (cuda, mps, cpu)")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny config, one batch of 1, fp32: checks the script runs")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_gpu_encoder.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.variants, args.batches, args.dtype, args.device = ["tiny"], [1], "fp32", "cpu"
        args.warmup, args.repeats = 1, 1
    device = torch.device(args.device) if args.device else sam_lab.pick_device()
    if args.dtype == "bf16" and device.type != "cuda":
        parser.error(f"--dtype bf16 needs a CUDA device, got {device}; use --dtype fp32 (or --smoke)")
    peak = peak_tflops(device, args.peak_tflops)
    rows = []
    for variant in args.variants:
        work = flops_per_image(variant)
        for batch in args.batches:
            row = {"variant": variant, "tflop_per_image": work / 1e12,
                   **measure(variant, batch, device, args.dtype, args.kernel, args.compile, args.warmup, args.repeats)}
            row["achieved_tflops"] = row["images_per_s"] * work / 1e12
            row["roofline"] = row["achieved_tflops"] / peak if peak else None
            row["target_images_per_s"] = TARGETS.get((variant, batch))
            rows.append(row)
            print(f"{variant} batch {batch}: {row['images_per_s']:.1f} images/s", flush=True)
    result = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device.type} ({platform.processor() or platform.machine()})",
        "torch": torch.__version__, "cuda": torch.version.cuda, "dtype": args.dtype, "kernel": args.kernel,
        "compile": args.compile, "peak_tflops": peak, "rows": rows,
    }
    if not args.smoke:
        text = json.dumps(result, indent=1)
        write_atomically(Path(args.out), lambda temp: Path(temp).write_text(text))
    print(f"\n{result['device']}, torch {result['torch']}, {args.dtype}, kernel {args.kernel}"
          f"{', torch.compile' if args.compile else ''}, {result['date']}\n")
    print("| variant | batch | images/s | target | peak GiB | TFLOP/image | roofline |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        target = f"≥ {row['target_images_per_s']:.0f}" if row["target_images_per_s"] else ""
        gib = f"{row['peak_gib']:.1f}" if row["peak_gib"] is not None else "n/a"
        roof = f"{100 * row['roofline']:.0f} %" if row["roofline"] else "n/a"
        print(f"| {row['variant']} | {row['batch']} | {row['images_per_s']:.1f} | {target} | {gib} | {row['tflop_per_image']:.2f} | {roof} |")
    return result


if __name__ == "__main__":
    main()
