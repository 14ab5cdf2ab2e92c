"""Retraining between rounds of the data engine: a short fine-tune on everything collected so far.

The paper retrained SAM six times during the assisted-manual stage (§4), each time on all the
masks annotated until then. Here a round's fine-tune starts from the engine's current model and
runs ``steps`` optimiser steps of the training simulation (:func:`sam_lab.training.clicks.
simulate_training_episode`: a click or a box, then error-region clicks, min-over-masks loss)
on the collected masks, never on the hidden ground truth, mixed with ``replay`` of the starting
model's own kind of training data (the paper's model had the public datasets it began with).
Without replay, a fine-tune on the first rounds' few masks (mostly the large objects an
annotator takes first) made the shipped model worse on unseen images; the README's data-engine
section has the measurements.

``train_encoder=False`` (the engine's default) trains the prompt encoder and the mask decoder on
image embeddings computed once per image and cached: the encoder is frozen, so an image's
embedding never changes. ``train_encoder=True`` also trains the image encoder, at
``lr * encoder_lr_scale``, and recomputes embeddings every step (several times slower; the
README's data-engine section measures both).

Every step's batch and clicks come from a generator seeded by ``(seed, *key, step)``, and the
optimiser is made anew for each fine-tune, so a fine-tune is a pure function of the model it
starts from, the data and the key: a resumed engine retrains exactly as one that never stopped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np
import torch

from ..training.clicks import simulate_training_episode
from ..training.train import to_model_input  # noqa: F401  (re-exported: the engine's items)


@dataclass(frozen=True)
class RetrainConfig:
    steps: int = 150  # optimiser steps per fine-tune
    batch_size: int = 4  # images per step
    masks_per_image: int = 4  # collected masks per image and step
    lr: float = 3e-5
    warmup: int = 10
    weight_decay: float = 0.1
    train_encoder: bool = False
    encoder_lr_scale: float = 0.1
    rounds: int = 11  # the training simulation's prompting rounds per mask
    error_points: int = 8
    replay: float = 0.5  # share of each batch drawn from the starting model's own kind of training data
    replay_images: int = 200  # how many such images (synthetic, seed replay_seed, up to 3 objects)
    replay_seed: int = 0  # the shipped tiny model's training seed

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "masks_per_image", "rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "steps" else 1):
                raise ValueError(f"{name}: expected a whole number >= {0 if name == 'steps' else 1}, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr!r}")
        if not 0 <= self.replay < 1:
            raise ValueError(f"replay: expected a share of the batch in [0, 1), got {self.replay!r}")


class EmbeddingCache:
    """Image embeddings of a frozen encoder, computed once per image key."""

    def __init__(self) -> None:
        self.store: Dict[object, torch.Tensor] = {}

    @torch.no_grad()
    def get(self, model, key, image: np.ndarray) -> torch.Tensor:
        if key not in self.store:
            pixels = torch.as_tensor(np.array(image)).permute(2, 0, 1)[None].float().to(next(model.parameters()).device)
            self.store[key] = model.image_encoder(model.preprocess(pixels))[0]
        return self.store[key]


class _ReplayPool:
    """The replayed images, drawn lazily (each is made the first time a batch picks it)."""

    def __init__(self, count: int, seed: int, img_size: int) -> None:
        from ..training.data import SyntheticShapes

        self.source = SyntheticShapes(count, seed=seed, image_size=img_size)
        self.seed, self.made = seed, {}

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict:
        if i not in self.made:
            item = self.source[i]
            self.made[i] = {"key": ("replay", self.seed, i), "image": item["image"], "masks": item["masks"]}
        return self.made[i]


_POOLS: Dict[tuple, _ReplayPool] = {}


def replay_items(cfg: RetrainConfig, img_size: int) -> _ReplayPool:
    """The replayed images: the starting model's own kind of training data with its true masks
    (the paper's model had the public datasets it was first trained on). Every synthetic image
    has at least one mask."""
    key = (cfg.replay_images, cfg.replay_seed, img_size)
    if key not in _POOLS:
        _POOLS[key] = _ReplayPool(*key)
    return _POOLS[key]


def _learning_rate(step: int, cfg: RetrainConfig) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))


def retrain(model, items: Sequence[dict], cfg: RetrainConfig, key: Sequence[int], seed: int = 0,
            cache: EmbeddingCache = None, progress: bool = False) -> Dict[str, float]:
    """Fine-tune ``model`` in place on ``items``: dicts with ``key`` (a hashable id of the image),
    ``image`` (S, S, 3) uint8 and ``masks`` (K, S, S) bool at the model's input size (see
    :func:`to_model_input`), K >= 1. Returns the mean loss and first-click IoU of the last
    quarter of the steps and the seconds taken."""
    import time

    from tqdm.auto import tqdm

    if not items:
        raise ValueError("items: expected at least one image with collected masks, got none")
    if cfg.steps == 0:
        return {"loss": float("nan"), "miou_first": float("nan"), "seconds": 0.0}
    started = time.time()
    cache = cache if cache is not None else EmbeddingCache()
    torch.manual_seed(int(np.random.default_rng([seed, *key]).integers(2**31)))
    model.train()
    model.image_encoder.requires_grad_(cfg.train_encoder)
    groups = [{"params": [p for n, p in model.named_parameters() if not n.startswith("image_encoder.")], "scale": 1.0}]
    if cfg.train_encoder:
        groups.append({"params": list(model.image_encoder.parameters()), "scale": cfg.encoder_lr_scale})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    params = [p for group in groups for p in group["params"]]
    device = next(model.parameters()).device
    replayed = replay_items(cfg, model.image_encoder.img_size) if cfg.replay > 0 else None
    tail: List[Dict[str, float]] = []
    for step in tqdm(range(cfg.steps), desc="retraining", leave=False, disable=not progress):
        rng = np.random.default_rng([seed, *key, step])
        from_replay = rng.random(cfg.batch_size) < cfg.replay if replayed is not None else np.zeros(cfg.batch_size, bool)
        picks = [replayed[int(rng.integers(len(replayed)))] if r else items[int(rng.integers(len(items)))] for r in from_replay]
        targets, embeddings = [], []
        for item in picks:
            if not len(item["masks"]):  # a replayed image whose objects all hid each other
                item = items[int(rng.integers(len(items)))]
            masks = item["masks"]
            chosen = rng.choice(len(masks), size=cfg.masks_per_image, replace=len(masks) < cfg.masks_per_image)
            targets.append(torch.as_tensor(masks[chosen]))
            if cfg.train_encoder:
                pixels = torch.as_tensor(item["image"]).permute(2, 0, 1)[None].float().to(device)
                embeddings.append(model.image_encoder(model.preprocess(pixels))[0])
            else:
                embeddings.append(cache.get(model, item["key"], item["image"]))
        targets = torch.stack(targets).to(device)  # (B, M, S, S)
        embeddings = torch.stack(embeddings)
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, cfg) * group["scale"]
        episode = simulate_training_episode(
            model, embeddings.repeat_interleave(cfg.masks_per_image, dim=0), targets.flatten(0, 1), rng,
            num_rounds=cfg.rounds, num_points=min(cfg.error_points, cfg.rounds - 1),
            grad_rounds="first_random", focal_alpha=0.5, stop_after_graded=True,
        )
        optimizer.zero_grad(set_to_none=True)
        episode["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step >= cfg.steps * 3 // 4:
            tail.append({"loss": float(episode["loss"].detach()), "miou_first": float(episode["miou_first"])})
    model.requires_grad_(True)
    model.eval()
    return {
        "loss": float(np.mean([t["loss"] for t in tail])),
        "miou_first": float(np.mean([t["miou_first"] for t in tail])),
        "seconds": time.time() - started,
    }
