"""Losses, click simulation, data and the training loop (exact resume, data parallel)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import sam_lab
from sam_lab import build_sam
from sam_lab.evaluation.interactive import farthest_from_boundary, next_eval_click
from sam_lab.inference.masks import mask_iou
from sam_lab.training.clicks import noisy_box, round_plan, sample_error_point, simulate_training_episode
from sam_lab.training.losses import dice_loss, focal_loss, sam_loss

torch.set_num_threads(2)


# ----------------------------------------------------------------------------- losses

def test_focal_loss_matches_a_hand_worked_pixel():
    # one pixel, logit 0 (p = 0.5), target 1: ce = ln 2, (1 - p_t)^2 = 0.25, alpha = 0.25
    loss = focal_loss(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    assert loss.shape == (1, 1)
    assert loss.item() == pytest.approx(0.25 * 0.25 * np.log(2), rel=1e-6)
    # a negative pixel is weighted by 1 - alpha = 0.75
    loss = focal_loss(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))
    assert loss.item() == pytest.approx(0.75 * 0.25 * np.log(2), rel=1e-6)


def test_dice_loss_is_zero_for_a_confident_perfect_mask_and_hand_worked_otherwise():
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert dice_loss(target * 40 - 20, target).item() == pytest.approx(0.0, abs=1e-6)
    # logits 0 everywhere: p = 0.5; overlap 1, sums 2 + 2: 1 - (2*1 + 1) / (2 + 2 + 1) = 0.4
    assert dice_loss(torch.zeros(1, 1, 2, 2), target).item() == pytest.approx(0.4, rel=1e-6)


def test_mask_iou_counts_pixels_and_scores_empty_against_empty_as_one_for_torch_and_numpy():
    pred = np.array([[[True, True], [True, False]]])
    target = np.array([[[True, True], [False, False]]])
    empty = np.zeros((1, 2, 2), dtype=bool)
    for convert in (np.asarray, torch.as_tensor):
        assert float(mask_iou(convert(pred), convert(target))[0]) == pytest.approx(2 / 3)
        assert float(mask_iou(convert(empty), convert(empty))[0]) == 1.0  # the one convention
        assert float(mask_iou(convert(empty), convert(target))[0]) == 0.0
    table = mask_iou(np.stack([pred[0], target[0], empty[0]])[:, None], np.stack([target[0], pred[0]])[None])
    assert table.shape == (3, 2) and table[1, 0] == 1.0 and table[0, 1] == 1.0  # broadcast: every pair
    with pytest.raises(TypeError, match="pred/target: expected boolean masks"):
        mask_iou(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(TypeError, match="both numpy arrays or both torch tensors"):
        mask_iou(pred, torch.as_tensor(target))


def test_the_iou_head_target_is_the_thresholded_masks_iou():
    logits = torch.tensor([[[[1.0, 1.0], [1.0, -1.0]]]])
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    assert sam_loss(logits, torch.zeros(1, 1), target)["iou_true"].item() == pytest.approx(2 / 3)


def test_only_the_lowest_loss_mask_gets_gradient():
    target = torch.zeros(1, 8, 8)
    target[0, :4] = 1
    good = target[0] * 20 - 10
    logits = torch.stack([torch.randn(8, 8), good, -good])[None].requires_grad_(True)  # (1, 3, 8, 8)
    iou_pred = torch.zeros(1, 3, requires_grad=True)
    out = sam_loss(logits, iou_pred, target)
    assert out["chosen"].tolist() == [1]
    out["loss"].backward()
    grads = logits.grad.abs().flatten(2).sum(-1)[0]
    assert grads[1] > 0 and grads[0] == 0 and grads[2] == 0


def test_mask_loss_is_focal_and_dice_twenty_to_one_and_iou_head_regresses_true_iou():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 6, 6, generator=g)
    target = (torch.rand(2, 6, 6, generator=g) > 0.5).float()
    iou_pred = torch.tensor([[0.3], [0.9]])
    out = sam_loss(logits, iou_pred, target)
    expected_mask = (20 * focal_loss(logits, target[:, None]) + dice_loss(logits, target[:, None])).mean()
    true_iou = mask_iou(logits > 0, target[:, None].bool())
    expected_iou = ((iou_pred - true_iou) ** 2).mean()
    assert out["loss"].item() == pytest.approx((expected_mask + expected_iou).item(), rel=1e-5)


def test_sam_loss_names_bad_shapes():
    with pytest.raises(ValueError, match="target: expected"):
        sam_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3), torch.zeros(3, 4, 4))


# ----------------------------------------------------------------------------- simulation

def test_round_plan_has_eight_points_and_two_mask_only_rounds_ending_with_one():
    rng = np.random.default_rng(0)
    for _ in range(20):
        plan = round_plan(rng)
        assert len(plan) == 10 and sum(plan) == 8 and plan[-1] is False


def test_noisy_box_noise_is_ten_percent_of_side_capped_at_20_px():
    mask = np.zeros((600, 600), bool)
    mask[100:500, 200:260] = True  # 60 wide, 400 tall
    rng = np.random.default_rng(0)
    boxes = np.stack([noisy_box(mask, rng) for _ in range(2000)])
    dx = boxes[:, [0, 2]] - np.array([200, 259])
    dy = boxes[:, [1, 3]] - np.array([100, 499])
    assert np.std(dx) == pytest.approx(5.9, rel=0.1)  # 10 % of 59 px
    assert np.abs(dy).max() <= 20.0 + 1e-9  # 10 % of 399 px would be 40: capped


def test_error_points_are_positive_in_misses_and_negative_in_false_alarms():
    gt = np.zeros((10, 10), bool)
    gt[:5] = True
    pred = np.zeros((10, 10), bool)
    pred[8:] = True  # misses the top half, wrongly includes the bottom rows
    rng = np.random.default_rng(0)
    for _ in range(50):
        (x, y), label = sample_error_point(pred, gt, rng)
        assert label == (1 if y < 5 else 0) and (y < 5 or y >= 8)
    assert sample_error_point(gt, gt, rng) is None


def test_eval_click_is_farthest_from_the_error_boundary():
    gt = np.zeros((21, 21), bool)
    gt[2:19, 2:19] = True
    assert farthest_from_boundary(gt).tolist() == [10, 10]
    (x, y), label = next_eval_click(np.zeros_like(gt), gt)
    assert (x, y, label) == (10, 10, 1)


def test_training_episode_runs_eleven_rounds_and_backpropagates():
    model = build_sam("tiny").train()
    images = torch.rand(2, 3, 256, 256) * 255
    targets = torch.zeros(2, 256, 256, dtype=torch.bool)
    targets[0, 50:150, 60:120] = True
    targets[1, 100:200, 100:220] = True
    calls = []
    original = model.mask_decoder.forward
    model.mask_decoder.forward = lambda *a, **k: calls.append(k["multimask_output"]) or original(*a, **k)
    embeddings = model.image_encoder(model.preprocess(images))
    out = simulate_training_episode(model, embeddings, targets, np.random.default_rng(0), use_box=False)
    assert calls == [True] + [False] * 10  # one point: 3 masks; afterwards several prompts: 1
    out["loss"].backward()
    assert model.image_encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    calls.clear()
    simulate_training_episode(model, embeddings.detach(), targets, np.random.default_rng(0), use_box=True)
    assert calls == [False] * 11  # a box is unambiguous: the single-output token throughout


# ----------------------------------------------------------------------------- training loop

def _cfg(tmp_path, **changes):
    from sam_lab.training.train import TrainConfig

    base = dict(steps=4, batch_size=2, masks_per_image=2, num_images=6, out=str(tmp_path), checkpoint_every=2, warmup=2, seed=1)
    base.update(changes)
    return TrainConfig(**base)


def test_learning_rate_warms_up_then_drops_tenfold_twice():
    from sam_lab.training.train import TrainConfig, learning_rate

    cfg = TrainConfig(steps=900, warmup=100, lr=1e-3)
    assert learning_rate(0, cfg) == pytest.approx(1e-5)
    assert learning_rate(99, cfg) == pytest.approx(1e-3)
    assert learning_rate(599, cfg) == pytest.approx(1e-3)
    assert learning_rate(600, cfg) == pytest.approx(1e-4)
    assert learning_rate(899, cfg) == pytest.approx(1e-5)


def test_resumed_training_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path):
    from sam_lab.training.train import train

    whole = train(_cfg(tmp_path / "whole"), resume=False, progress=False)["model"].state_dict()
    train(_cfg(tmp_path / "killed"), resume=False, progress=False, stop_after=2)  # "killed" after step 2
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["step"] == 2
    resumed = train(_cfg(tmp_path / "killed"), resume=True, progress=False)["model"].state_dict()
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], atol=0, rtol=0)
    assert (tmp_path / "killed" / "model.safetensors").exists()
    # the loss curve on disk is the whole run's, one record per step, the same as uninterrupted
    curve = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert [r["step"] for r in curve] == list(range(1, _cfg(tmp_path).steps + 1))
    assert curve == json.loads((tmp_path / "whole" / "history.json").read_text())


def test_training_with_the_sdpa_kernel_matches_math(tmp_path, monkeypatch):
    import torch.nn.functional as F

    from sam_lab.training.train import train

    calls = []
    fused = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or fused(*a, **k))
    math_run = train(_cfg(tmp_path / "m", steps=1, attention="math"), resume=False, progress=False)
    assert not calls
    sdpa_run = train(_cfg(tmp_path / "s", steps=1), resume=False, progress=False)  # sdpa: the default
    assert calls  # the kernel was really used
    assert sdpa_run["history"][0]["loss"] == pytest.approx(math_run["history"][0]["loss"], rel=1e-4)
    with pytest.raises(ValueError, match="attention.*'flash'"):
        train(_cfg(tmp_path / "f", steps=1, attention="flash"), resume=False, progress=False)


def test_frozen_encoder_training_changes_only_the_decoder(tmp_path):
    from sam_lab.training.train import train

    torch.manual_seed(1)
    before = dict(build_sam("tiny").named_parameters())
    after = dict(train(_cfg(tmp_path, steps=2, freeze_encoder=True), resume=False, progress=False)["model"].named_parameters())
    for key in before:  # parameters only: buffers such as the Fourier matrix never train
        same = torch.equal(before[key], after[key])
        assert same == key.startswith("image_encoder."), key


def test_iou_head_calibration_changes_only_the_iou_head(tmp_path):
    from sam_lab.training.train import train

    torch.manual_seed(1)
    before = dict(build_sam("tiny").named_parameters())
    after = dict(train(_cfg(tmp_path, steps=2, train_only="iou_head"), resume=False, progress=False)["model"].named_parameters())
    for key in before:
        same = torch.equal(before[key], after[key])
        assert same == (not key.startswith("mask_decoder.iou_prediction_head.")), key
    with pytest.raises(ValueError, match="train_only: expected one of"):
        train(_cfg(tmp_path / "x", steps=1, train_only="decoder"), resume=False, progress=False)


def test_training_builds_the_overridden_config_and_weighs_the_iou_head(tmp_path):
    from sam_lab.training.train import train

    run = train(_cfg(tmp_path / "p8", steps=1, config_overrides="image_encoder.patch_size=8"), resume=False, progress=False)
    assert run["model"].prompt_encoder.image_embedding_size == (32, 32)
    # iou_weight scales the IoU head's term only: with 0 its parameters get no gradient
    torch.manual_seed(1)
    before = dict(build_sam("tiny").named_parameters())
    after = dict(train(_cfg(tmp_path / "w0", steps=1, iou_weight=0.0, weight_decay=0.0), resume=False, progress=False)["model"].named_parameters())
    head = [k for k in before if k.startswith("mask_decoder.iou_prediction_head.")]
    assert head and all(torch.equal(before[k], after[k]) for k in head)
    assert not torch.equal(before["mask_decoder.output_upscaling.0.weight"], after["mask_decoder.output_upscaling.0.weight"])


def test_two_process_data_parallel_training_keeps_replicas_identical(tmp_path):
    env = dict(os.environ, SAM_LAB_DDP_BACKEND="gloo", OMP_NUM_THREADS="1")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
        "-m", "sam_lab.training", "--steps", "3", "--batch-size", "2", "--num-images", "6",
        "--out", str(tmp_path), "--threads", "1", "--eval-images", "0", "--warmup", "1",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    fingerprints = json.loads((tmp_path / "replicas.json").read_text())
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    assert (tmp_path / "model.safetensors").exists()


def _nested_item():
    masks = np.zeros((4, 40, 40), dtype=bool)
    masks[0, 4:36, 4:36] = True  # whole
    masks[1, 8:28, 8:28] = True  # part of it
    masks[2, 10:18, 10:18] = True  # subpart of the part
    masks[3, 0:3, 37:40] = True  # a separate object with no parts
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    return {"image": image, "masks": masks, "parent": np.array([-1, 0, 1, -1]), "level": np.array([0, 1, 2, 0])}


def test_nested_chains_run_from_each_innermost_part_up_to_its_whole():
    from sam_lab.evaluation.ambiguity import nested_chains

    assert nested_chains(_nested_item()) == [[2, 1, 0]]
    flat = _nested_item()
    flat["parent"] = np.array([-1, -1, -1, -1])
    assert nested_chains(flat) == []  # no nesting, no ambiguous clicks


class _FakePredictor:
    """Answers every click with fixed logits (C, H, W), to check the ambiguity score by hand."""

    class model:
        mask_threshold = 0.0

    def __init__(self, logits, scores):
        self.logits, self.scores, self.calls = logits, scores, []

    def set_image(self, image):
        pass

    def predict(self, point_coords, point_labels, multimask_output, return_logits):
        self.calls.append((point_coords.copy(), multimask_output))
        return self.logits, self.scores, None


def test_in_between_scores_rings_halfway_as_one_and_committed_as_zero():
    from sam_lab.evaluation.ambiguity import in_between

    item = _nested_item()
    masks = item["masks"]
    p = np.where(masks[2], 0.9, np.where(masks[1], 0.5, np.where(masks[0], 0.1, 0.1)))
    # ring part-minus-subpart at 0.5 is halfway between 0.9 (in) and 0.1 (out): 1;
    # ring whole-minus-part at 0.1 is out: 0
    assert in_between(p, masks, [2, 1, 0]) == pytest.approx([1.0, 0.0])
    p = np.where(masks[2], 0.9, np.where(masks[1], 0.7, np.where(masks[0], 0.3, 0.1)))
    assert in_between(p, masks, [2, 1, 0]) == pytest.approx([0.5, 0.5])  # t = 0.75 and 0.25
    assert in_between(np.full((40, 40), 0.2), masks, [2, 1, 0]) == []  # no inside: nothing to score


def test_ambiguity_score_rewards_one_sharp_answer_per_level_and_measures_blur():
    from sam_lab.evaluation.ambiguity import evaluate_ambiguity

    item = _nested_item()
    sharp = np.where(item["masks"][[2, 1, 0]], 10.0, -10.0)  # the three levels exactly
    multi = evaluate_ambiguity(_FakePredictor(sharp, np.array([0.1, 0.9, 0.2])), [item])
    assert multi.num_chains == 1 and multi.miou == pytest.approx(1.0)
    # the best-scored answer (the part) is clearly in on the subpart-to-part ring, clearly out on
    # the part-to-whole ring: no blur
    assert multi.blur == pytest.approx(0.0, abs=1e-3)
    # one token that hedges: sure on the subpart, p = 0.5 on the rest of the whole
    hedge = np.where(item["masks"][2], 10.0, np.where(item["masks"][0], 0.0, -10.0))[None]
    fake = _FakePredictor(hedge, np.array([0.5]))
    single = evaluate_ambiguity(fake, [item], multimask=False)
    # logits of exactly 0 are not above the threshold: the answer is the subpart, IoU 1 / (64/400) / (64/1024)
    np.testing.assert_allclose(single.per_level_iou[0], [1.0, 64 / 400, 64 / 1024])
    assert single.blur == pytest.approx(1.0, abs=1e-3)  # both rings exactly halfway between in and out
    assert fake.calls[0][1] is False
    x, y = fake.calls[0][0][0]
    assert 13 <= x <= 14 and 13 <= y <= 14  # the middle of the subpart (rows/columns 10-17)


# ----------------------------------------------------------------------------- levers

def _episode_gradients(grad_rounds):
    torch.manual_seed(0)
    model = build_sam("tiny").train()
    images = torch.rand(2, 3, 256, 256) * 255
    targets = torch.zeros(2, 256, 256, dtype=torch.bool)
    targets[:, 60:140, 80:200] = True
    embeddings = model.image_encoder(model.preprocess(images))
    out = simulate_training_episode(model, embeddings, targets, np.random.default_rng(0), use_box=False,
                                    grad_rounds=grad_rounds)
    out["loss"].backward()
    hyper = model.mask_decoder.output_hypernetworks_mlps
    return out, [float(hyper[i].layers[0].weight.grad.abs().sum()) if hyper[i].layers[0].weight.grad is not None else 0.0
                 for i in range(4)]


def test_grad_rounds_decides_which_rounds_train_the_ambiguity_tokens():
    """Round 1 (one point) is the only round that uses the three ambiguity tokens 1-3; the later
    rounds train token 0. (Min-over-masks trains one of tokens 1-3 per prompt.) Backpropagating
    only the last round leaves tokens 1-3 untouched."""
    _, every = _episode_gradients("all")
    _, first_last = _episode_gradients("first_last")
    out, last = _episode_gradients("last")
    for grads in (every, first_last):
        assert grads[0] > 0 and max(grads[1:]) > 0
    assert last[0] > 0 and last[1:] == [0.0, 0.0, 0.0]
    assert out["miou_first"] is not None  # every round still runs, to place the clicks
    with pytest.raises(ValueError, match="grad_rounds: expected one of"):
        _episode_gradients("some")


def test_focal_alpha_weighs_the_positive_pixels():
    logits = torch.zeros(1, 1, 4, 4)
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1  # half the pixels positive; at p = 0.5 both classes have the same focal term
    low = sam_loss(logits, torch.zeros(1, 1), target, focal_alpha=0.25)["mask"]
    even = sam_loss(logits, torch.zeros(1, 1), target, focal_alpha=0.5)["mask"]
    # focal part: 20 * mean(alpha_t) * ce * 0.25, mean(alpha_t) = 0.5 for both alphas on a half-positive target
    assert float(low) == pytest.approx(float(even))
    target[0, :3] = 1  # now 3/4 positive: alpha = 0.5 weighs them more than alpha = 0.25
    assert float(sam_loss(logits, torch.zeros(1, 1), target, focal_alpha=0.5)["mask"]) > float(
        sam_loss(logits, torch.zeros(1, 1), target, focal_alpha=0.25)["mask"])


# ----------------------------------------------------------------------------- MAE pre-training

def test_mae_hides_exactly_three_quarters_of_the_patches_and_scores_only_those():
    from sam_lab.training.mae import masked_loss, normalised_targets, patchify, random_patch_mask, unpatchify

    hidden = random_patch_mask(np.random.default_rng(0), 3, 16)
    assert hidden.shape == (3, 16, 16) and hidden.flatten(1).sum(1).tolist() == [192, 192, 192]
    images = torch.rand(2, 3, 32, 48)
    assert torch.equal(unpatchify(patchify(images, 16), 16), images)
    target = normalised_targets(images, 16)
    assert target.mean(-1).abs().max() < 1e-5 and (target.var(-1) - 1).abs().max() < 1e-3
    mask = torch.zeros(2, 2, 3, dtype=torch.bool)
    mask[:, 0, 0] = True
    prediction = target.clone()
    prediction[:, 1] += 5.0  # wrong only where nothing is hidden
    assert masked_loss(prediction, target, mask).item() == 0.0
    prediction[:, 0, 0] += 1.0
    assert masked_loss(prediction, target, mask).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mask_ratio: expected a fraction"):
        random_patch_mask(np.random.default_rng(0), 1, 4, ratio=1.0)


def test_mae_resumes_exactly_and_its_encoder_initialises_sam_training(tmp_path):
    from sam_lab.training.mae import MAEConfig, pretrain
    from sam_lab.training.train import TrainConfig, train

    kwargs = dict(steps=4, batch_size=2, num_images=4, warmup=2, checkpoint_every=2, decoder_dim=32)
    straight = pretrain(MAEConfig(out=str(tmp_path / "a"), **kwargs), progress=False)
    pretrain(MAEConfig(out=str(tmp_path / "b"), **kwargs), stop_after=2, progress=False)
    resumed = pretrain(MAEConfig(out=str(tmp_path / "b"), **kwargs), progress=False)  # from step 2
    for (name, a), (_, b) in zip(straight["model"].state_dict().items(), resumed["model"].state_dict().items()):
        assert torch.equal(a, b), name
    assert straight["history"][-1]["loss"] == resumed["history"][-1]["loss"]
    encoder = tmp_path / "a" / "encoder.safetensors"
    run = train(TrainConfig(config="tiny16", steps=1, batch_size=1, masks_per_image=1, num_images=2, warmup=1,
                            init_encoder=str(encoder), out=str(tmp_path / "sam")), progress=False)
    assert run["step"] == 1
    start = sam_lab.build_sam("tiny16")  # MAEConfig's default: the grid training from scratch starts at
    sam_lab.load_checkpoint(start.image_encoder, encoder)  # strict: exactly the encoder's keys


# ----------------------------------------------------------------------------- rounds, warm-up, augmentation

def test_one_round_plan_is_the_first_prompt_only_and_bad_rounds_are_refused():
    assert round_plan(np.random.default_rng(0), num_rounds=1, num_points=0) == []
    assert round_plan(np.random.default_rng(0), num_rounds=3, num_points=1) == [True, False]
    with pytest.raises(ValueError, match="num_rounds: expected at least 1"):
        round_plan(np.random.default_rng(0), num_rounds=0)


def test_first_prompt_steps_decode_once_per_step_then_the_full_simulation(tmp_path, monkeypatch):
    from sam_lab.training import train as train_module

    rounds_seen = []
    original = train_module.simulate_training_episode
    monkeypatch.setattr(train_module, "simulate_training_episode",
                        lambda *a, **k: rounds_seen.append(k["num_rounds"]) or original(*a, **k))
    cfg = train_module.TrainConfig(steps=3, batch_size=1, masks_per_image=1, num_images=2, warmup=1,
                                   first_prompt_steps=2, rounds=3, error_points=1, out=str(tmp_path))
    train_module.train(cfg, progress=False)
    assert rounds_seen == [1, 1, 3]
    with pytest.raises(ValueError, match="num_points: expected at most"):
        train_module.train(train_module.TrainConfig(rounds=2, error_points=1, out=str(tmp_path / "x")), progress=False)


def test_augmentation_moves_image_and_masks_together_and_drops_masks_it_empties():
    from sam_lab.training.train import MIN_AUGMENTED_AREA, augment_item

    S = 64
    image = np.zeros((S, S, 3), np.uint8)
    masks = np.zeros((2, S, S), bool)
    masks[0, 10:30, 5:25] = True  # a big square, painted white
    masks[1, 50, 50] = True  # one pixel: any zoom-out drops it
    image[masks[0]] = 255
    zoomed = 0
    for seed in range(40):
        out, out_masks = augment_item(image, masks, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.uint8 and out_masks.dtype == bool
        assert (out_masks.reshape(len(out_masks), -1).sum(1) >= MIN_AUGMENTED_AREA).all() or len(out_masks) == 2
        big = out_masks[0]
        # colour jitter is at most x1.25 + 25: the white square stays far brighter than its surround
        inside, outside = out[big].mean(), out[~big].mean()
        assert inside > outside
        zoomed += big.sum() < masks[0].sum() * 0.9
    assert zoomed > 5  # the zoom-out happens, and shrinks the object with its mask


def test_tied_query_key_init_makes_a_point_attend_to_the_image_around_its_click():
    """With keys = queries, the click's positional encoding scores highest where the image's
    encoding is most alike: near the click. Random independent projections have no such peak."""
    from sam_lab.modeling.two_way_transformer import DecoderAttention
    from sam_lab.training.train import tie_query_key

    def peak_distance(model):
        attention = model.mask_decoder.transformer.layers[0].cross_attn_token_to_image
        pe_layer = model.prompt_encoder.pe_layer
        h, w = model.prompt_encoder.image_embedding_size
        image_pe = pe_layer((h, w)).flatten(1).T[None]  # (1, h*w, C)
        distances = []
        for x, y in [(40, 40), (200, 60), (128, 128), (70, 210)]:
            point_pe = pe_layer.forward_with_coords(torch.tensor([[[x + 0.5, y + 0.5]]]), (256, 256))  # (1, 1, C)
            q = attention.q_proj(point_pe)
            k = attention.k_proj(image_pe)
            best = int((q @ k.transpose(1, 2)).argmax())
            by, bx = divmod(best, w)
            distances.append(np.hypot((bx + 0.5) * 256 / w - x, (by + 0.5) * 256 / h - y))
        return float(np.mean(distances))

    torch.manual_seed(0)
    model = build_sam("tiny")
    untied = peak_distance(model)
    assert tie_query_key(model) == sum(isinstance(m, DecoderAttention) for m in model.modules())
    tied = peak_distance(model)
    assert tied < 20 < untied  # within about one token of the click, against far away
    with pytest.raises(ValueError, match="decoder_init: expected one of"):
        sam_lab.training.train.train(sam_lab.training.train.TrainConfig(decoder_init="zero"), progress=False)


def test_level_iou_scores_each_mask_against_the_best_matching_object_that_contains_the_click():
    """A whole (rows 0-7) holding a part (rows 0-3), and a separate object (rows 12-15); a click
    in the part. A mask equal to the whole scores 1 (the whole contains the click), one equal to
    the part scores 1, one equal to the other object scores 0 (it does not contain the click)."""
    from sam_lab.training.clicks import level_iou

    levels = torch.zeros(1, 3, 16, 16, dtype=torch.bool)
    levels[0, 0, :8], levels[0, 1, :4], levels[0, 2, 12:] = True, True, True
    logits = torch.where(levels, 5.0, -5.0)  # (1, 3, 16, 16): one mask per object
    half = torch.where(torch.arange(16)[:, None] < 6, 5.0, -5.0).expand(16, 16)  # rows 0-5
    logits = torch.cat([logits, half[None, None]], 1)
    got = level_iou(logits, levels, torch.tensor([[3.0, 2.0]]))  # (x, y) inside the part
    torch.testing.assert_close(got, torch.tensor([[1.0, 1.0, 0.0, 6 / 8]]))  # rows 0-5: 6/8 of the whole, 4/6 of the part


def test_expected_level_iou_averages_the_target_iou_over_which_containing_mask_was_drawn():
    """A whole (rows 0-7, area 128) holding a part (rows 0-3, area 64), drawn twice, and a separate
    object; a click in the part. The click's target is the part with odds 1/64 and the whole with
    odds 1/128 (2 : 1; the repeat counts once, the object does not contain the click), so each
    mask scores 2/3 of its IoU with the part plus 1/3 of its IoU with the whole."""
    from sam_lab.training.clicks import expected_level_iou

    levels = torch.zeros(1, 4, 16, 16, dtype=torch.bool)
    levels[0, 0, :8], levels[0, 1, :4], levels[0, 2, 12:], levels[0, 3, :4] = True, True, True, True
    logits = torch.where(levels[:, :3], 5.0, -5.0)  # a mask per object: whole, part, other
    got = expected_level_iou(logits, levels, torch.tensor([[3.0, 2.0]]))
    torch.testing.assert_close(got, torch.tensor([[2 / 3 * 0.5 + 1 / 3, 2 / 3 + 1 / 3 * 0.5, 0.0]]))
    alone = expected_level_iou(logits, levels, torch.tensor([[3.0, 13.0]]))  # in the other object only
    torch.testing.assert_close(alone, torch.tensor([[0.0, 0.0, 1.0]]))


def test_any_level_iou_target_trains_the_iou_head_on_the_level_score(tmp_path, monkeypatch):
    """Given the image's masks, a one-click round's IoU head regresses level_iou (never below the
    IoU with the target, which is one of the levels); later rounds (several clicks) keep the
    target's IoU. train(iou_target="any_level") hands each target its image's drawn masks."""
    from sam_lab.training import clicks, losses
    from sam_lab.training.train import train

    calls = []
    real = losses.sam_loss

    def spy(*a, **kw):
        out = real(*a, **kw)
        calls.append((kw.get("iou_target"), out["iou_true"]))
        return out

    monkeypatch.setattr(clicks, "sam_loss", spy)
    torch.manual_seed(0)
    model = build_sam("tiny")
    whole = torch.zeros(256, 256, dtype=torch.bool)
    whole[40:200, 40:200] = True
    part = torch.zeros_like(whole)
    part[60:120, 60:120] = True
    gt = torch.stack([whole, part])
    with torch.no_grad():
        embeddings = model.image_encoder(model.preprocess(torch.rand(1, 3, 256, 256) * 255)).expand(2, -1, -1, -1)
        simulate_training_episode(model, embeddings, gt, np.random.default_rng(0), num_rounds=3, num_points=1,
                                  use_box=False, level_masks=gt[None].expand(2, -1, -1, -1))
    (first, first_true), *later = calls
    assert first.shape == (2, 3) and bool((first >= first_true - 1e-6).all())
    assert all(target is None for target, _ in later)
    calls.clear()  # "mixed": the same episode, the mean of the level score and the target's IoU
    with torch.no_grad():
        simulate_training_episode(model, embeddings, gt, np.random.default_rng(0), num_rounds=3, num_points=1,
                                  use_box=False, level_masks=gt[None].expand(2, -1, -1, -1), level_weight=0.5)
    torch.testing.assert_close(calls[0][0], 0.5 * (first + first_true))
    levels = []
    real_episode = clicks.simulate_training_episode
    import sam_lab.training.train as T
    monkeypatch.setattr(T, "simulate_training_episode", lambda *a, **kw: levels.append(kw["level_masks"]) or real_episode(*a, **kw))
    train(_cfg(tmp_path / "lv", steps=1, iou_target="any_level", rounds=1, masks_per_image=2), resume=False, progress=False)
    train(_cfg(tmp_path / "t", steps=1, rounds=1, masks_per_image=2), resume=False, progress=False)
    assert levels[0].shape[1] == 2 and levels[0].dtype == torch.bool and levels[1] is None
    weights = []
    monkeypatch.setattr(T, "simulate_training_episode", lambda *a, **kw: weights.append(kw["level_weight"]) or real_episode(*a, **kw))
    train(_cfg(tmp_path / "mx", steps=1, iou_target="mixed", rounds=1, masks_per_image=2), resume=False, progress=False)
    train(_cfg(tmp_path / "ex", steps=1, iou_target="expected", rounds=1, masks_per_image=2), resume=False, progress=False)
    assert weights == [0.5, None]
    calls.clear()  # "expected": the episode scores the first round with expected_level_iou
    with torch.no_grad():
        simulate_training_episode(model, embeddings, gt, np.random.default_rng(0), num_rounds=1,
                                  use_box=False, level_masks=gt[None].expand(2, -1, -1, -1), level_weight=None)
    assert calls[0][0].shape == (2, 3) and not torch.allclose(calls[0][0], first)
    with pytest.raises(ValueError, match="iou_target: expected one of"):
        train(_cfg(tmp_path / "x", steps=1, iou_target="max"), resume=False, progress=False)
    with pytest.raises(ValueError, match="iou_target: expected shape"):
        real(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3), torch.zeros(2, 4, 4), iou_target=torch.zeros(2, 1))


# ----------------------------------------------------------------------------- mask targets

def _disc(size: int, radius: float, centre: float) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    return (ys - centre) ** 2 + (xs - centre) ** 2 <= radius**2


def _fit_free_logits(target: torch.Tensor, full: bool, steps: int = 300) -> torch.Tensor:
    """A free 16x16 logit map trained with sam_loss against one target (16x16 coverage or the
    64x64 mask itself when ``full``); returns it upsampled to 64x64 and thresholded."""
    import torch.nn.functional as F

    logits = torch.zeros(1, 1, 16, 16, requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=0.1)
    for _ in range(steps):
        scored = F.interpolate(logits, (64, 64), mode="bilinear", align_corners=False) if full else logits
        loss = sam_loss(scored, torch.zeros(1, 1), target[None], focal_alpha=0.5)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return F.interpolate(logits.detach(), (64, 64), mode="bilinear", align_corners=False)[0, 0] > 0


def test_soft_and_full_size_mask_targets_place_the_boundary_inside_a_low_res_pixel():
    """A disc of radius 5.2 px on a 64-px image, predicted by a 16x16 logit map (4 px a logit, as
    the tiny model's 64x64 masks of its 256-px input). Trained against the binary low-res target
    (coverage >= 0.5), the best logits know the boundary only to the nearest low-res pixel; against
    the soft coverage or the full-size mask they learn where inside a pixel it runs, and the
    upsampled mask's IoU with the disc rises (measured: 0.755 binary, 0.910 soft, 0.978 full)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    disc = _disc(64, 5.2, 29.6)
    coverage = F.interpolate(disc[None, None].float(), (16, 16), mode="area")[0, 0]
    ious = {}
    for name, target, full in [("binary", coverage >= 0.5, False), ("soft", coverage, False), ("full", disc, True)]:
        ious[name] = float(mask_iou(_fit_free_logits(target, full)[None], disc[None]))
    assert ious["soft"] > ious["binary"] + 0.1 and ious["full"] > ious["binary"] + 0.1, ious
    # a soft target that is exactly 0 or 1 is the binary target: the same loss and IoU
    binary = (coverage >= 0.5).float()
    logits, iou_pred = torch.randn(1, 3, 16, 16), torch.rand(1, 3)
    a, b = sam_loss(logits, iou_pred, binary[None]), sam_loss(logits, iou_pred, binary.bool()[None])
    assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["iou_true"], b["iou_true"])
    # the IoU head's target for a soft target is the IoU against coverage >= 0.5
    soft = sam_loss(logits, iou_pred, coverage[None])
    assert torch.allclose(soft["iou_true"], mask_iou(logits > 0, (coverage >= 0.5)[None, None].expand(1, 3, 16, 16)))


def test_mask_target_decides_what_the_episode_scores_and_bad_ones_are_refused(tmp_path, monkeypatch):
    """"binary" and "soft" score the 64x64 low-res logits (a bool target, then the coverage
    fraction), "full" scores them upsampled to 256x256 against the full-size bool target;
    TrainConfig(mask_target=...) reaches the episode, and an unknown name is an error naming it."""
    from sam_lab.training import clicks
    from sam_lab.training.train import train

    model = build_sam("tiny").train()
    targets = torch.zeros(2, 256, 256, dtype=torch.bool)
    targets[0, 50:151, 61:119] = True
    targets[1, 101:203, 99:221] = True
    embeddings = model.image_encoder(model.preprocess(torch.rand(2, 3, 256, 256) * 255))
    seen = []
    real = clicks.sam_loss

    def spy(logits, iou_pred, target, **kw):
        seen.append((tuple(logits.shape[-2:]), target.dtype, bool(((target > 0) & (target < 1)).any())))
        return real(logits, iou_pred, target, **kw)

    monkeypatch.setattr(clicks, "sam_loss", spy)
    for name in ("binary", "soft", "full"):
        out = clicks.simulate_training_episode(model, embeddings, targets, np.random.default_rng(0), num_rounds=1, num_points=0,
                                               use_box=False, mask_target=name)
        out["loss"].backward(retain_graph=True)
    assert seen == [((128, 128), torch.bool, False), ((128, 128), torch.float32, True), ((256, 256), torch.bool, False)]
    with pytest.raises(ValueError, match="mask_target: expected one of"):
        clicks.simulate_training_episode(model, embeddings, targets, np.random.default_rng(0), mask_target="exact")
    seen.clear()
    train(_cfg(tmp_path / "soft", steps=1, rounds=1, error_points=0, mask_target="soft"), resume=False, progress=False)
    assert seen and all(dtype == torch.float32 for _, dtype, _ in seen)
    with pytest.raises(ValueError, match="mask_target: expected one of"):
        train(_cfg(tmp_path / "x", steps=1, mask_target="exact"), resume=False, progress=False)


def test_tiny_targets_ceilings_binary_targets_cap_the_iou_and_the_readout_finds_a_feature_that_holds_the_mask():
    """benchmarks/tiny_targets.py's diagnostics. The binary low-res target loses more than the
    soft one (on 4 unseen images: fewer masks can reach 0.9). The feature readout captures the
    decoder's upscaled features at the last click and fits the best linear readout: with one
    feature channel overwritten by the target's own coverage logit it finds that channel (IoU
    near the soft ceiling), whatever the untrained model's masks are."""
    import torch.nn.functional as F
    from conftest import load_benchmark

    from sam_lab.training.data import SyntheticShapes

    bench = load_benchmark("tiny_targets")
    images = SyntheticShapes(4, seed=10_000)
    soft, binary = bench.low_res_ceiling(images, 64), bench.low_res_ceiling(images, 64, binary=True)
    assert soft["mean"] > binary["mean"] + 0.02 and soft["share_reaching_0.9"] > binary["share_reaching_0.9"]

    class OneImage:
        def __init__(self):
            self.mask = np.zeros((256, 256), dtype=bool)
            self.mask[70:151, 83:171] = True

        def __len__(self):
            return 1

        def __getitem__(self, index):
            return {"image": np.full((256, 256, 3), 120, dtype=np.uint8), "masks": self.mask[None]}

    data = OneImage()
    model = build_sam("tiny").eval()
    upscaling = model.mask_decoder.output_upscaling
    coverage = F.interpolate(torch.as_tensor(data.mask)[None, None].float(), (128, 128), mode="area")[0, 0]

    class Planted(torch.nn.Module):
        def forward(self, x):
            out = upscaling(x).clone()
            out[:, 0] = 10 * (coverage - 0.5)
            return out

    model.mask_decoder.output_upscaling = Planted()
    # the hook is registered on the module that produces the features: the planted one
    result = bench.feature_readout_ceiling(model, data, images=1, clicks=2, fit_steps=300)
    assert result["targets"] == 1 and result["clicks"] == 2
    assert result["readout_iou"] > 0.95 and result["readout_share_0.9"] == 1.0


def test_finetune_levers_are_valid_train_configs_that_differ_from_the_control_in_one_field(tmp_path):
    """benchmarks/finetune_levers.py: every lever builds a TrainConfig that starts from the shipped
    weights, and differs from the control ("binary") only in the field it names (a regrid lever:
    only in its starting point and its grid)."""
    from dataclasses import asdict

    from conftest import load_benchmark

    from sam_lab.training.clicks import MASK_TARGETS

    bench = load_benchmark("finetune_levers")
    control = asdict(bench.train_config("binary", tmp_path))
    assert control["init"] == "sam_lab/weights/tiny16.safetensors" and control["mask_target"] == "binary"
    configs = {name: asdict(bench.train_config(name, tmp_path)) for name in bench.LEVERS}
    for name, changes in bench.LEVERS.items():
        allowed = {"init", "config_overrides"} if "regrid" in changes else set(changes)
        assert {k for k, v in configs[name].items() if v != control[k]} <= allowed | {"out"}, name
    assert {bench.LEVERS[n]["mask_target"] for n in ("binary", "soft", "full")} == set(MASK_TARGETS)
    patch8 = configs["patch8"]
    assert os.path.isfile(patch8["init"]) and "patch_size=8" in patch8["config_overrides"]


def test_regrid_starts_as_the_coarse_model_on_the_upsampled_image():
    """sam_lab.training.regrid: at patch 8 the new encoder computes on an image what the patch-16
    model (tiny16) computes on that image upsampled 2x (nearest), with its windows doubled and its
    position tables resized on the fly by the model's own code; masks come out at 128x128; the
    result has tiny's shape (the shipped recipe's last stage loads it as "tiny"); a patch size that
    does not divide 16, or a model that is not of the config named, is refused naming the argument."""
    import torch.nn.functional as F
    from dataclasses import replace

    from sam_lab.config import TINY
    from sam_lab.training.regrid import regrid, regrid_config

    coarse = sam_lab.load_model("tiny16").eval()
    model, config = regrid(coarse, "tiny16", 8)
    assert replace(config, name="tiny") == TINY and not model.training
    model.load_state_dict(build_sam("tiny").state_dict() | model.state_dict())  # same keys, same shapes
    oracle_model = sam_lab.load_model("tiny16").eval()
    for block in oracle_model.image_encoder.blocks:
        block.window_size *= 2
    torch.manual_seed(0)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        ours = model.image_encoder(x)
        oracle = oracle_model.image_encoder(F.interpolate(x, scale_factor=2, mode="nearest"))
    assert ours.shape == (1, 64, 32, 32)
    torch.testing.assert_close(ours, oracle, atol=1e-4, rtol=1e-4)
    point = (torch.tensor([[[128.0, 128.0]]]), torch.ones(1, 1))
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(points=point, boxes=None, masks=None)
        low_res, _ = model.mask_decoder(image_embeddings=ours, image_pe=model.prompt_encoder.get_dense_pe(),
                                        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                        multimask_output=True)
    assert low_res.shape[-2:] == (128, 128)
    for bad in (5, 0, 8.0, True):
        with pytest.raises(ValueError, match="patch_size: expected a positive divisor"):
            regrid_config("tiny16", bad)
    with pytest.raises(ValueError, match="model: expected a SAM with config 'tiny16'"):
        regrid(model, "tiny16", 8)  # already at patch 8


def test_finetune_levers_regrid_init_writes_the_recipe_starting_point(tmp_path):
    """benchmarks/finetune_levers.py --regrid-init: the patch-16 weights moved by the library's
    regrid, written atomically, with the overrides of tiny16 that make tiny's grid."""
    from conftest import load_benchmark

    from sam_lab.config import TINY, override_config
    from sam_lab.training.regrid import regrid
    from sam_lab.weights import load_checkpoint

    bench = load_benchmark("finetune_levers")
    made = bench.regrid_init(str(tmp_path / "p8.safetensors"), 8)
    assert override_config("tiny16", made["overrides"]).image_encoder == TINY.image_encoder
    written = load_checkpoint(build_sam("tiny"), str(tmp_path / "p8.safetensors")).state_dict()
    expected = regrid(sam_lab.load_model("tiny16"), "tiny16", 8)[0].state_dict()
    assert all(torch.equal(written[k], expected[k]) for k in expected)
    with pytest.raises(ValueError, match="patch_size: expected a positive divisor"):
        bench.regrid_init(str(tmp_path / "x.safetensors"), 5)
    assert not (tmp_path / "x.safetensors").exists()


def test_recipe_chains_its_stages_numbers_the_curve_on_and_continues_a_run_stopped_between_stages(tmp_path):
    """sam_lab.training.recipe at a thousandth of its steps: each stage starts from the one before
    (the regrid stage moves the patch-16 weights to tiny's grid), the final model loads as "tiny",
    the curve numbers steps on across stages, a finished run is skipped stage by stage, and a run
    stopped after a stage and continued ends with the same weights as one that never stopped."""
    from sam_lab.training import recipe
    from sam_lab.weights import load_checkpoint

    stages = recipe.stage_configs(tmp_path / "a", 0.001, threads=1)
    assert [s["name"] for s in stages] == ["coarse", "coarse_finetune", "regrid", "fine"]
    assert [s["train"].config for s in stages if "train" in s] == ["tiny16", "tiny16", "tiny"]
    assert stages[1]["train"].init == str(stages[0]["model"]) and stages[3]["train"].init == str(stages[2]["model"])
    steps = [s["train"].steps for s in stages if "train" in s]
    whole = recipe.run_recipe(tmp_path / "a", 0.001, progress=False, threads=1)
    final = load_checkpoint(build_sam("tiny"), whole["model"]).state_dict()
    history = json.loads((tmp_path / "a" / "history.json").read_text())
    assert [r["step"] for r in history] == list(range(1, sum(steps) + 1))
    again = recipe.run_recipe(tmp_path / "a", 0.001, progress=False, threads=1)
    assert all(s["skipped"] for s in again["stages"])
    part = recipe.run_recipe(tmp_path / "b", 0.001, progress=False, stop_after_stage="regrid", threads=1)
    assert [s["name"] for s in part["stages"]] == ["coarse", "coarse_finetune", "regrid"] and part["model"] is None
    rest = recipe.run_recipe(tmp_path / "b", 0.001, progress=False, threads=1)
    assert [s["skipped"] for s in rest["stages"]] == [True, True, True, False]
    resumed = load_checkpoint(build_sam("tiny"), rest["model"]).state_dict()
    assert all(torch.equal(final[k], resumed[k]) for k in final)
    with pytest.raises(ValueError, match="steps_scale: expected a number in"):
        recipe.stage_configs(tmp_path, 0)
    with pytest.raises(ValueError, match="speed: only threads, device and attention"):
        recipe.stage_configs(tmp_path, 1, lr=1.0)
    with pytest.raises(ValueError, match="stop_after_stage: expected one of"):
        recipe.run_recipe(tmp_path, 1, stop_after_stage="warmup")
    with pytest.raises(ValueError, match="recipe: expected one of"):
        recipe.stage_configs(tmp_path, 1, recipe="tiny8")


def test_the_ablation_recipes_run_the_same_stages_and_end_at_tinys_grid(tmp_path):
    """Lesson 08's ablation pair: both recipes go coarse (tiny16) -> regrid -> fine (tiny) at the
    same steps, differ only in single_output, and a thousandth-scale run ends in a tiny model."""
    from sam_lab.training import recipe
    from sam_lab.weights import load_checkpoint

    pair = [recipe.stage_configs(tmp_path / k, 1, recipe=f"ablation_{k}") for k in ("multimask", "single_output")]
    for stages, single in zip(pair, (False, True)):
        assert [s["name"] for s in stages] == ["coarse", "regrid", "fine"]
        assert [s["train"].single_output for s in stages if "train" in s] == [single, single]
        assert stages[2]["train"].init == str(stages[1]["model"]) and stages[1]["init"] == stages[0]["model"]
    assert [s["train"].steps for s in pair[0] if "train" in s] == [s["train"].steps for s in pair[1] if "train" in s]
    done = recipe.run_recipe(tmp_path / "run", 0.001, progress=False, recipe="ablation_single_output", threads=1)
    load_checkpoint(build_sam("tiny"), done["model"])  # strict keys at tiny's grid
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == sum(s["train"].steps for s in recipe.stage_configs(tmp_path, 0.001, recipe="ablation_multimask")
                               if "train" in s)


def test_trunk_init_keeps_the_shipped_encoder_trunk_and_starts_the_rest_fresh_at_a_wider_decoder(tmp_path):
    """finetune_levers.py --trunk-init: the encoder's patch embedding, positions and blocks are the
    patch-16 model's (tiny16); the neck, prompt encoder and decoder are new (tied_qk: keys = queries) at the
    overridden width; a change that alters the trunk's shapes is refused, naming the argument."""
    from conftest import load_benchmark

    from sam_lab.config import override_config
    from sam_lab.weights import load_checkpoint

    bench = load_benchmark("finetune_levers")
    wide = ("image_encoder.out_chans=128, prompt_encoder.embed_dim=128, mask_decoder.transformer_dim=128, "
            "mask_decoder.transformer_mlp_dim=512, mask_decoder.iou_head_hidden_dim=128")
    counts = bench.trunk_init(str(tmp_path / "init.safetensors"), wide)
    model = build_sam(override_config("tiny16", wide))
    load_checkpoint(model, str(tmp_path / "init.safetensors"))
    shipped = sam_lab.load_model("tiny16").state_dict()
    state = model.state_dict()
    assert counts["parameters"] == 1_470_048 and counts["copied"] == 59
    assert torch.equal(state["image_encoder.blocks.3.mlp.lin2.weight"], shipped["image_encoder.blocks.3.mlp.lin2.weight"])
    assert state["mask_decoder.output_upscaling.3.weight"].shape[1] == 128 // 8  # 16 feature channels, not 8
    attention = model.mask_decoder.transformer.layers[0].cross_attn_token_to_image
    assert torch.equal(attention.k_proj.weight, attention.q_proj.weight)
    with pytest.raises(ValueError, match="overrides: the encoder trunk must keep the shipped shapes"):
        bench.trunk_init(str(tmp_path / "x.safetensors"), "image_encoder.embed_dim=192, image_encoder.num_heads=8")
    assert not (tmp_path / "x.safetensors").exists()


def test_tiny_targets_groups_noc_by_mask_size_and_level():
    """reach_by_kind: targets in image order, grouped by area bin and nesting level; a target whose
    NoC@90 is the cap (20) has not reached 0.9; a result of another length is refused."""
    from types import SimpleNamespace

    from conftest import load_benchmark

    bench = load_benchmark("tiny_targets")

    def item(areas, levels):
        masks = np.zeros((len(areas), 256, 256), dtype=bool)
        for k, a in enumerate(areas):
            masks[k].flat[:a] = True
        return {"masks": masks, "level": np.array(levels)}

    data = [item([500, 5000], [0, 1]), item([9000], [0])]
    result = bench.reach_by_kind(data, SimpleNamespace(per_target_noc90=[20, 3, 5]))
    assert result["area 0-1000"] == {"targets": 1, "reach_0.9": 0.0, "noc90": 20.0}
    assert result["area 3000-8000"] == {"targets": 1, "reach_0.9": 1.0, "noc90": 3.0}
    assert result["area 8000-up"]["noc90"] == 5.0 and "area 1000-3000" not in result
    assert result["level 0"] == {"targets": 2, "reach_0.9": 0.5, "noc90": 12.5} and result["level 1"]["targets"] == 1
    with pytest.raises(ValueError, match="interactive: expected one NoC per mask"):
        bench.reach_by_kind(data, SimpleNamespace(per_target_noc90=[20, 3]))


def test_tiny_targets_perfect_levels_ceiling_is_the_best_a_perfect_model_could_pick_from_an_ambiguous_click():
    """perfect_levels_ceiling: answers are the levels containing the click. A whole (40 x 40) and
    its part (16 x 16) share their middle click: the best head picks the likelier target, the
    part (odds 1/area), right for the part, wrong for the whole; a lone disc is always right."""
    from conftest import load_benchmark

    bench = load_benchmark("tiny_targets")
    S = 64
    masks = np.zeros((3, S, S), bool)
    masks[0, 4:44, 4:44] = True
    masks[1, 16:32, 16:32] = True
    yy, xx = np.mgrid[:S, :S]
    masks[2] = (yy - 54) ** 2 + (xx - 54) ** 2 <= 6**2
    item = {"image": np.zeros((S, S, 3), np.uint8), "masks": masks, "level": np.array([0, 1, 0])}
    ceiling = bench.perfect_levels_ceiling([item])
    assert ceiling["pick"] == pytest.approx((16 * 16 / (40 * 40) + 1 + 1) / 3)
    r = 16 * 16 / (40 * 40)  # the part's IoU with the whole
    w_whole, w_part = 1 / (1 + 1 / r), 1 / (1 + r)  # odds 1/area: the part is the likelier target
    ideal = [w_whole * r + w_part, w_whole + w_part * r, w_whole + w_part * r] * 2 + [1, 1, 1]
    true = [r, 1, 1] + [1, r, r] + [1, 1, 1]  # answers (part, whole, whole) against the whole, the part; the disc
    assert ceiling["pearson"] == pytest.approx(np.corrcoef(ideal, true)[0, 1])


def test_iou_calibrator_features_describe_each_candidate_with_its_siblings_and_score_the_pick():
    """benchmarks/iou_calibrator.py: a candidate's row holds its own score, area, stability and
    inside logit, then its two siblings', its token one-hot and its IoUs with the siblings; the
    pick is the true IoU of each click's top-scored candidate."""
    from conftest import load_benchmark

    bench = load_benchmark("iou_calibrator")
    logits = np.full((3, 8, 8), -5.0, np.float32)
    logits[0, :4, :4] = 5.0  # 16 px
    logits[1, :4, :4] = 5.0  # the same mask
    logits[2, :, :] = 0.5  # the whole image, unstable: above 0 and -1, below +1
    rows = bench.candidate_features(logits, np.array([0.9, 0.5, 0.1]))
    assert rows.shape == (3, 17)
    assert rows[0, 0] == pytest.approx(0.9) and rows[0, 1] == pytest.approx(np.log1p(16))
    assert rows[0, 2] == pytest.approx(1.0) and rows[2, 2] == pytest.approx(0.0)  # stability
    np.testing.assert_allclose(rows[1, 12:15], [0, 1, 0])  # token 2
    np.testing.assert_allclose(rows[0, 15:], [1.0, 16 / 64], rtol=1e-6)  # IoU with its twin, with the whole
    np.testing.assert_allclose(rows[0, 4:8], rows[1, :4])  # first sibling of token 1 is token 2
    got = bench.scored(np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.3]), np.array([0.2, 1.0, 0.6, 0.4, 0.9, 0.5]), np.array([0, 0, 0, 1, 1, 1]))
    assert got["pick"] == pytest.approx((0.2 + 0.9) / 2)


def test_interior_first_clicks_fall_in_the_masks_core_and_a_bad_choice_is_refused(tmp_path):
    """first_click="interior": the first point is drawn among the pixels at least half as far from
    the boundary as the farthest one; an empty mask and an unknown choice are refused by name."""
    from sam_lab.training.clicks import sample_interior_point
    from sam_lab.training.train import train

    mask = np.zeros((64, 64), bool)
    mask[10:50, 10:30] = True  # 40 x 20: the farthest pixels are 10 px from the boundary
    rng = np.random.default_rng(0)
    points = np.stack([sample_interior_point(mask, rng) for _ in range(200)])
    assert points[:, 0].min() >= 14 and points[:, 0].max() <= 25  # x within 5 px of the middle columns
    assert points[:, 1].min() >= 14 and points[:, 1].max() <= 45
    assert len({tuple(p) for p in points}) > 50  # drawn, not a fixed point
    with pytest.raises(ValueError, match="mask: expected at least one foreground pixel"):
        sample_interior_point(np.zeros((8, 8), bool), rng)
    with pytest.raises(ValueError, match="first_click: expected one of"):
        train(_cfg(tmp_path / "x", steps=1, first_click="centre"), resume=False, progress=False)
    train(_cfg(tmp_path / "ok", steps=1, first_click="interior", rounds=1, masks_per_image=2), resume=False, progress=False)


def test_mixed_first_clicks_draw_some_in_the_core_and_some_near_the_edge(monkeypatch):
    """first_click="mixed": a coin per mask picks the core sampler or the uniform one, so over a
    batch of identical masks both kinds of first click appear; "interior" gives only core ones."""
    from sam_lab.training import clicks

    torch.manual_seed(0)
    model = build_sam("tiny")
    gt = torch.zeros(16, 256, 256, dtype=torch.bool)
    gt[:, 40:200, 40:200] = True  # 160 px wide, farthest pixels 80 px in: the core is columns 79-160
    with torch.no_grad():
        embeddings = model.image_encoder(model.preprocess(torch.rand(1, 3, 256, 256) * 255)).expand(16, -1, -1, -1)
    seen = {}
    original = model.decode
    for kind in ("interior", "mixed"):
        firsts = []

        def spy(emb, coords, *a, **kw):
            if coords is not None and coords.shape[1] == 1:
                firsts.append(coords[:, 0].clone())
            return original(emb, coords, *a, **kw)

        monkeypatch.setattr(model, "decode", spy)
        with torch.no_grad():
            clicks.simulate_training_episode(model, embeddings, gt, np.random.default_rng(1), num_rounds=1,
                                             use_box=False, first_click=kind)
        monkeypatch.setattr(model, "decode", original)
        x = firsts[0][:, 0].numpy()
        seen[kind] = ((x >= 79) & (x <= 160)).mean()  # share with x in the core's columns (>= 40 px from the edge)
    assert seen["interior"] == 1.0 and 0.4 < seen["mixed"] < 1.0


def test_click_placement_scores_uniform_and_centre_clicks_of_every_mask():
    """benchmarks/click_placement.py: a predictor that answers every click with the image's first
    mask (and a blank) is perfect on that mask and scores 0 on the others, at every click; the
    counts are masks x clicks per mask, and masks x 1 at the centre."""
    from conftest import load_benchmark

    bench = load_benchmark("click_placement")
    masks = np.zeros((2, 32, 32), bool)
    masks[0, 2:12, 2:12] = True
    masks[1, 20:30, 20:30] = True

    class FirstMask:
        def set_image(self, image):
            pass

        def predict(self, point_coords, point_labels, multimask_output=True):
            answer = np.stack([masks[0], np.zeros((32, 32), bool), np.zeros((32, 32), bool)])
            return answer, np.array([0.1, 0.9, 0.5]), answer.astype(np.float32)

    result = bench.one_click_scores(FirstMask(), [{"image": np.zeros((32, 32, 3), np.uint8), "masks": masks}], 4)
    assert result["uniform"] == {"oracle": 0.5, "pick": 0.0, "clicks": 8}  # the pick is the blank (score 0.9)
    assert result["centre"] == {"oracle": 0.5, "pick": 0.0, "clicks": 2}
