"""Text prompts: a CLIP text tower, frozen, and a small projection into SAM's prompt tokens.

The paper (§7.5, appendix D.5) prompts SAM with free-form text through CLIP. Meta never
released that path; this is ours. A text goes through two parts:

    "red circle" --ClipTower (frozen, open_clip)--> (D,) unit vector
                 --TextPromptEncoder (trained)----> (T, C) sparse prompt tokens

The tokens sit beside the point and box tokens, so text combines with clicks and boxes: the
mask decoder sees one more kind of sparse prompt and nothing else changes.

The tower is *not* an ``nn.Module`` attribute of SAM, so its ~150 M parameters stay out of the
model's state dict and checkpoints; only the projection is saved. Because the projection only
means something for the tower it was trained against, the encoder keeps a fingerprint of that
tower (its embeddings of a few probe strings) and refuses to run on another.

Without downloaded weights (``pretrained=None``) open_clip builds a randomly initialised tower,
seeded here so that every process builds the same one. Such a tower turns each string into a
fixed, distinct vector: a hash with some structure, not meaning. A projection trained on it
learns the captions it saw and nothing about words it did not (lesson 13 shows both).

A text path may also bring a colour skip (:class:`ColourSkip`): a small convolution from the
pixels of each patch (8x8 in tiny) to the image embedding, added to the image encoder's output,
and a grounding (:class:`TextGrounding`): the caption turned into a rough mask, which the decoder
takes as its mask prompt. The shipped tiny encoder was trained with colour jitter and
grayscale, so its embedding keeps shape and nesting but no colour (``training.text.colour_probe``
is at chance), and no prompt token can then pick "the red circle" from "the blue circle". Meta's
encoders keep colour and need no skip.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: strings whose embeddings identify a tower (see TextPromptEncoder.tower_fingerprint)
PROBES = ("a photo of a cat", "red circle", "the part inside the blue square")


class ClipTower:
    """A frozen open_clip model that turns strings (and, for the paper's training recipe, image
    crops) into unit vectors. Each string's embedding is computed once and cached.

    model_name: an open_clip model name (``open_clip.list_models()``), e.g. "ViT-B-32".
    pretrained: an open_clip ``pretrained`` tag or a local file, or None for a random tower
    (offline; warned about, since it knows no language). seed: the random tower's seed.
    """

    def __init__(self, model_name: str = "ViT-B-32", pretrained: Optional[str] = None, seed: int = 0,
                 device: str = "cpu", cache_size: int = 4096) -> None:
        import open_clip

        if not isinstance(model_name, str) or model_name not in open_clip.list_models():
            raise ValueError(f"model_name: expected one of open_clip.list_models() such as 'ViT-B-32', got {model_name!r}")
        if pretrained is None:
            warnings.warn(
                f"text tower {model_name} is untrained (pretrained=None): it maps each string to a fixed "
                "random-feature vector, so a projection trained on it knows only the captions it was "
                "trained on. Pass an open_clip `pretrained` tag (downloaded by open_clip) for real CLIP.",
                UserWarning, stacklevel=2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.create_model(model_name, pretrained=pretrained)
        self.model = model.eval().requires_grad_(False).to(device)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.model_name, self.pretrained, self.seed = model_name, pretrained, seed
        self.context_length = int(getattr(self.tokenizer, "context_length", 77))
        self.dim = int(model.text_projection.shape[1]) if torch.is_tensor(model.text_projection) \
            else int(model.text_projection.out_features)
        self.cache_size = cache_size
        self._cache: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self._preprocess = None

    def __repr__(self) -> str:
        return f"ClipTower({self.model_name!r}, pretrained={self.pretrained!r}, seed={self.seed}, dim={self.dim})"

    def _check_length(self, text: str) -> None:
        encode = getattr(self.tokenizer, "encode", None)
        if encode is None:
            return
        n = len(encode(text)) + 2  # start and end tokens
        if n > self.context_length:
            warnings.warn(f"text: {n} tokens is longer than the tokenizer's context of {self.context_length}; "
                          f"truncated to {self.context_length} ({text[:40]!r}…)", UserWarning, stacklevel=3)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, dim) unit vectors on the CPU, one per string; strings seen before come from the cache."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for t in missing:
                self._check_length(t)
            device = next(self.model.parameters()).device
            out = self.model.encode_text(self.tokenizer(missing).to(device), normalize=True).float().cpu()
            for t, e in zip(missing, out):
                self._cache[t] = e
        for t in texts:
            self._cache.move_to_end(t)
        result = torch.stack([self._cache[t] for t in texts]) if texts else torch.zeros(0, self.dim)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result

    @torch.no_grad()
    def encode_image(self, crops: Sequence) -> torch.Tensor:
        """(N, dim) unit vectors for image crops ((h, w, 3) uint8 arrays), with open_clip's own
        preprocessing: the image side of the paper's training recipe."""
        import open_clip
        from PIL import Image

        if self._preprocess is None:
            self._preprocess = open_clip.image_transform(self.model.visual.image_size, is_train=False)
        device = next(self.model.parameters()).device
        batch = torch.stack([self._preprocess(Image.fromarray(c)) for c in crops]).to(device)
        return self.model.encode_image(batch, normalize=True).float().cpu()

    def fingerprint(self) -> torch.Tensor:
        return self.encode_text(list(PROBES))


class TextPromptEncoder(nn.Module):
    """CLIP embedding (B, clip_dim) -> ``num_tokens`` sparse prompt tokens (B, T, embed_dim).

    The embedding is first standardised with the mean and spread of the training captions'
    embeddings (buffers ``center`` and ``scale``, set by :meth:`fit_standardisation`): CLIP
    vectors of short captions share most of their direction, and what tells captions apart is
    what is left. Then an MLP, and a learned "this is text" embedding added to every token, as
    the prompt encoder adds a type embedding to points and boxes.
    """

    def __init__(self, clip_dim: int = 512, embed_dim: int = 256, num_tokens: int = 2, hidden_dim: int = 256) -> None:
        super().__init__()
        for name, value in (("clip_dim", clip_dim), ("embed_dim", embed_dim), ("num_tokens", num_tokens), ("hidden_dim", hidden_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.clip_dim, self.embed_dim, self.num_tokens = clip_dim, embed_dim, num_tokens
        self.register_buffer("center", torch.zeros(clip_dim))
        self.register_buffer("scale", torch.ones(clip_dim))
        self.register_buffer("tower_fingerprint", torch.zeros(len(PROBES), clip_dim))
        self.proj = nn.Sequential(nn.Linear(clip_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, num_tokens * embed_dim))
        self.type_embed = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.normal_(self.type_embed, std=0.02)
        self.tower: Optional[ClipTower] = None

    def attach(self, tower: ClipTower) -> "TextPromptEncoder":
        """Use ``tower`` for strings. A fresh encoder records the tower's fingerprint; a trained
        one refuses a tower whose fingerprint differs (another model, tag, seed or version)."""
        if tower.dim != self.clip_dim:
            raise ValueError(f"tower: expected a tower of width {self.clip_dim}, got {tower!r}")
        fp = tower.fingerprint().to(self.tower_fingerprint)
        if not self.tower_fingerprint.any():
            self.tower_fingerprint.copy_(fp)
        elif (fp - self.tower_fingerprint).abs().max() > 1e-3:
            raise ValueError(
                f"tower: {tower!r} is not the tower this projection was trained against (their embeddings of "
                f"{PROBES[0]!r} differ by up to {(fp - self.tower_fingerprint).abs().max():.3f}); build the tower "
                "with the model name, pretrained tag and seed recorded with the weights, and the same open_clip version")
        self.tower = tower
        return self

    @torch.no_grad()
    def fit_standardisation(self, embeddings: torch.Tensor) -> None:
        """Set ``center`` and ``scale`` from (N, clip_dim) embeddings of the training captions."""
        embeddings = embeddings.to(self.center)
        self.center.copy_(embeddings.mean(0))
        self.scale.copy_(embeddings.std(0).clamp_min(1e-4) if len(embeddings) > 1 else torch.ones_like(self.scale))

    def forward(self, clip_embeddings: torch.Tensor) -> torch.Tensor:
        if clip_embeddings.ndim != 2 or clip_embeddings.shape[1] != self.clip_dim:
            raise ValueError(f"clip_embeddings: expected (B, {self.clip_dim}), got {tuple(clip_embeddings.shape)}")
        x = (clip_embeddings.to(self.center) - self.center) / self.scale
        tokens = self.proj(x).view(len(x), self.num_tokens, self.embed_dim)
        return tokens + self.type_embed

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Strings -> (B, T, embed_dim) tokens through the attached tower."""
        if self.tower is None:
            raise RuntimeError("text encoder has no tower: call attach(ClipTower(...)) first")
        return self(self.tower.encode_text(list(texts)).to(self.center.device))


class ColourSkip(nn.Module):
    """Preprocessed pixels (B, 3, S, S) -> (B, C, S/p, S/p), added to the image embedding.

    One p x p convolution reads each patch's pixels (the patch embedding's view, before any
    block could discard colour), a GELU, and a 1x1 convolution to the embedding's C channels.
    The last convolution starts at zero, so a fresh skip leaves its model's embedding, and so
    its masks, exactly as they were until training gives it something to add."""

    def __init__(self, patch_size: int, embed_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        for name, value in (("patch_size", patch_size), ("embed_dim", embed_dim), ("hidden_dim", hidden_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.patch_size = patch_size
        self.read = nn.Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)
        self.write = nn.Conv2d(hidden_dim, embed_dim, kernel_size=1)
        nn.init.zeros_(self.write.weight)
        nn.init.zeros_(self.write.bias)
        self.active = True  # off while a trainer caches the encoder's own embeddings

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] % self.patch_size:
            raise ValueError(f"images: expected preprocessed (B, 3, S, S) with S a multiple of {self.patch_size}, "
                             f"got {tuple(images.shape)}")
        return self.write(F.gelu(self.read(images)))


class TextGrounding(nn.Module):
    """Image embedding (1 or B, C, h, w) and text tokens (B, T, C) -> rough mask logits
    (B, 1, 4h, 4w): where the text is, as a mask prompt.

    A token in the decoder's attention has to *search* the image for "the red circle", and the
    tiny decoder, built to read positions from clicks, learns that search poorly: with a perfect
    code for every caption, the mask overlapped its target best only a quarter of the time.
    So the text also gets a dense path: the embedding, modulated channel by channel by the mean
    text token (a scale and a shift, "FiLM"), then three 3x3 convolutions (dilations 1, 2, 4, so
    a cell sees about 15 cells around it: enough for "the part inside ...") to one logit per
    cell, upsampled 4x. It goes in where a previous mask would (``masks=`` of the prompt
    encoder), so the decoder refines it as it refines its own last answer in the click loop; a
    mask the caller gives takes its place."""

    def __init__(self, embed_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("hidden_dim", hidden_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.film = nn.Linear(embed_dim, 2 * hidden_dim)
        self.read = nn.Conv2d(embed_dim, hidden_dim, kernel_size=1)
        self.body = nn.Sequential(*[m for d in (1, 2, 4) for m in (
            nn.Conv2d(hidden_dim, hidden_dim, kernel_size=3, padding=d, dilation=d), nn.GELU())])
        self.logit = nn.Conv2d(hidden_dim, 1, kernel_size=1)

    def forward(self, image_embedding: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        if image_embedding.ndim != 4 or text_tokens.ndim != 3 or image_embedding.shape[1] != text_tokens.shape[2]:
            raise ValueError(f"image_embedding, text_tokens: expected (1 or B, C, h, w) and (B, T, C), got "
                             f"{tuple(image_embedding.shape)} and {tuple(text_tokens.shape)}")
        scale, shift = self.film(text_tokens.mean(1)).chunk(2, dim=-1)  # (B, hidden) each
        x = self.read(image_embedding) * (1 + scale[..., None, None]) + shift[..., None, None]
        x = self.logit(self.body(F.gelu(x)))
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)


def text_mask_prior(model, image_embedding: torch.Tensor, text_tokens: Optional[torch.Tensor],
                    mask_inputs: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The mask prompt a text prompt brings: the caller's ``mask_inputs`` if given, else the text
    path's grounding of ``text_tokens`` (None without text or without a grounding)."""
    if mask_inputs is not None or text_tokens is None:
        return mask_inputs
    grounding = getattr(getattr(model, "text_encoder", None), "grounding", None)
    if grounding is None:
        return None
    return grounding(image_embedding, text_tokens.to(image_embedding.dtype))


def _add_colour(skip: ColourSkip):
    """A forward hook for the image encoder: its output plus the skip's, while the skip is active."""
    def hook(module, args, output):
        return output + skip(args[0]) if skip.active else output
    return hook


def has_text_path(model) -> bool:
    """Whether ``model`` (a Sam) can take text prompts."""
    return isinstance(getattr(model, "text_encoder", None), TextPromptEncoder)


def add_text_path(model, tower: ClipTower, num_tokens: int = 2, hidden_dim: int = 256,
                  colour_skip: bool = False, grounding: bool = False) -> TextPromptEncoder:
    """Give a Sam a fresh text path for ``tower``, as ``model.text_encoder`` (its state-dict keys
    start with ``text_encoder.``; a model without one still loads Meta's files strictly).

    grounding: also give it a :class:`TextGrounding` (``text_encoder.grounding``), whose rough
    mask goes in as the mask prompt of every text prompt without one (:func:`text_mask_prior`).
    colour_skip: also give it a :class:`ColourSkip` (``text_encoder.colour_skip``), joined to
    the image encoder's output by a forward hook, so every caller of ``model.image_encoder``
    (the predictor, training, evaluation, the lessons) gets the same embedding. An encoder
    swapped in afterwards does not carry the hook: call this again on the new model."""
    for name, value in (("colour_skip", colour_skip), ("grounding", grounding)):
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected True or False, got {value!r}")
    if has_text_path(model):
        raise ValueError("model: it already has a text path (model.text_encoder); build a fresh model to add another")
    embed_dim = model.prompt_encoder.embed_dim
    encoder = TextPromptEncoder(tower.dim, embed_dim, num_tokens, hidden_dim).to(model.device)
    if colour_skip:
        patch = model.img_size // model.prompt_encoder.image_embedding_size[0]
        encoder.colour_skip = ColourSkip(patch, embed_dim).to(model.device)
        model.image_encoder.register_forward_hook(_add_colour(encoder.colour_skip))
    if grounding:
        encoder.grounding = TextGrounding(embed_dim).to(model.device)
    model.text_encoder = encoder.attach(tower)
    return encoder
