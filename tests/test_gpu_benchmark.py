"""benchmarks/gpu_encoder.py cannot rot: its CPU smoke run (tiny config, one batch) runs here,
and the work it divides by is the issue's count for the released sizes."""
from __future__ import annotations

import pytest
import torch

from conftest import load_benchmark


@pytest.fixture(scope="module")
def gpu_encoder():
    return load_benchmark("gpu_encoder")


def test_the_smoke_run_measures_one_batch_of_the_tiny_encoder(gpu_encoder, capsys):
    threads = torch.get_num_threads()
    result = gpu_encoder.main(["--smoke"])
    torch.set_num_threads(threads)
    (row,) = result["rows"]
    assert row["variant"] == "tiny" and row["batch"] == 1
    assert row["embedding_shape"] == [1, 64, 32, 32]
    assert row["images_per_s"] > 0 and row["achieved_tflops"] > 0
    assert row["roofline"] is None  # no peak known for a CPU
    assert "| tiny | 1 |" in capsys.readouterr().out


def test_the_work_per_image_is_the_issues_count(gpu_encoder):
    counted = {variant: gpu_encoder.flops_per_image(variant) / 1e12 for variant in ("vit_b", "vit_l", "vit_h")}
    assert counted == pytest.approx({"vit_b": 0.97, "vit_l": 2.99, "vit_h": 5.96}, abs=0.01)


def test_bf16_off_cuda_is_refused_with_the_argument_named(gpu_encoder, capsys):
    with pytest.raises(SystemExit):
        gpu_encoder.main(["--device", "cpu", "--variants", "tiny", "--batches", "1"])
    assert "--dtype bf16 needs a CUDA device" in capsys.readouterr().err


def test_the_peak_is_looked_up_by_device_name(gpu_encoder, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert gpu_encoder.peak_tflops(torch.device("cuda"), None) == 989.0
    assert gpu_encoder.peak_tflops(torch.device("cpu"), 100) == 100.0
    assert gpu_encoder.peak_tflops(torch.device("cpu"), None) is None
