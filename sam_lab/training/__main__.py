"""``python -m sam_lab.training`` (and ``torchrun -m sam_lab.training``): see :mod:`sam_lab.training.train`."""
from .train import main

main()
