"""Peak resident memory (RSS) of one image through SAM on the CPU: ours against Meta's reference.

Each side runs in its own fresh process (peak RSS only grows, so two models in one process would
hide each other): build the model with random weights, ``set_image`` on a 768x1024 photo-sized
image, then one multimask ``predict``. The child reports its peak RSS after building and at the
end. Issue 12 asks that ViT-H's peak on CPU be no higher than the reference's.

    python benchmarks/peak_memory.py                  # ViT-H, 2 threads
    python benchmarks/peak_memory.py --variant tiny   # seconds; what the test runs

Our side runs with the default attention kernel (``sdpa``), and once more with ``math`` (which
materialises every attention matrix) when ``--math`` is given.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(variant: str, side: str, kernel: str, threads: int) -> dict:
    """Runs in the subprocess: one image through one model; returns the measurements."""
    import resource
    import time

    import numpy as np
    import torch

    sys.path.insert(0, str(HERE.parent / "tests"))
    torch.set_num_threads(threads)

    def peak_mb() -> float:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10

    from sam_lab import SamPredictor, attention_kernel, build_sam
    from sam_lab.weights import randomize

    torch.manual_seed(0)
    if side == "reference":
        from reference import build_reference
        from segment_anything import SamPredictor as MetaPredictor

        model = randomize(build_reference(variant), 0).eval()
        predictor = MetaPredictor(model)
    else:
        model = randomize(build_sam(variant), 0).eval()
        predictor = SamPredictor(model)
    after_build = peak_mb()
    image = np.random.default_rng(0).integers(0, 256, size=(768, 1024, 3), dtype=np.uint8)
    start = time.perf_counter()
    with attention_kernel(kernel), torch.no_grad():  # Meta's model ignores our kernel setting
        predictor.set_image(image)
        masks, _, _ = predictor.predict(point_coords=np.array([[400, 300]]), point_labels=np.array([1]))
    return {"variant": variant, "side": side, "kernel": kernel if side == "ours" else "its own",
            "after_build_mb": round(after_build, 1), "peak_mb": round(peak_mb(), 1),
            "seconds": round(time.perf_counter() - start, 2), "masks": list(masks.shape)}


def measure(variant: str, side: str, kernel: str, threads: int) -> dict:
    """Run :func:`child` in a fresh interpreter and return what it printed (the last line, JSON)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--variant", variant,
               "--kernel", kernel, "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {side} run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="vit_h", help="a sam_lab config name (default vit_h)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--math", action="store_true", help="also measure ours with the math kernel")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    parser.add_argument("--child", choices=("ours", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--kernel", default="sdpa", choices=("math", "sdpa"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads: expected at least 1, got {args.threads}")
    return args


def main(argv=None) -> list:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args.variant, args.child, args.kernel, args.threads)))
        return []
    runs = [("reference", "sdpa"), ("ours", "sdpa")] + ([("ours", "math")] if args.math else [])
    rows = [measure(args.variant, side, kernel, args.threads) for side, kernel in runs]
    reference_peak = rows[0]["peak_mb"]
    print(f"SAM {args.variant}, one 768x1024 image (set_image + one predict), {args.threads} thread(s), "
          "each side in a fresh process")
    print(f"{'':22s} {'after build':>12s} {'peak':>10s} {'peak / ref':>10s} {'seconds':>8s}")
    for row in rows:
        row["peak_over_reference"] = round(row["peak_mb"] / reference_peak, 3)
        name = "reference" if row["side"] == "reference" else f"ours ({row['kernel']})"
        print(f"{name:22s} {row['after_build_mb']:9.0f} MB {row['peak_mb']:7.0f} MB "
              f"{row['peak_over_reference']:10.2f} {row['seconds']:8.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
