"""Inference: from an image and prompts to masks (lesson 07).

transforms  resize the long side to the model's input size, and map prompts the same way
validation  every argument a user passes is checked and explained here
predictor   SamPredictor: encode an image once, then answer prompts in milliseconds
masks       mask IoU (one convention: empty vs empty = 1) and tight boxes
rle         COCO-compatible run-length encoding of masks
amg         SamAutomaticMaskGenerator: masks for everything in an image (10)
onnx_export the whole model as two ONNX graphs; onnx_predictor runs them without torch (12)
"""
from .amg import SamAutomaticMaskGenerator
from .masks import mask_box, mask_iou
from .onnx_predictor import OnnxPredictor
from .predictor import SamPredictor
from .transforms import ResizeLongestSide

__all__ = ["OnnxPredictor", "ResizeLongestSide", "SamAutomaticMaskGenerator", "SamPredictor", "mask_box", "mask_iou"]
