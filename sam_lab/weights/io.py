"""Read and write SAM checkpoints safely, with clear errors, and never half a file.

Meta released its checkpoints as ``.pth`` files: a pickled dict that maps parameter names to
tensors. Our model's ``state_dict`` keys are exactly Meta's, so loading is
``model.load_state_dict`` after checks that turn the usual failures into readable messages:

* Pickle can run code. ``.pth`` files are read with ``torch.load(weights_only=True)``, which
  rebuilds only tensors and plain containers; a file that asks for anything else (a function
  such as ``os.system``, some project's class) is refused before any of it runs.
* A file of another variant (vit_l weights into a vit_b model) is named as such, instead of
  hundreds of shape errors; missing, unexpected and mis-shaped keys are listed.
* A truncated or corrupt file (an interrupted download, say) is called that.

``.safetensors`` files hold nothing but tensors by design and are read with ``safetensors``.
A Hugging Face transformers checkpoint (a ``save_pretrained`` folder, or a file whose keys are
in transformers' names) is renamed to Meta's keys first (:mod:`sam_lab.weights.transformers_names`),
then checked the same way; :mod:`sam_lab.convert` has the rest (configs, writing such folders).
Everything sam_lab writes goes through :func:`write_atomically`: a temporary file beside the
target, flushed, then renamed into place, so a reader sees the old file or the whole new one.
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from . import transformers_names

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded (or verified); the message names the file."""


# Telling the variants apart: only the image encoder's width and depth differ.
_PATCH_KEY = "image_encoder.patch_embed.proj.weight"  # (embed_dim, 3, 16, 16)
_BLOCK_KEY = re.compile(r"image_encoder\.blocks\.(\d+)\.")
_RELEASED = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}


# tiny_conv's stem (modeling.patching.ConvStem): a Sequential of 3x3 stride-2 convolutions, each
# with a LayerNorm2d and a GELU, then a 1x1 convolution to the embed dim
_CONV_STEM_KEY = re.compile(r"image_encoder\.patch_embed\.proj\.(\d+)\.weight$")


def stem_of(state_dict: Mapping[str, torch.Tensor]) -> Optional[Tuple[str, int]]:
    """("patch", patch size) for SAM's patch projection, ("conv", patch size) for a ConvStem (2 to
    the number of its 3x3 stride-2 convolutions), or None if there is no image encoder."""
    if _PATCH_KEY in state_dict:
        return "patch", int(state_dict[_PATCH_KEY].shape[-1])
    convs = [key for key in state_dict if _CONV_STEM_KEY.match(key) and state_dict[key].dim() == 4]
    if not convs:
        return None
    return "conv", 2 ** sum(int(state_dict[key].shape[-1]) == 3 for key in convs)


def _encoder_size(state_dict: Mapping[str, torch.Tensor]) -> Optional[Tuple[int, int]]:
    """(embed dim, number of blocks) of the image encoder, or None if there is no encoder."""
    stem = stem_of(state_dict)
    if stem is None:
        return None
    if stem[0] == "patch":
        width = int(state_dict[_PATCH_KEY].shape[0])
    else:  # the stem's last layer, its 1x1 convolution, outputs the embed dim
        last = max((key for key in state_dict if _CONV_STEM_KEY.match(key)), key=lambda k: int(_CONV_STEM_KEY.match(k).group(1)))
        width = int(state_dict[last].shape[0])
    blocks = {int(m.group(1)) for key in state_dict if (m := _BLOCK_KEY.match(key))}
    return width, len(blocks)


def _size_text(size: Tuple[int, int]) -> str:
    return f"(embed {size[0]}, {size[1]} blocks)"


def identify_variant(state_dict: Mapping) -> str:
    """'vit_b', 'vit_l' or 'vit_h' for the released sizes, else 'custom (embed E, D blocks)'.

    Accepts a plain state dict or one wrapped under "model" / "state_dict", in Meta's names or
    transformers'; raises ValueError when there is no image encoder in it."""
    state_dict = _unwrap(state_dict, "state_dict")
    if transformers_names.is_transformers_layout(state_dict):
        state_dict = transformers_names.rename_from_transformers(state_dict)[0]
    size = _encoder_size(state_dict)
    if size is None:
        raise ValueError(f"state_dict: not a SAM state dict, it has no {_PATCH_KEY!r}")
    return _RELEASED.get(size, f"custom {_size_text(size)}")


def _unwrap(obj, path) -> Dict[str, torch.Tensor]:
    """The state dict inside what was loaded: the dict itself, or under "model"/"state_dict"."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not (isinstance(obj, Mapping) and all(torch.is_tensor(v) for v in obj.values())):
        raise CheckpointError(
            f"{path}: expected a state dict (parameter names -> tensors), possibly under "
            f"'model' or 'state_dict'; got a {type(obj).__name__} that is not one"
        )
    return dict(obj)


# What transformers' save_pretrained writes, in the order from_pretrained looks for it: one file,
# or an index (JSON: {"weight_map": {parameter: shard file}}) beside its shards.
TRANSFORMERS_WEIGHTS = (
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
)


def _read_folder(folder: Path) -> Dict[str, torch.Tensor]:
    """The tensors of a save_pretrained folder, every shard merged (names as in the files)."""
    for single, index in TRANSFORMERS_WEIGHTS:
        if (folder / single).is_file():
            return _read_state_dict(folder / single)
        if (folder / index).is_file():
            try:
                shards = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                raise CheckpointError(
                    f"{folder / index}: not a shard index (expected JSON with a 'weight_map' of "
                    f"parameter -> file): {type(error).__name__}: {error}"
                ) from None
            state_dict = {}
            for shard in shards:
                if not (folder / shard).is_file():
                    raise FileNotFoundError(f"{folder / index} lists the shard {shard!r}, which is not in {folder}")
                state_dict.update(_read_state_dict(folder / shard))
            return state_dict
    expected = ", ".join(f"{single} (or {index} and its shards)" for single, index in TRANSFORMERS_WEIGHTS)
    raise FileNotFoundError(
        f"{folder}: no weights in this folder; a transformers save_pretrained folder holds one of {expected}"
    )


def read_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (``.pth``, ``.bin``, ``.safetensors``) or of a transformers
    ``save_pretrained`` folder, under the names the file uses (Meta's or transformers')."""
    return _read_state_dict(Path(path).expanduser())


def _read_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.is_dir():
        return _read_folder(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            # weights_only: rebuild tensors and plain containers, never call anything else.
            # mmap (zip files only) reads tensors lazily instead of holding a second copy.
            obj = torch.load(path, weights_only=True, map_location="cpu", mmap=zipfile.is_zipfile(path))
    except OSError:
        raise  # a folder, no permission, ...: the system's message says it best
    except Exception as error:  # every other failure is about the file's contents
        # torch names what the pickle asked to import: "... GLOBAL posix.system ..."
        wanted = re.search(r"GLOBAL ([\w.]+)", str(error))
        if isinstance(error, pickle.UnpicklingError) and wanted:
            raise CheckpointError(
                f"{path}: refused: the file contains code or objects that are not plain tensors "
                f"(it asks for {wanted.group(1)}); nothing in it was executed. Use a trusted "
                "checkpoint, or a .safetensors file"
            ) from None
        reason = (str(error).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"{path}: the file is truncated or corrupt ({type(error).__name__}: {reason}); "
            "delete it and download it again (download_checkpoint verifies the download)"
        ) from error
    return _unwrap(obj, path)


def _listing(title: str, items: List[str], most: int = 10) -> List[str]:
    """One paragraph of an error message: a count, the first `most` items, how many more."""
    if not items:
        return []
    more = [f"... and {len(items) - most} more"] if len(items) > most else []
    return [f"  {len(items)} {title}:"] + [f"    {item}" for item in items[:most] + more]


def load_checkpoint(model: nn.Module, path: PathLike, strict: bool = True) -> nn.Module:
    """Load a checkpoint into ``model`` and return the model: Meta's ``.pth``, a ``.safetensors``
    file, or a transformers checkpoint (a ``save_pretrained`` folder, or a file in its names).

    ``strict`` (the default) requires the file and the model to have exactly the same keys;
    ``strict=False`` tolerates missing and unexpected keys. Shapes must always match.
    Raises FileNotFoundError, or CheckpointError saying what is wrong with the file."""
    path = Path(path).expanduser()
    return load_state_dict_checked(model, _read_state_dict(path), path, strict)


def load_state_dict_checked(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: PathLike = "state_dict", strict: bool = True
) -> nn.Module:
    """``model.load_state_dict`` after load_checkpoint's checks; errors name ``source``.

    A state dict in transformers' names is renamed to Meta's first."""
    state_dict, problems, layout = dict(state_dict), [], ""
    if transformers_names.is_transformers_layout(state_dict):
        state_dict, unplaced, differ = transformers_names.rename_from_transformers(state_dict)
        layout = " (transformers' layout, renamed to sam_lab's keys)"
        problems += _listing("tied tensors that differ", differ)
        if strict:
            problems += _listing("keys that have no place in SAM (transformers' names)", unplaced)
    model_state = model.state_dict()

    # Another variant's file: say so, rather than list every mismatched shape.
    file_size, model_size = _encoder_size(state_dict), _encoder_size(model_state)
    if file_size and model_size and file_size != model_size:
        config = getattr(model, "config", None)
        model_name = getattr(config, "name", None) or _RELEASED.get(model_size, "custom-size")
        raise CheckpointError(
            f"{source}: this file holds {_RELEASED.get(file_size, 'custom-size')} weights "
            f"{_size_text(file_size)}; the model is {model_name} {_size_text(model_size)}. "
            "Build the model of the file's variant, or load that variant's checkpoint"
        )

    missing = [key for key in model_state if key not in state_dict]
    unexpected = [key for key in state_dict if key not in model_state]
    shapes = [
        f"{key}: file {tuple(state_dict[key].shape)}, model {tuple(tensor.shape)}"
        for key, tensor in model_state.items()
        if key in state_dict and state_dict[key].shape != tensor.shape
    ]
    problems += _listing("shape mismatches", shapes)
    if strict:
        problems += _listing("missing keys (in the model, not in the file)", missing)
        problems += _listing("unexpected keys (in the file, not in the model)", unexpected)
    if problems:
        raise CheckpointError("\n".join([f"{source}: the checkpoint{layout} does not fit the model:"] + problems))
    model.load_state_dict(state_dict, strict=strict)
    return model


def move_into_place(source: Path, dest: Path) -> None:
    """Flush `source` to disk, then rename it to `dest` in one step (same folder)."""
    with open(source, "rb+") as file:
        os.fsync(file.fileno())
    os.replace(source, dest)


def give_default_mode(path: PathLike) -> None:
    """Some writers (safetensors, onnx's external data) create owner-only files; give the file
    the mode a plain open() would, so a file in a shared folder is readable as the umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Run write(temp_path) on a temporary file beside `path`, then move it into place: readers
    see the old file or the complete new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(str(temp))
        give_default_mode(temp)
        move_into_place(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def save_checkpoint(model_or_state_dict: Union[nn.Module, Mapping], path: PathLike) -> Path:
    """Save a model's (or a state dict's) tensors atomically: ``.safetensors`` by that suffix,
    otherwise a ``.pth`` state dict like Meta's. Returns the path."""
    path = Path(path).expanduser()
    source = model_or_state_dict
    state_dict = _unwrap(source.state_dict() if isinstance(source, nn.Module) else source, path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        tensors = {key: value.detach().contiguous() for key, value in state_dict.items()}
        write_atomically(path, lambda temp: save_file(tensors, temp, metadata={"format": "pt"}))
    else:
        write_atomically(path, lambda temp: torch.save(state_dict, temp))
    return path


