"""Hugging Face transformers' SAM <-> sam_lab: state dicts, configs and save_pretrained folders.

transformers ships a port of Meta's SAM (``transformers.SamModel``, checkpoints such as
``facebook/sam-vit-base``). Its tensors are Meta's, under other names, so a transformers
checkpoint loads into our model after a rename (:mod:`sam_lab.weights.transformers_names` holds
the table: 314 keys for ViT-B, no tensor reshaped, transposed or split).

    state_dict = from_transformers(hf_model.state_dict())   # -> Meta's (= sam_lab's) keys
    hf_state = to_transformers(sam)                          # and back, exactly
    sam = sam_lab.load_model("path/to/save_pretrained_folder")
    save_transformers(sam, "folder")        # transformers.SamModel.from_pretrained("folder") loads it

The two models compute the same thing from the same inputs (tests/test_transformers.py checks
image embeddings, mask logits and IoU predictions on random weights):

* Pixels: both image encoders take the normalised, padded (B, 3, S, S) tensor (our
  ``Sam.preprocess``; transformers' ``SamProcessor`` makes the same one).
* Prompts: both take coordinates in pixels of the model input (the resized image), add 0.5
  (pixel index -> pixel centre) and divide by the input side S. transformers nests them one level
  deeper: points (B, prompts, N, 2) with labels (B, prompts, N), boxes (B, prompts, 4); its
  labels add -10 ("ignore this point"), ours add 2 and 3 (box corners given as points).
* One real difference: transformers normalises the two-way transformer's blocks with
  ``mask_decoder_config.layer_norm_eps`` (1e-6 in its checkpoints), Meta and sam_lab with
  PyTorch's default 1e-5. On the small random model of the tests (width 32) that alone moves
  mask logits by up to 1e-4 and IoU by 3e-5 (with the same eps: 2e-6); the image embedding
  is not affected. :func:`config_from_transformers` accepts 1e-6 and we keep Meta's 1e-5;
  :func:`config_to_transformers` writes 1e-5, so a folder we save computes what our model does.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from .config import CONFIGS, ImageEncoderConfig, MaskDecoderConfig, PromptEncoderConfig, SamConfig
from .weights import transformers_names as names
from .weights.io import TRANSFORMERS_WEIGHTS, CheckpointError, PathLike, _listing, read_state_dict, write_atomically

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


# ----------------------------------------------------------------------------- state dicts

def from_transformers(state_dict: Union[Mapping[str, torch.Tensor], nn.Module], *, source: PathLike = "state_dict"
                      ) -> Dict[str, torch.Tensor]:
    """A transformers ``SamModel`` state dict -> the same tensors under sam_lab's (Meta's) keys.

    Strict: a key that has no place in SAM, or a key of SAM that nothing fills, raises
    CheckpointError listing them (errors name ``source``)."""
    if isinstance(state_dict, nn.Module):
        state_dict = state_dict.state_dict()
    if names.PATCH_EMBED_KEY not in state_dict:
        hint = " (its keys are Meta's already: load it as it is)" if "image_encoder.patch_embed.proj.weight" in \
            state_dict else ""
        raise CheckpointError(
            f"{source}: not a SAM checkpoint in transformers' layout: it has no {names.PATCH_EMBED_KEY!r}{hint}"
        )
    renamed, unplaced, differ = names.rename_from_transformers(state_dict)
    missing = [key for key in names.expected_meta_keys(renamed) if key not in renamed]
    problems = (_listing("keys that have no place in SAM (transformers' names)", unplaced)
                + _listing("keys of SAM that no tensor fills (sam_lab's names)", missing)
                + _listing("tied tensors that differ", differ))
    if problems:
        raise CheckpointError("\n".join([f"{source}: does not convert from transformers' SAM:"] + problems))
    return renamed


def to_transformers(model_or_state_dict: Union[nn.Module, Mapping[str, torch.Tensor]], *, tied_copy: bool = True
                    ) -> Dict[str, torch.Tensor]:
    """A sam_lab model (or state dict) -> the same tensors under transformers' ``SamModel`` keys.

    ``tied_copy`` includes ``prompt_encoder.shared_embedding.positional_embedding`` as
    ``SamModel.state_dict()`` does; ``save_pretrained`` files leave it out. Strict, like
    :func:`from_transformers`."""
    source = model_or_state_dict
    state_dict = source.state_dict() if isinstance(source, nn.Module) else dict(source)
    renamed, unplaced = names.rename_to_transformers(state_dict, tied_copy=tied_copy)
    missing = [key for key in names.expected_meta_keys(state_dict) if key not in state_dict]
    problems = (_listing("keys that have no place in SAM (sam_lab's names)", unplaced)
                + _listing("keys of SAM that are missing (sam_lab's names)", missing))
    if problems:
        raise CheckpointError("\n".join(["model_or_state_dict: does not convert to transformers' SAM:"] + problems))
    return renamed


# ----------------------------------------------------------------------------- configs

# transformers' defaults for the fields a config.json may leave out (they describe ViT-B)
_DEFAULTS = {
    "vision_config": dict(
        hidden_size=768, output_channels=256, num_hidden_layers=12, num_attention_heads=12, num_channels=3,
        image_size=1024, patch_size=16, hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True, mlp_ratio=4.0,
        use_abs_pos=True, use_rel_pos=True, window_size=14, global_attn_indexes=[2, 5, 8, 11],
        num_pos_feats=128, mlp_dim=None,
    ),
    "prompt_encoder_config": dict(
        hidden_size=256, image_size=1024, patch_size=16, mask_input_channels=16, num_point_embeddings=4,
        hidden_act="gelu", layer_norm_eps=1e-6,
    ),
    "mask_decoder_config": dict(
        hidden_size=256, hidden_act="relu", mlp_dim=2048, num_hidden_layers=2, num_attention_heads=8,
        attention_downsample_rate=2, num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256,
        layer_norm_eps=1e-6,
    ),
}
_MODEL_TYPES = {"vision_config": "sam_vision_model", "prompt_encoder_config": "sam_prompt_encoder",
                "mask_decoder_config": "sam_mask_decoder"}


def config_from_transformers(hf_config: Mapping[str, Any]) -> SamConfig:
    """The parsed ``config.json`` of a transformers SAM -> our SamConfig.

    Named "vit_b" / "vit_l" / "vit_h" (or "tiny") when it equals that preset, else "hf:custom".
    Raises ValueError naming the field for what our model cannot represent."""
    if not isinstance(hf_config, Mapping):
        raise TypeError(f"hf_config: expected the parsed config.json (a dict), got {type(hf_config).__name__}")
    if hf_config.get("model_type", "sam") != "sam":
        raise ValueError(f"hf_config.model_type: expected 'sam', got {hf_config['model_type']!r}")
    part = {}
    for section, defaults in _DEFAULTS.items():
        given = hf_config.get(section) or {}
        if not isinstance(given, Mapping):
            raise ValueError(f"hf_config.{section}: expected a dict, got {type(given).__name__}")
        part[section] = {**defaults, **given}
    vision, prompt, decoder = part["vision_config"], part["prompt_encoder_config"], part["mask_decoder_config"]

    def fail(section, field, why):
        return ValueError(f"hf_config.{section}.{field}: {why}")

    def need(section, field, allowed, why=""):
        value = part[section][field]
        if value not in allowed:
            raise fail(section, field, f"sam_lab supports {' or '.join(map(repr, allowed))}, got {value!r}{why}")

    def side(section, field):  # an int, or a square [n, n]
        value = part[section][field]
        if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
            value = value[0]
        if not isinstance(value, int):
            raise fail(section, field, f"sam_lab supports square sizes only (an int or [n, n]), got {value!r}")
        return value

    need("vision_config", "hidden_act", ("gelu",))
    need("prompt_encoder_config", "hidden_act", ("gelu",))
    need("mask_decoder_config", "hidden_act", ("relu",))
    need("vision_config", "layer_norm_eps", (1e-6,))
    need("prompt_encoder_config", "layer_norm_eps", (1e-6,))
    # 1e-5 is Meta's; 1e-6 is transformers' (a small difference: see the module docstring)
    need("mask_decoder_config", "layer_norm_eps", (1e-5, 1e-6))
    need("prompt_encoder_config", "num_point_embeddings", (4,), " (positive, negative, two box corners)")
    img_size, patch_size = side("vision_config", "image_size"), side("vision_config", "patch_size")
    for field, value in (("image_size", img_size), ("patch_size", patch_size)):
        need("prompt_encoder_config", field, (value, [value, value]), f" (the vision_config's {field})")
    width = vision["hidden_size"]
    mlp_ratio = vision["mlp_ratio"] if vision["mlp_dim"] is None else vision["mlp_dim"] / width
    if vision["mlp_dim"] is not None and int(width * mlp_ratio) != vision["mlp_dim"]:
        raise fail("vision_config", "mlp_dim", f"{vision['mlp_dim']} is not a ratio of hidden_size {width}")
    embed_dim = prompt["hidden_size"]
    need("vision_config", "output_channels", (embed_dim,), " (the prompt_encoder_config's hidden_size)")
    need("mask_decoder_config", "hidden_size", (embed_dim,), " (the prompt_encoder_config's hidden_size)")
    need("vision_config", "num_pos_feats", (embed_dim // 2,), " (half the prompt_encoder_config's hidden_size)")
    depth, global_blocks = vision["num_hidden_layers"], vision["global_attn_indexes"]
    if not (isinstance(global_blocks, (list, tuple)) and all(isinstance(i, int) and 0 <= i < depth
                                                             for i in global_blocks)):
        raise fail("vision_config", "global_attn_indexes",
                   f"expected block indexes below {depth}, got {global_blocks!r}")

    candidate = SamConfig(
        name="hf:custom",
        image_encoder=ImageEncoderConfig(
            img_size=img_size, patch_size=patch_size, in_chans=vision["num_channels"], embed_dim=width,
            depth=depth, num_heads=vision["num_attention_heads"], mlp_ratio=float(mlp_ratio),
            out_chans=vision["output_channels"], qkv_bias=bool(vision["qkv_bias"]),
            use_abs_pos=bool(vision["use_abs_pos"]), use_rel_pos=bool(vision["use_rel_pos"]),
            window_size=vision["window_size"], global_attn_indexes=tuple(global_blocks),
        ),
        prompt_encoder=PromptEncoderConfig(embed_dim=embed_dim, mask_in_chans=prompt["mask_input_channels"]),
        mask_decoder=MaskDecoderConfig(
            transformer_dim=decoder["hidden_size"], transformer_depth=decoder["num_hidden_layers"],
            transformer_num_heads=decoder["num_attention_heads"], transformer_mlp_dim=decoder["mlp_dim"],
            attention_downsample_rate=decoder["attention_downsample_rate"],
            num_multimask_outputs=decoder["num_multimask_outputs"], iou_head_depth=decoder["iou_head_depth"],
            iou_head_hidden_dim=decoder["iou_head_hidden_dim"],
        ),
    )
    for preset in CONFIGS.values():
        if replace(candidate, name=preset.name) == preset:
            return preset
    return candidate


def config_to_transformers(config: SamConfig) -> Dict[str, Any]:
    """Our SamConfig -> the dict of a transformers ``config.json`` (transformers.SamConfig(**it))."""
    enc, pe, dec = config.image_encoder, config.prompt_encoder, config.mask_decoder
    sections = {
        "vision_config": dict(
            hidden_size=enc.embed_dim, output_channels=enc.out_chans, num_hidden_layers=enc.depth,
            num_attention_heads=enc.num_heads, num_channels=enc.in_chans, image_size=enc.img_size,
            patch_size=enc.patch_size, hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=enc.qkv_bias,
            mlp_ratio=enc.mlp_ratio, mlp_dim=int(enc.embed_dim * enc.mlp_ratio), use_abs_pos=enc.use_abs_pos,
            use_rel_pos=enc.use_rel_pos, window_size=enc.window_size,
            global_attn_indexes=list(enc.global_attn_indexes), num_pos_feats=pe.embed_dim // 2,
        ),
        "prompt_encoder_config": dict(
            hidden_size=pe.embed_dim, image_size=enc.img_size, patch_size=enc.patch_size,
            mask_input_channels=pe.mask_in_chans, num_point_embeddings=4, hidden_act="gelu", layer_norm_eps=1e-6,
        ),
        "mask_decoder_config": dict(
            hidden_size=dec.transformer_dim, hidden_act="relu", mlp_dim=dec.transformer_mlp_dim,
            num_hidden_layers=dec.transformer_depth, num_attention_heads=dec.transformer_num_heads,
            attention_downsample_rate=dec.attention_downsample_rate,
            num_multimask_outputs=dec.num_multimask_outputs, iou_head_depth=dec.iou_head_depth,
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
            layer_norm_eps=1e-5,  # Meta's (PyTorch's default), so the folder computes what we do
        ),
    }
    for section, fields in sections.items():
        fields["model_type"] = _MODEL_TYPES[section]
    return {"architectures": ["SamModel"], "model_type": "sam", **sections}


# ----------------------------------------------------------------------------- files and folders

def read_transformers_config(folder: PathLike) -> SamConfig:
    """The SamConfig of a save_pretrained folder, from its config.json."""
    folder = Path(folder).expanduser()
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG_FILE} in this folder; a transformers save_pretrained "
                                f"folder holds {CONFIG_FILE} (the model's size) beside its weights")
    try:
        hf_config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not readable as JSON ({type(error).__name__}: {error})") from None
    try:
        return config_from_transformers(hf_config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


def is_transformers_checkpoint(path: PathLike) -> bool:
    """True for a save_pretrained folder of a SAM (config.json with model_type "sam" beside its
    weights) and for a file whose keys are transformers' SAM names; False otherwise, including
    for files that cannot be read."""
    path = Path(path).expanduser()
    try:
        if path.is_dir():
            config = json.loads((path / CONFIG_FILE).read_text())
            has_weights = any((path / name).is_file() for pair in TRANSFORMERS_WEIGHTS for name in pair)
            return isinstance(config, dict) and config.get("model_type") == "sam" and has_weights
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as file:  # reads the header only
                return names.is_transformers_layout(file.keys())
        return path.is_file() and names.is_transformers_layout(read_state_dict(path))
    except Exception:  # unreadable (missing, corrupt, not JSON, ...): not one we can load
        return False


def read_transformers_checkpoint(path: PathLike) -> Tuple[Dict[str, torch.Tensor], Optional[SamConfig]]:
    """(state dict in sam_lab's keys, SamConfig) of a save_pretrained folder; (state dict, None)
    of a single file in transformers' names (a file does not say the model's size).

    Folders: config.json and model.safetensors, a sharded model.safetensors.index.json, or
    pytorch_model.bin (read with torch.load(weights_only=True)). Raises FileNotFoundError naming
    what is missing, CheckpointError naming a file that is corrupt or not a transformers SAM."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"path: no such file or folder: {path}")
    config = read_transformers_config(path) if path.is_dir() else None
    state_dict = read_state_dict(path)
    return from_transformers(state_dict, source=path), config


def save_transformers(model: nn.Module, folder: PathLike) -> Path:
    """Write ``model`` as a transformers save_pretrained folder: config.json + model.safetensors,
    each atomically. ``transformers.SamModel.from_pretrained(folder)`` loads it. Returns the folder."""
    config = getattr(model, "config", None)
    if not isinstance(config, SamConfig):
        raise ValueError("model: it has no SamConfig in .config (build it with sam_lab.build_sam)")
    folder = Path(folder).expanduser()
    tensors = {key: tensor.detach().cpu().contiguous()
               for key, tensor in to_transformers(model, tied_copy=False).items()}
    text = json.dumps(config_to_transformers(config), indent=2) + "\n"

    from safetensors.torch import save_file

    write_atomically(folder / WEIGHTS_FILE, lambda temp: save_file(tensors, temp, metadata={"format": "pt"}))
    write_atomically(folder / CONFIG_FILE, lambda temp: Path(temp).write_text(text))
    return folder
