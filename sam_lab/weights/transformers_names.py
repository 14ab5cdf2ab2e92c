"""Hugging Face transformers' names for SAM's parameters, and the renaming both ways.

transformers' ``SamModel`` is a port of Meta's SAM with the same tensors under other names
(``vision_encoder.layers.3.layer_norm1.weight`` is Meta's ``image_encoder.blocks.3.norm1.weight``).
No tensor is reshaped, transposed or split; three things are more than a rename:

* The random positional-encoding matrix is one tensor in Meta's model
  (``prompt_encoder.pe_layer.positional_encoding_gaussian_matrix``, (2, C/2)) and a tied pair in
  transformers' (``shared_image_embedding.positional_embedding`` and
  ``prompt_encoder.shared_embedding.positional_embedding``). ``save_pretrained`` writes only
  the first; ``SamModel.state_dict()`` holds both.
* The small MLPs (the four hypernetworks and the IoU head) are Meta's ``layers.0 .. layers.{n-1}``
  and transformers' ``proj_in, layers.0 .. layers.{n-3}, proj_out``: the numbering depends on
  the depth n, read from the keys themselves.
* Three Sequentials of Meta's (the neck, the mask downscaler, the output upscaler) number
  their layers; transformers names them (``neck.2`` is ``neck.conv2``).

This module only renames; it knows no files and raises nothing. It returns what it could not
place, and :mod:`sam_lab.convert` and :func:`sam_lab.weights.io.load_checkpoint` turn that into
errors. The rename table below is the one source of the mapping for both directions.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Mapping, Tuple

import torch

WEIGHT_BIAS = ("weight", "bias")


def _leaves(pairs: Iterable[Tuple[str, str]], leaves=WEIGHT_BIAS) -> List[Tuple[str, str]]:
    """[(Meta's module, transformers' module)] -> [(Meta's key, transformers' key)] per leaf."""
    return [(f"{meta}.{leaf}", f"{hf}.{leaf}") for meta, hf in pairs for leaf in leaves]


def _same(*modules: str, leaves=WEIGHT_BIAS) -> List[Tuple[str, str]]:
    return _leaves([(m, m) for m in modules], leaves)


_ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")

# Keys that occur once: (Meta's key, transformers' key).
SINGLE: List[Tuple[str, str]] = [
    ("image_encoder.pos_embed", "vision_encoder.pos_embed"),  # (1, H/16, W/16, D)
    *_leaves([("image_encoder.patch_embed.proj", "vision_encoder.patch_embed.projection")]),
    ("image_encoder.neck.0.weight", "vision_encoder.neck.conv1.weight"),  # the neck's convs have no bias
    *_leaves([("image_encoder.neck.1", "vision_encoder.neck.layer_norm1")]),
    ("image_encoder.neck.2.weight", "vision_encoder.neck.conv2.weight"),
    *_leaves([("image_encoder.neck.3", "vision_encoder.neck.layer_norm2")]),
    ("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", "shared_image_embedding.positional_embedding"),
    ("prompt_encoder.not_a_point_embed.weight", "prompt_encoder.not_a_point_embed.weight"),
    ("prompt_encoder.no_mask_embed.weight", "prompt_encoder.no_mask_embed.weight"),
    *_leaves([
        ("prompt_encoder.mask_downscaling.0", "prompt_encoder.mask_embed.conv1"),
        ("prompt_encoder.mask_downscaling.1", "prompt_encoder.mask_embed.layer_norm1"),
        ("prompt_encoder.mask_downscaling.3", "prompt_encoder.mask_embed.conv2"),
        ("prompt_encoder.mask_downscaling.4", "prompt_encoder.mask_embed.layer_norm2"),
        ("prompt_encoder.mask_downscaling.6", "prompt_encoder.mask_embed.conv3"),
    ]),
    ("mask_decoder.iou_token.weight", "mask_decoder.iou_token.weight"),
    ("mask_decoder.mask_tokens.weight", "mask_decoder.mask_tokens.weight"),
    *_same(*(f"mask_decoder.transformer.final_attn_token_to_image.{p}" for p in _ATTENTION)),
    *_leaves([
        ("mask_decoder.transformer.norm_final_attn", "mask_decoder.transformer.layer_norm_final_attn"),
        ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
        ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
        ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    ]),
]

# Repeated blocks: (Meta's prefix, transformers' prefix, [(Meta's rest, transformers' rest)], the
# fewest blocks a SAM has); a key is prefix + block index + "." + rest.
REPEATED: List[Tuple[str, str, List[Tuple[str, str]], int]] = [
    ("image_encoder.blocks.", "vision_encoder.layers.", [
        *_leaves([("norm1", "layer_norm1"), ("norm2", "layer_norm2")]),
        ("attn.rel_pos_h", "attn.rel_pos_h"), ("attn.rel_pos_w", "attn.rel_pos_w"),
        *_same("attn.qkv", "attn.proj", "mlp.lin1", "mlp.lin2"),
    ], 1),
    # positive, negative, box top-left, box bottom-right
    ("prompt_encoder.point_embeddings.", "prompt_encoder.point_embed.", [("weight", "weight")], 4),
    ("mask_decoder.transformer.layers.", "mask_decoder.transformer.layers.", [
        *_same(*(f"{a}.{p}" for a in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")
                 for p in _ATTENTION), "mlp.lin1", "mlp.lin2"),
        *_leaves([(f"norm{n}", f"layer_norm{n}") for n in range(1, 5)]),
    ], 1),
]

# Meta's keys that a model may lack, by its config: use_abs_pos, use_rel_pos, qkv_bias.
OPTIONAL = {"image_encoder.pos_embed", "attn.rel_pos_h", "attn.rel_pos_w", "attn.qkv.bias"}

# The tied copy of the positional-encoding matrix: (its name, the name it is tied to).
TIED_COPY = ("prompt_encoder.shared_embedding.positional_embedding", "shared_image_embedding.positional_embedding")

# The MLPs whose layer numbering differs (see the module docstring).
_MLP = re.compile(r"(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.(.+)\.(weight|bias)$")

# The key that says "this is a SAM, in transformers' names".
PATCH_EMBED_KEY = "vision_encoder.patch_embed.projection.weight"

_META_SINGLE = dict(SINGLE)
_HF_SINGLE = {hf: meta for meta, hf in SINGLE}


def is_transformers_layout(keys: Iterable[str]) -> bool:
    """True if any key is named the way transformers names a SAM (``vision_encoder.``...)."""
    return any(key.startswith(("vision_encoder.", "shared_image_embedding.")) for key in keys)


def _mlp_depths(keys: Iterable[str]) -> Dict[str, int]:
    """MLP prefix -> 1 + the highest index of its ``layers.N`` keys (0 if it has none).

    That is the number of Linear layers in Meta's names, and two fewer in transformers'."""
    depths: Dict[str, int] = {}
    for key in keys:
        if m := _MLP.match(key):
            hidden = re.fullmatch(r"layers\.(\d+)", m.group(2))
            depths[m.group(1)] = max(depths.get(m.group(1), 0), int(hidden.group(1)) + 1 if hidden else 0)
    return depths


def _rename_one(key: str, to_hf: bool, mlp_depths: Mapping[str, int]):
    """The key's name in the other layout, or None if it has no place there."""
    single = _META_SINGLE if to_hf else _HF_SINGLE
    if key in single:
        return single[key]
    for meta_prefix, hf_prefix, rests, _ in REPEATED:
        source, target = (meta_prefix, hf_prefix) if to_hf else (hf_prefix, meta_prefix)
        if key.startswith(source) and (m := re.fullmatch(r"(\d+)\.(.+)", key[len(source):])):
            table = dict(rests) if to_hf else {hf: meta for meta, hf in rests}
            if m.group(2) in table:
                return f"{target}{m.group(1)}.{table[m.group(2)]}"
    if m := _MLP.match(key):
        prefix, layer, leaf = m.groups()
        if to_hf:  # Meta's layers.0 .. layers.{n-1}, n = the number of layers
            n = mlp_depths[prefix]
            if (h := re.fullmatch(r"layers\.(\d+)", layer)) and int(h.group(1)) < n:
                index = int(h.group(1))
                name = "proj_in" if index == 0 else "proj_out" if index == n - 1 else f"layers.{index - 1}"
                return f"{prefix}.{name}.{leaf}"
        else:  # transformers' proj_in, layers.0 .. layers.{n-3}, proj_out
            n = mlp_depths[prefix] + 2
            if layer == "proj_in":
                return f"{prefix}.layers.0.{leaf}"
            if layer == "proj_out":
                return f"{prefix}.layers.{n - 1}.{leaf}"
            if (h := re.fullmatch(r"layers\.(\d+)", layer)) and int(h.group(1)) < n - 2:
                return f"{prefix}.layers.{int(h.group(1)) + 1}.{leaf}"
    return None


def expected_meta_keys(state_dict: Mapping[str, torch.Tensor]) -> List[str]:
    """Every key a SAM with these blocks has, in Meta's names, given the keys that are there.

    The number of each kind of block (image-encoder blocks, two-way blocks, point embeddings,
    hypernetworks, layers of each MLP) is read from the highest index present (at least the
    minimum in REPEATED; one hypernetwork per row of mask_tokens). An optional key (see
    OPTIONAL) is expected only if it is there for at least one block. So a block missing
    whole from the end of a stack goes unnoticed here; loading into a model notices it."""
    keys = set(state_dict)
    expected = [meta for meta, _ in SINGLE if meta not in OPTIONAL or meta in keys]
    for prefix, _, rests, minimum in REPEATED:
        blocks = [m.groups() for key in keys
                  if key.startswith(prefix) and (m := re.fullmatch(r"(\d+)\.(.+)", key[len(prefix):]))]
        present = {rest for _, rest in blocks}
        for index in range(max([minimum] + [int(i) + 1 for i, _ in blocks])):
            expected += [f"{prefix}{index}.{rest}" for rest, _ in rests if rest not in OPTIONAL or rest in present]
    hypernetworks = {int(m.group(1)) + 1 for key in keys
                     if (m := re.match(r"mask_decoder\.output_hypernetworks_mlps\.(\d+)\.", key))}
    if "mask_decoder.mask_tokens.weight" in state_dict:  # one hypernetwork per mask token
        hypernetworks.add(state_dict["mask_decoder.mask_tokens.weight"].shape[0])
    depths = _mlp_depths(keys)
    mlps = [f"mask_decoder.output_hypernetworks_mlps.{k}" for k in range(max(hypernetworks | {1}))]
    for prefix in mlps + ["mask_decoder.iou_prediction_head"]:
        layers = max(depths.get(prefix, 3), 2)  # Meta's MLPs have 3 layers; transformers' at least 2
        expected += [f"{prefix}.layers.{i}.{leaf}" for i in range(layers) for leaf in WEIGHT_BIAS]
    return expected


def rename_from_transformers(state_dict: Mapping[str, torch.Tensor]):
    """transformers' names -> Meta's: (renamed dict, keys with no place, tied copies that differ).

    The tied copy of the positional-encoding matrix is accepted beside the tensor it is tied to
    (as ``SamModel.state_dict()`` has it) or instead of it."""
    depths = _mlp_depths(state_dict)
    renamed, unplaced, differ = {}, [], []
    copy, tied_to = TIED_COPY
    for key, tensor in state_dict.items():
        if key == copy:
            if tied_to in state_dict:
                other = state_dict[tied_to]
                if tensor.shape != other.shape or (not tensor.is_meta and not torch.equal(tensor, other)):
                    differ.append(f"{copy} differs from {tied_to}")
                continue
            key = tied_to
        name = _rename_one(key, to_hf=False, mlp_depths=depths)
        if name is None:
            unplaced.append(key)
        else:
            renamed[name] = tensor
    return renamed, unplaced, differ


def rename_to_transformers(state_dict: Mapping[str, torch.Tensor], tied_copy: bool = True):
    """Meta's names -> transformers': (renamed dict, keys with no place).

    ``tied_copy`` adds the tied copy of the positional-encoding matrix, as
    ``SamModel.state_dict()`` has it; ``save_pretrained`` files leave it out."""
    depths = _mlp_depths(state_dict)
    renamed, unplaced = {}, []
    for key, tensor in state_dict.items():
        name = _rename_one(key, to_hf=True, mlp_depths=depths)
        if name is None:
            unplaced.append(key)
        else:
            renamed[name] = tensor
            if tied_copy and name == TIED_COPY[1]:
                renamed[TIED_COPY[0]] = tensor
    return renamed, unplaced
