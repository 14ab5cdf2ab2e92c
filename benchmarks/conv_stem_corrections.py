"""The conv-stem lever through the corrections: a first-stage model trained further on the 11-round
simulation, then measured like the shipped model.

    python benchmarks/train_levers.py --levers r1_recipe r1_conv_stem --minutes 16 --eval-images 40 \
        --max-clicks 1 --out runs/levers_1206
    python benchmarks/conv_stem_corrections.py r1_recipe patch
    python benchmarks/conv_stem_corrections.py r1_conv_stem conv

Starts from ``runs/levers_1206/NAME/last.pt`` (16 minutes of the recipe's first stage, first prompt
only), trains 10 minutes of the 11-round simulation (``first_random``, lr 1e-3 dropping at 2/3 and
96 % of 3,000 steps, focal alpha 0.5, augment, 600 images, tiny16), then measures 40 unseen images of
seed 10000 (1-click oracle and pick, NoC@90 with a 20-click cap, IoU after 5 / 10 / 20 clicks, IoU
Pearson) and the scikit-image photos (1-click oracle, tight box). Writes ``runs/corr_NAME.json``.
"""
import json
import sys
from pathlib import Path

import torch

from sam_lab import SamPredictor
from sam_lab.evaluation import SamplePhotos, evaluate_boxes, evaluate_interactive, iou_calibration
from sam_lab.training.data import SyntheticShapes
from sam_lab.training.train import TrainConfig, build_model, train
from sam_lab.weights import save_checkpoint, write_atomically


def main(name: str, stem: str, minutes: float = 10.0) -> dict:
    torch.set_num_threads(2)
    start = build_model(TrainConfig(config="tiny16", stem=stem))
    start.load_state_dict(torch.load(f"runs/levers_1206/{name}/last.pt", weights_only=True)["model"])
    save_checkpoint(start, f"runs/corr_{name}_start.safetensors")
    cfg = TrainConfig(config="tiny16", stem=stem, init=f"runs/corr_{name}_start.safetensors", steps=3000, batch_size=2,
                      masks_per_image=8, lr=1e-3, warmup=20, num_images=600, focal_alpha=0.5, augment=True,
                      grad_rounds="first_random", checkpoint_every=10**6, out=f"runs/corr_{name}", threads=2)
    result = train(cfg, resume=False, progress=False, time_limit=minutes * 60)
    model = result["model"].eval()
    torch.set_num_threads(2)
    generated = SyntheticShapes(40, seed=10_000, image_size=256)
    synthetic = [generated[i] for i in range(len(generated))]
    predictor = SamPredictor(model)
    clicks = evaluate_interactive(predictor, synthetic, max_clicks=20)
    photos = SamplePhotos()
    row = {"lever": name, "steps": result["step"], "s_per_step": result["seconds"] / result["step"],
           "oracle": clicks.miou_1click_oracle, "predicted": clicks.miou_1click_predicted, "noc90": clicks.noc90,
           "iou_5_10_20": [float(clicks.iou_per_click[i]) for i in (4, 9, 19)],
           "pearson": iou_calibration(predictor, synthetic)["pearson"],
           "photos_oracle": evaluate_interactive(predictor, photos, max_clicks=1).miou_1click_oracle,
           "photos_box": evaluate_boxes(predictor, photos)["miou"]}
    text = json.dumps(row, default=float)
    write_atomically(Path(f"runs/corr_{name}.json"), lambda temp: Path(temp).write_text(text))
    print(text)
    return row


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in ("patch", "conv"):
        raise SystemExit("usage: conv_stem_corrections.py LEVER_NAME patch|conv")
    main(sys.argv[1], sys.argv[2])
