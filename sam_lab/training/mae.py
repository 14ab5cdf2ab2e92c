"""Masked-autoencoder pre-training of SAM's image encoder on unlabelled images.

Paper §3 and appendix A: SAM's ViT starts from MAE pre-training (He et al., 2022). Hide 75 % of
the patches at random, encode the image, and ask a light decoder to paint the hidden patches
back; the loss is the mean-squared error on the hidden patches only, against pixels normalised
per patch (each patch's own mean and variance), which He et al. found gives better features.

    python -m sam_lab.training.mae --config tiny16 --steps 2000 --out runs/mae
    python -m sam_lab.training --init-encoder runs/mae/encoder.safetensors ...

One departure from MAE, because SAM's encoder is not a plain ViT: MAE *drops* the hidden tokens
and runs the encoder on the visible quarter, but SAM's windowed attention and relative positions
need the whole grid. The hidden tokens are therefore replaced by one learned ``[MASK]`` vector
(as SimMIM does) and the encoder runs on the full grid, unchanged. The decoder sees the neck's
output (B, C, h, w), adds its own learned positions, runs one transformer block and predicts
the p x p x 3 pixels of every patch.

Exact resume, as ``sam_lab.training.train``: the model, decoder, optimiser and step are written
atomically to ``OUT/last.pt`` every ``checkpoint_every`` steps, and each step's images and
masks come from a generator seeded by (seed, step), so a resumed run ends with the same weights.
The encoder alone is saved as ``OUT/encoder.safetensors``, the state dict of ``sam.image_encoder``
(``load_checkpoint(sam.image_encoder, path)`` loads it with strict keys).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn as nn

from ..build import build_sam
from ..weights.io import save_checkpoint, write_atomically

MASK_RATIO = 0.75


@dataclass
class MAEConfig:
    config: str = "tiny16"  # SAM config whose image encoder is pre-trained (tiny16: the grid training from scratch starts at)
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1.5e-3
    weight_decay: float = 0.05
    warmup: int = 100
    mask_ratio: float = MASK_RATIO
    decoder_dim: int = 128
    num_images: int = 2000  # unlabelled images: SyntheticShapes pictures, masks thrown away
    seed: int = 0
    out: str = "runs/mae"
    checkpoint_every: int = 200
    threads: int = 2


def random_patch_mask(rng: np.random.Generator, batch: int, grid: int, ratio: float = MASK_RATIO) -> torch.Tensor:
    """(B, grid, grid) bool, True = hidden; exactly round(ratio * grid^2) patches per image."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask_ratio: expected a fraction strictly between 0 and 1, got {ratio}")
    count = grid * grid
    hidden = int(round(ratio * count))
    mask = np.zeros((batch, count), dtype=bool)
    for b in range(batch):
        mask[b, rng.permutation(count)[:hidden]] = True
    return torch.as_tensor(mask.reshape(batch, grid, grid))


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, H/p, W/p, p * p * 3): the pixels of each patch in one row."""
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // patch, patch, W // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, H // patch, W // patch, patch * patch * C)


def unpatchify(patches: torch.Tensor, patch: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, h, w, p * p * 3) -> (B, 3, h p, w p)."""
    B, h, w, _ = patches.shape
    x = patches.reshape(B, h, w, patch, patch, 3)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(B, 3, h * patch, w * patch)


def normalised_targets(images: torch.Tensor, patch: int, eps: float = 1e-6) -> torch.Tensor:
    """Each patch's pixels minus the patch mean, over its standard deviation (MAE's target)."""
    target = patchify(images, patch)
    mean = target.mean(-1, keepdim=True)
    var = target.var(-1, keepdim=True)
    return (target - mean) / (var + eps).sqrt()


def masked_loss(prediction: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Mean-squared error over the hidden patches only; (B, h, w, P) predictions and targets."""
    per_patch = (prediction - target).pow(2).mean(-1)  # (B, h, w)
    return (per_patch * hidden).sum() / hidden.sum().clamp(min=1)


class MaskedAutoencoder(nn.Module):
    """SAM's image encoder with a [MASK] token, and a light decoder that paints patches back."""

    def __init__(self, image_encoder: nn.Module, decoder_dim: int = 128) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        embed_dim = image_encoder.patch_embed.proj.out_channels
        self.patch_size = image_encoder.patch_embed.proj.kernel_size[0]
        grid = image_encoder.img_size // self.patch_size
        out_chans = image_encoder.neck[0].out_channels
        self.mask_token = nn.Parameter(torch.zeros(embed_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder_embed = nn.Linear(out_chans, decoder_dim)
        self.decoder_pos = nn.Parameter(torch.zeros(1, grid * grid, decoder_dim))
        nn.init.normal_(self.decoder_pos, std=0.02)
        self.decoder_block = nn.TransformerEncoderLayer(
            decoder_dim, nhead=4, dim_feedforward=4 * decoder_dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_size * self.patch_size * 3)

    def encode(self, images: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Normalised (B, 3, S, S) images and a (B, h, w) hidden mask -> (B, C, h, w) features."""
        encoder = self.image_encoder
        x = encoder.patch_embed(images)  # (B, h, w, D)
        x = torch.where(hidden[..., None], self.mask_token.to(x.dtype), x)  # hide before positions
        if encoder.pos_embed is not None:
            x = x + encoder.pos_embed
        for block in encoder.blocks:
            x = block(x)
        return encoder.neck(x.permute(0, 3, 1, 2))

    def forward(self, images: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """-> predicted normalised pixels of every patch, (B, h, w, p * p * 3)."""
        features = self.encode(images, hidden)
        B, C, h, w = features.shape
        tokens = self.decoder_embed(features.flatten(2).transpose(1, 2)) + self.decoder_pos  # (B, hw, d)
        tokens = self.decoder_norm(self.decoder_block(tokens))
        return self.decoder_pred(tokens).reshape(B, h, w, -1)


def _images(cfg: MAEConfig, img_size: int) -> np.ndarray:
    from .data import SyntheticShapes

    dataset = SyntheticShapes(cfg.num_images, seed=cfg.seed + 50_000, image_size=img_size)
    return np.stack([dataset[i]["image"] for i in range(len(dataset))])  # (N, S, S, 3) uint8


def pretrain(cfg: MAEConfig, resume: bool = True, stop_after: Optional[int] = None, progress: bool = True) -> Dict:
    """MAE pre-training; returns {"step", "seconds", "history", "model"} (the MaskedAutoencoder)."""
    from tqdm.auto import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    sam = build_sam(cfg.config)
    mae = MaskedAutoencoder(sam.image_encoder, cfg.decoder_dim).train()
    optimizer = torch.optim.AdamW(mae.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    out = Path(cfg.out)
    last = out / "last.pt"
    step, history = 0, []
    if resume and last.exists():
        state = torch.load(last, map_location="cpu", weights_only=True)
        mae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        if (out / "history.json").exists():
            history = [r for r in json.loads((out / "history.json").read_text()) if r["step"] <= step]
    images = _images(cfg, sam.image_encoder.img_size)
    grid = sam.image_encoder.img_size // mae.patch_size
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    bar = tqdm(total=cfg.steps, initial=step, desc="MAE pre-training", disable=not progress)
    started = time.time()
    while step < end:
        rng = np.random.default_rng([cfg.seed, step])
        picks = rng.integers(0, len(images), size=cfg.batch_size)
        batch = torch.as_tensor(images[picks]).permute(0, 3, 1, 2).float()
        flips = torch.as_tensor(rng.random(cfg.batch_size) < 0.5)
        batch = torch.where(flips[:, None, None, None], batch.flip(-1), batch)  # horizontal flips
        pixels = (batch - sam.pixel_mean) / sam.pixel_std
        hidden = random_patch_mask(rng, cfg.batch_size, grid, cfg.mask_ratio)
        lr = float(cfg.lr * min(1.0, (step + 1) / cfg.warmup) * 0.5 * (1 + np.cos(np.pi * step / cfg.steps)))  # a plain float: weights_only loads it
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = masked_loss(mae(pixels, hidden), normalised_targets(pixels, mae.patch_size), hidden)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        history.append({"step": step, "loss": float(loss.detach())})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
        bar.update(1)
        if step % cfg.checkpoint_every == 0 or step == end:
            state = {"model": mae.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                     "config": json.dumps(asdict(cfg))}
            text = json.dumps(history)
            write_atomically(out / "history.json", lambda temp: Path(temp).write_text(text))
            write_atomically(last, lambda temp: torch.save(state, temp))
    bar.close()
    if step == cfg.steps:
        save_checkpoint(mae.image_encoder, out / "encoder.safetensors")  # load into sam.image_encoder
    return {"step": step, "seconds": time.time() - started, "history": history, "model": mae}


def main(argv=None) -> None:
    defaults = MAEConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, value in asdict(defaults).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    args = vars(parser.parse_args(argv))
    resume = not args.pop("no_resume")
    pretrain(MAEConfig(**args), resume=resume)


if __name__ == "__main__":
    main()
