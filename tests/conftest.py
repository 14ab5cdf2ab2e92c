import sys
from pathlib import Path

import torch

# tests/reference.py (the oracle helpers) is imported as a plain module
sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)
