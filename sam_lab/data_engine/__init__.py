"""The data engine of the paper (§4), simulated: a model-assisted annotator, retraining between
rounds, pre-filled masks, fully automatic labelling, and the paper's ablation (lesson 11).

    python -m sam_lab.data_engine --num-images 300 --out runs/engine

annotator  the simulated stage-1 annotator: clicks, give-up rule, simulated seconds
retrain    the short fine-tune on everything collected so far
engine     the three stages, the report, exact resume
"""
from .annotator import ImageResult, ObjectResult, SimulatedAnnotator
from .engine import (
    STAGE_NAMES,
    STAGES,
    DataEngine,
    EngineConfig,
    EngineSettingsError,
    plan_steps,
    run_engine,
    load_shipped_report,
    stage_images,
)
from .retrain import EmbeddingCache, RetrainConfig, retrain, to_model_input

__all__ = [
    "DataEngine", "EmbeddingCache", "EngineConfig", "EngineSettingsError", "ImageResult", "ObjectResult",
    "RetrainConfig", "STAGES", "STAGE_NAMES", "SimulatedAnnotator", "load_shipped_report", "plan_steps", "retrain", "run_engine",
    "stage_images", "to_model_input",
]
