"""Shared pieces of the widget tests (test_widget_*.py): a recording predictor and fixtures.

The widgets are tested without a browser: their state objects and traitlets are driven as a
click would. Real-browser tests (what the page draws, clicks mapped at device scale factors 1
and 2) are in tests/test_browser.py.
"""
import pytest
import torch

import sam_lab
from sam_lab.widgets import demo_image


class RecordingPredictor(sam_lab.SamPredictor):
    """A real predictor that remembers the arguments of every ``predict`` call."""

    def __init__(self, model):
        super().__init__(model)
        self.calls = []

    def predict(self, **kwargs):
        self.calls.append({**kwargs, "threads": torch.get_num_threads()})
        return super().predict(**kwargs)


@pytest.fixture(scope="module")
def tiny():
    """A tiny SAM with fixed random weights: the widgets' plumbing, not the model's quality."""
    torch.manual_seed(0)
    return sam_lab.build_sam("tiny").eval()


@pytest.fixture(scope="module")
def image():
    return demo_image()  # (240, 320, 3)
