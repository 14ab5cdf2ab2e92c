"""``python -m sam_lab.amg``: COCO files per image, overlays, skipping, resuming, errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from sam_lab.amg import main, output_names
from sam_lab.inference.rle import rle_to_mask

torch.set_num_threads(2)
FAST = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


@pytest.fixture()
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(skdata.coffee()[::4, ::4]).save(images / "coffee.png")
    Image.fromarray(skdata.astronaut()[::8, ::8]).save(images / "astronaut.jpg")
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    (images / "notes.txt").write_text("not an image")
    return images


def test_a_folder_run_writes_coco_files_and_overlays_and_reports_unreadable_files(folder, tmp_path, capsys):
    out = tmp_path / "out"
    status = main([str(folder), "--model", "tiny", "--out", str(out), "--png", *FAST])
    printed = capsys.readouterr()
    assert status == 1  # two files could not be read
    assert "broken.png" in printed.out + printed.err and "notes.txt" in printed.out + printed.err
    assert "2 segmented, 0 already done (skipped), 2 unreadable" in printed.out
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.json", "astronaut.png", "coffee.json", "coffee.png"]
    document = json.loads((out / "coffee.json").read_text())
    assert document["images"][0] == {"id": 1, "file_name": "coffee.png", "height": 100, "width": 150}
    assert document["annotations"] and document["categories"] == [{"id": 1, "name": "object"}]
    for annotation in document["annotations"]:
        mask = rle_to_mask(annotation["segmentation"])
        assert mask.shape == (100, 150) and mask.sum() == annotation["area"]
        assert annotation["image_id"] == 1 and len(annotation["bbox"]) == 4
    overlay = np.asarray(Image.open(out / "coffee.png"))
    assert overlay.shape == (100, 150, 3) and not np.array_equal(overlay, skdata.coffee()[::4, ::4])
    try:
        from pycocotools.coco import COCO
    except ImportError:
        return
    coco = COCO(str(out / "coffee.json"))
    first = document["annotations"][0]
    assert np.array_equal(coco.annToMask(coco.loadAnns([first["id"]])[0]).astype(bool), rle_to_mask(first["segmentation"]))


def test_a_rerun_skips_finished_images_and_redoes_missing_ones(folder, tmp_path, capsys):
    out = tmp_path / "out"
    main([str(folder / "coffee.png"), "--out", str(out), *FAST])
    main([str(folder), "--out", str(out), *FAST])
    stamp = os.stat(out / "coffee.json").st_mtime_ns
    (out / "astronaut.json").unlink()  # as if the run had been killed before this image
    capsys.readouterr()
    main([str(folder), "--out", str(out), *FAST])
    assert "1 segmented, 1 already done (skipped)" in capsys.readouterr().out
    assert os.stat(out / "coffee.json").st_mtime_ns == stamp and (out / "astronaut.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_errors_name_the_problem_and_exit_2(folder, tmp_path, capsys):
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main([str(folder), "--out", str(tmp_path / "o"), "--pred-iou-thresh", "1.5"]) == 2
    assert "pred_iou_thresh" in capsys.readouterr().err
    assert main([str(folder), "--out", str(tmp_path / "o"), "--model", "vit_b", "--checkpoint", str(tmp_path / "none.pth")]) == 2
    assert "none.pth" in capsys.readouterr().err


def test_inputs_that_share_a_stem_keep_their_extension(tmp_path):
    from pathlib import Path

    assert output_names([Path("a.jpg"), Path("a.png"), Path("b.png")]) == ["a.jpg", "a.png", "b"]


def test_the_module_runs_as_a_command(folder, tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run([sys.executable, "-m", "sam_lab.amg", str(folder / "coffee.png"), "--out", str(out), "--threads", "1", *FAST],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "1 segmented" in result.stdout and (out / "coffee.json").exists()
