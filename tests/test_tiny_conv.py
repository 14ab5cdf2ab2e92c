"""tiny_conv: the extra named model with a convolutional stem (not SAM's architecture).

Its config differs from tiny16's in the stem only; build_sam puts ConvStem in for it, files of it
are recognised by their stem, and its recipe is one training stage at tiny16's grid with the conv
stem. The shipped weights' own checks (they load, they segment) are in test_shipped_models.
"""
import pytest
import torch

import sam_lab
from sam_lab import build_sam, load_model
from sam_lab.config import TINY16, TINY_CONV, get_config, override_config
from sam_lab.modeling.patching import ConvStem, PatchEmbed
from sam_lab.weights import CheckpointError, load_checkpoint, save_checkpoint
from sam_lab.weights.io import identify_variant, stem_of

torch.set_num_threads(2)


def test_tiny_conv_is_tiny16_with_the_conv_stem_and_nothing_else():
    assert get_config("tiny_conv") is TINY_CONV
    assert TINY_CONV.image_encoder.stem == "conv" and TINY16.image_encoder.stem == "patch"
    assert TINY_CONV.image_encoder == TINY16.image_encoder.__class__(**{**TINY16.image_encoder.__dict__, "stem": "conv"})
    assert (TINY_CONV.prompt_encoder, TINY_CONV.mask_decoder) == (TINY16.prompt_encoder, TINY16.mask_decoder)


def test_build_sam_puts_the_conv_stem_in_for_tiny_conv_and_only_there():
    conv, patch = build_sam("tiny_conv"), build_sam("tiny16")
    assert isinstance(conv.image_encoder.patch_embed, ConvStem)
    assert isinstance(patch.image_encoder.patch_embed, PatchEmbed)
    # everything after the stem has the same names and shapes
    rest = lambda model: {k: v.shape for k, v in model.state_dict().items() if ".patch_embed." not in k}  # noqa: E731
    assert rest(conv) == rest(patch)
    # the same 16 x 16 grid of tokens of width 96
    image = torch.zeros(1, 3, 256, 256)
    assert conv.image_encoder.patch_embed(image).shape == patch.image_encoder.patch_embed(image).shape == (1, 16, 16, 96)
    # a swapped patch_embed still wins over the config's stem
    assert isinstance(build_sam("tiny_conv", patch_embed=PatchEmbed).image_encoder.patch_embed, PatchEmbed)
    # and the stem can be set by override, as the training commands do
    assert isinstance(build_sam(override_config("tiny16", "image_encoder.stem='conv'")).image_encoder.patch_embed, ConvStem)


def test_an_unknown_stem_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"image_encoder.stem must be one of \('patch', 'conv'\), got 'hybrid'"):
        build_sam(override_config("tiny16", "image_encoder.stem='hybrid'"))


def test_a_conv_stem_file_is_recognised_by_its_stem(tmp_path):
    torch.manual_seed(0)
    model = build_sam("tiny_conv")
    assert stem_of(model.state_dict()) == ("conv", 16)
    assert stem_of(build_sam("tiny").state_dict()) == ("patch", 8)
    assert stem_of({"prompt_encoder.not_a_point_embed": torch.zeros(1)}) is None
    assert identify_variant(model.state_dict()) == "custom (embed 96, 4 blocks)"
    path = tmp_path / "conv.safetensors"
    save_checkpoint(model, path)
    loaded = load_model(path)
    assert loaded.config.name == "tiny_conv" and isinstance(loaded.image_encoder.patch_embed, ConvStem)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # a conv-stem file does not load into the patch-stem model of the same size: the keys say why
    with pytest.raises(CheckpointError, match="image_encoder.patch_embed.proj.0.weight"):
        load_checkpoint(build_sam("tiny16"), path)


def test_train_builds_the_conv_stem_from_either_the_config_or_the_stem_option():
    from sam_lab.training.train import TrainConfig, build_model

    by_option = build_model(TrainConfig(config="tiny16", stem="conv"))
    by_config = build_model(TrainConfig(config="tiny_conv"))
    assert isinstance(by_option.image_encoder.patch_embed, ConvStem) and isinstance(by_config.image_encoder.patch_embed, ConvStem)
    assert {k: v.shape for k, v in by_option.state_dict().items()} == {k: v.shape for k, v in by_config.state_dict().items()}
    assert isinstance(build_model(TrainConfig(config="tiny16")).image_encoder.patch_embed, PatchEmbed)


def test_the_tiny_conv_recipe_is_one_stage_at_the_coarse_grid_with_the_conv_stem(tmp_path):
    from sam_lab.training import recipe

    stages = recipe.stage_configs(tmp_path, recipe="tiny_conv")
    assert [s["name"] for s in stages] == ["train"]
    cfg = stages[0]["train"]
    assert (cfg.config, cfg.stem, cfg.init) == ("tiny16", "conv", None)
    assert cfg.first_prompt_steps < cfg.steps and cfg.grad_rounds == "first_random"
    # the learning rate drops only in the 11-round part, after the first-prompt steps
    assert min(int(m * cfg.steps) for m in cfg.milestones) > cfg.first_prompt_steps
    assert recipe.stage_boundaries(recipe.RECIPES["tiny_conv"]) == {"train": cfg.steps}


def test_the_tiny_conv_recipe_runs_end_to_end_at_a_small_scale(tmp_path):
    """The whole recipe shrunk (steps_scale) writes a model that loads as tiny_conv by its file."""
    from sam_lab.training import recipe

    summary = recipe.run_recipe(tmp_path, steps_scale=1 / 11_000, progress=False, recipe="tiny_conv")
    model = load_model(summary["model"])
    assert model.config.name == "tiny_conv"
    assert isinstance(sam_lab.load_model(summary["model"]).image_encoder.patch_embed, ConvStem)
