"""sam_lab: learn the Segment Anything Model by building it, stage by stage.

    import sam_lab
    sam = sam_lab.sam_model_registry["vit_b"](checkpoint="sam_vit_b_01ec64.pth")
    predictor = sam_lab.SamPredictor(sam)
"""
from .backends import (
    attention_kernel,
    autocast,
    get_attention_kernel,
    pick_device,
    record_attention,
    set_attention_kernel,
)
from .checkpoints import download_checkpoint, find_checkpoint, load_checkpoint, save_checkpoint
from .components import STAGES, build_sam, sam_model_registry
from .config import TINY, VIT_B, VIT_H, VIT_L, SamConfig, get_config
from .predictor import SamPredictor
from .pretrained import load_ablation_model, load_model
from .sam import Sam
from .transforms import ResizeLongestSide

from . import exercises, viz  # noqa: E402  (sam_lab.exercises.check, sam_lab.viz.show_mask)

__version__ = "0.1.0"
