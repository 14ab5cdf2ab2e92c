"""Hugging Face transformers' SAM: its checkpoints load into ours and compute the same thing.

The oracle is transformers' own ``SamModel`` on random weights (every parameter, norms and biases
included, so a wrong mapping cannot hide behind a 1 or a 0). Both models get the same normalised
pixels and the same prompts in model-input pixels; see sam_lab/convert.py for the conventions.
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

transformers = pytest.importorskip("transformers")

import sam_lab  # noqa: E402
from sam_lab import build_sam  # noqa: E402
from sam_lab.convert import (  # noqa: E402
    config_from_transformers, config_to_transformers, from_transformers, is_transformers_checkpoint,
    read_transformers_checkpoint, save_transformers, to_transformers,
)
from sam_lab.weights import CheckpointError, identify_variant, randomize, save_checkpoint  # noqa: E402
from sam_lab.weights.pretrained import SHIPPED  # noqa: E402

torch.set_num_threads(1)
TOLERANCE = 1e-4  # fp32, max abs difference

# prompts in model-input pixels (the input is 128 x 128)
PROMPTS = {
    "one point": dict(point_coords=torch.tensor([[[40.0, 70.0]]]), point_labels=torch.tensor([[1]])),
    "two points": dict(point_coords=torch.tensor([[[40.0, 70.0], [100.0, 20.0]]]),
                       point_labels=torch.tensor([[1, 0]])),
    "box": dict(boxes=torch.tensor([[10.0, 20.0, 90.0, 110.0]])),
}


def small_hf_config(decoder_norm_eps=1e-5):
    """A small SAM: 128 px, patch 16 (8 x 8 tokens), 2 blocks of width 64 (block 0 windowed by 4,
    block 1 global), prompt and decoder width 32. Two-way norms at Meta's eps unless told."""
    return transformers.SamConfig(
        vision_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=128, patch_size=16,
                           window_size=4, global_attn_indexes=[1], output_channels=32, num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32, image_size=128, patch_size=16, mask_input_channels=16),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=32, layer_norm_eps=decoder_norm_eps),
    )


def random_hf_model(decoder_norm_eps=1e-5):
    torch.manual_seed(0)
    return randomize(transformers.SamModel(small_hf_config(decoder_norm_eps)), seed=1).eval()


@pytest.fixture(scope="module")
def hf_model():
    return random_hf_model()


@pytest.fixture(scope="module")
def hf_folder(hf_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "sam"
    hf_model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))  # already normalised


@torch.no_grad()
def outputs_of_transformers(hf, pixels):
    """transformers' image embedding, and (low-res logits, IoU) per prompt, multimask on."""
    embedding = hf.get_image_embeddings(pixels)
    results = {}
    for name, prompt in PROMPTS.items():
        if "boxes" in prompt:  # transformers: (B, prompt sets, ...), one level deeper than ours
            out = hf(image_embeddings=embedding, input_boxes=prompt["boxes"][None], multimask_output=True)
        else:
            out = hf(image_embeddings=embedding, input_points=prompt["point_coords"][None],
                     input_labels=prompt["point_labels"][None], multimask_output=True)
        results[name] = (out.pred_masks[0], out.iou_scores[0])  # (1, 3, 32, 32), (1, 3)
    return embedding, results


@torch.no_grad()
def outputs_of_sam_lab(sam, pixels):
    embedding = sam.image_encoder(pixels)
    return embedding, {name: sam.decode(embedding, multimask_output=True, **prompt)
                       for name, prompt in PROMPTS.items()}


def largest_differences(ours, theirs):
    (embedding, results), (their_embedding, their_results) = ours, theirs
    found = {"image embedding": (embedding - their_embedding).abs().max().item()}
    for name, (masks, iou) in results.items():
        assert masks.shape == their_results[name][0].shape and iou.shape == their_results[name][1].shape, name
        found[f"{name}: mask logits"] = (masks - their_results[name][0]).abs().max().item()
        found[f"{name}: IoU"] = (iou - their_results[name][1]).abs().max().item()
    return found


# ----------------------------------------------------------------------------- parity

def test_a_transformers_folder_loads_and_matches_transformers_outputs(hf_model, hf_folder, pixels):
    theirs = outputs_of_transformers(hf_model, pixels)
    by_folder = sam_lab.load_model(hf_folder)
    assert by_folder.config.name == "hf:custom" and by_folder.config.image_encoder.global_attn_indexes == (1,)
    by_file = build_sam(by_folder.config, checkpoint=hf_folder / "model.safetensors")
    for sam in (by_folder, by_file):
        differences = largest_differences(outputs_of_sam_lab(sam, pixels), theirs)
        assert max(differences.values()) <= TOLERANCE, differences


def test_transformers_default_decoder_norm_eps_is_the_only_difference(pixels, tmp_path):
    """transformers' checkpoints say layer_norm_eps=1e-6 for the two-way blocks; Meta's model (and
    ours) use PyTorch's 1e-5. Loaded as is, outputs differ a little; with that eps they agree."""
    hf = random_hf_model(decoder_norm_eps=1e-6)
    hf.save_pretrained(tmp_path)
    sam = sam_lab.load_model(tmp_path)
    theirs = outputs_of_transformers(hf, pixels)
    as_loaded = largest_differences(outputs_of_sam_lab(sam, pixels), theirs)
    assert as_loaded["image embedding"] <= TOLERANCE
    assert 1e-7 < max(as_loaded.values()) < 1e-3, as_loaded  # small, and really there
    for block in sam.mask_decoder.transformer.layers:
        for module in block.modules():
            if isinstance(module, nn.LayerNorm):
                module.eps = 1e-6
    with_their_eps = largest_differences(outputs_of_sam_lab(sam, pixels), theirs)
    assert max(with_their_eps.values()) <= TOLERANCE, with_their_eps


def test_save_transformers_writes_a_folder_transformers_loads_with_the_same_outputs(hf_folder, pixels, tmp_path):
    sam = sam_lab.load_model(hf_folder)
    save_transformers(sam, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.safetensors"]
    assert is_transformers_checkpoint(tmp_path / "out")
    hf, info = transformers.SamModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not any(info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    theirs = hf.eval().state_dict()
    ours = to_transformers(sam)
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in ours)
    differences = largest_differences(outputs_of_sam_lab(sam, pixels), outputs_of_transformers(hf, pixels))
    assert max(differences.values()) <= TOLERANCE, differences
    # and back: our config survives the trip through config.json
    assert read_transformers_checkpoint(tmp_path / "out")[1] == sam.config


def test_sharded_and_pytorch_bin_folders_load_the_same_weights(hf_model, hf_folder, tmp_path):
    expected = sam_lab.load_model(hf_folder).state_dict()
    hf_model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((hf_folder / "config.json").read_text())
    torch.save(hf_model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")  # older transformers' format
    for folder in (tmp_path / "sharded", tmp_path / "bin"):
        state_dict, config = read_transformers_checkpoint(folder)
        assert config.image_encoder.embed_dim == 64
        assert state_dict.keys() == expected.keys() and all(torch.equal(state_dict[k], expected[k]) for k in expected)


# ----------------------------------------------------------------------------- the mapping

def test_the_mapping_round_trips_exactly_both_ways(hf_model):
    theirs = hf_model.state_dict()  # with the tied copy of the positional-encoding matrix
    back = to_transformers(from_transformers(theirs))
    assert back.keys() == theirs.keys() and all(torch.equal(back[k], theirs[k]) for k in theirs)
    ours = build_sam(config_from_transformers(hf_model.config.to_dict())).state_dict()
    again = from_transformers(to_transformers(ours))
    assert again.keys() == ours.keys() and all(torch.equal(again[k], ours[k]) for k in ours)


def test_vit_b_maps_to_exactly_our_vit_b_keys_and_shapes():
    hf_config = transformers.SamConfig()  # transformers' defaults: ViT-B
    with torch.device("meta"):  # shapes only, no memory
        theirs = transformers.SamModel(hf_config).state_dict()
        ours = build_sam("vit_b").state_dict()
    mapped = from_transformers(theirs)
    assert len(mapped) == len(ours) == 314 and len(theirs) == 315  # + the tied copy
    assert identify_variant(theirs) == "vit_b"
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    assert config_from_transformers(hf_config.to_dict()) == sam_lab.VIT_B
    assert config_from_transformers(config_to_transformers(sam_lab.VIT_B)) == sam_lab.VIT_B


def test_a_meta_file_and_a_transformers_file_load_by_path(tmp_path):
    tiny = sam_lab.load_model("tiny")
    by_path = sam_lab.load_model(SHIPPED["tiny"])  # a .safetensors in Meta's keys: its size says "tiny"
    assert by_path.config.name == "tiny"
    save_checkpoint(to_transformers(tiny, tied_copy=False), tmp_path / "hf_keys.safetensors")
    assert is_transformers_checkpoint(tmp_path / "hf_keys.safetensors")
    assert not is_transformers_checkpoint(SHIPPED["tiny"])
    by_hf_file = sam_lab.load_model(str(tmp_path / "hf_keys.safetensors"))
    for sam in (by_path, by_hf_file):
        assert all(torch.equal(sam.state_dict()[k], v) for k, v in tiny.state_dict().items())


# ----------------------------------------------------------------------------- bad input

def test_missing_and_extra_keys_are_listed(hf_model):
    theirs = dict(hf_model.state_dict())
    del theirs["vision_encoder.layers.1.mlp.lin2.bias"]
    theirs["vision_encoder.layers.0.attn.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as caught:
        from_transformers(theirs)
    message = str(caught.value)
    assert "1 keys that have no place" in message and "vision_encoder.layers.0.attn.extra" in message
    assert "1 keys of SAM that no tensor fills" in message and "image_encoder.blocks.1.mlp.lin2.bias" in message
    no_first_block = {k: v for k, v in hf_model.state_dict().items()
                      if not k.startswith("mask_decoder.transformer.layers.0.")}
    with pytest.raises(CheckpointError, match=r"\d+ keys of SAM that no tensor fills(.|\n)*\.\.\. and \d+ more"):
        from_transformers(no_first_block)
    ours = dict(build_sam(config_from_transformers(hf_model.config.to_dict())).state_dict())
    del ours["mask_decoder.iou_prediction_head.layers.1.weight"]
    with pytest.raises(CheckpointError, match=r"missing(.|\n)*iou_prediction_head\.layers\.1\.weight"):
        to_transformers(ours)


def test_a_checkpoint_with_an_extra_key_does_not_load(hf_model, tmp_path):
    theirs = {k: v for k, v in hf_model.state_dict().items() if not k.startswith("prompt_encoder.shared")}
    theirs["mask_decoder.something_new.weight"] = torch.zeros(2)
    save_checkpoint(theirs, tmp_path / "extra.safetensors")
    config = config_from_transformers(hf_model.config.to_dict())
    with pytest.raises(CheckpointError, match=r"extra\.safetensors(.|\n)*mask_decoder\.something_new\.weight"):
        build_sam(config, checkpoint=tmp_path / "extra.safetensors")


def test_a_state_dict_that_is_not_a_sam_is_named_so():
    with pytest.raises(CheckpointError, match="not a SAM checkpoint in transformers' layout"):
        from_transformers({"encoder.layer.0.weight": torch.zeros(2)})


def test_folders_without_config_or_weights_name_the_folder_and_the_file(hf_folder, tmp_path):
    (tmp_path / "no_config").mkdir()
    (tmp_path / "no_config" / "model.safetensors").write_bytes((hf_folder / "model.safetensors").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"no_config: no config\.json"):
        sam_lab.load_model(tmp_path / "no_config")
    (tmp_path / "no_weights").mkdir()
    (tmp_path / "no_weights" / "config.json").write_text((hf_folder / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"no_weights: no weights(.|\n)*model\.safetensors"):
        read_transformers_checkpoint(tmp_path / "no_weights")
    assert not is_transformers_checkpoint(tmp_path / "no_weights")
    for nowhere in (str(tmp_path / "nowhere" / "model.safetensors"), tmp_path / "nowhere"):
        with pytest.raises(FileNotFoundError, match="name: no such file or folder"):
            sam_lab.load_model(nowhere)


def test_load_model_names_a_file_it_cannot_place(hf_folder, tmp_path):
    custom = sam_lab.load_model(hf_folder)  # a size of no preset
    save_checkpoint(custom, tmp_path / "custom.pth")
    with pytest.raises(ValueError, match=r"name: .*custom\.pth holds a SAM of no preset size, custom \(embed 64, 2"):
        sam_lab.load_model(tmp_path / "custom.pth")
    save_checkpoint({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"name: .*other\.pth is not a SAM checkpoint"):
        sam_lab.load_model(tmp_path / "other.pth")


def test_a_corrupt_safetensors_file_is_named(hf_folder, tmp_path):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (folder / "config.json").write_text((hf_folder / "config.json").read_text())
    (folder / "model.safetensors").write_bytes((hf_folder / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"corrupt/model\.safetensors: the file is truncated or corrupt"):
        sam_lab.load_model(folder)
    assert not is_transformers_checkpoint(folder / "model.safetensors")
    config = json.loads((hf_folder / "config.json").read_text())
    with pytest.raises(CheckpointError, match=r"model\.safetensors: the file is truncated or corrupt"):
        build_sam(config_from_transformers(config), checkpoint=folder / "model.safetensors")


def test_configs_we_cannot_represent_name_the_field(hf_folder):
    config = json.loads((hf_folder / "config.json").read_text())
    config["vision_config"]["hidden_act"] = "relu"
    with pytest.raises(ValueError, match=r"hf_config\.vision_config\.hidden_act"):
        config_from_transformers(config)
    config = json.loads((hf_folder / "config.json").read_text())
    config["prompt_encoder_config"]["image_size"] = 256
    with pytest.raises(ValueError, match=r"hf_config\.prompt_encoder_config\.image_size"):
        config_from_transformers(config)
