"""Datasets for training SAM: synthetic nested shapes and COCO-format folders."""
from .coco import CocoSegmentation
from .synthetic import SyntheticShapes

__all__ = ["SyntheticShapes", "CocoSegmentation"]
