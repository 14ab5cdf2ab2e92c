"""Clickable widgets (anywidget): prompt SAM, compare encoders, look inside.

    from sam_lab.widgets import PromptWidget, pick_model, demo_image
    choice = pick_model("tiny")            # the trained tiny SAM shipped in sam_lab/weights/
    PromptWidget(sam_lab.SamPredictor(choice.model), demo_image(), model_label=choice.label)
    EverythingWidget(choice.model, demo_image(), generate=True)   # segment everything, click a mask

Each widget is a thin view over a pure-Python state object that tests and notebooks drive
directly (``PromptState``, ``EverythingState``, ``CompareState``, ``AttentionState``, ``PositionalEncodingState``);
traitlets are the only channel to the page, whose ES module is the .js file beside the class.
"""
from .annotate import AnnotationSession
from .attention import AttentionExplorer, AttentionState
from .compare import CompareWidget
from .compare_state import CompareState
from .everything import EverythingState, EverythingWidget
from .images import demo_image
from .models import ModelChoice, estimate_encode_seconds, pick_model
from .positional import PositionalEncodingExplorer, PositionalEncodingState
from .prompt import PromptWidget
from .prompt_state import Prediction, PromptState

__all__ = ["AnnotationSession", "PromptWidget", "PromptState", "CompareWidget", "CompareState", "EverythingWidget", "EverythingState", "AttentionExplorer", "AttentionState",
           "PositionalEncodingExplorer", "PositionalEncodingState", "Prediction", "ModelChoice", "pick_model", "estimate_encode_seconds", "demo_image"]
