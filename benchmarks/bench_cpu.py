"""Time our SAM against Meta's reference, in one run, on identical random weights.

Two measurements, each for ours and the reference side by side:

    image encoder      (1, 3, 1024, 1024) -> (1, 256, 64, 64) (ViT-B); ours with both attention kernels
    one-point predict  SamPredictor.predict: prompt encoder + mask decoder + postprocess; "first
                       click" is ours on a freshly set image, before it has kept the decoder's
                       prompt-independent image work for the clicks that follow

Both models get the same random weights (``tests/reference.py::twin_models``; no checkpoint is
needed), so the outputs must agree too: the table shows the largest difference next to each
time. Each call is warmed up, then the median of ``--repeats`` runs is reported, with the ratio
ours / reference (below 1 means ours is faster). Only relative numbers from the same run mean
much: other programs on the machine slow both sides.

    python benchmarks/bench_cpu.py                              # vit_b, CPU, fp32, 2 threads
    python benchmarks/bench_cpu.py --variant vit_h --device cuda --dtype bf16
"""
from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # reference.py: Meta's model with our weights
sys.path.insert(0, str(ROOT))

from reference import twin_models  # noqa: E402

from sam_lab import SamPredictor, attention_kernel  # noqa: E402
from sam_lab.device import autocast
from sam_lab.modeling.kernels import ATTENTION_KERNELS  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="vit_b", choices=["vit_b", "vit_l", "vit_h", "tiny"],
                        help="model size; tiny (256 px) is a quick smoke test")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 autocast, cuda only")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before each measurement")
    parser.add_argument("--repeats", type=int, default=3, help="timed image-encoder runs (median reported)")
    parser.add_argument("--predict-repeats", type=int, default=20, help="timed predict calls (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    if args.dtype == "bf16" and args.device != "cuda":
        parser.error("--dtype bf16: bf16 autocast is used on cuda only; use --device cuda or fp32")
    if min(args.repeats, args.predict_repeats) < 1 or args.warmup < 0:
        parser.error("--repeats and --predict-repeats must be at least 1, --warmup at least 0")
    return args


def time_together(
    calls: Dict[str, Callable[[], object]], warmup: int, repeats: int, device: torch.device
) -> Tuple[Dict[str, object], Dict[str, List[float]]]:
    """Each call's output (from its last run) and its seconds per run, after ``warmup`` untimed
    rounds. Round robin: every repeat runs each call once, so a change in the machine's load
    hits all of them alike."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        for call in calls.values():
            call()
    outputs: Dict[str, object] = {}
    seconds: Dict[str, List[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            sync()
            start = time.perf_counter()
            outputs[name] = call()
            sync()
            seconds[name].append(time.perf_counter() - start)
    return outputs, seconds


def contenders(reference_call: Callable[[], object], ours_call: Callable[[str], object]) -> Dict[str, Callable[[], object]]:
    """{"reference": Meta's call, "math": ours with the math kernel, "sdpa": ours with sdpa}."""
    return {"reference": reference_call, **{kernel: partial(ours_call, kernel) for kernel in ATTENTION_KERNELS}}


def use_embedding(predictor, embedding: torch.Tensor, original_size, input_size) -> None:
    """Leave ``predictor`` in the state ``set_image`` would, with an embedding computed already
    (both predictors keep the same attributes), instead of running the encoder twice more."""
    predictor.reset_image()
    predictor.features = embedding
    predictor.original_size, predictor.input_size = tuple(original_size), tuple(input_size)
    predictor.is_image_set = True


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = lambda: autocast(device, args.dtype)  # noqa: E731 (a fresh context per call)

    start = time.perf_counter()
    reference, ours = twin_models(args.variant, seed=args.seed)
    reference, ours = reference.to(device), ours.to(device)
    build_s = time.perf_counter() - start
    rss_after_build = peak_rss_mb()

    # a random photo-sized image (H, W) = (768, 1024), as both predictors would prepare it
    rng = np.random.default_rng(args.seed)
    image = rng.integers(0, 256, size=(768, 1024, 3), dtype=np.uint8)
    ours_predictor, reference_predictor = SamPredictor(ours), _reference_predictor(reference)
    resized = ours_predictor.transform.apply_image(image)
    resized_torch = torch.as_tensor(resized, device=device).permute(2, 0, 1)[None].float()
    model_input = ours.preprocess(resized_torch)  # (1, 3, 1024, 1024)
    point_coords, point_labels = np.array([[400, 300]]), np.array([1])

    @torch.no_grad()
    def encode(model, kernel: str = "math") -> torch.Tensor:  # (1, 256, 64, 64)
        with attention_kernel(kernel), precision():  # the kernel setting is ours; Meta's ignores it
            return model.image_encoder(model_input)

    def predict(predictor, kernel: str = "math") -> np.ndarray:
        """One click through ``predict``; returns the low-res logits (C, 256, 256)."""
        with attention_kernel(kernel), precision():
            if args.dtype == "fp32":
                return predictor.predict(point_coords=point_coords, point_labels=point_labels)[2]
            # Meta's predict turns bf16 scores into numpy, which numpy cannot hold: in bf16 both
            # sides run predict_torch, the same work without the conversion to numpy
            return predictor.predict_torch(*torch_points, multimask_output=True)[2][0].float().cpu().numpy()

    # transformed once, for the bf16 path (predict_torch takes resized-image pixels)
    coords = ours_predictor.transform.apply_coords(point_coords, image.shape[:2])
    torch_points = (
        torch.as_tensor(coords, dtype=torch.float, device=device)[None],
        torch.as_tensor(point_labels, dtype=torch.int, device=device)[None],
    )

    embeddings, encoder_s = time_together(
        contenders(lambda: encode(reference), lambda kernel: encode(ours, kernel)), args.warmup, args.repeats, device
    )
    use_embedding(reference_predictor, embeddings["reference"], image.shape[:2], resized.shape[:2])
    use_embedding(ours_predictor, embeddings["math"], image.shape[:2], resized.shape[:2])
    def first_click() -> np.ndarray:
        """Ours with the decoder's prompt-independent image work not yet done: the embedding is
        handed over directly, bypassing set_image (which prepares it, so a user's first click on
        an image costs what the later ones do). The difference to a plain click is what set_image
        adds to the encode for it."""
        use_embedding(cold_predictor, embeddings["sdpa"], image.shape[:2], resized.shape[:2])
        return predict(cold_predictor, "sdpa")

    cold_predictor = SamPredictor(ours)

    logits, predict_s = time_together(
        {**contenders(lambda: predict(reference_predictor), lambda kernel: predict(ours_predictor, kernel)),
         "first click": first_click},
        args.warmup,
        args.predict_repeats,
        device,
    )

    rows = []  # (what, ours seconds, reference seconds, max |ours - reference|)
    for kernel in ATTENTION_KERNELS:
        difference = (embeddings[kernel].float() - embeddings["reference"].float()).abs().max().item()
        rows.append((f"image encoder ({kernel})", encoder_s[kernel], encoder_s["reference"], difference))
    for kernel in ATTENTION_KERNELS:
        difference = float(np.abs(logits[kernel] - logits["reference"]).max())
        rows.append((f"predict, 1 point ({kernel})", predict_s[kernel], predict_s["reference"], difference))
    difference = float(np.abs(logits["first click"] - logits["reference"]).max())
    rows.append(("predict, image side unprepared (sdpa)", predict_s["first click"], predict_s["reference"], difference))

    print(
        f"SAM {args.variant} on {_device_name(device)}, {args.dtype}, {args.threads} thread(s); "
        f"torch {torch.__version__}, python {platform.python_version()}"
    )
    print(
        f"identical random weights (built in {build_s:.1f} s); median of {args.repeats} encoder / "
        f"{args.predict_repeats} predict runs after {args.warmup} warm-up"
    )
    print(f"{'':28s}{'ours':>12s}{'reference':>12s}{'ours/ref':>10s}{'best o/r':>10s}{'max |diff|':>12s}")
    for what, ours_s, reference_s, difference in rows:
        ours_median, reference_median = statistics.median(ours_s), statistics.median(reference_s)
        print(
            f"{what:28s}{_duration(ours_median):>12s}{_duration(reference_median):>12s}"
            f"{ours_median / reference_median:>10.2f}{min(ours_s) / min(reference_s):>10.2f}{difference:>12.1e}"
        )
    print("times are medians; 'best o/r' is the ratio of the fastest runs (less sensitive to load);")
    print("max |diff| compares the image embeddings, then the low-res mask logits, with the reference's")
    print(f"peak RSS: {peak_rss_mb():,.0f} MB (after building both models: {rss_after_build:,.0f} MB)")
    if device.type == "cuda":
        print(f"peak CUDA memory allocated: {torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MB")


def _reference_predictor(reference_model):
    from segment_anything import SamPredictor as ReferencePredictor

    return ReferencePredictor(reference_model)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def _duration(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{1000 * seconds:.1f} ms"


if __name__ == "__main__":
    main()
