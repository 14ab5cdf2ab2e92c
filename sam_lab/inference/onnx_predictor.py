"""OnnxPredictor: SamPredictor's interface over an exported ONNX pair, with no torch at all.

    python -m sam_lab.export_onnx --model tiny --part all --out sam_tiny_onnx
    predictor = sam_lab.OnnxPredictor("sam_tiny_onnx")
    predictor.set_image(image)
    masks, scores, logits = predictor.predict(point_coords=np.array([[120, 80]]), point_labels=np.array([1]))

This module and the three it imports (``image_state``, ``validation``, ``transforms``' numpy half) use numpy, Pillow
and onnxruntime only, so an app that runs exported models needs no torch (a test runs it with
torch blocked). The arguments, checks, returns and errors are SamPredictor's; see its docstrings.

The folder is checked when it is opened: the manifest, both files, the files' hashes (skip that
with ``verify=False`` for speed on a trusted folder), that both graphs were exported from the
same model as the manifest, and that onnxruntime can load them. Every error names the file.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from .image_state import ImageState
from .transforms import ResizeLongestSide
from .validation import check_flag, check_image, check_prompt_batch, check_prompt_set

MANIFEST = "sam_onnx.json"  # onnx_export (which needs torch) writes it; this module only reads it
PARTS = ("encoder", "decoder")


class OnnxFolderError(ValueError):
    """An exported folder that cannot be used; the message names the file."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class OnnxPredictor(ImageState):
    def __init__(
        self,
        folder,
        int8: bool = False,
        threads: Optional[int] = None,
        providers: Optional[Sequence[str]] = None,
        verify: bool = True,
    ) -> None:
        """Open an exported folder. ``int8`` uses the quantised copies (export with
        ``--quantize int8``); ``threads`` sets onnxruntime's intra-op threads; ``providers``
        defaults to the CPU."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("OnnxPredictor needs onnxruntime: pip install 'sam_lab[onnx]'") from None
        self.folder = Path(folder).expanduser()
        manifest_path = self.folder / MANIFEST
        if not manifest_path.is_file():
            raise OnnxFolderError(
                f"{manifest_path}: no manifest; export the folder with "
                "`python -m sam_lab.export_onnx --model NAME --part all --out DIR`"
            )
        try:
            self.manifest = manifest = json.loads(manifest_path.read_text())
            files, signature = manifest["files"], manifest["model"]
        except (ValueError, KeyError, TypeError) as error:
            raise OnnxFolderError(f"{manifest_path}: not a sam_lab ONNX manifest ({error})") from None
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.sessions = {}
        for part in PARTS:
            key = f"{part}_int8" if int8 else part
            if key not in files:
                how = f"--part {part}" + (" --quantize int8" if int8 else "")
                raise OnnxFolderError(f"{manifest_path}: the folder has no {key.replace('_', ' ')} graph; export it with {how}")
            path = self.folder / files[key]["file"]
            checked = [(path, files[key]["sha256"])]
            if files[key].get("data"):  # a large graph's weights, in a side file
                checked.append((self.folder / files[key]["data"], files[key]["data_sha256"]))
            for file, sha256 in checked:
                if not file.is_file():
                    raise OnnxFolderError(f"{file}: missing (the manifest lists it for the {part}); export the folder again")
                if verify and sha256_of(file) != sha256:
                    raise OnnxFolderError(f"{file}: its contents differ from what was exported (sha256 mismatch): corrupt or replaced; export it again")
            try:
                session = ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))
            except Exception as error:  # onnxruntime raises its own exception types
                reason = (str(error).splitlines() or [""])[0][:200]
                raise OnnxFolderError(f"{path}: onnxruntime cannot load it ({reason}): corrupt or not an ONNX graph") from None
            exported_from = session.get_modelmeta().custom_metadata_map.get("sam_lab_model")
            if exported_from != signature:
                raise OnnxFolderError(
                    f"{path}: exported from another model ({exported_from}) than the folder's manifest "
                    f"({signature}); export every part of one model into one folder"
                )
            self.sessions[part] = session
        self.img_size = int(manifest["img_size"])
        self.embedding_size = tuple(manifest["embedding_size"])
        self.pixel_mean = np.asarray(manifest["pixel_mean"], dtype=np.float32)
        self.pixel_std = np.asarray(manifest["pixel_std"], dtype=np.float32)
        self.mask_threshold = float(manifest["mask_threshold"])
        self.image_format = manifest["image_format"]
        self.transform = ResizeLongestSide(self.img_size)
        self.reset_image()

    # -------------------------------------------------------------------------- the image
    def set_image(self, image, image_format: str = "RGB") -> None:
        """Encode an (H, W, 3) uint8 image (grayscale and RGBA are converted, as SamPredictor does)."""
        image = check_image(image, image_format)
        if image_format != self.image_format:
            image = image[..., ::-1]
        resized = self.transform.apply_image(image)
        self.reset_image()
        h, w = resized.shape[:2]
        normalised = (resized.astype(np.float32) - self.pixel_mean) / self.pixel_std
        padded = np.zeros((1, 3, self.img_size, self.img_size), dtype=np.float32)
        padded[0, :, :h, :w] = normalised.transpose(2, 0, 1)
        self.features = self.sessions["encoder"].run(None, {"image": padded})[0]
        self.original_size = tuple(int(s) for s in image.shape[:2])
        self.input_size = (h, w)
        self.is_image_set = True

    def _embedding_grid(self) -> Tuple[int, int]:
        return self.embedding_size

    # -------------------------------------------------------------------------- prompts
    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks (C, H, W), IoU scores (C,) and low-res logits (C, 256, 256) for one prompt set
        in original-image pixels, as ``SamPredictor.predict``."""
        self._require_image()
        coords, labels, box, mask_input, multimask_output, return_logits = check_prompt_set(
            point_coords, point_labels, box, mask_input, multimask_output, return_logits, self.original_size, self.low_res_size
        )
        masks, scores, low_res = self._decode(
            None if coords is None else coords[None], None if labels is None else labels[None],
            box, None if mask_input is None else mask_input[None], multimask_output, return_logits,
        )
        return masks[0], scores[0], low_res[0]

    def predict_batch(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        boxes: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """B prompt sets in one decoder run, as ``SamPredictor.predict_batch``."""
        self._require_image()
        multimask_output = check_flag("multimask_output", multimask_output)
        return_logits = check_flag("return_logits", return_logits)
        coords, labels, boxes, mask_input, _ = check_prompt_batch(
            point_coords, point_labels, boxes, mask_input, self.original_size, self.low_res_size
        )
        return self._decode(coords, labels, boxes, mask_input, multimask_output, return_logits)

    def _decode(self, coords, labels, boxes, mask_input, multimask_output, return_logits):
        """Checked prompts in original pixels -> the decoder graph's inputs, run, threshold."""
        batch = next(len(x) for x in (coords, boxes, mask_input) if x is not None)
        points = np.zeros((batch, 0, 2), dtype=np.float32)
        kinds = np.zeros((batch, 0), dtype=np.float32)
        if coords is not None:
            points = self.transform.apply_coords(coords.reshape(-1, 2), self.original_size).reshape(coords.shape)
            kinds = labels.astype(np.float32)
        if boxes is not None:  # a box is two corner points of kinds 2 and 3
            corners = self.transform.apply_boxes(boxes, self.original_size).reshape(batch, 2, 2)
            points = np.concatenate([points, corners], axis=1)
            kinds = np.concatenate([kinds, np.tile([[2.0, 3.0]], (batch, 1))], axis=1)
        elif coords is not None:  # points without a box end with one "not a point"
            points = np.concatenate([points, np.zeros((batch, 1, 2))], axis=1)
            kinds = np.concatenate([kinds, -np.ones((batch, 1))], axis=1)
        has_mask = mask_input is not None
        feeds = {
            "image_embeddings": self.features,
            "point_coords": points.astype(np.float32),
            "point_labels": kinds.astype(np.float32),
            "mask_input": mask_input if has_mask else np.zeros((batch, 1, *self.low_res_size), np.float32),
            "has_mask_input": np.array([float(has_mask)], dtype=np.float32),
            "orig_im_size": np.array(self.original_size, dtype=np.int64),
            "multimask_output": np.array([int(multimask_output)], dtype=np.int64),
        }
        masks, scores, low_res = self.sessions["decoder"].run(None, feeds)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, scores, low_res
