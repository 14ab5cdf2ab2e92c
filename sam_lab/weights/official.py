"""Meta's official checkpoint files: their table, where to find them on disk, how they are verified.

Meta released three checkpoints (ViT-B, ViT-L, ViT-H) as ``.pth`` files. :data:`CHECKPOINTS`
lists them; :func:`find_checkpoint` looks for one already on disk (a folder you name,
``$SAM_LAB_CHECKPOINTS``, then ``~/.cache/sam_lab/checkpoints``); loading them is
:mod:`sam_lab.weights.io`.

``download_checkpoint`` fetches an official file with resume and verification, and
``find_checkpoint`` looks for one already on disk. On integrity: the six hex digits in Meta's
file names (``sam_vit_b_01ec64.pth``) are the start of the file's **MD5**, not of its SHA-256.
:data:`CHECKPOINTS` records each official file's full MD5 (the name holds its first six digits;
the full digests are published by many projects that fetch these files), and a full ``sha256``
only where one has been verified (none yet, so every ``sha256`` is None). A download is checked
against, in this order: the caller's ``sha256=``, the table's ``sha256``, the table's full
``md5``, the MD5 prefix in the file name. MD5 catches damage in transit, not a forged file; the
SHA-256 of every verified file is logged (logger ``sam_lab.weights.download``, level INFO) so that you
can pin it with ``sha256=``. The download code is :mod:`sam_lab.weights.download`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from .io import PathLike

ENV_VAR = "SAM_LAB_CHECKPOINTS"  # a folder to look in before the default cache
DEFAULT_FOLDER = Path("~/.cache/sam_lab/checkpoints")


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


def checkpoint_info(variant: str) -> CheckpointInfo:
    key = "vit_h" if variant == "default" else variant  # "default" is ViT-H, as in Meta's registry
    if key not in CHECKPOINTS:
        raise ValueError(
            f"variant: expected one of {sorted(CHECKPOINTS)} (or 'default' = vit_h), got {variant!r}"
        )
    return CHECKPOINTS[key]


def find_checkpoint(variant: str, folder: Optional[PathLike] = None) -> Optional[Path]:
    """Path of the official file for `variant` in `folder`, or (when no folder is given) in
    ``$SAM_LAB_CHECKPOINTS`` and then ``~/.cache/sam_lab/checkpoints``; None if absent."""
    info = checkpoint_info(variant)
    if folder is not None:
        folders = [folder]
    else:
        folders = [os.environ[ENV_VAR]] if os.environ.get(ENV_VAR) else []
        folders.append(DEFAULT_FOLDER)
    for candidate in (Path(f).expanduser() / info.filename for f in folders):
        if candidate.is_file():
            return candidate
    return None
