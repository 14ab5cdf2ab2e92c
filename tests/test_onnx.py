"""The ONNX export: both graphs match torch, OnnxPredictor answers as SamPredictor does without
torch, int8 copies stay close, and a broken folder is named file by file."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import sam_lab  # noqa: E402
from sam_lab import OnnxPredictor, SamPredictor  # noqa: E402
from sam_lab.export_onnx import main  # noqa: E402
from sam_lab.inference.onnx_export import export_onnx  # noqa: E402
from sam_lab.inference.onnx_predictor import OnnxFolderError  # noqa: E402
from sam_lab.inference.masks import mask_iou  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGE = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
CASES = {
    "one point": dict(point_coords=np.array([[150, 100]]), point_labels=np.array([1])),
    "two points, single mask": dict(point_coords=np.array([[150, 100], [20, 30]]), point_labels=np.array([1, 0]), multimask_output=False),
    "box": dict(box=np.array([40, 30, 250, 180])),
    "point and box": dict(point_coords=np.array([[150, 100]]), point_labels=np.array([1]), box=np.array([40, 30, 250, 180])),
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return sam_lab.load_model("tiny")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, model):
    out = tmp_path_factory.mktemp("onnx")
    export_onnx(model, out, quantize="int8")
    return out


@pytest.fixture(scope="module")
def predictors(model, folder):
    ours = SamPredictor(model)
    onnx = OnnxPredictor(folder, threads=1)
    ours.set_image(IMAGE)
    onnx.set_image(IMAGE)
    return ours, onnx


def test_the_encoder_graph_gives_torchs_image_embedding(predictors):
    ours, onnx = predictors
    assert onnx.get_image_embedding().shape == tuple(ours.get_image_embedding().shape)
    assert np.abs(onnx.get_image_embedding() - ours.get_image_embedding().numpy()).max() <= 1e-4


@pytest.mark.parametrize("case", CASES)
def test_the_decoder_graph_gives_torchs_logits_scores_and_masks(predictors, case):
    ours, onnx = predictors
    expected = ours.predict(**CASES[case], return_logits=True)
    got = onnx.predict(**CASES[case], return_logits=True)
    for name, a, b in zip(("masks", "scores", "low-res logits"), expected, got):
        assert a.shape == b.shape, name
        assert np.abs(a - b).max() <= 1e-3, name
    masks = onnx.predict(**CASES[case])[0]
    assert masks.dtype == bool and masks.shape == (len(got[1]), *IMAGE.shape[:2])


def test_mask_prompts_with_and_without_points_and_batches(predictors):
    ours, onnx = predictors
    previous = ours.predict(**CASES["one point"])[2][:1]
    for prompts in (dict(mask_input=previous), dict(CASES["one point"], mask_input=previous)):
        for a, b in zip(ours.predict(**prompts, return_logits=True), onnx.predict(**prompts, return_logits=True)):
            assert np.abs(a - b).max() <= 1e-3
    batch = dict(point_coords=np.array([[[150, 100], [10, 10]], [[30, 40], [280, 190]]]), point_labels=np.array([[1, 0], [1, 1]]),
                 boxes=np.array([[40, 30, 250, 180], [0, 0, 100, 100]]))
    for a, b in zip(ours.predict_batch(**batch, return_logits=True), onnx.predict_batch(**batch, return_logits=True)):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-3


def test_onnx_predictor_checks_prompts_as_sam_predictor_does(predictors):
    _, onnx = predictors
    with pytest.raises(ValueError, match=r"point_coords: point 1 \(row 0\) .* outside the image"):
        onnx.predict(point_coords=np.array([[400, 10]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match=r"prompt set 2 \(row 1\): box"):
        onnx.predict_batch(boxes=np.array([[0, 0, 10, 10], [5, 5, 1, 1]]))
    with pytest.raises(RuntimeError, match="set_image"):
        OnnxPredictor(onnx.folder).predict(**CASES["one point"])


def test_int8_copies_are_smaller_and_their_masks_stay_close(folder, predictors):
    _, onnx = predictors
    files = json.loads((folder / "sam_onnx.json").read_text())["files"]
    for part in ("encoder", "decoder"):
        assert (folder / files[f"{part}_int8"]["file"]).stat().st_size < 0.7 * (folder / files[part]["file"]).stat().st_size
    int8 = OnnxPredictor(folder, int8=True, threads=1)
    int8.set_image(IMAGE)
    for case in ("one point", "box"):
        full, quantised = onnx.predict(**CASES[case])[0], int8.predict(**CASES[case])[0]
        assert min(mask_iou(a, b) for a, b in zip(full, quantised)) >= 0.8, case


def test_onnx_predictor_runs_with_torch_blocked(folder, predictors, tmp_path):
    """The torch-free claim: onnx_predictor and what it imports load and run while any import of
    torch fails (the sam_lab package's own __init__, which imports torch, is bypassed)."""
    ours, _ = predictors
    np.save(tmp_path / "image.npy", IMAGE)
    script = textwrap.dedent(f"""
        import importlib.abc, sys, types
        import numpy as np
        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        for name, where in (("sam_lab", {str(ROOT / "sam_lab")!r}), ("sam_lab.inference", {str(ROOT / "sam_lab" / "inference")!r})):
            package = types.ModuleType(name)
            package.__path__ = [where]
            sys.modules[name] = package
        from sam_lab.inference.onnx_predictor import OnnxPredictor
        predictor = OnnxPredictor({str(folder)!r}, threads=1)
        predictor.set_image(np.load({str(tmp_path / "image.npy")!r}))
        masks, scores, logits = predictor.predict(point_coords=np.array([[150, 100]]), point_labels=np.array([1]))
        assert "torch" not in sys.modules
        np.save({str(tmp_path / "scores.npy")!r}, scores)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = ours.predict(**CASES["one point"])[1]
    assert np.abs(np.load(tmp_path / "scores.npy") - expected).max() <= 1e-3


def test_a_broken_folder_is_named_file_by_file(folder, tmp_path):
    def copy(name):
        target = tmp_path / name
        shutil.copytree(folder, target)
        return target

    with pytest.raises(OnnxFolderError, match="sam_onnx.json: no manifest"):
        OnnxPredictor(tmp_path)
    lacking = copy("lacking")
    (lacking / "decoder.onnx").unlink()
    with pytest.raises(OnnxFolderError, match=r"decoder\.onnx: missing"):
        OnnxPredictor(lacking)
    corrupt = copy("corrupt")
    data = (corrupt / "encoder.onnx").read_bytes()
    (corrupt / "encoder.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxFolderError, match=r"encoder\.onnx: its contents differ"):
        OnnxPredictor(corrupt)
    with pytest.raises(OnnxFolderError, match=r"encoder\.onnx: onnxruntime cannot load it"):
        OnnxPredictor(corrupt, verify=False)
    # a decoder exported from other weights, dropped into the folder (its hash updated, too)
    other = tmp_path / "other"
    export_onnx(sam_lab.load_model("tiny", pretrained=False), other, part="decoder")
    mixed = copy("mixed")
    shutil.copy(other / "decoder.onnx", mixed / "decoder.onnx")
    manifest = json.loads((mixed / "sam_onnx.json").read_text())
    manifest["files"]["decoder"]["sha256"] = json.loads((other / "sam_onnx.json").read_text())["files"]["decoder"]["sha256"]
    (mixed / "sam_onnx.json").write_text(json.dumps(manifest))
    with pytest.raises(OnnxFolderError, match=r"decoder\.onnx: exported from another model"):
        OnnxPredictor(mixed)
    with pytest.raises(OnnxFolderError, match="has no encoder graph; export it with --part encoder"):
        OnnxPredictor(other)
    with pytest.raises(OnnxFolderError, match="has no encoder int8 graph; export it with --part encoder --quantize int8"):
        OnnxPredictor(other, int8=True)


def test_the_cli_exports_one_part_at_a_time_into_one_folder(tmp_path, capsys):
    out = tmp_path / "parts"
    assert main(["--model", "tiny", "--part", "decoder", "--out", str(out)]) == 0
    assert set(json.loads((out / "sam_onnx.json").read_text())["files"]) == {"decoder"}
    assert main(["--model", "tiny", "--part", "encoder", "--out", str(out)]) == 0
    assert set(json.loads((out / "sam_onnx.json").read_text())["files"]) == {"encoder", "decoder"}
    assert "OnnxPredictor" in capsys.readouterr().out
    OnnxPredictor(out)
    assert main(["--model", "tiny", "--checkpoint", str(tmp_path / "missing.pth"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "vit_q", "--out", str(out)])


def test_large_graphs_keep_their_weights_in_one_hashed_side_file(model, tmp_path, monkeypatch):
    """ViT-H's fp32 encoder (2.5 GB) cannot be one protobuf: above EXTERNAL_DATA_BYTES the
    weights go to '<graph>.onnx.data'. Forced here on the tiny model (threshold 0)."""
    from sam_lab.inference import onnx_export

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)
    out = tmp_path / "external"
    export_onnx(model, out, quantize="int8")
    files = json.loads((out / "sam_onnx.json").read_text())["files"]
    assert files["encoder"]["data"] == "encoder.onnx.data" and files["encoder_int8"]["data"] == "encoder.int8.onnx.data"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["sam_onnx.json"] + [f"{stem}{suffix}" for stem in ("encoder", "decoder", "encoder.int8", "decoder.int8")
                             for suffix in (".onnx", ".onnx.data")])  # no staging folders, no per-tensor files
    assert (out / "encoder.onnx").stat().st_size < 0.1 * (out / "encoder.onnx.data").stat().st_size
    ours, onnx = SamPredictor(model), OnnxPredictor(out, threads=1)
    ours.set_image(IMAGE)
    onnx.set_image(IMAGE)
    for a, b in zip(ours.predict(**CASES["box"], return_logits=True), onnx.predict(**CASES["box"], return_logits=True)):
        assert np.abs(a - b).max() <= 1e-3
    OnnxPredictor(out, int8=True)
    data = (out / "encoder.onnx.data").read_bytes()
    (out / "encoder.onnx.data").write_bytes(data[:-8] + b"\0" * 8)
    with pytest.raises(OnnxFolderError, match=r"encoder\.onnx\.data: its contents differ"):
        OnnxPredictor(out)
    (out / "encoder.onnx.data").unlink()
    with pytest.raises(OnnxFolderError, match=r"encoder\.onnx\.data: missing"):
        OnnxPredictor(out)


def test_exporting_leaves_the_callers_model_as_it_was(tmp_path):
    model = sam_lab.load_model("tiny").train().to(torch.float64)
    export_onnx(model, tmp_path, part="decoder")
    assert model.training and next(model.parameters()).dtype == torch.float64
