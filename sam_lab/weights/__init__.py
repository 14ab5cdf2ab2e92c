"""Weights: reading and writing checkpoints, Meta's official files, and the shipped tiny models.

io           load_checkpoint / save_checkpoint (strict keys, weights_only, atomic writes)
official     the table of Meta's files, find_checkpoint
download     download_checkpoint: resumable, retried, verified
pretrained   load_model("tiny" | "vit_b" | ...), load_ablation_model; the *.safetensors beside it
random_init  randomize: every parameter random, for parity tests and checkers
"""
from .download import DownloadError, download_checkpoint
from .io import CheckpointError, identify_variant, load_checkpoint, save_checkpoint, write_atomically
from .official import CHECKPOINTS, DEFAULT_FOLDER, ENV_VAR, CheckpointInfo, find_checkpoint
from .random_init import randomize

__all__ = [
    "CHECKPOINTS", "DEFAULT_FOLDER", "ENV_VAR", "CheckpointError", "CheckpointInfo", "DownloadError",
    "download_checkpoint", "find_checkpoint", "identify_variant", "load_checkpoint", "randomize",
    "save_checkpoint", "write_atomically",
]
