"""Training levers added on 2026-12-06: the episode that stops after its last graded round, data
drawn anew every step, the output-bias (mask prior) initialisation and the convolutional stem."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from sam_lab import build_sam
from sam_lab.modeling.patching import ConvStem, PatchEmbed
from sam_lab.training import train as train_module
from sam_lab.training.clicks import simulate_training_episode
from sam_lab.training.train import FreshSyntheticData, TrainConfig, build_model, init_mask_prior, train

torch.set_num_threads(2)


def _cfg(tmp_path, **changes):
    base = dict(config="tiny16", steps=3, batch_size=2, masks_per_image=2, num_images=6, out=str(tmp_path),
                checkpoint_every=2, warmup=1, seed=3, grad_rounds="first_random")
    base.update(changes)
    return TrainConfig(**base)


def _episode(stop_after_graded: bool, seed: int):
    torch.manual_seed(0)
    model = build_sam("tiny16").train()
    targets = torch.zeros(2, 256, 256, dtype=torch.bool)
    targets[0, 50:150, 60:120] = True
    targets[1, 100:200, 100:220] = True
    calls = []
    original = model.mask_decoder.forward
    model.mask_decoder.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    embeddings = model.image_encoder(model.preprocess(torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 255))
    out = simulate_training_episode(model, embeddings, targets, np.random.default_rng(seed), use_box=False,
                                    grad_rounds="first_random", stop_after_graded=stop_after_graded)
    out["loss"].backward()
    return out, len(calls), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_an_episode_stopped_after_its_last_graded_round_has_the_same_loss_and_gradient_in_fewer_rounds():
    shortened = 0
    for seed in range(4):
        whole, whole_calls, whole_grads = _episode(False, seed)
        short, short_calls, short_grads = _episode(True, seed)
        assert whole_calls == whole["rounds_run"] == 11
        assert short_calls == short["rounds_run"] <= 11
        shortened += short_calls < 11
        assert torch.equal(whole["loss"], short["loss"])
        assert len(whole_grads) == len(short_grads)
        for a, b in zip(whole_grads, short_grads):
            assert torch.equal(a, b)
    assert shortened  # the drawn later round was not the last in at least one of the four


def test_training_that_skips_the_ungraded_tail_ends_with_the_same_weights(tmp_path):
    full = train(_cfg(tmp_path / "full", skip_ungraded_tail=False), resume=False, progress=False)["model"].state_dict()
    short = train(_cfg(tmp_path / "short"), resume=False, progress=False)["model"].state_dict()
    for key in full:
        torch.testing.assert_close(short[key], full[key], atol=0, rtol=0)


def test_fresh_data_draws_new_images_every_step_and_resumes_exactly(tmp_path):
    data = FreshSyntheticData(seed=3, img_size=256)
    images_a, masks_a = data.batch(np.random.default_rng(0), 2, 3)
    images_b, _ = data.batch(np.random.default_rng(1), 2, 3)
    again, _ = data.batch(np.random.default_rng(0), 2, 3)
    assert images_a.shape == (2, 3, 256, 256) and masks_a.shape == (2, 3, 256, 256) and masks_a.dtype == torch.bool
    assert torch.equal(images_a, again) and not torch.equal(images_a, images_b)
    assert masks_a.flatten(2).any(-1).all()  # every target is a real mask
    whole = train(_cfg(tmp_path / "whole", fresh_data=True), resume=False, progress=False)["model"].state_dict()
    train(_cfg(tmp_path / "killed", fresh_data=True), resume=False, progress=False, stop_after=2)
    resumed = train(_cfg(tmp_path / "killed", fresh_data=True), resume=True, progress=False)["model"].state_dict()
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], atol=0, rtol=0)
    with pytest.raises(ValueError, match="fresh_data: .* expected data 'synthetic', got 'coco:"):
        train(_cfg(tmp_path / "coco", fresh_data=True, data="coco:a:b.json"), progress=False)


def test_the_mask_prior_starts_every_logit_at_the_prior_and_stays_trainable(tmp_path):
    torch.manual_seed(0)
    model = build_sam("tiny16").eval()
    logit = init_mask_prior(model, 0.05)
    assert logit == pytest.approx(np.log(0.05 / 0.95))
    with torch.no_grad():
        embeddings = model.image_encoder(model.preprocess(torch.rand(1, 3, 256, 256) * 255))
        low_res, _ = model.decode(embeddings, torch.tensor([[[100.0, 80.0]]]), torch.ones(1, 1, dtype=torch.int),
                                  None, None, multimask_output=True)
    assert low_res.mean().item() == pytest.approx(logit, abs=0.1)
    assert low_res.std().item() < 0.2  # nearly flat: the prior, not the random features, decides
    with pytest.raises(ValueError, match=r"prior: expected a foreground share in \(0, 1\), got 1.5"):
        init_mask_prior(model, 1.5)
    with pytest.raises(ValueError, match="mask_prior: expected 0 .* got -0.1"):
        train(_cfg(tmp_path, mask_prior=-0.1), progress=False)
    # the training loop applies it to a fresh model, and the constant channel then learns
    result = train(_cfg(tmp_path / "prior", mask_prior=0.05, steps=2), resume=False, progress=False)
    hyper = result["model"].mask_decoder.output_hypernetworks_mlps[0].layers[-1]
    assert hyper.weight[0].abs().sum() > 0


def test_the_conv_stem_reaches_the_patch_grid_in_halvings_and_swaps_in_by_config(tmp_path):
    stem = ConvStem((16, 16), (16, 16), in_chans=3, embed_dim=96)
    strides = [m.stride[0] for m in stem.proj if isinstance(m, torch.nn.Conv2d)]
    assert strides == [2, 2, 2, 2, 1]
    x = torch.rand(2, 3, 256, 256)
    assert stem(x).shape == PatchEmbed((16, 16), (16, 16), embed_dim=96)(x).shape == (2, 16, 16, 96)
    with pytest.raises(ValueError, match=r"stride: expected a square power-of-two patch .* got \(12, 12\)"):
        ConvStem((12, 12), (12, 12), embed_dim=96)
    with pytest.raises(ValueError, match="embed_dim: expected a multiple of 8 for patch 16, got 100"):
        ConvStem((16, 16), (16, 16), embed_dim=100)
    model = build_model(_cfg(tmp_path, stem="conv"))
    assert isinstance(model.image_encoder.patch_embed, ConvStem)
    assert isinstance(build_model(_cfg(tmp_path)).image_encoder.patch_embed, PatchEmbed)
    with pytest.raises(ValueError, match="stem: expected one of .* got 'vit'"):
        build_model(_cfg(tmp_path, stem="vit"))


def test_new_levers_are_named_in_the_lever_harness():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "train_levers.py"
    spec = importlib.util.spec_from_file_location("train_levers", path)
    levers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(levers)
    base = replace(TrainConfig(**levers.BASE), **levers.R1_RECIPE)
    for name, field, value in [("r1_fresh_data", "fresh_data", True), ("r1_mask_prior", "mask_prior", 0.05),
                               ("r1_conv_stem", "stem", "conv")]:
        cfg = replace(TrainConfig(**levers.BASE), **levers.LEVERS[name])
        assert getattr(cfg, field) == value
        assert replace(cfg, **{field: getattr(base, field)}) == base, name  # one change from the control
    assert train_module.STEMS == ("patch", "conv")


def test_the_command_line_turns_the_tail_skip_off_and_the_new_levers_on():
    cfg, _ = train_module.parse_args([])
    assert cfg.skip_ungraded_tail and not cfg.fresh_data and cfg.stem == "patch" and cfg.mask_prior == 0.0
    cfg, _ = train_module.parse_args(["--no-skip-ungraded-tail", "--fresh-data", "--stem", "conv", "--mask-prior", "0.05"])
    assert not cfg.skip_ungraded_tail and cfg.fresh_data and cfg.stem == "conv" and cfg.mask_prior == 0.05


def test_step_time_benchmark_times_each_stage_both_ways():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "step_time.py"
    spec = importlib.util.spec_from_file_location("step_time", path)
    step_time = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step_time)
    rows = step_time.measure(["coarse_finetune"], steps=1, repeats=1)
    row = rows["coarse_finetune"]
    assert len(row["runs"]["every_round"]) == len(row["runs"]["skipping_the_tail"]) == 1
    assert row["ratio"] == pytest.approx(row["s_per_step_skipping_the_tail"] / row["s_per_step_every_round"])
