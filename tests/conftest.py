import sys
from pathlib import Path

import torch

# tests/reference.py (the oracle helpers) is imported as a plain module
sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (the folder is not a package), for its smoke tests."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
