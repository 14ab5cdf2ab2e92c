"""sam_lab: learn the Segment Anything Model by building it, stage by stage.

    import sam_lab
    sam = sam_lab.load_model("tiny")                  # the trained tiny SAM shipped in the package
    sam = sam_lab.load_model("vit_b")                 # Meta's checkpoint, found on disk
    sam = sam_lab.load_text_model("tiny")             # tiny with a text path: predict(text="red circle")
    predictor = sam_lab.SamPredictor(sam)

The package, in the order imports may point (each layer uses only those above it):

    config, device       SamConfig and presets, stage_kwargs; pick_device, autocast
    modeling/            the model, one stage per file (lessons 01-06)
    weights/ (io)        checkpoint files: read, write, Meta's table, download; convert: HF transformers
    build                build_sam, sam_model_registry, STAGES, stage swapping, backends
    inference/           transforms, validation, SamPredictor, mask IoU, RLE (07), AMG (10),
                         ONNX export and OnnxPredictor (12)
    weights/pretrained   load_model, load_ablation_model, load_text_model
    evaluation/          NoC, mIoU vs clicks, the ambiguity test (08-09)
    training/            losses, the 11-round simulation, the training loop, data (08-09),
                         a text path's training (13)
    exercises, viz, widgets   teaching: checkers, plots, clickable widgets

``import sam_lab`` stays light: ``sam_lab.exercises``, ``sam_lab.viz`` and ``sam_lab.widgets``
(matplotlib, anywidget) are imported the first time they are used.
"""
import importlib as _importlib

from .build import STAGES, build_sam, sam_model_registry
from .config import TINY, VIT_B, VIT_H, VIT_L, SamConfig, get_config, stage_kwargs
from .device import autocast, pick_device
from .inference.amg import SamAutomaticMaskGenerator
from .inference.onnx_predictor import OnnxPredictor
from .inference.predictor import SamPredictor
from .inference.transforms import ResizeLongestSide
from .modeling.kernels import attention_kernel, get_attention_kernel, record_attention, set_attention_kernel
from .modeling.sam import Sam
from .weights import download_checkpoint, find_checkpoint, load_checkpoint, save_checkpoint
from .weights.pretrained import load_ablation_model, load_model, load_text_model

__version__ = "0.1.0"

_LAZY = ("convert", "evaluation", "exercises", "training", "viz", "widgets")


def __getattr__(name: str):
    # sam_lab.viz.show_mask(...) works after a plain `import sam_lab`, without paying for
    # matplotlib (or anywidget) in every process that never draws
    if name in _LAZY:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
