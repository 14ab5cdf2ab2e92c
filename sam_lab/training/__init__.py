"""Training: SAM's losses, the 11-round click simulation, the training loop and its data (08-09).

losses   focal + dice (20:1), the IoU head's MSE, min over the three masks
clicks   the 11-round simulation: first prompt, 8 error-region points, 2 mask-only rounds
train    the loop (AdamW, warm-up, step decay, exact resume, data parallel);
         ``python -m sam_lab.training --help``
data     SyntheticShapes (nested shapes on photos) and CocoSegmentation
regrid   move trained weights to a finer token grid (patch 16 -> 8) without losing what they learned
recipe   the shipped tiny model's stages in one command: ``python -m sam_lab.training.recipe``
"""
