"""Export a whole SAM to ONNX: the image encoder as one graph, prompts-to-masks as another.

Meta's repository exports only the prompt encoder and mask decoder; the image encoder stays in
torch, so an app still needs torch to encode an image. Here both halves are exported, and
:class:`sam_lab.OnnxPredictor` runs them with onnxruntime and numpy alone.

    encoder.onnx   image (1, 3, S, S) float32, normalised and zero-padded (as Sam.preprocess)
                   -> image_embeddings (1, C, S/16, S/16)
    decoder.onnx   image_embeddings (1, C, h, w)
                   point_coords (B, N, 2) float32, model-input pixels (after ResizeLongestSide)
                   point_labels (B, N) float32: 1 positive, 0 negative, -1 padding,
                                2 / 3 the top-left / bottom-right corners of a box
                   mask_input (B, 1, 4h, 4w) float32 and has_mask_input (1,) float32 (0 or 1)
                   orig_im_size (2,) int64: (H, W) of the original image
                   multimask_output (1,) int64: 1 -> the 3 ambiguity masks, 0 -> the single one
                   -> masks (B, K, H, W) logits at the original size, iou_predictions (B, K),
                      low_res_masks (B, K, 4h, 4w)
    sam_onnx.json  the manifest: variant, sizes, pixel statistics, files, opset

B and N are dynamic; so are H and W. A box is two points with labels 2 and 3, and the caller
appends a (0, 0) point of label -1 when there is no box, exactly as the prompt encoder does
inside ``predict`` (the predictor does it for you). The mask prompt is optional through
``has_mask_input``: with 0 the learned "no mask" embedding is used, as with ``mask_input=None``.

Everything is written to a temporary name and renamed, so a folder never holds half a file. A
graph whose weights pass 1 GiB (ViT-H's encoder) keeps them in one side file,
``encoder.onnx.data`` (protobuf holds at most 2 GB); the manifest hashes it too.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..modeling.kernels import attention_kernel
from ..weights.io import give_default_mode, move_into_place, write_atomically
from .onnx_predictor import MANIFEST, sha256_of

PART_FILES = {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}
FORMAT_VERSION = 1
OPSET = 17


class EncoderGraph(nn.Module):
    """The image encoder alone: preprocessed image -> image embedding."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.image_encoder = sam.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


class DecoderGraph(nn.Module):
    """Prompt encoder + mask decoder + upsampling to the original image, for any number of
    prompt sets and points. Computes what ``SamPredictor.predict_torch`` computes, written with
    operations that trace to ONNX (labels as data, the size of the original image as data)."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.img_size = int(sam.image_encoder.img_size)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pe = self.prompt_encoder
        embedding = pe.pe_layer.forward_with_coords(coords + 0.5, pe.input_image_size)  # (B, N, C)
        labels = labels[..., None]
        embedding = embedding * (labels != -1)  # a padding point carries no position
        embedding = embedding + (labels == -1) * pe.not_a_point_embed.weight
        for kind in range(pe.num_point_embeddings):
            embedding = embedding + (labels == kind) * pe.point_embeddings[kind].weight
        return embedding

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
        multimask_output: torch.Tensor,
    ):
        pe = self.prompt_encoder
        sparse = self.embed_points(point_coords, point_labels)
        dense = has_mask_input * pe.mask_downscaling(mask_input)
        dense = dense + (1 - has_mask_input) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        masks, iou = self.mask_decoder.predict_masks(image_embeddings, pe.get_dense_pe(), sparse, dense)
        # multimask: tokens 1..3; single: token 0. [start, stop) as data, so one graph does both
        start = multimask_output.reshape(()).clamp(0, 1)
        stop = start * masks.shape[1] + (1 - start)
        chosen = torch.arange(start, stop, device=masks.device)
        masks = masks.index_select(1, chosen)
        iou = iou.index_select(1, chosen)

        # to the original size: upsample to the padded input, crop the padding, resize
        size = orig_im_size.to(torch.float64)
        scale = self.img_size / size.max()
        input_h = (size[0] * scale + 0.5).to(torch.int64)  # ResizeLongestSide's rounding
        input_w = (size[1] * scale + 0.5).to(torch.int64)
        upscaled = F.interpolate(masks, (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        upscaled = upscaled[..., :input_h, :input_w]
        original = orig_im_size.to(torch.int64)
        full = F.interpolate(upscaled, size=(original[0], original[1]), mode="bilinear", align_corners=False)
        return full, iou, masks


def _example_inputs(sam: nn.Module, points: int = 2, batch: int = 1):
    h, w = sam.prompt_encoder.image_embedding_size
    c = sam.prompt_encoder.embed_dim
    size = float(sam.image_encoder.img_size)
    return (
        torch.randn(1, c, h, w),
        torch.rand(batch, points, 2) * size,
        torch.tensor([[1.0] + [0.0] * (points - 2) + [-1.0]] * batch),
        torch.randn(batch, 1, 4 * h, 4 * w),
        torch.tensor([1.0]),
        torch.tensor([480, 640], dtype=torch.int64),
        torch.tensor([1], dtype=torch.int64),
    )


DECODER_INPUTS = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size", "multimask_output"]
DECODER_OUTPUTS = ["masks", "iou_predictions", "low_res_masks"]


# protobuf cannot hold 2 GB in one message: graphs whose weights pass this many bytes (ViT-H's
# fp32 encoder, 2.5 GB) keep them in one side file, "<graph>.onnx.data", that onnxruntime reads
EXTERNAL_DATA_BYTES = 1 << 30


def _weight_bytes(proto) -> int:
    return sum(len(t.raw_data) for t in proto.graph.initializer)


def _save_graph(proto, target: Path, staging: Path) -> Optional[str]:
    """Write ``proto`` as ``target`` (and its side file when large) through ``staging``, side
    file first, so the folder never holds a graph without its weights. Returns the side
    file's name, or None."""
    import onnx

    data = None
    if _weight_bytes(proto) > EXTERNAL_DATA_BYTES:
        data = target.name + ".data"
        onnx.save(proto, staging / target.name, save_as_external_data=True, all_tensors_to_one_file=True,
                  location=data, size_threshold=1024)
        give_default_mode(staging / data)
        move_into_place(staging / data, target.parent / data)
    else:
        onnx.save(proto, staging / target.name)
    give_default_mode(staging / target.name)
    move_into_place(staging / target.name, target)
    return data


def _export(module: nn.Module, args, path: Path, input_names, output_names, dynamic_axes, metadata: Dict[str, str]) -> Optional[str]:
    """Trace ``module`` to ONNX as ``path`` with ``metadata``; returns the side file's name or None."""
    import onnx

    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about python ints: covered by the parity tests
            torch.onnx.export(  # a large model comes out as one file per tensor: staging keeps them apart
                module, args, str(staging / "traced.onnx"), input_names=input_names, output_names=output_names,
                dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False, do_constant_folding=True,
            )
        proto = onnx.load(str(staging / "traced.onnx"))  # external tensors are read back in
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        return _save_graph(proto, path, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _file_entry(folder: Path, name: str, data: Optional[str]) -> Dict[str, str]:
    entry = {"file": name, "sha256": sha256_of(folder / name)}
    if data:
        entry.update(data=data, data_sha256=sha256_of(folder / data))
    return entry


def model_signature(sam: nn.Module) -> str:
    """Names the exported weights: the variant and a hash of every tensor, so the predictor can
    tell parts exported from different models (or different weights) apart."""
    config = getattr(sam, "config", None)
    digest = hashlib.sha256()
    for key, tensor in sorted(sam.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return f"{getattr(config, 'name', 'custom')}:{digest.hexdigest()[:16]}"


@torch.no_grad()
def export_onnx(sam: nn.Module, out: os.PathLike, part: str = "all", quantize: Optional[str] = None) -> Path:
    """Export ``sam`` to the folder ``out`` (``part``: "encoder", "decoder" or "all") and write
    its manifest; ``quantize="int8"`` also writes dynamically quantised ``*.int8.onnx`` copies
    (weights in int8, activations in float) and lists them. Returns the manifest's path."""
    if part not in ("encoder", "decoder", "all"):
        raise ValueError(f"part: expected 'encoder', 'decoder' or 'all', got {part!r}")
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize: expected None or 'int8', got {quantize!r}")
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    first = next(sam.parameters())
    where, dtype, training = first.device, first.dtype, sam.training
    try:  # graphs are traced on the CPU in fp32; the caller's model goes back where it was
        return _export_all(sam.eval().cpu().float(), out, part, quantize)
    finally:
        sam.to(device=where, dtype=dtype).train(training)


def _export_all(sam: nn.Module, out: Path, part: str, quantize: Optional[str]) -> Path:
    config = getattr(sam, "config", None)
    signature = model_signature(sam)
    metadata = {"sam_lab_model": signature}
    parts = ("encoder", "decoder") if part == "all" else (part,)
    manifest_path = out / MANIFEST
    previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    files = dict(previous.get("files", {})) if previous.get("model") == signature else {}

    with attention_kernel("math"):  # plain matmul + softmax: every runtime has these operators
        side_files = {}
        if "encoder" in parts:
            size = int(sam.image_encoder.img_size)
            side_files["encoder"] = _export(EncoderGraph(sam), (torch.zeros(1, 3, size, size),), out / PART_FILES["encoder"],
                    ["image"], ["image_embeddings"], None, {**metadata, "sam_lab_part": "encoder"})
        if "decoder" in parts:
            dynamic = {
                "point_coords": {0: "prompt_sets", 1: "points"},
                "point_labels": {0: "prompt_sets", 1: "points"},
                "mask_input": {0: "prompt_sets"},
                "masks": {0: "prompt_sets", 1: "outputs", 2: "height", 3: "width"},
                "iou_predictions": {0: "prompt_sets", 1: "outputs"},
                "low_res_masks": {0: "prompt_sets", 1: "outputs"},
            }
            side_files["decoder"] = _export(DecoderGraph(sam), _example_inputs(sam), out / PART_FILES["decoder"],
                    DECODER_INPUTS, DECODER_OUTPUTS, dynamic, {**metadata, "sam_lab_part": "decoder"})
    for name in parts:
        files.pop(f"{name}_int8", None)  # an int8 copy of the previous export is stale now
        files[name] = _file_entry(out, PART_FILES[name], side_files[name])
        if quantize == "int8":
            target, data = quantize_int8(out / PART_FILES[name])
            files[f"{name}_int8"] = _file_entry(out, target.name, data)
    manifest = {
        "format": FORMAT_VERSION,
        "model": signature,
        "variant": getattr(config, "name", "custom"),
        "config": asdict(config) if config is not None else None,
        "img_size": int(sam.image_encoder.img_size),
        "embedding_size": list(sam.prompt_encoder.image_embedding_size),
        "embed_dim": int(sam.prompt_encoder.embed_dim),
        "pixel_mean": [float(v) for v in sam.pixel_mean.flatten()],
        "pixel_std": [float(v) for v in sam.pixel_std.flatten()],
        "mask_threshold": float(sam.mask_threshold),
        "image_format": sam.image_format,
        "opset": OPSET,
        "files": files,
    }
    text = json.dumps(manifest, indent=1)
    write_atomically(manifest_path, lambda temp: Path(temp).write_text(text))
    return manifest_path


def quantize_int8(path: Path) -> Tuple[Path, Optional[str]]:
    """Dynamic int8 quantisation of one exported graph (MatMul/Gemm weights to int8; convolutions
    stay float): ``encoder.onnx`` -> ``encoder.int8.onnx``. Returns its path and side file (or None)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = path.with_name(path.stem + ".int8.onnx")
    staging = Path(tempfile.mkdtemp(prefix=".quantize-", dir=path.parent))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime logs advice about shape pre-processing on the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(path), str(staging / "quantized.onnx"), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"], use_external_data_format=True)
        return target, _save_graph(onnx.load(str(staging / "quantized.onnx")), target, staging)
    finally:
        root.setLevel(level)
        shutil.rmtree(staging, ignore_errors=True)
