"""Train SAM with the paper's recipe: the 11-round click simulation and min-over-masks loss.

    python -m sam_lab.training --config tiny --steps 4000 --out runs/tiny
    torchrun --nproc_per_node 2 -m sam_lab.training --config tiny ...    # data-parallel
    python -m sam_lab.training --config vit_b --init sam_vit_b_01ec64.pth \
        --freeze-encoder --data coco:images/:instances.json ...          # decoder-only

Paper appendix A ("Training algorithm"): AdamW (β = 0.9, 0.999, weight decay 0.1), linear
warm-up, then the learning rate drops by 10x twice (at 2/3 and ~96 % of training: the paper's
60k and 86.7k of 90k steps). Gradients are clipped to norm 1.0.

Exact resume: every ``--checkpoint-every`` steps the model, optimiser and step are written
atomically to ``OUT/last.pt``. Each step's batch and prompts are drawn from a generator seeded
by (seed, step, rank), so a run resumed from a checkpoint produces the same weights as one
that never stopped. A killed run loses at most the steps since its last checkpoint.

Data parallel: under ``torchrun`` each process trains on its own batches and gradients are
averaged with an all-reduce (gloo on CPU, nccl on CUDA) before every optimiser step, so all
replicas stay identical.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image

from ..build import build_sam
from ..config import STEMS, override_config
from ..inference.transforms import ResizeLongestSide
from ..modeling.kernels import ATTENTION_KERNELS, attention_kernel
from ..weights.io import load_checkpoint, save_checkpoint, write_atomically
from .clicks import FIRST_CLICKS, GRAD_ROUNDS, IOU_TARGETS, MASK_TARGETS, round_plan, simulate_training_episode

TRAIN_ONLY = ("all", "iou_head")


@dataclass
class TrainConfig:
    config: str = "tiny"  # model config name
    config_overrides: str = ""  # e.g. "image_encoder.patch_size=8": see sam_lab.config.override_config
    steps: int = 4000  # optimiser steps
    batch_size: int = 4  # images per step (per process)
    masks_per_image: int = 4  # prompted masks per image (the paper samples up to 64 per GPU)
    lr: float = 8e-4  # peak learning rate (the paper's, for batch 256; fine for small models)
    weight_decay: float = 0.1
    warmup: int = 250  # linear warm-up steps
    grad_clip: float = 1.0
    seed: int = 0
    num_images: int = 2000  # synthetic training images, generated once and kept in memory
    data: str = "synthetic"  # "synthetic" or "coco:IMAGE_DIR:ANNOTATION_JSON"
    out: str = "runs/tiny"
    checkpoint_every: int = 200
    init: Optional[str] = None  # start from these weights (e.g. Meta's checkpoint)
    init_encoder: Optional[str] = None  # start the image encoder from these (MAE: training/mae.py)
    freeze_encoder: bool = False  # train prompt encoder + mask decoder only
    single_output: bool = False  # ablation: one output token, no min-over-masks
    device: str = "cpu"
    threads: int = 2
    attention: str = "sdpa"  # attention kernel: "sdpa" (the default, ~10 % faster on CPU) or "math"
    milestones: List[float] = field(default_factory=lambda: [2 / 3, 0.963])
    grad_rounds: str = "all"  # rounds the loss backpropagates through: all | first_last | last
    focal_alpha: float = 0.25  # weight of the focal loss's positives (RITM uses 0.5)
    iou_weight: float = 1.0  # weight of the IoU head's MSE against the mask loss (the paper's 1)
    rounds: int = 11  # prompting rounds per mask (the paper's 11; 1 = the first prompt only)
    error_points: int = 8  # of rounds 2..rounds, how many add an error-region point (the paper's 8)
    first_prompt_steps: int = 0  # the first N steps train the first prompt only (1 round): a cheap warm-up
    augment: bool = False  # flips, 90-degree turns, zoom-out (small objects), colour jitter, grayscale
    decoder_init: str = "default"  # "tied_qk": each decoder attention starts with keys = queries (see tie_query_key)
    train_only: str = "all"  # "iou_head": only the IoU prediction head learns (calibrating a trained model, with --init)
    iou_target: str = "target"  # "any_level": after one click the IoU head learns the IoU with the best-matching mask of the image that contains the click; "mixed": the mean of that and the target's IoU; "expected": the target's IoU averaged over which containing mask the click was drawn for (odds 1/area; the same optimum, less noise)
    first_click: str = "uniform"  # where a first point prompt is drawn: "uniform" in the mask (the paper), "interior" in its core, "mixed" either by a coin per mask
    mask_target: str = "binary"  # what the mask loss compares with: "binary" low-res target, "soft" low-res coverage, "full" the full-size target (see simulate_training_episode)
    skip_ungraded_tail: bool = True  # end each episode after its last backpropagated round (same gradient, fewer rounds; see simulate_training_episode)
    fresh_data: bool = False  # synthetic data only: every step draws new images instead of reusing num_images prepared ones
    mask_prior: float = 0.0  # > 0: the mask logits start near log(p / (1 - p)) for this foreground share p (see init_mask_prior)
    stem: str = "patch"  # the image encoder's stem: "patch" (SAM's patch projection) or "conv" (modeling.patching.ConvStem; not SAM's)


# ----------------------------------------------------------------------------- data

def to_model_input(image: np.ndarray, masks: np.ndarray, img_size: int):
    """An (H, W, 3) image and its (K, H, W) masks resized (longest side = ``img_size``) and
    padded at the bottom and right to the model's square input, as training sees them."""
    if max(image.shape[:2]) != img_size:
        image = ResizeLongestSide(img_size).apply_image(image)
        h, w = image.shape[:2]
        masks = F.interpolate(torch.as_tensor(masks[:, None]).float(), (h, w), mode="nearest")[:, 0].bool().numpy()
    h, w = image.shape[:2]
    padded = np.zeros((img_size, img_size, 3), np.uint8)
    padded[:h, :w] = image
    padded_masks = np.zeros((len(masks), img_size, img_size), bool)
    padded_masks[:, :h, :w] = masks
    return padded, padded_masks


class TrainingData:
    """Images resized/padded to the model input and their masks, held in memory."""

    def __init__(self, dataset, img_size: int, progress: bool = True) -> None:
        from tqdm.auto import tqdm

        self.img_size = img_size
        self.images: List[np.ndarray] = []
        self.masks: List[np.ndarray] = []
        for i in tqdm(range(len(dataset)), desc="preparing data", disable=not progress):
            item = dataset[i]
            keep = item["masks"].reshape(len(item["masks"]), -1).sum(1) > 0
            if not keep.any():
                continue
            padded, padded_masks = to_model_input(item["image"], item["masks"][keep], img_size)
            self.images.append(padded)
            self.masks.append(padded_masks)

    def batch(self, rng: np.random.Generator, batch_size: int, masks_per_image: int = 1, augment: bool = False):
        """(B, 3, S, S) float images in 0..255 and ``masks_per_image`` targets for each, drawn
        without replacement while an image has enough masks: (B, M, S, S). ``augment`` applies
        :func:`augment_item` to each image and its masks first (masks it empties are not drawn)."""
        picks = rng.integers(0, len(self.images), size=batch_size)
        return assemble_batch([(self.images[i], self.masks[i]) for i in picks], rng, masks_per_image, augment)


def assemble_batch(items, rng: np.random.Generator, masks_per_image: int, augment: bool):
    """Stack (image, masks) pairs into a batch (see :meth:`TrainingData.batch`)."""
    images, targets = [], []
    for image, masks in items:
        if augment:
            image, masks = augment_item(image, masks, rng)
        count = len(masks)
        chosen = rng.choice(count, size=masks_per_image, replace=count < masks_per_image)
        images.append(image)
        targets.append(masks[chosen])
    return torch.as_tensor(np.stack(images)).permute(0, 3, 1, 2).float(), torch.as_tensor(np.stack(targets))


#: the smallest mask (pixels) an augmentation may leave; smaller ones are dropped as targets
MIN_AUGMENTED_AREA = 24


def augment_item(image: np.ndarray, masks: np.ndarray, rng: np.random.Generator):
    """One random augmentation of a square (S, S, 3) uint8 image and its (K, S, S) masks.

    Geometry (applied to both): a horizontal flip and a 90-degree turn, each with probability
    1/2, and with probability 1/2 a zoom-out by 0.35-1 onto a canvas of one random colour at a
    random place (objects as small as coins in a photo). Colour (image only): per-channel gain
    0.75-1.25, an offset of +-25 and, with probability 0.15, grayscale. Masks the zoom shrinks
    below ``MIN_AUGMENTED_AREA`` pixels are dropped; if none is left the item comes back as it was.
    """
    S = image.shape[0]
    out, out_masks = image, masks
    if rng.random() < 0.5:
        out, out_masks = out[:, ::-1], out_masks[:, :, ::-1]
    if rng.random() < 0.5:
        out, out_masks = np.rot90(out, 1, (0, 1)), np.rot90(out_masks, 1, (1, 2))
    if rng.random() < 0.5:
        side = max(8, int(round(S * rng.uniform(0.35, 1.0))))
        y, x = (int(v) for v in rng.integers(0, S - side + 1, size=2))
        canvas = np.empty_like(image)
        canvas[:] = rng.integers(0, 256, size=3)
        canvas[y : y + side, x : x + side] = np.asarray(Image.fromarray(np.ascontiguousarray(out)).resize((side, side), Image.BILINEAR))
        small = F.interpolate(torch.as_tensor(np.ascontiguousarray(out_masks))[:, None].float(), (side, side), mode="area")[:, 0] >= 0.5
        placed = np.zeros_like(masks)
        placed[:, y : y + side, x : x + side] = small.numpy()
        out, out_masks = canvas, placed
    keep = out_masks.reshape(len(out_masks), -1).sum(1) >= MIN_AUGMENTED_AREA
    if not keep.any():
        return image, masks
    pixels = out.astype(np.float32) * rng.uniform(0.75, 1.25, size=3) + rng.uniform(-25, 25)
    if rng.random() < 0.15:
        pixels = np.repeat(pixels.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(pixels, 0, 255).astype(np.uint8), np.ascontiguousarray(out_masks[keep])


class FreshSyntheticData:
    """Synthetic training data drawn anew at every step: each image is item ``i`` of an endless
    :class:`~sam_lab.training.data.SyntheticShapes` with ``i`` drawn from the step's generator (out
    of 2**62, so a run all but never sees an image twice), and a resumed run draws the same images
    as one that never stopped. Same ``batch`` as :class:`TrainingData`; costs ~20 ms per image on one core."""

    def __init__(self, seed: int, img_size: int) -> None:
        from .data import SyntheticShapes

        self.source = SyntheticShapes(2**62, seed=seed, image_size=img_size)

    def batch(self, rng: np.random.Generator, batch_size: int, masks_per_image: int = 1, augment: bool = False):
        items = []
        while len(items) < batch_size:
            item = self.source[int(rng.integers(len(self.source)))]
            if len(item["masks"]):
                items.append((item["image"], item["masks"]))
        return assemble_batch(items, rng, masks_per_image, augment)


def make_dataset(spec: str, num_images: int, seed: int, img_size: int):
    if spec == "synthetic":
        from .data import SyntheticShapes

        return SyntheticShapes(num_images, seed=seed, image_size=img_size)
    if spec.startswith("coco:"):
        from .data import CocoSegmentation

        _, image_dir, annotations = spec.split(":", 2)
        return CocoSegmentation(image_dir, annotations, skip_invalid=True)
    raise ValueError(f"data: expected 'synthetic' or 'coco:IMAGE_DIR:ANNOTATION_JSON', got {spec!r}")


# ----------------------------------------------------------------------------- initialisation

DECODER_INITS = ("default", "tied_qk")


@torch.no_grad()
def tie_query_key(model) -> int:
    """Start every attention of the two-way transformer with its key projection equal to its
    query projection, so that a query and a key score ``x^T W^T W y``: for two positional
    encodings this is close to their dot product, which for random Fourier features is a
    Gaussian kernel of the distance between the two places. A point token then attends, from
    the first step, to the image tokens around its click. (With independent random W_q, W_k the
    score is a random bilinear form and the decoder must first learn where the click is.)
    Returns the number of attentions changed. The weights stay free to train apart."""
    from ..modeling.two_way_transformer import DecoderAttention

    count = 0
    for module in model.mask_decoder.modules():
        if isinstance(module, DecoderAttention):
            module.k_proj.weight.copy_(module.q_proj.weight)
            module.k_proj.bias.copy_(module.q_proj.bias)
            count += 1
    return count


@torch.no_grad()
def init_mask_prior(model, prior: float) -> float:
    """Start the mask logits near ``log(prior / (1 - prior))`` everywhere, the focal-loss paper's
    output-bias initialisation (Lin et al., 2017, §4.1) written into SAM's decoder, which has no
    bias on its masks: each mask is the dot product of a hypernetwork's output with the upscaled
    image features. The last upscaling layer's channel 0 is made a constant (weights 0, bias 3:
    GELU(3) ~ 3) and each hypernetwork's output for channel 0 a constant (weights 0, bias
    logit / GELU(3)), so the channel adds the logit to every pixel until training changes it.
    Returns that logit. All these weights stay free to train."""
    if not 0 < prior < 1:
        raise ValueError(f"prior: expected a foreground share in (0, 1), got {prior!r}")
    logit = float(np.log(prior / (1 - prior)))
    decoder = model.mask_decoder
    last = [m for m in decoder.output_upscaling if isinstance(m, torch.nn.ConvTranspose2d)][-1]
    last.weight[:, 0].zero_()  # ConvTranspose2d weight: (in, out, k, k)
    last.bias[0] = 3.0
    constant = float(F.gelu(torch.tensor(3.0)))
    for mlp in decoder.output_hypernetworks_mlps:
        mlp.layers[-1].weight[0].zero_()
        mlp.layers[-1].bias[0] = logit / constant
    return logit


def build_model(cfg: TrainConfig):
    """The model a TrainConfig trains: its config and overrides, with the stem it names ("conv"
    puts modeling.patching.ConvStem in any config; "patch" keeps the config's own stem, so
    config "tiny_conv" is conv either way)."""
    if cfg.stem not in STEMS:
        raise ValueError(f"stem: expected one of {STEMS}, got {cfg.stem!r}")
    config = override_config(cfg.config, cfg.config_overrides)
    if cfg.stem == "conv":
        config = config.with_image_encoder(stem="conv")
    return build_sam(config)


# ----------------------------------------------------------------------------- schedule

def learning_rate(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    drops = sum(step >= int(m * cfg.steps) for m in cfg.milestones)
    return cfg.lr * (0.1**drops)


# ----------------------------------------------------------------------------- the loop

def _distributed() -> tuple:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("SAM_LAB_DDP_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, (dist.get_world_size() if dist.is_initialized() else 1)


def _average_gradients(params, world: int) -> None:
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world


def train(
    cfg: TrainConfig,
    resume: bool = True,
    progress: bool = True,
    stop_after: Optional[int] = None,
    time_limit: Optional[float] = None,
) -> Dict:
    """Train and return a summary dict. ``stop_after`` ends the run early after that many steps
    in total (used to test exact resume); ``time_limit`` ends it after that many seconds of
    training (equal-budget experiments); the schedule still follows ``cfg.steps``."""
    from tqdm.auto import tqdm

    if cfg.attention not in ATTENTION_KERNELS:  # before minutes of data preparation, not after
        raise ValueError(f"attention: expected one of {ATTENTION_KERNELS}, got {cfg.attention!r}")
    if cfg.grad_rounds not in GRAD_ROUNDS:
        raise ValueError(f"grad_rounds: expected one of {GRAD_ROUNDS}, got {cfg.grad_rounds!r}")
    round_plan(np.random.default_rng(0), cfg.rounds, cfg.error_points)  # rounds / error_points checked early
    if cfg.train_only not in TRAIN_ONLY:
        raise ValueError(f"train_only: expected one of {TRAIN_ONLY}, got {cfg.train_only!r}")
    if cfg.iou_target not in IOU_TARGETS:
        raise ValueError(f"iou_target: expected one of {IOU_TARGETS}, got {cfg.iou_target!r}")
    if cfg.first_click not in FIRST_CLICKS:
        raise ValueError(f"first_click: expected one of {FIRST_CLICKS}, got {cfg.first_click!r}")
    if cfg.mask_target not in MASK_TARGETS:
        raise ValueError(f"mask_target: expected one of {MASK_TARGETS}, got {cfg.mask_target!r}")
    if cfg.decoder_init not in DECODER_INITS:
        raise ValueError(f"decoder_init: expected one of {DECODER_INITS}, got {cfg.decoder_init!r}")
    if not 0 <= cfg.mask_prior < 1:
        raise ValueError(f"mask_prior: expected 0 (off) or a foreground share in (0, 1), got {cfg.mask_prior!r}")
    if cfg.fresh_data and cfg.data != "synthetic":
        raise ValueError(f"fresh_data: draws new synthetic images each step; expected data 'synthetic', got {cfg.data!r}")
    torch.set_num_threads(cfg.threads)
    rank, world = _distributed()
    device = torch.device(cfg.device)
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    if cfg.init:
        load_checkpoint(model, cfg.init)
    if cfg.init_encoder:
        load_checkpoint(model.image_encoder, cfg.init_encoder)  # strict keys, encoder only
    if cfg.decoder_init == "tied_qk" and not cfg.init:
        tie_query_key(model)
    if cfg.mask_prior and not cfg.init:
        init_mask_prior(model, cfg.mask_prior)
    model.to(device).train()
    if world > 1:  # every replica starts from rank 0's weights
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, 0)
    if cfg.freeze_encoder:
        model.image_encoder.requires_grad_(False)
    if cfg.train_only == "iou_head":  # the masks stay exactly as they are; their scores learn
        model.requires_grad_(False)
        model.mask_decoder.iou_prediction_head.requires_grad_(True)
    encoder_learns = not cfg.freeze_encoder and cfg.train_only == "all"
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    step = 0
    last = out / "last.pt"
    if resume and last.exists():
        state = torch.load(last, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
    history: List[Dict] = []
    if resume and (out / "history.json").exists():  # the curve so far, cut at the resumed step
        history = [r for r in json.loads((out / "history.json").read_text()) if r["step"] <= step]
    if cfg.fresh_data:
        data = FreshSyntheticData(cfg.seed, model.image_encoder.img_size)
    else:
        data = TrainingData(
            make_dataset(cfg.data, cfg.num_images, cfg.seed, model.image_encoder.img_size),
            model.image_encoder.img_size,
            progress=progress and rank == 0,
        )
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    bar = tqdm(total=cfg.steps, initial=step, desc="training", disable=not progress or rank != 0)
    started = time.time()
    while step < end and (time_limit is None or time.time() - started < time_limit):
        rng = np.random.default_rng([cfg.seed, step, rank])
        images, targets = data.batch(rng, cfg.batch_size, cfg.masks_per_image, augment=cfg.augment)
        first_prompt_only = step < cfg.first_prompt_steps
        images, targets = images.to(device), targets.to(device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg)
        with attention_kernel(cfg.attention):
            with torch.set_grad_enabled(encoder_learns):
                embeddings = model.image_encoder(model.preprocess(images))  # (B, C, h, w)
            # every image is prompted for several of its masks: the same embedding, different
            # clicks, different answers — the signal that teaches the decoder to follow the prompt
            M = cfg.masks_per_image
            episode = simulate_training_episode(
                model, embeddings.repeat_interleave(M, dim=0), targets.flatten(0, 1), rng,
                num_rounds=1 if first_prompt_only else cfg.rounds,
                num_points=0 if first_prompt_only else cfg.error_points,
                single_output=cfg.single_output, grad_rounds=cfg.grad_rounds, focal_alpha=cfg.focal_alpha, iou_weight=cfg.iou_weight,
                # the other drawn masks of each target's image (with M masks per image)
                level_masks=targets.repeat_interleave(M, dim=0) if cfg.iou_target != "target" else None,
                level_weight={"mixed": 0.5, "expected": None}.get(cfg.iou_target, 1.0),
                mask_target=cfg.mask_target, first_click=cfg.first_click, stop_after_graded=cfg.skip_ungraded_tail,
            )
            optimizer.zero_grad(set_to_none=True)
            episode["loss"].backward()
        if world > 1:
            _average_gradients(params, world)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        step += 1
        record = {
            "step": step,
            "loss": float(episode["loss"].detach()),
            "miou_first": float(episode["miou_first"]),
            "miou_last": float(episode["miou_last"]),
        }
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", miou1=f"{record['miou_first']:.2f}", miou11=f"{record['miou_last']:.2f}")
        bar.update(1)
        out_of_time = time_limit is not None and time.time() - started >= time_limit
        if rank == 0 and (step % cfg.checkpoint_every == 0 or step == end or out_of_time):
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "config": json.dumps(asdict(cfg))}
            # the curve first: a kill between the two writes leaves extra records, which resume cuts
            write_atomically(out / "history.json", lambda temp: Path(temp).write_text(json.dumps(history)))
            write_atomically(last, lambda temp: torch.save(state, temp))
    bar.close()
    if world > 1:  # prove the replicas stayed identical: compare a fingerprint of the weights
        mine = torch.stack([p.detach().double().sum() for p in model.parameters()]).cpu()
        everyone = [torch.zeros_like(mine) for _ in range(world)]
        dist.all_gather(everyone, mine)
        if rank == 0:
            text = json.dumps([t.tolist() for t in everyone])
            write_atomically(out / "replicas.json", lambda temp: Path(temp).write_text(text))
    if rank == 0 and step == cfg.steps:
        save_checkpoint(model, out / "model.safetensors")
    return {"step": step, "seconds": time.time() - started, "history": history, "model": model}


def parse_args(argv=None):
    """The command line -> (TrainConfig, extras: resume, eval_images, stop_after)."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):  # a flag on by default is turned off by --no-NAME
            parser.add_argument(flag, action=argparse.BooleanOptionalAction if value else "store_true", default=value)
        elif isinstance(value, list):
            parser.add_argument(flag, type=float, nargs="+", default=value)
        else:
            parser.add_argument(flag, type=type(value) if value is not None else str, default=value)
    parser.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    parser.add_argument("--eval-images", type=int, default=100, help="unseen synthetic images for the final evaluation")
    parser.add_argument("--stop-after", type=int, default=None, help="stop after this many steps (the schedule still follows --steps)")
    args = vars(parser.parse_args(argv))
    extras = {"resume": not args.pop("no_resume"), "eval_images": args.pop("eval_images"), "stop_after": args.pop("stop_after")}
    return TrainConfig(**args), extras


def main(argv=None) -> None:
    cfg, extras = parse_args(argv)
    resume, eval_images, stop_after = extras["resume"], extras["eval_images"], extras["stop_after"]
    result = train(cfg, resume=resume, stop_after=stop_after)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0 and eval_images and result["step"] == cfg.steps:
        from .data import SyntheticShapes
        from ..evaluation.interactive import evaluate_interactive
        from ..inference.predictor import SamPredictor

        model = result["model"].eval()
        test = SyntheticShapes(eval_images, seed=cfg.seed + 10_000, image_size=model.image_encoder.img_size)
        metrics = evaluate_interactive(SamPredictor(model), test, progress=True, multimask=not cfg.single_output)
        print(metrics.summary())
        summary = {"train_seconds": result["seconds"], **{k: v for k, v in asdict(metrics).items() if not isinstance(v, (list, np.ndarray))}}
        summary["miou_1click_predicted_unambiguous"] = metrics.miou_1click_predicted_unambiguous
        summary["miou_1click_predicted_any_object"] = metrics.miou_1click_predicted_any_object
        summary["iou_per_click"] = [round(float(x), 4) for x in metrics.iou_per_click]
        text = json.dumps(summary, indent=2)
        write_atomically(Path(cfg.out) / "metrics.json", lambda temp: Path(temp).write_text(text))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
