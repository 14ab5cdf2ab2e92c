"""``python -m sam_lab.export_onnx``: the whole SAM as ONNX graphs that run without torch.

    python -m sam_lab.export_onnx --model tiny --part all --out sam_tiny_onnx
    python -m sam_lab.export_onnx --model vit_b --checkpoint sam_vit_b_01ec64.pth --out vit_b_onnx --quantize int8

Writes ``OUT/encoder.onnx`` (the image encoder), ``OUT/decoder.onnx`` (prompt encoder, mask
decoder and upsampling to the original size; any number of prompt sets and points, optional
mask prompt) and the manifest ``OUT/sam_onnx.json``; ``--quantize int8`` adds
``*.int8.onnx`` copies. Open the folder with ``sam_lab.OnnxPredictor(OUT)``. Exporting one part
into a folder that holds the other part of the same model keeps it; a part of another model is
replaced. Exit status 2 with a one-line message for a missing checkpoint or a bad option.
See :mod:`sam_lab.inference.onnx_export` for the graphs' inputs and outputs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

MODELS = ("tiny", "vit_b", "vit_l", "vit_h")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sam_lab.export_onnx", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, required=True)
    parser.add_argument("--checkpoint", default=None,
                        help="weights file or transformers folder (default: shipped tiny / Meta's file found on disk)")
    parser.add_argument("--random-weights", action="store_true", help="export randomly initialised weights (for trying the pipeline)")
    parser.add_argument("--part", choices=("encoder", "decoder", "all"), default="all")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quantize", choices=("int8",), default=None, help="also write int8 (dynamic) copies")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from .inference.onnx_export import export_onnx
    from .weights import load_checkpoint
    from .weights.pretrained import load_model

    try:
        import onnx  # noqa: F401
    except ImportError:
        print("error: exporting needs onnx and onnxruntime: pip install 'sam_lab[onnx]'", file=sys.stderr)
        return 2
    try:
        if args.checkpoint is not None and args.random_weights:
            raise ValueError("--checkpoint and --random-weights: give one or neither")
        if args.checkpoint is not None:
            model = load_checkpoint(load_model(args.model, pretrained=False), args.checkpoint)
        else:
            model = load_model(args.model, pretrained=not args.random_weights)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    manifest = export_onnx(model, args.out, part=args.part, quantize=args.quantize)
    out = Path(args.out)
    for path in sorted(out.glob("*.onnx")):
        print(f"{path}  {path.stat().st_size / 1e6:.1f} MB")
    print(f"{manifest}  (open the folder with sam_lab.OnnxPredictor({str(out)!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
