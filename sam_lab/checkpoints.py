"""Load, save, find and download SAM checkpoints, safely and with clear errors.

Meta released three checkpoints (ViT-B, ViT-L, ViT-H) as ``.pth`` files: a pickled dict that
maps parameter names to tensors. Our model's ``state_dict`` keys are exactly Meta's, so loading
is ``model.load_state_dict`` after checks that turn the usual failures into readable messages:

* Pickle can run code. ``.pth`` files are read with ``torch.load(weights_only=True)``, which
  rebuilds only tensors and plain containers; a file that asks for anything else (a function
  such as ``os.system``, some project's class) is refused before any of it runs.
* A file of another variant (vit_l weights into a vit_b model) is named as such, instead of
  hundreds of shape errors; missing, unexpected and mis-shaped keys are listed.
* A truncated or corrupt file (an interrupted download, say) is called that.

``.safetensors`` files hold nothing but tensors by design and are read with ``safetensors``.

``download_checkpoint`` fetches an official file with resume and verification, and
``find_checkpoint`` looks for one already on disk. On integrity: the six hex digits in Meta's
file names (``sam_vit_b_01ec64.pth``) are the start of the file's **MD5**, not of its SHA-256.
:data:`CHECKPOINTS` records each official file's full MD5 (the name holds its first six digits;
the full digests are published by many projects that fetch these files), and a full ``sha256``
only where one has been verified (none yet, so every ``sha256`` is None). A download is checked
against, in this order: the caller's ``sha256=``, the table's ``sha256``, the table's full
``md5``, the MD5 prefix in the file name. MD5 catches damage in transit, not a forged file; the
SHA-256 of every verified file is logged (logger ``sam_lab.download``, level INFO) so that you
can pin it with ``sha256=``. The download code lives in :mod:`sam_lab.download` and is
importable from here as well.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import re
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from .download import DownloadError, download_checkpoint  # see __getattr__ at the end

PathLike = Union[str, os.PathLike]
ENV_VAR = "SAM_LAB_CHECKPOINTS"  # a folder to look in before the default cache
DEFAULT_FOLDER = Path("~/.cache/sam_lab/checkpoints")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded (or verified); the message names the file."""


@dataclass(frozen=True)
class CheckpointInfo:
    variant: str
    filename: str
    url: str
    size: int  # bytes
    md5: Optional[str] = None  # full hex digest of Meta's file (see module docstring)
    sha256: Optional[str] = None  # full hex digest; None until verified

    @property
    def hash_prefix(self) -> str:
        """First six hex digits of the file's MD5, as written in its name."""
        return Path(self.filename).stem.rsplit("_", 1)[-1]


_URL_FOLDER = "https://dl.fbaipublicfiles.com/segment_anything/"
CHECKPOINTS: Dict[str, CheckpointInfo] = {
    variant: CheckpointInfo(variant, filename, _URL_FOLDER + filename, size, md5)
    for variant, filename, size, md5 in [
        ("vit_h", "sam_vit_h_4b8939.pth", 2_564_550_879, "4b8939a88964f0f4ff5f5b2642c598a6"),
        ("vit_l", "sam_vit_l_0b3195.pth", 1_249_524_607, "0b3195507c641ddb6910d2bb5adee89c"),
        ("vit_b", "sam_vit_b_01ec64.pth", 375_042_383, "01ec64d29a2fca3f0661936605ae66f8"),
    ]
}


def _checkpoint_info(variant: str) -> CheckpointInfo:
    key = "vit_h" if variant == "default" else variant  # "default" is ViT-H, as in Meta's registry
    if key not in CHECKPOINTS:
        raise ValueError(
            f"variant: expected one of {sorted(CHECKPOINTS)} (or 'default' = vit_h), got {variant!r}"
        )
    return CHECKPOINTS[key]


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


def _sync_and_move(source: Path, dest: Path) -> None:
    """Flush `source` to disk, then rename it to `dest` in one step (same folder)."""
    with open(source, "rb+") as file:
        os.fsync(file.fileno())
    os.replace(source, dest)


def _write_atomically(path: Path, write: Callable[[str], None]) -> None:
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
        _sync_and_move(temp, path)
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
        _write_atomically(path, lambda temp: save_file(tensors, temp, metadata={"format": "pt"}))
    else:
        _write_atomically(path, lambda temp: torch.save(state_dict, temp))
    return path


def find_checkpoint(variant: str, folder: Optional[PathLike] = None) -> Optional[Path]:
    """Path of the official file for `variant` in `folder`, or (when no folder is given) in
    ``$SAM_LAB_CHECKPOINTS`` and then ``~/.cache/sam_lab/checkpoints``; None if absent."""
    info = _checkpoint_info(variant)
    if folder is not None:
        folders = [folder]
    else:
        folders = [os.environ[ENV_VAR]] if os.environ.get(ENV_VAR) else []
        folders.append(DEFAULT_FOLDER)
    for candidate in (Path(f).expanduser() / info.filename for f in folders):
        if candidate.is_file():
            return candidate
    return None


def __getattr__(name: str):
    # download_checkpoint and DownloadError live in sam_lab.download, which imports this module;
    # they are fetched on first use here, so either module can be imported first.
    if name in ("download_checkpoint", "DownloadError"):
        from . import download

        return getattr(download, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
