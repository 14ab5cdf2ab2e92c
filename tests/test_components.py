"""Every stage can be swapped for another implementation of the same interface.

Each stage is replaced by an *independent* implementation — Meta's class for it where one
exists, otherwise one written here — and the swapped model, given the same weights, must give
the same outputs as ours. A deliberately wrong stage must change them (the test can fail).
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from segment_anything import modeling as reference

from sam_lab.weights import randomize
from sam_lab import STAGES, build_sam
from sam_lab.modeling.two_way_transformer import TwoWayAttentionBlock

torch.set_num_threads(2)


class EinsumNeck(nn.Module):
    """The neck written without nn.Sequential: 1x1 conv as an einsum, LayerNorm via F.layer_norm."""

    def __init__(self, embed_dim, out_chans):
        super().__init__()
        # parameter names mirror the checkpoint keys neck.0 .. neck.3
        self.add_module("0", nn.Conv2d(embed_dim, out_chans, 1, bias=False))
        self.add_module("1", _ChannelNorm(out_chans))
        self.add_module("2", nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False))
        self.add_module("3", _ChannelNorm(out_chans))

    def forward(self, x):
        w = getattr(self, "0").weight[:, :, 0, 0]  # (out, in)
        x = torch.einsum("oc,bchw->bohw", w, x)
        x = getattr(self, "1")(x)
        x = getattr(self, "2")(x)
        return getattr(self, "3")(x)


class _ChannelNorm(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, eps=1e-6)
        return x.permute(0, 3, 1, 2)


def reference_image_encoder(**kwargs):
    kwargs["global_attn_indexes"] = list(kwargs["global_attn_indexes"])
    return reference.ImageEncoderViT(**kwargs)


# stage -> an independent implementation with the same constructor interface
INDEPENDENT = {
    "image_encoder": reference_image_encoder,
    "patch_embed": reference.image_encoder.PatchEmbed,
    "encoder_block": reference.image_encoder.Block,
    "neck": EinsumNeck,
    "prompt_encoder": reference.PromptEncoder,
    "positional_encoding": reference.prompt_encoder.PositionEmbeddingRandom,
    "two_way_attention": reference.TwoWayTransformer,
    "two_way_block": reference.transformer.TwoWayAttentionBlock,
    "mask_decoder": reference.MaskDecoder,
}


@pytest.fixture(scope="module")
def ours():
    return randomize(build_sam("tiny"), seed=3)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 256, 192), generator=g).float()
    return [
        {
            "image": image,
            "original_size": (400, 300),
            "point_coords": torch.rand(2, 3, 2, generator=g) * 190,
            "point_labels": torch.tensor([[1, 0, 1], [1, 1, 0]]),
            "boxes": torch.tensor([[10.0, 20.0, 150.0, 200.0], [0.0, 0.0, 100.0, 60.0]]),
            "mask_inputs": torch.randn(2, 1, 128, 128, generator=g),  # 4x the 32x32 token grid
        }
    ]


def run(model, inputs):
    out = model(inputs, multimask_output=True)[0]
    return out["low_res_logits"], out["iou_predictions"]


def test_every_stage_has_an_independent_implementation_under_test():
    assert set(INDEPENDENT) == set(STAGES)


@pytest.mark.parametrize("stage", sorted(INDEPENDENT))
def test_swapping_a_stage_for_an_equivalent_one_gives_same_outputs(stage, ours, inputs):
    swapped = build_sam("tiny", **{stage: INDEPENDENT[stage]})
    swapped.load_state_dict(ours.state_dict(), strict=True)
    logits, iou = run(swapped, inputs)
    expected_logits, expected_iou = run(ours, inputs)
    torch.testing.assert_close(logits, expected_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(iou, expected_iou, atol=1e-4, rtol=0)
    # and the swapped class really is in the model
    found = [m for m in swapped.modules() if type(m).__module__.startswith(("segment_anything", __name__))]
    assert found, f"no module of the swapped-in {stage} implementation was found"


def test_a_built_module_can_be_swapped_in_as_an_instance(ours, inputs):
    transformer = reference.TwoWayTransformer(depth=2, embedding_dim=64, num_heads=4, mlp_dim=256)
    swapped = build_sam("tiny", two_way_attention=transformer)
    assert swapped.mask_decoder.transformer is transformer
    swapped.load_state_dict(ours.state_dict(), strict=True)
    torch.testing.assert_close(run(swapped, inputs)[0], run(ours, inputs)[0], atol=1e-4, rtol=0)


class BlockWithoutPositions(TwoWayAttentionBlock):
    """A plausible learner mistake: forget to re-add positional encodings in cross-attention."""

    def forward(self, queries, keys, query_pe, key_pe):
        return super().forward(queries, keys, torch.zeros_like(query_pe), torch.zeros_like(key_pe))


def test_a_wrong_stage_changes_the_outputs(ours, inputs):
    swapped = build_sam("tiny", two_way_block=BlockWithoutPositions)
    swapped.load_state_dict(ours.state_dict(), strict=True)
    assert (run(swapped, inputs)[0] - run(ours, inputs)[0]).abs().max() > 1e-2


def test_unknown_stage_name_is_refused():
    with pytest.raises(TypeError, match="unknown stage"):
        build_sam("tiny", transformer=nn.Identity)


def test_inconsistent_config_widths_are_refused():
    from dataclasses import replace

    from sam_lab.config import TINY

    bad = replace(TINY, prompt_encoder=replace(TINY.prompt_encoder, embed_dim=32))
    with pytest.raises(ValueError, match="must be equal"):
        build_sam(bad)


def test_config_overrides_change_the_named_fields_and_name_bad_items():
    from sam_lab.config import TINY, override_config

    cfg = override_config("tiny", "image_encoder.depth=8, image_encoder.global_attn_indexes=(1, 3, 5, 7), mask_decoder.iou_head_hidden_dim=32")
    assert cfg.image_encoder.depth == 8 and cfg.image_encoder.global_attn_indexes == (1, 3, 5, 7)
    assert cfg.mask_decoder.iou_head_hidden_dim == 32
    assert cfg.image_encoder.embed_dim == TINY.image_encoder.embed_dim and TINY.image_encoder.depth == 4  # a copy
    assert override_config(TINY, "") == TINY
    model = build_sam(override_config("tiny", "image_encoder.patch_size=8"))
    assert model.prompt_encoder.image_embedding_size == (32, 32)  # the finer token grid reaches the decoder
    assert len(model.image_encoder.blocks) == 4
    with pytest.raises(ValueError, match="image_encoder has no field 'width'"):
        override_config("tiny", "image_encoder.width=8")
    with pytest.raises(ValueError, match="stage.field=value"):
        override_config("tiny", "depth=8")
    with pytest.raises(ValueError, match="Python literal"):
        override_config("tiny", "image_encoder.depth=eight")


def test_registry_builds_each_variant_by_name():
    from sam_lab import sam_model_registry

    assert set(sam_model_registry) == {"default", "vit_b", "vit_l", "vit_h", "tiny"}
    tiny = sam_model_registry["tiny"]()
    assert tiny.config.name == "tiny" and not tiny.training
    with pytest.raises(ValueError, match="config: expected one of"):
        build_sam("vit_x")


def test_prompt_sets_without_a_mask_share_the_image_side_of_the_decoder():
    """With no mask prompt every prompt set sees the same image + dense map: the first block's
    image-side projections then run once on a (1, HW, C) map, not once per prompt set, and the
    answers are those of the per-prompt computation."""
    model = build_sam("tiny")
    randomize(model, seed=0)
    model.eval()
    pe, decoder = model.prompt_encoder, model.mask_decoder
    h, w = pe.image_embedding_size
    image = torch.randn(1, decoder.transformer_dim, h, w, generator=torch.Generator().manual_seed(1))
    points = (torch.rand(5, 2, 2) * 200, torch.tensor([[1, 0]] * 5))
    sparse, dense = pe(points=points, boxes=None, masks=None)
    assert dense.shape[0] == 5 and dense.stride(0) == 0  # the prompt encoder's expanded view

    seen = []
    hook = decoder.transformer.layers[0].cross_attn_token_to_image.k_proj.register_forward_hook(
        lambda module, args, out: seen.append(args[0].shape[0])
    )
    with torch.no_grad():
        shared = decoder(image, pe.get_dense_pe(), sparse, dense, multimask_output=True)
        separate = decoder(image, pe.get_dense_pe(), sparse, dense.contiguous(), multimask_output=True)
    hook.remove()
    assert seen == [1, 5]  # shared: once; a materialised dense map: once per prompt set
    for a, b in zip(shared, separate):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


# ------------------------------------------------- the predictor keeps the image side across prompts

def _tiny_predictor(seed=0):
    from sam_lab import SamPredictor

    model = build_sam("tiny")
    randomize(model, seed=seed)
    model.eval()
    predictor = SamPredictor(model)
    rng = np.random.default_rng(seed)
    predictor.set_image(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    return predictor


def _uncached(predictor, coords, labels):
    """What predict answers computed from scratch: prompt encoder and decoder called directly."""
    model = predictor.model
    coords_t = torch.as_tensor(predictor.transform.apply_coords(coords, predictor.original_size), dtype=torch.float)[None]
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(points=(coords_t, torch.as_tensor(labels)[None]), boxes=None, masks=None)
        return model.mask_decoder(predictor.features, model.prompt_encoder.get_dense_pe(), sparse, dense, True)


CLICKS = [(np.array([[40.0, 60.0]]), np.array([1])), (np.array([[100.0, 30.0], [20.0, 90.0]]), np.array([1, 0]))]


def test_the_prepared_image_side_gives_the_same_numbers_and_is_computed_once_per_image():
    predictor = _tiny_predictor()
    first = predictor.model.mask_decoder.transformer.layers[0]
    calls = []
    hook = first.cross_attn_token_to_image.k_proj.register_forward_hook(lambda m, a, o: calls.append(a[0].shape))
    predictor.set_image(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8))
    hw = predictor.features.shape[-2] * predictor.features.shape[-1]
    assert [shape[-2] for shape in calls] == [hw]  # set_image prepared the image side: no click waits for it
    for coords, labels in CLICKS * 2:
        _, scores, low_res = predictor.predict(coords, labels)
        expected_low_res, expected_scores = _uncached(predictor, coords, labels)
        assert np.array_equal(low_res, expected_low_res[0].numpy())  # bit for bit
        assert np.array_equal(scores, expected_scores[0].numpy())
    hook.remove()
    # the image's keys are projected once for the four prompts (the _uncached calls add one each);
    # the tokens' keys are projected once per prompt by the other attention, not this one
    assert [shape for shape in calls if shape[-2] == hw].count(torch.Size([1, hw, first.cross_attn_token_to_image.embedding_dim])) == 1 + 4


def test_the_prepared_image_side_follows_weights_modules_and_images_that_change():
    predictor = _tiny_predictor()
    coords, labels = CLICKS[0]
    decoder = predictor.model.mask_decoder

    def answers_as_from_scratch():
        _, scores, low_res = predictor.predict(coords, labels)
        expected_low_res, expected_scores = _uncached(predictor, coords, labels)
        assert np.array_equal(low_res, expected_low_res[0].numpy())
        assert np.array_equal(scores, expected_scores[0].numpy())
        return low_res

    before = answers_as_from_scratch()
    with torch.no_grad():  # an in-place change, as an optimiser step makes
        decoder.transformer.layers[0].cross_attn_image_to_token.q_proj.weight.mul_(1.5)
    changed = answers_as_from_scratch()
    assert not np.array_equal(before, changed)
    # load_state_dict copies into the same tensors
    state = {k: v.clone() for k, v in decoder.state_dict().items()}
    state["transformer.layers.0.cross_attn_token_to_image.v_proj.bias"] += 0.5
    decoder.load_state_dict(state)
    assert not np.array_equal(changed, answers_as_from_scratch())
    # the no-mask vector of the dense prompt, and the positional encoding's matrix
    with torch.no_grad():
        predictor.model.prompt_encoder.no_mask_embed.weight.add_(0.3)
        predictor.model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.mul_(1.1)
    answers_as_from_scratch()
    # a swapped module (new parameters) and a learner's attention class, whose forward must run
    fresh = type(decoder.transformer.layers[0].cross_attn_image_to_token)(decoder.transformer_dim, 2, 2)
    decoder.transformer.layers[0].cross_attn_image_to_token = fresh
    answers_as_from_scratch()
    ran = []

    class Learners(type(fresh)):
        def forward(self, q, k, v):
            ran.append(q.shape)
            return super().forward(q, k, v)

    fresh.__class__ = Learners
    answers_as_from_scratch()
    assert ran  # called by predict and by the from-scratch path, not bypassed
    # a forward hook added after the image side was prepared still sees every call
    predictor = _tiny_predictor(seed=1)
    predictor.predict(coords, labels)  # prepares the first block's projections
    t2i = predictor.model.mask_decoder.transformer.layers[0].cross_attn_token_to_image
    hooked = []
    handle = t2i.register_forward_hook(lambda module, args, out: hooked.append(out.shape))
    predictor.predict(coords, labels)
    handle.remove()
    assert len(hooked) == 1
    # another image
    predictor.set_image(np.full((90, 90, 3), 200, np.uint8))
    answers_as_from_scratch()


def test_layer_norm_2d_gives_the_formula_on_channels_last_memory_too():
    from sam_lab.modeling.layers import LayerNorm2d

    norm = LayerNorm2d(24)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 24, 7, 9) * 3 + 1
    channels_last = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # same values, (B, H, W, C) memory
    assert channels_last.permute(0, 2, 3, 1).is_contiguous() and not x.permute(0, 2, 3, 1).is_contiguous()
    mean = x.mean(1, keepdim=True)
    var = ((x - mean) ** 2).mean(1, keepdim=True)
    expected = norm.weight[:, None, None] * (x - mean) / torch.sqrt(var + norm.eps) + norm.bias[:, None, None]
    for got in (norm(x), norm(channels_last)):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_a_learners_decoder_or_transformer_subclass_runs_its_own_forward_through_the_predictor():
    """The predictor hands a prepared image side only to our exact classes: a subclass that
    overrides forward with the plain signature (as lessons 05 and 06 have learners write) is called
    as written, and answers as a from-scratch decode."""
    from sam_lab.modeling.mask_decoder import MaskDecoder
    from sam_lab.modeling.two_way_transformer import TwoWayTransformer

    calls = []

    class LearnersDecoder(MaskDecoder):
        def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output):
            calls.append("decoder")
            return super().forward(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output)

    class LearnersTransformer(TwoWayTransformer):
        def forward(self, image_embedding, image_pe, point_embedding):
            calls.append("transformer")
            return super().forward(image_embedding, image_pe, point_embedding)

    for swap in ("decoder", "transformer"):
        predictor = _tiny_predictor()
        decoder = predictor.model.mask_decoder
        if swap == "decoder":
            decoder.__class__ = LearnersDecoder
        else:
            decoder.transformer.__class__ = LearnersTransformer
        calls.clear()
        for coords, labels in CLICKS:
            _, scores, low_res = predictor.predict(coords, labels)
            expected_low_res, expected_scores = _uncached(predictor, coords, labels)
            assert np.array_equal(low_res, expected_low_res[0].numpy())
        assert calls.count(swap) == 4  # two predicts, two from-scratch decodes
