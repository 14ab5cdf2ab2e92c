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
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Optional, Sequence

import torch
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


def has_text_path(model) -> bool:
    """Whether ``model`` (a Sam) can take text prompts."""
    return isinstance(getattr(model, "text_encoder", None), TextPromptEncoder)


def add_text_path(model, tower: ClipTower, num_tokens: int = 2, hidden_dim: int = 256) -> TextPromptEncoder:
    """Give a Sam a fresh text path for ``tower``, as ``model.text_encoder`` (its state-dict keys
    start with ``text_encoder.``; a model without one still loads Meta's files strictly)."""
    embed_dim = model.prompt_encoder.embed_dim
    encoder = TextPromptEncoder(tower.dim, embed_dim, num_tokens, hidden_dim).to(model.device)
    model.text_encoder = encoder.attach(tower)
    return encoder
