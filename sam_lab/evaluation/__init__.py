"""Evaluation: how well a model segments, measured as the paper does (lessons 08-09).

interactive  the click protocol (farthest from the error's boundary), NoC@85/90, mIoU vs clicks
ambiguity    one click inside a nested part: the best IoU per level, and how blurred the answer is
calibration  the IoU head against the truth, stability scores, what survives the generator's filters
photos       scikit-image's sample photos with classical ground truth; box-prompt mIoU
"""
from .photos import SamplePhotos, evaluate_boxes
from .ambiguity import AmbiguityResult, evaluate_ambiguity, in_between, nested_chains
from .calibration import grid_filter_survivors, iou_calibration, stability_score
from .interactive import InteractiveResult, evaluate_interactive, farthest_from_boundary, next_eval_click

__all__ = [
    "AmbiguityResult", "InteractiveResult", "evaluate_ambiguity", "evaluate_interactive",
    "farthest_from_boundary", "in_between", "nested_chains", "next_eval_click",
    "SamplePhotos", "evaluate_boxes", "grid_filter_survivors", "iou_calibration", "stability_score",
]
