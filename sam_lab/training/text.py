"""Training a text path for a trained SAM: captions of synthetic shapes -> masks.

The image encoder and the prompt encoder stay frozen, so every image is encoded once and kept.
What trains is the text path (``modeling.text_prompt``): the projection to prompt tokens, a
``ColourSkip`` (``colour_skip``) and a ``TextGrounding`` (``grounding``), and with
``train_decoder`` the mask decoder; with ``train_encoder`` the image encoder too (then the images
are encoded at every step instead of once). The shipped tiny encoder was trained with colour
jitter and grayscale, and a linear probe finds no colour in its embedding (:func:`colour_probe`);
fine-tuning it at a tenth of the learning rate did not bring colour back, so the skip gives the
embedding the pixels' colour instead. The grounding turns the caption into a rough mask that goes
in as the mask prompt: with tokens alone the decoder rarely found the object a caption names,
even when the caption was given as a perfect code (the README's card). A decoder that learns text
must not forget clicks, so a share of the prompt sets are clicks alone, trained as the point
recipe trains them (three candidates, the loss of the best), and a share are a caption with a
click inside its mask.

Captions (:func:`caption_targets`) come from ``SyntheticShapes``: "red circle" names a whole or
a part by its colour and shape, "the part inside the red circle" and "the object around the
blue square" name a mask by its nesting. Only captions that name one mask in their image are
used, for training and for evaluation.

Two prompt sources:

* ``text`` (the offline demonstration): the prompt is the CLIP *text* embedding of the caption.
* ``clip_image`` (the paper's recipe, appendix D.5): the prompt is the CLIP *image* embedding of
  a crop around the mask, for masks at least ``min_crop`` pixels on their longer side (the
  paper's 100 px at 1024, scaled to the model's input). At inference the text embedding takes
  its place, which only works when the tower's image and text sides are aligned: pretrained CLIP
  weights, which a teacher downloads with open_clip's own loader (``--clip-pretrained``).

The defaults are the shipped text path's recipe (the README's card). Run:
``python -m sam_lab.training.text --out runs/text``. It resumes exactly from
``DIR/last.pth`` after a kill and writes ``DIR/text_path.safetensors`` at the end.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..evaluation.interactive import farthest_from_boundary
from ..inference.masks import mask_iou
from ..modeling.text_prompt import ClipTower, add_text_path
from ..weights.io import write_atomically
from .clicks import sample_point_in
from .losses import dice_loss, sam_loss

PROMPT_SOURCES = ("text", "clip_image")


# ----------------------------------------------------------------------------- captions

def caption_targets(item: dict) -> List[Tuple[int, str]]:
    """(mask index, caption) for every caption that names exactly one mask of the item.

    Each mask has its colour-and-shape caption ("red circle"); a part also has "the part inside
    the <its container>", and a mask with a part inside "the object around the <that part>" (or
    "the part around ..." for a part). A caption that names two masks of the image is dropped."""
    captions, parent = list(item["captions"]), np.asarray(item["parent"])
    level = np.asarray(item["level"])
    named: List[Tuple[int, str]] = []
    for k, base in enumerate(captions):
        named.append((k, base))
        if parent[k] >= 0:
            named.append((k, f"the part inside the {captions[parent[k]]}"))
        for child in np.flatnonzero(parent == k):
            named.append((k, f"the {'object' if level[k] == 0 else 'part'} around the {captions[child]}"))
    counts: Dict[str, int] = {}
    for _, text in named:
        counts[text] = counts.get(text, 0) + 1
    return [(k, text) for k, text in named if counts[text] == 1]


def is_relational(caption: str) -> bool:
    return caption.startswith("the ")


# ----------------------------------------------------------------------------- config

@dataclass
class TextTrainConfig:
    out: str = "runs/text"
    base: str = "tiny"                # the trained model whose text path this is
    num_images: int = 3000            # SyntheticShapes images, seed `data_seed`
    data_seed: int = 0
    steps: int = 3000
    images_per_step: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    train_decoder: bool = True        # also fine-tune the mask decoder (else the projection alone)
    train_encoder: bool = False       # also fine-tune the image encoder (images are encoded every step;
    #                                   at lr/10 it did not bring colour back: colour_probe, the card)
    encoder_lr_scale: float = 0.1     # the encoder's learning rate is lr times this (it is already trained)
    colour_skip: bool = True          # give the text path a ColourSkip (pixels -> embedding) and train it
    grounding: bool = True            # give the text path a TextGrounding (a rough mask as the mask prompt)
    grounding_weight: float = 1.0     # its own loss (BCE + dice against the target) beside the decoder's
    point_only: float = 0.25          # share of prompt sets that are a click alone (train_decoder)
    text_and_point: float = 0.25      # share that are a caption and a click in its mask
    num_tokens: int = 2
    hidden_dim: int = 256
    focal_alpha: float = 0.5
    prompt_source: str = "text"       # "text" or "clip_image" (the paper's recipe)
    min_crop: int = 25                # clip_image: masks at least this many pixels on the long side
    clip_model: str = "ViT-B-32"
    clip_pretrained: Optional[str] = None
    clip_seed: int = 0
    seed: int = 0
    checkpoint_every: int = 500
    eval_images: int = 40             # unseen images of seed `eval_seed` measured at the end
    eval_seed: int = 10000

    def __post_init__(self) -> None:
        if self.prompt_source not in PROMPT_SOURCES:
            raise ValueError(f"prompt_source: expected one of {PROMPT_SOURCES}, got {self.prompt_source!r}")
        for name in ("num_images", "steps", "images_per_step", "num_tokens", "hidden_dim", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive count, got {getattr(self, name)!r}")
        for name in ("point_only", "text_and_point"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: expected a share between 0 and 1, got {getattr(self, name)!r}")
        if self.point_only + self.text_and_point > 1:
            raise ValueError(f"point_only + text_and_point: expected at most 1, got {self.point_only + self.text_and_point}")


# ----------------------------------------------------------------------------- data

class CaptionedEmbeddings:
    """A dataset's images encoded once by the frozen image encoder, with their captioned masks
    at the decoder's low-res size, and each caption's CLIP embedding (or, for ``clip_image``,
    each mask crop's)."""

    def __init__(self, model, dataset, tower: ClipTower, prompt_source: str = "text", min_crop: int = 25,
                 batch_size: int = 16, progress: bool = True, keep_images: bool = False,
                 encode_all: bool = True) -> None:
        from tqdm.auto import tqdm

        self.embeddings: List[torch.Tensor] = []
        self.targets: List[torch.Tensor] = []      # (K, h, w) bool at the decoder's output size
        self.full: List[np.ndarray] = []           # (K, S, S) bool at the input size, for clicks
        self.captions: List[List[str]] = []
        self.prompt_rows: List[List[int]] = []     # each target's row in self.prompts
        texts: Dict[str, int] = {}
        crops: List[np.ndarray] = []
        S = model.img_size
        images = []
        for i in tqdm(range(len(dataset)), desc="captions", disable=not progress):
            item = dataset[i]
            if item["image"].shape[:2] != (S, S):
                raise ValueError(f"dataset: expected {S}x{S} images like the model's input, got {item['image'].shape[:2]} (item {i})")
            named = caption_targets(item)
            if prompt_source == "clip_image":
                named = [(k, c) for k, c in named if _long_side(item["masks"][k]) >= min_crop]
            if not named:
                continue
            masks = item["masks"][[k for k, _ in named]]
            rows = []
            for k, caption in named:
                if prompt_source == "text":
                    rows.append(texts.setdefault(caption, len(texts)))
                else:
                    rows.append(len(crops))
                    crops.append(_crop(item["image"], item["masks"][k]))
            images.append(item["image"])
            self.full.append(masks)
            self.captions.append([c for _, c in named])
            self.prompt_rows.append(rows)
        if not images:
            raise ValueError("dataset: no image has a caption that names one mask")
        self.images = images if keep_images else None  # (S, S, 3) uint8: a trainable encoder or colour skip reads them
        skip = getattr(getattr(model, "text_encoder", None), "colour_skip", None)
        with torch.no_grad():
            # the encoder's own embeddings (a colour skip is added at each step, with gradients);
            # a trainable encoder encodes its images at every step: one batch here gives the sizes
            if skip is not None:
                skip.active = False
            try:
                for start in tqdm(range(0, len(images) if encode_all else batch_size, batch_size),
                                  desc="encoding images", disable=not progress):
                    batch = torch.as_tensor(np.stack(images[start:start + batch_size])).permute(0, 3, 1, 2).float()
                    emb = model.image_encoder(model.preprocess(batch.to(model.device)))
                    self.embeddings.extend(emb.cpu())
            finally:
                if skip is not None:
                    skip.active = True
        low = tuple(4 * s for s in self.embeddings[0].shape[-2:])
        for masks in self.full:
            t = torch.as_tensor(masks[:, None]).float()
            self.targets.append(F.interpolate(t, size=low, mode="area")[:, 0] >= 0.5)
        self.vocabulary = list(texts)
        if prompt_source == "text":
            self.prompts = tower.encode_text(self.vocabulary)
        else:
            self.prompts = torch.cat([tower.encode_image(crops[i:i + 32]) for i in range(0, len(crops), 32)])

    def __len__(self) -> int:
        return len(self.full)


def _long_side(mask: np.ndarray) -> int:
    ys, xs = np.nonzero(mask)
    return 0 if len(ys) == 0 else int(max(ys.max() - ys.min(), xs.max() - xs.min())) + 1


def _crop(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask's bounding box, enlarged to a square with some context, cut from the image."""
    ys, xs = np.nonzero(mask)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    half = max(ys.max() - ys.min(), xs.max() - xs.min()) * 0.6 + 2
    y0, y1 = int(max(0, cy - half)), int(min(image.shape[0], cy + half + 1))
    x0, x1 = int(max(0, cx - half)), int(min(image.shape[1], cx + half + 1))
    return np.ascontiguousarray(image[y0:y1, x0:x1])


# ----------------------------------------------------------------------------- model

def build_text_model(cfg: TextTrainConfig, device: str = "cpu"):
    """The base model with a fresh text path, and its tower."""
    from ..weights.pretrained import load_model

    model = load_model(cfg.base, device=device)
    tower = ClipTower(cfg.clip_model, cfg.clip_pretrained, seed=cfg.clip_seed)
    add_text_path(model, tower, num_tokens=cfg.num_tokens, hidden_dim=cfg.hidden_dim, colour_skip=cfg.colour_skip,
                  grounding=cfg.grounding)
    return model, tower


def trainable_parameters(model, cfg: TextTrainConfig):
    """The optimiser's parameter groups: the text path and decoder at ``lr``, the encoder (when it
    trains) at ``lr * encoder_lr_scale``."""
    model.requires_grad_(False)
    model.text_encoder.requires_grad_(True)
    if cfg.train_decoder:
        model.mask_decoder.requires_grad_(True)
    if cfg.train_encoder:
        model.image_encoder.requires_grad_(True)
    encoder = {id(p) for p in model.image_encoder.parameters()}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in encoder]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if cfg.train_encoder:
        groups.append({"params": list(model.image_encoder.parameters()), "lr_scale": cfg.encoder_lr_scale})
    return groups


def text_path_state(model, cfg: TextTrainConfig) -> Dict[str, torch.Tensor]:
    """What a text path adds to its base model: the projection, and the decoder if it trained."""
    keep = ("text_encoder.",) + (("mask_decoder.",) if cfg.train_decoder else ()) + (
        ("image_encoder.",) if cfg.train_encoder else ())
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k.startswith(keep)}


def save_text_path(model, cfg: TextTrainConfig, path, metrics: Optional[dict] = None) -> Path:
    """The text path as a safetensors file; its metadata says how to rebuild the tower."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"format": "pt", "kind": "sam_lab text path", "base": cfg.base, "clip_model": cfg.clip_model,
            "clip_pretrained": json.dumps(cfg.clip_pretrained), "clip_seed": str(cfg.clip_seed),
            "num_tokens": str(cfg.num_tokens), "hidden_dim": str(cfg.hidden_dim), "colour_skip": json.dumps(cfg.colour_skip),
            "grounding": json.dumps(cfg.grounding),
            "config": json.dumps(asdict(cfg)), "metrics": json.dumps(metrics or {})}
    tensors = text_path_state(model, cfg)
    write_atomically(path, lambda temp: save_file(tensors, temp, metadata=meta))
    return path


# ----------------------------------------------------------------------------- one step

def _step_loss(model, data: CaptionedEmbeddings, rng: np.random.Generator, cfg: TextTrainConfig) -> Dict[str, float]:
    """The loss of ``images_per_step`` images, each with all its captioned masks as one kind of
    prompt set (caption alone, caption + click, or click alone), averaged over the images."""
    total = 0.0
    parts = {"text": [], "text_point": [], "point": []}
    picks = rng.integers(0, len(data), size=cfg.images_per_step)
    fresh = None
    if data.images is not None:  # this step's images, for a trainable encoder or a colour skip
        batch = model.preprocess(torch.as_tensor(np.stack([data.images[i] for i in picks])).permute(0, 3, 1, 2)
                                 .float().to(model.device))
        if cfg.train_encoder:  # encoded with gradients (the skip, if any, joins through its hook)
            fresh = model.image_encoder(batch)
        else:  # the cached embeddings and the skip's share of them
            cached = torch.stack([data.embeddings[i] for i in picks]).to(model.device)
            fresh = cached + model.text_encoder.colour_skip(batch)
    for n, i in enumerate(picks):
        draw = rng.random()
        kind = ("point" if cfg.train_decoder and draw < cfg.point_only else
                "text_point" if draw < cfg.point_only + cfg.text_and_point else "text")
        masks = data.full[i]
        coords = labels = tokens = None
        if kind != "text":
            clicks = np.stack([sample_point_in(m, rng) for m in masks])
            coords = torch.as_tensor(clicks[:, None], dtype=torch.float, device=model.device)
            labels = torch.ones(len(masks), 1, dtype=torch.int, device=model.device)
        if kind != "point":
            rows = torch.as_tensor(data.prompt_rows[i])
            tokens = model.text_encoder(data.prompts[rows].to(model.device))
        embedding = fresh[n:n + 1] if fresh is not None else data.embeddings[i][None].to(model.device)
        prior = None
        if tokens is not None and getattr(model.text_encoder, "grounding", None) is not None:
            prior = model.text_encoder.grounding(embedding, tokens)  # (K, 1, 4h, 4w), the decoder's mask prompt
            total = total + cfg.grounding_weight * _mask_loss(prior[:, 0], data.targets[i].to(model.device).float())
        low_res, iou = model.decode(embedding, coords, labels, mask_inputs=prior,
                                    multimask_output=kind == "point", text_tokens=tokens)
        out = sam_loss(low_res, iou, data.targets[i].to(model.device), focal_alpha=cfg.focal_alpha)
        total = total + out["loss"]
        parts[kind].append(float(out["iou_true"].gather(1, out["chosen"][:, None]).mean()))
    loss = total / cfg.images_per_step
    loss.backward()
    return {"loss": float(loss.detach()), **{f"iou_{k}": float(np.mean(v)) for k, v in parts.items() if v}}


def _mask_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus dice, per mask then averaged: the grounding's own loss."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    return (bce + dice_loss(logits[:, None], target[:, None])[:, 0]).mean()


# ----------------------------------------------------------------------------- training

def train_text_path(cfg: TextTrainConfig, device: str = "cpu", progress: bool = True, stop_after: Optional[int] = None):
    """Train (or resume) a text path; returns the model. ``stop_after`` ends the run after that
    many steps of this call (as a kill would, for the resume test), without the final files."""
    from tqdm.auto import tqdm

    from ..training.data.synthetic import SyntheticShapes

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pth"
    torch.manual_seed(cfg.seed)  # the projection's initial weights: the same in every run of cfg
    model, tower = build_text_model(cfg, device)
    data = CaptionedEmbeddings(model, SyntheticShapes(cfg.num_images, seed=cfg.data_seed, image_size=model.img_size),
                               tower, cfg.prompt_source, cfg.min_crop, progress=progress,
                               keep_images=cfg.train_encoder or cfg.colour_skip, encode_all=not cfg.train_encoder)
    model.text_encoder.fit_standardisation(data.prompts)
    params = trainable_parameters(model, cfg)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    step, history = 0, []
    if last.is_file():
        state = torch.load(last, map_location=device, weights_only=True)
        if state["config"] != asdict(cfg):
            changed = sorted(k for k in asdict(cfg) if state["config"].get(k) != asdict(cfg)[k])
            raise ValueError(f"cfg: {last} was written by another configuration (differs in {changed}); use a new --out")
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        step, history = state["step"], state["history"]
    model.train()
    started, begun_at = time.time(), step
    bar = tqdm(total=cfg.steps, initial=step, desc="text path", disable=not progress)
    while step < cfg.steps:
        lr = cfg.lr * (0.1 if step >= 0.85 * cfg.steps else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        optimizer.zero_grad(set_to_none=True)
        record = _step_loss(model, data, rng, cfg)
        optimizer.step()
        step += 1
        bar.update(1)
        if step % 50 == 0:
            history.append({"step": step, **record})
            bar.set_postfix(loss=f"{record['loss']:.3f}")
        finished = step == cfg.steps or (stop_after is not None and step - begun_at >= stop_after)
        if step % cfg.checkpoint_every == 0 or finished:
            state = {"model": text_path_state(model, cfg), "optimizer": optimizer.state_dict(), "step": step,
                     "rng": rng.bit_generator.state, "history": history, "config": asdict(cfg)}
            write_atomically(last, lambda temp: torch.save(state, temp))
        if stop_after is not None and step - begun_at >= stop_after:
            bar.close()
            return model.eval()
    bar.close()
    model.eval()
    seconds = time.time() - started
    metrics = {"steps": step, "seconds_this_call": round(seconds, 1),
               "s_per_step": round(seconds / max(1, step - begun_at), 3)}
    if cfg.eval_images:
        metrics.update(evaluate_text(model, SyntheticShapes(cfg.eval_images, seed=cfg.eval_seed, image_size=model.img_size),
                                     progress=progress)["summary"])
    save_text_path(model, cfg, out / "text_path.safetensors", metrics)
    write_atomically(out / "metrics.json", lambda temp: Path(temp).write_text(json.dumps(metrics, indent=2)))
    write_atomically(out / "history.json", lambda temp: Path(temp).write_text(json.dumps(history)))
    return model


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_text(model, dataset, progress: bool = True) -> dict:
    """Text prompts against clicks on the captioned masks of ``dataset`` (unseen images).

    For every caption that names one mask: the caption alone (one mask), one click alone at the
    point farthest from the mask's boundary (three candidates; the predicted-IoU pick and the
    oracle; and the single-mask answer, which a caption with a click also gives), and the caption
    with that click (one mask). IoU at the input size."""
    from tqdm.auto import tqdm

    rows = []
    S = model.img_size
    for i in tqdm(range(len(dataset)), desc="text eval", disable=not progress):
        item = dataset[i]
        named = caption_targets(item)
        if not named:
            continue
        image = torch.as_tensor(item["image"]).permute(2, 0, 1).float()[None].to(model.device)
        emb = model.image_encoder(model.preprocess(image))
        gts = torch.as_tensor(item["masks"][[k for k, _ in named]])
        texts = [c for _, c in named]
        tokens = model.text_encoder.embed_texts(texts).to(model.device)
        clicks = np.stack([farthest_from_boundary(item["masks"][k]) for k, _ in named])
        coords = torch.as_tensor(clicks[:, None], dtype=torch.float, device=model.device)
        labels = torch.ones(len(named), 1, dtype=torch.int, device=model.device)

        def ious(low_res):
            masks = model.postprocess_masks(low_res, (S, S), (S, S)) > model.mask_threshold
            return mask_iou(masks, gts[:, None].to(masks.device)).cpu()

        text_iou = ious(model.decode(emb, multimask_output=False, text_tokens=tokens)[0])[:, 0]
        low, pred = model.decode(emb, coords, labels, multimask_output=True)
        point_ious = ious(low)
        pick = point_ious.gather(1, pred.argmax(1, keepdim=True).cpu())[:, 0]
        both = ious(model.decode(emb, coords, labels, multimask_output=False, text_tokens=tokens)[0])[:, 0]
        single = ious(model.decode(emb, coords, labels, multimask_output=False)[0])[:, 0]
        for j, (k, caption) in enumerate(named):
            rows.append({"image": i, "mask": k, "caption": caption, "level": int(item["level"][k]),
                         "text": float(text_iou[j]), "point_pick": float(pick[j]),
                         "point_oracle": float(point_ious[j].max()), "point_single": float(single[j]),
                         "text_point": float(both[j])})
    if not rows:
        raise ValueError("dataset: no image has a caption that names one mask")

    def mean(key, select=lambda r: True):
        values = [r[key] for r in rows if select(r)]
        return round(float(np.mean(values)), 4) if values else None

    summary = {"targets": len(rows), "images": len(dataset),
               "text_miou": mean("text"), "point_pick_miou": mean("point_pick"),
               "point_oracle_miou": mean("point_oracle"), "point_single_miou": mean("point_single"),
               "text_point_miou": mean("text_point"),
               "text_miou_colour_shape": mean("text", lambda r: not is_relational(r["caption"])),
               "text_miou_relational": mean("text", lambda r: is_relational(r["caption"]))}
    return {"summary": summary, "rows": rows}


# ----------------------------------------------------------------------------- CLI

def parse_args(argv=None) -> TextTrainConfig:
    parser = argparse.ArgumentParser(prog="python -m sam_lab.training.text", description=__doc__.split("\n\n")[0])
    defaults = TextTrainConfig()
    for f in fields(TextTrainConfig):
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif f.name == "clip_pretrained":
            parser.add_argument(flag, default=None, help="an open_clip pretrained tag or file (default: none, a random tower)")
        else:
            parser.add_argument(flag, type=type(value), default=value)
    return TextTrainConfig(**vars(parser.parse_args(argv)))


def main(argv=None) -> None:
    cfg = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_text_path(cfg)
    print(Path(cfg.out, "metrics.json").read_text())


if __name__ == "__main__":
    main()


# ----------------------------------------------------------------------------- a colour probe

@torch.no_grad()
def _cell_colours(model, dataset):
    """Each image-embedding cell's feature vector and the colour of the innermost shape that
    covers the cell's centre (cells on the background are left out)."""
    from .data.synthetic import COLOURS

    names = list(COLOURS)
    features, labels = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        image = torch.as_tensor(item["image"]).permute(2, 0, 1).float()[None].to(model.device)
        emb = model.image_encoder(model.preprocess(image))[0]  # (C, h, w)
        h, w = emb.shape[-2:]
        step = item["image"].shape[0] // h
        label = np.full((h, w), -1)
        for k, caption in enumerate(item["captions"]):  # later masks are inner parts or in front
            label[item["masks"][k][step // 2::step, step // 2::step][:h, :w]] = names.index(caption.split()[0])
        keep = label >= 0
        features.append(emb.permute(1, 2, 0).cpu()[torch.as_tensor(keep)])
        labels.append(torch.as_tensor(label[keep]))
    return torch.cat(features), torch.cat(labels)


def colour_probe(model, train_images: int = 60, test_images: int = 20, steps: int = 400) -> dict:
    """How much colour the image embedding holds: a linear classifier (a "probe") trained on the
    embedding cells of ``train_images`` synthetic images (seed 0) to name the colour of the shape
    under each cell, scored on ``test_images`` unseen ones (seed 10000). Chance is the share of the
    commonest colour. A text path can only find "the red circle" if this is well above chance."""
    from .data.synthetic import COLOURS, SyntheticShapes

    S = model.img_size
    x, y = _cell_colours(model, SyntheticShapes(train_images, seed=0, image_size=S))
    xt, yt = _cell_colours(model, SyntheticShapes(test_images, seed=10000, image_size=S))
    mean, std = x.mean(0), x.std(0) + 1e-5
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(0)
        probe = torch.nn.Linear(x.shape[1], len(COLOURS))
        optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2)
        for _ in range(steps):
            loss = F.cross_entropy(probe((x - mean) / std), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        accuracy = (probe((xt - mean) / std).argmax(1) == yt).float().mean().item()
    chance = torch.bincount(yt, minlength=len(COLOURS)).max().item() / len(yt)
    return {"accuracy": round(accuracy, 4), "chance": round(chance, 4), "cells": len(yt)}
