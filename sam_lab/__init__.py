"""sam_lab: learn the Segment Anything Model by building it, stage by stage."""
from .backends import attention_kernel, get_attention_kernel, record_attention, set_attention_kernel
from .components import STAGES, build_sam, sam_model_registry
from .config import TINY, VIT_B, VIT_H, VIT_L, SamConfig, get_config
from .sam import Sam


from .predictor import SamPredictor
from .transforms import ResizeLongestSide
__version__ = "0.1.0"
