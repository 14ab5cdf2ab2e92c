"""Attention kernels, recorded attention maps, device and dtype selection."""
import numpy as np
import pytest
import torch

import sam_lab
from sam_lab import build, build_sam, device
from sam_lab.modeling.kernels import attend, attention_kernel, get_attention_kernel, record_attention

torch.set_num_threads(2)


def test_math_and_sdpa_kernels_agree_with_a_bias():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 10, 8, generator=g) for _ in range(3))
    bias = torch.randn(2, 4, 10, 10, generator=g)
    with attention_kernel("math"):
        a = attend(q, k, v, bias)
    with attention_kernel("sdpa"):
        b = attend(q, k, v, bias)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # and both are softmax(q k^T / sqrt(d) + bias) v
    expected = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5 + bias, -1) @ v
    torch.testing.assert_close(a, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(1, 8, 4096, 7, 16), (3, 2, 256, 12, 32), (2, 4, 64, 1, 8)])
def test_many_queries_against_few_keys_take_the_transposed_softmax_on_cpu(shape, monkeypatch):
    """The decoder's image -> token attention (4096 queries, 7 keys): the sdpa kernel computes it
    with the softmax along the query axis (few_keys_attention), not the slow fused kernel, and gets
    the formula's numbers and gradients."""
    from sam_lab.modeling import kernels

    B, h, nq, nk, d = shape
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, h, n, d, generator=g, requires_grad=True) for n in (nq, nk, nk))
    fused = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(kernels.F, "scaled_dot_product_attention", lambda *a, **kw: fused.append(1) or real(*a, **kw))
    with attention_kernel("sdpa"):
        got = attend(q, k, v)
    assert not fused  # routed around the fused kernel
    with attention_kernel("math"):
        expected = attend(q, k, v)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(got.square().sum(), (q, k, v))
    expected_grads = torch.autograd.grad(expected.square().sum(), (q, k, v))
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # the encoder's shapes (many keys), a bias, or few queries keep the fused kernel
    with attention_kernel("sdpa"):
        attend(q[:, :, :8], k, v)
        attend(q, k, v, bias=torch.zeros(nq, nk))
        attend(q, torch.randn(B, h, 64, d), torch.randn(B, h, 64, d))
    assert len(fused) == 3


def test_the_default_kernel_is_sdpa_the_fastest_that_keeps_parity():
    # benchmarks/bench_cpu.py: ViT-B's encoder in 0.79x the reference's time with sdpa, 1.09x
    # with math (2 threads); the parity tests run with the default
    assert get_attention_kernel() == "sdpa"


def test_context_manager_restores_the_previous_kernel():
    assert get_attention_kernel() == "sdpa"
    with attention_kernel("math"):
        assert get_attention_kernel() == "math"
        with attention_kernel("sdpa"):
            assert get_attention_kernel() == "sdpa"
        assert get_attention_kernel() == "math"
    assert get_attention_kernel() == "sdpa"


def test_global_kernel_choice_applies_until_changed_back():
    try:
        sam_lab.set_attention_kernel("math")
        assert get_attention_kernel() == "math"
    finally:
        sam_lab.set_attention_kernel("sdpa")
    assert get_attention_kernel() == "sdpa"


def test_unknown_kernel_name_is_refused():
    with pytest.raises(ValueError, match="attention kernel: expected one of"):
        with attention_kernel("flash"):
            pass


def test_record_attention_hands_back_every_attention_map():
    model = build_sam("tiny")
    predictor = sam_lab.SamPredictor(model)
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    with attention_kernel("sdpa"), record_attention() as maps:
        assert get_attention_kernel() == "math"  # recording needs the explicit softmax
        predictor.set_image(image)
        predictor.predict(point_coords=np.array([[10, 20]]), point_labels=np.array([1]))
    names = [name for name, _ in maps]
    # 4 encoder blocks, then 2 two-way blocks x 3 attentions + the final one
    assert names.count("image_encoder") == 4
    two_way = [n for n in names if n.startswith("two_way")]
    assert len(two_way) == 7 and two_way[-1] == "two_way.final_attn_token_to_image"
    token_to_image = maps.by_name("two_way.layers.0.cross_attn_token_to_image")[0]
    # 1 prompt set, 4 heads, 5 output tokens + 1 point + 1 padding point, 16x16 image cells
    assert token_to_image.shape == (1, 4, 7, 256)
    torch.testing.assert_close(token_to_image.sum(-1), torch.ones(1, 4, 7))


def test_autocast_is_fp32_noop_on_cpu_and_refuses_bf16_there():
    with device.autocast("cpu", "fp32"):
        pass
    with pytest.raises(ValueError, match="dtype: bf16 autocast is supported on cuda only"):
        device.autocast("cpu", "bf16")
    with pytest.raises(ValueError, match="dtype: expected 'fp32' or 'bf16'"):
        device.autocast("cpu", "fp8")


def test_pick_device_prefers_what_exists_and_names_what_does_not():
    assert device.pick_device("cpu").type == "cpu"
    assert device.pick_device().type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device: 'cuda' was asked for"):
            device.pick_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_autocast_on_cuda_stays_close_to_fp32():
    model = build_sam("tiny").cuda()
    x = torch.randn(1, 3, 256, 256, device="cuda")
    with torch.no_grad():
        full = model.image_encoder(x)
        with device.autocast("cuda", "bf16"):
            half = model.image_encoder(x)
    assert half.dtype == torch.bfloat16
    assert (full - half.float()).abs().max() < 0.1 * full.abs().max()


def test_unknown_variant_for_our_backend_is_named():
    with pytest.raises(ValueError, match="variant: expected one of"):
        build.build_model("vit_xl")
