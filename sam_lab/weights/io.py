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
Everything sam_lab writes goes through :func:`write_atomically`: a temporary file beside the
target, flushed, then renamed into place, so a reader sees the old file or the whole new one.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import re
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded (or verified); the message names the file."""


# Telling the variants apart: only the image encoder's width and depth differ.
_PATCH_KEY = "image_encoder.patch_embed.proj.weight"  # (embed_dim, 3, 16, 16)
_BLOCK_KEY = re.compile(r"image_encoder\.blocks\.(\d+)\.")
_RELEASED = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}


def _encoder_size(state_dict: Mapping[str, torch.Tensor]) -> Optional[Tuple[int, int]]:
    """(embed dim, number of blocks) of the image encoder, or None if there is no encoder."""
    if _PATCH_KEY not in state_dict:
        return None
    blocks = {int(m.group(1)) for key in state_dict if (m := _BLOCK_KEY.match(key))}
    return int(state_dict[_PATCH_KEY].shape[0]), len(blocks)


def _size_text(size: Tuple[int, int]) -> str:
    return f"(embed {size[0]}, {size[1]} blocks)"


def identify_variant(state_dict: Mapping) -> str:
    """'vit_b', 'vit_l' or 'vit_h' for the released sizes, else 'custom (embed E, D blocks)'.

    Accepts a plain state dict or one wrapped under "model" / "state_dict"; raises ValueError
    when there is no image encoder in it."""
    size = _encoder_size(_unwrap(state_dict, "state_dict"))
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


def _read_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
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
    """Load Meta's ``.pth`` or a ``.safetensors`` file into ``model`` and return the model.

    ``strict`` (the default) requires the file and the model to have exactly the same keys;
    ``strict=False`` tolerates missing and unexpected keys. Shapes must always match.
    Raises FileNotFoundError, or CheckpointError saying what is wrong with the file."""
    path = Path(path).expanduser()
    state_dict = _read_state_dict(path)
    model_state = model.state_dict()

    # Another variant's file: say so, rather than list every mismatched shape.
    file_size, model_size = _encoder_size(state_dict), _encoder_size(model_state)
    if file_size and model_size and file_size != model_size:
        config = getattr(model, "config", None)
        model_name = getattr(config, "name", None) or _RELEASED.get(model_size, "custom-size")
        raise CheckpointError(
            f"{path}: this file holds {_RELEASED.get(file_size, 'custom-size')} weights "
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
    problems = _listing("shape mismatches", shapes)
    if strict:
        problems += _listing("missing keys (in the model, not in the file)", missing)
        problems += _listing("unexpected keys (in the file, not in the model)", unexpected)
    if problems:
        raise CheckpointError("\n".join([f"{path}: the checkpoint does not fit the model:"] + problems))
    model.load_state_dict(state_dict, strict=strict)
    return model


def move_into_place(source: Path, dest: Path) -> None:
    """Flush `source` to disk, then rename it to `dest` in one step (same folder)."""
    with open(source, "rb+") as file:
        os.fsync(file.fileno())
    os.replace(source, dest)


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Run write(temp_path) on a temporary file beside `path`, then move it into place: readers
    see the old file or the complete new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(str(temp))
        # some writers (safetensors) create owner-only files; give the file the mode a plain
        # open() would, so a checkpoint in a shared folder is readable as the user's umask allows
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
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


