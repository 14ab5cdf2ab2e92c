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
    # 1 prompt set, 4 heads, 5 output tokens + 1 point + 1 padding point, 32x32 image cells
    assert token_to_image.shape == (1, 4, 7, 1024)
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


def test_the_rel_pos_bias_is_written_row_by_row_so_its_reshape_copies_nothing():
    """The broadcast sum of the two einsum results used to inherit their permuted strides, and
    the reshape to (B, N, N) then copied the whole bias through a transposition (a quarter of
    ViT-B's CPU encode). It is a view now, and ``out=`` writes into the caller's buffer."""
    from sam_lab.modeling.positional_encoding import decomposed_rel_pos_bias

    torch.manual_seed(0)
    q = torch.randn(6, 5 * 7, 8)
    rel_h, rel_w = torch.randn(2 * 5 - 1, 8), torch.randn(2 * 7 - 1, 8)
    bias = decomposed_rel_pos_bias(q, rel_h, rel_w, (5, 7), (5, 7))
    assert bias.shape == (6, 35, 35) and bias.is_contiguous()
    # against the definition: bias[b, (qy, qx), (ky, kx)] = q . R_h[qy - ky] + q . R_w[qx - kx]
    b, qy, qx, ky, kx = 3, 4, 1, 0, 6
    row = q[b, qy * 7 + qx]
    expected = row @ rel_h[qy - ky + 4] + row @ rel_w[qx - kx + 6]
    assert torch.allclose(bias[b, qy * 7 + qx, ky * 7 + kx], expected, atol=1e-5)
    buffer = torch.full((6, 35, 35), float("nan"))
    written = decomposed_rel_pos_bias(q, rel_h, rel_w, (5, 7), (5, 7), out=buffer)
    assert written.data_ptr() == buffer.data_ptr() and torch.equal(written, bias)


def test_encoder_blocks_share_one_bias_buffer_without_autograd_only():
    """Inside the encoder's forward, without autograd, every block's attention bias goes into
    one buffer (a fresh 805 MB buffer per ViT-B global block costs ~0.3 s of page faults);
    with autograd each block keeps its own, since the backward pass reads it. Same numbers both
    ways, same gradients as a model whose blocks never share, and nothing kept afterwards."""
    from sam_lab.modeling import kernels
    from sam_lab.modeling.kernels import bias_buffer, shared_bias_buffer

    model = build_sam("tiny")
    torch.manual_seed(0)
    for block in model.image_encoder.blocks:  # non-zero relative positions, so the bias matters
        torch.nn.init.normal_(block.attn.rel_pos_h, std=0.5)
        torch.nn.init.normal_(block.attn.rel_pos_w, std=0.5)
    x = torch.randn(1, 3, 256, 256)
    handed = []
    real = kernels.bias_buffer

    def spy(shape, dtype, device):
        out = real(shape, dtype, device)
        handed.append(None if out is None else out.data_ptr())
        return out

    import sam_lab.modeling.attention as attention_module

    attention_module.bias_buffer = spy
    try:
        with torch.no_grad():
            shared = model.image_encoder(x)
        no_grad_calls = list(handed)
        handed.clear()
        x_grad = x.clone().requires_grad_(True)
        with_grad = model.image_encoder(x_grad)
    finally:
        attention_module.bias_buffer = real
    assert len(no_grad_calls) == len(model.image_encoder.blocks) and None not in no_grad_calls
    # one buffer: replaced only when a larger bias comes (the first global block), then shared
    grows = [i for i in range(1, len(no_grad_calls)) if no_grad_calls[i] != no_grad_calls[i - 1]]
    assert len(set(no_grad_calls)) <= 2 and len(grows) <= 1
    assert handed == [None] * len(model.image_encoder.blocks)
    assert (shared - with_grad).abs().max() < 1e-4  # the kernel differs with autograd on
    assert bias_buffer((2, 3, 3), torch.float32, "cpu") is None  # outside the encoder's block
    with shared_bias_buffer(), torch.enable_grad():
        assert bias_buffer((2, 3, 3), torch.float32, "cpu") is None
    # gradients flow as without sharing: compare with the bias built fresh each time
    with_grad.square().sum().backward()
    grad = x_grad.grad.clone()
    x_plain = x.clone().requires_grad_(True)
    attention_module.bias_buffer = lambda shape, dtype, device: None
    try:
        model.image_encoder(x_plain).square().sum().backward()
    finally:
        attention_module.bias_buffer = real
    assert torch.allclose(grad, x_plain.grad, atol=1e-5)
    with torch.no_grad():  # and without autograd, bit for bit what fresh biases give
        attention_module.bias_buffer = lambda shape, dtype, device: None
        try:
            fresh = model.image_encoder(x)
        finally:
            attention_module.bias_buffer = real
    assert torch.equal(shared, fresh)
    assert getattr(kernels._state, "buffers", None) is None




def _decoder_attention(seed=0):
    from sam_lab.modeling.two_way_transformer import DecoderAttention

    torch.manual_seed(seed)
    attention = DecoderAttention(256, 8, downsample_rate=2)  # ViT-B's cross-attention: 8 heads x 16
    for p in attention.parameters():  # biases too, so that every folded term is exercised
        torch.nn.init.normal_(p, std=0.1)
    return attention


@pytest.mark.parametrize("direction", ["few_queries", "few_keys", "prepared_queries"])
@pytest.mark.parametrize("image_batch", [1, 3])
def test_decoder_attention_folds_its_image_projections_into_a_few_tokens(direction, image_batch, monkeypatch):
    """Between 7 tokens and 300 image cells (no gradient, sdpa, CPU) the decoder's attention folds
    the image-side projections into the tokens (kernels.folded_few_*) and gives the formula's
    numbers: the unfolded projections under the math kernel."""
    from sam_lab.modeling import two_way_transformer as T

    attention = _decoder_attention()
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(3, 7, 256, generator=g)
    image = torch.randn(image_batch, 300, 256, generator=g)
    calls = []
    for name in ("folded_few_queries", "folded_few_keys"):
        real = getattr(T, name)
        monkeypatch.setattr(T, name, lambda *a, real=real, name=name, **kw: calls.append(name) or real(*a, **kw))

    def run():
        if direction == "few_queries":  # token -> image: the image gives keys and values
            return attention(q=tokens, k=image, v=image * 0.5)
        if direction == "few_keys":  # image -> token: the image gives the queries
            return attention(q=image.expand(3, -1, -1), k=tokens, v=tokens * 0.5)
        return attention.attend_prepared_queries(attention.queries(image), tokens, tokens * 0.5)

    with torch.no_grad():
        folded = run()
        assert calls == ["folded_few_queries" if direction == "few_queries" else "folded_few_keys"]
        with attention_kernel("math"):
            expected = run()
    assert len(calls) == 1  # the math kernel writes the formula out
    assert folded.shape == expected.shape == (3, 7 if direction == "few_queries" else 300, 256)
    torch.testing.assert_close(folded, expected, atol=1e-5, rtol=1e-5)


def test_decoder_attention_folds_only_where_it_pays_and_changes_nothing_else(monkeypatch):
    """No fold while autograd records (training keeps its arithmetic), for a learner's subclass
    (its own projections must run), against too few cells, or for so many tokens that h * T
    vectors cost more than the projections."""
    from sam_lab.modeling import two_way_transformer as T

    calls = []
    monkeypatch.setattr(T, "folded_few_queries", lambda *a, **kw: calls.append(1))
    monkeypatch.setattr(T, "folded_few_keys", lambda *a, **kw: calls.append(1))
    attention = _decoder_attention()
    tokens, image = torch.randn(2, 7, 256), torch.randn(2, 300, 256)
    attention(q=tokens, k=image, v=image)  # gradients recorded
    with torch.no_grad():
        attention(q=tokens, k=image[:, :100], v=image[:, :100])  # below FOLD_MANY cells
        attention(q=torch.randn(2, 9, 256), k=image, v=image)  # 2 * 8 heads * 9 tokens > 128

        class Mine(T.DecoderAttention):
            def keys(self, x):
                return super().keys(x) * 2

        mine = Mine(256, 8, 2)
        mine.load_state_dict(attention.state_dict())
        mine(q=tokens, k=image, v=image)
    assert calls == []


def test_folded_decoder_gives_the_unfolded_masks_for_a_batch_of_clicks(monkeypatch):
    """A ViT-B-sized decoder (8 heads, 256 wide, 64 x 64 image) on 16 clicks at once and on one:
    the folded attentions give the unfolded low-res logits and IoUs to float rounding."""
    from sam_lab import SamPredictor
    from sam_lab.modeling import kernels
    from sam_lab.modeling import two_way_transformer as T

    calls = []
    for name in ("folded_few_queries", "folded_few_keys"):
        real = getattr(T, name)
        monkeypatch.setattr(T, name, lambda *a, real=real, name=name, **kw: calls.append(name) or real(*a, **kw))
    torch.manual_seed(0)
    model = build_sam("vit_b").eval()
    predictor = SamPredictor(model)
    monkeypatch.setattr(predictor, "DECODE_CHUNK_BYTES", 2**40)  # one decoder call (chunks: below)
    predictor.features = torch.randn(1, 256, 64, 64)
    predictor.is_image_set, predictor.original_size, predictor.input_size = True, (400, 600), (683, 1024)
    for batch in (16, 1):
        coords, labels = torch.rand(batch, 1, 2) * 1000, torch.ones(batch, 1, dtype=torch.int)
        folded = predictor.decode_low_res(coords, labels)
        # block 1's image -> token, block 2's two attentions and the final token -> image
        assert sorted(calls) == ["folded_few_keys"] * 2 + ["folded_few_queries"] * 2
        calls.clear()
        monkeypatch.setattr(kernels, "FOLD_MANY", 10**9)
        unfolded = predictor.decode_low_res(coords, labels)
        assert calls == []
        monkeypatch.setattr(kernels, "FOLD_MANY", 256)
        for a, b in zip(folded, unfolded):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_many_prompt_sets_are_decoded_in_chunks_on_the_cpu_with_the_same_answers(monkeypatch):
    """ViT-B's upscaled features are 8 MiB per prompt set: on the CPU the predictor decodes at most
    DECODE_CHUNK_BYTES (16 MiB) of them per decoder call, i.e. 2 prompt sets, and the answers are
    those of one call for all (points, boxes and mask prompts alike)."""
    from sam_lab import SamPredictor

    torch.manual_seed(0)
    model = build_sam("vit_b").eval()
    predictor = SamPredictor(model)
    predictor.features = torch.randn(1, 256, 64, 64)
    predictor.is_image_set, predictor.original_size, predictor.input_size = True, (400, 600), (683, 1024)
    assert predictor._decode_chunk() == 2
    tiny = SamPredictor(build_sam("tiny"))
    assert tiny._decode_chunk() == 32  # 128 x 128 low-res, 8 channels: 512 KiB per set
    del tiny.model.mask_decoder.transformer_dim  # a learner's decoder need not say its width (lesson 06)
    assert tiny._decode_chunk() == 2**31  # then the whole batch goes in one call
    calls = []
    real = model.mask_decoder.forward
    monkeypatch.setattr(model.mask_decoder, "forward", lambda *a, **kw: calls.append(kw["sparse_prompt_embeddings"].shape[0]) or real(*a, **kw))
    g = torch.Generator().manual_seed(1)
    coords, labels = torch.rand(5, 2, 2, generator=g) * 1000, torch.tensor([[1, 0]] * 5, dtype=torch.int)
    boxes = torch.tensor([[10.0, 20.0, 300.0, 400.0]] * 5) + torch.arange(5.0)[:, None] * 30
    masks = torch.randn(5, 1, 256, 256, generator=g)
    for prompt in ({"boxes": boxes}, {"point_coords": coords, "point_labels": labels, "mask_input": masks}):
        prompt = {"point_coords": None, "point_labels": None, **prompt}
        calls.clear()
        chunked = predictor.decode_low_res(**prompt)
        assert calls == [2, 2, 1]
        monkeypatch.setattr(predictor, "DECODE_CHUNK_BYTES", 2**40)
        whole = predictor.decode_low_res(**prompt)
        assert calls[-1] == 5
        monkeypatch.setattr(predictor, "DECODE_CHUNK_BYTES", 16 * 2**20)
        assert chunked[0].shape == (5, 3, 256, 256) and chunked[1].shape == (5, 3)
        for a, b in zip(chunked, whole):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
