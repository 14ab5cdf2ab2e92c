"""Build a SAM from its stages, with any stage swapped for your own, and with either backend.

A stage is given either as a class (or any factory) that is called with the same keyword
arguments as ours, or as an already built ``nn.Module`` that is used as it is:

    build_sam("tiny", two_way_attention=MyTwoWayTransformer)
    build_sam("vit_b", encoder_block=MyBlock, checkpoint="sam_vit_b_01ec64.pth")

Stages and the keyword arguments their factories receive (from :func:`sam_lab.config.stage_kwargs`,
the one mapping from a config to constructor arguments):

__TABLE__

The sub-stages (indented) are handed to our own parent class; swap the parent and they are
yours to place.

Model backend: :func:`build_model` builds ours (``"sam_lab"``) or Meta's reference package
(``"segment_anything"``, when installed) behind the same attribute interface, so predictors,
widgets and tests can put them side by side.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

from .config import STAGE_PARENTS, STEMS, SamConfig, describe_stages, get_config, stage_kwargs
from .modeling.image_encoder import Block, ImageEncoder, Neck
from .modeling.layers import make_stage
from .modeling.mask_decoder import MaskDecoder
from .modeling.patching import ConvStem, PatchEmbed
from .modeling.positional_encoding import PositionEmbeddingRandom
from .modeling.prompt_encoder import PromptEncoder
from .modeling.sam import Sam
from .modeling.two_way_transformer import TwoWayAttentionBlock, TwoWayTransformer

# our implementation of every stage, by name
STAGES: Dict[str, type] = {
    "image_encoder": ImageEncoder,
    "patch_embed": PatchEmbed,
    "encoder_block": Block,
    "neck": Neck,
    "prompt_encoder": PromptEncoder,
    "positional_encoding": PositionEmbeddingRandom,
    "two_way_attention": TwoWayTransformer,
    "two_way_block": TwoWayAttentionBlock,
    "mask_decoder": MaskDecoder,
}
# the keyword under which our parent class takes each sub-stage
_SUB_STAGE_ARGUMENT = {
    "patch_embed": "patch_embed",
    "encoder_block": "block",
    "neck": "neck",
    "positional_encoding": "positional_encoding",
    "two_way_block": "block",
}


def build_sam(config="vit_b", checkpoint: Optional[str] = None, **stages) -> Sam:
    """Build a SAM from a config name ("vit_b", "vit_l", "vit_h", "default", "tiny") or a
    :class:`SamConfig`, with any stage replaced, and load a checkpoint (Meta's ``.pth`` or a
    ``.safetensors`` file) with strict keys if one is given.

    The stages you can swap, and the keyword arguments a factory for each receives:

__FUNCTABLE__
    """
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise TypeError(f"build_sam: unknown stage(s) {sorted(unknown)}; stages are {sorted(STAGES)}")
    cfg: SamConfig = get_config(config)
    enc, pe, dec = cfg.image_encoder, cfg.prompt_encoder, cfg.mask_decoder
    if not (enc.out_chans == pe.embed_dim == dec.transformer_dim):
        raise ValueError(
            "config: image_encoder.out_chans, prompt_encoder.embed_dim and "
            "mask_decoder.transformer_dim must be equal, got "
            f"{enc.out_chans}, {pe.embed_dim}, {dec.transformer_dim}"
        )
    if enc.stem not in STEMS:
        raise ValueError(f"config: image_encoder.stem must be one of {STEMS}, got {enc.stem!r}")
    if enc.stem == "conv" and "patch_embed" not in stages:
        stages = {**stages, "patch_embed": ConvStem}  # tiny_conv's stem (not SAM's)
    kwargs = stage_kwargs(cfg)

    def make(stage: str, **extra):
        swapped = {
            _SUB_STAGE_ARGUMENT[name]: stages[name]
            for name, parent in STAGE_PARENTS.items()
            if parent == stage and name in stages
        }
        return make_stage(stages.get(stage, STAGES[stage]), **kwargs[stage], **swapped, **extra)

    image_encoder = make("image_encoder")
    prompt_encoder = make("prompt_encoder")
    mask_decoder = make("mask_decoder", transformer=make("two_way_attention"))
    sam = Sam(image_encoder, prompt_encoder, mask_decoder, cfg.pixel_mean, cfg.pixel_std)
    sam.config = cfg
    sam.eval()
    if checkpoint is not None:
        from .weights.io import load_checkpoint

        load_checkpoint(sam, checkpoint)
    return sam


def _registry_entry(name: str) -> Callable[..., Sam]:
    def build(checkpoint: Optional[str] = None, **stages) -> Sam:
        return build_sam(name, checkpoint=checkpoint, **stages)

    build.__name__ = f"build_sam_{name}"
    build.__doc__ = f"Build SAM {name}; ``checkpoint`` loads Meta's file (strict keys)."
    return build


build_sam_vit_b = _registry_entry("vit_b")
build_sam_vit_l = _registry_entry("vit_l")
build_sam_vit_h = _registry_entry("vit_h")
build_sam_tiny = _registry_entry("tiny")

# Same keys as Meta's registry ("default" is ViT-H), plus our small "tiny".
sam_model_registry: Dict[str, Callable[..., Sam]] = {
    "default": build_sam_vit_h,
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
    "tiny": build_sam_tiny,
}


# ----------------------------------------------------------------------------- model backend

MODEL_BACKENDS = ("sam_lab", "segment_anything")


def reference_available() -> bool:
    try:
        import segment_anything  # noqa: F401
    except ImportError:
        return False
    return True


def build_model(variant: str = "vit_b", checkpoint=None, backend: str = "sam_lab"):
    """Build a SAM with either implementation; both answer the same predictor protocol.

    ``backend="segment_anything"`` needs Meta's reference package (``pip install
    segment-anything``); its checkpoint loading is the package's own.
    """
    if backend == "sam_lab":
        if variant not in sam_model_registry:
            raise ValueError(f"variant: expected one of {sorted(sam_model_registry)}, got {variant!r}")
        return sam_model_registry[variant](checkpoint=checkpoint)
    if backend == "segment_anything":
        if not reference_available():
            raise ImportError(
                "backend: 'segment_anything' needs Meta's reference package; "
                "install it with `pip install segment-anything`"
            )
        from segment_anything import sam_model_registry as reference_registry

        if variant not in reference_registry:
            raise ValueError(
                f"variant: expected one of {sorted(reference_registry)}, got {variant!r}"
            )
        return reference_registry[variant](checkpoint=checkpoint)
    raise ValueError(f"backend: expected one of {MODEL_BACKENDS}, got {backend!r}")


# the lists of stages in the docstrings are made from stage_kwargs, so they cannot go stale
# (docstrings are None under python -OO)
if __doc__:
    __doc__ = __doc__.replace("__TABLE__", describe_stages())
if build_sam.__doc__:
    build_sam.__doc__ = build_sam.__doc__.replace("__FUNCTABLE__", describe_stages())
