"""The shipped tiny model against issue 10's targets, on data it never trained on.

    python benchmarks/tiny_targets.py                      # the shipped weights
    python benchmarks/tiny_targets.py --weights runs/tiny/model.safetensors --out runs/targets.json
    python benchmarks/tiny_targets.py --config tiny16 --weights benchmarks/candidates/tiny_soft.safetensors

Rows (targets in brackets):
    unseen synthetic seed   SyntheticShapes(--images, seed=10000): 1-click mIoU oracle (>= 0.85)
                            and predicted-best (>= 0.78), NoC@90 with a 20-click cap (<= 3), and
                            the Pearson r of predicted vs true IoU over 1-click candidates (>= 0.7)
    real photos             sam_lab.evaluation.SamplePhotos (scikit-image photos, classical ground
                            truth): 1-click mIoU oracle (>= 0.8) and tight-box mIoU (>= 0.85)
    mask-generator filters  a 32x32 point grid on coffee(), coins() and astronaut(): candidates
                            with predicted IoU >= 0.88 and stability >= 0.95 (the reference
                            generator's defaults; the issue wants real objects kept)

Prints a markdown table with each target and its gap; ``--out`` writes the numbers as JSON
(atomically), with diagnostics that separate the IoU head from the ambiguity of a click: the share
of targets whose click lies in no other mask, the predicted pick and the IoU Pearson on those,
and both scored against whichever level containing the click matches best, the mIoU the
low-res mask size allows (the ground truth through it and back, with soft and with binary
low-res logits), and whether the decoder's upscaled features limit the masks after 20 clicks
(the best linear readout of them fitted per target, :func:`feature_readout_ceiling`), and the
ceilings of the IoU head: the best head the training's click distribution allows, on the model's
masks and on perfect ones (:func:`perfect_levels_ceiling`). Runs on 2 threads
unless ``--threads`` says otherwise.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from sam_lab import SamPredictor, build_sam, load_model
from sam_lab.config import override_config
from sam_lab.evaluation import SamplePhotos, evaluate_boxes, evaluate_interactive, grid_filter_survivors, iou_calibration
from sam_lab.training.data import SyntheticShapes
from sam_lab.weights import load_checkpoint, write_atomically

TARGETS = {  # metric -> (target, "min" if higher is better else "max")
    "synthetic_oracle": (0.85, "min"),
    "synthetic_predicted": (0.78, "min"),
    "synthetic_noc90": (3.0, "max"),
    "synthetic_iou_pearson": (0.7, "min"),
    "photos_oracle": (0.8, "min"),
    "photos_box": (0.85, "min"),
}


def low_res_ceiling(dataset, low_res: int, binary: bool = False) -> dict:
    """How well the ground truth survives a round trip through a low_res x low_res logit map, then
    the predictor's bilinear upsampling and threshold at 0: the best a model with that mask size
    could do. ``binary=False``: the area coverage (minus 0.5) as the logits, which places each
    boundary inside its low-res pixel; ``binary=True``: coverage >= 0.5 as +-1, what a model trained
    against the binary low-res target (``--mask-target binary``) learns at best. Returns the mean
    IoU and the share of masks that can reach IoU 0.9 at all."""
    import numpy as np
    import torch.nn.functional as F

    from sam_lab.inference.masks import mask_iou

    ious = []
    for i in range(len(dataset)):
        masks = torch.as_tensor(dataset[i]["masks"])[:, None].float()
        coverage = F.interpolate(masks, (low_res, low_res), mode="area")
        logits = (coverage >= 0.5).float() * 2 - 1 if binary else coverage - 0.5
        back = F.interpolate(logits, masks.shape[-2:], mode="bilinear", align_corners=False)[:, 0] > 0
        ious.extend(mask_iou(back.numpy(), masks[:, 0].bool().numpy()).tolist())
    return {"mean": float(np.mean(ious)), "share_reaching_0.9": float(np.mean(np.asarray(ious) >= 0.9))}


def feature_readout_ceiling(model, dataset, images: int = 20, clicks: int = 20, fit_steps: int = 600) -> dict:
    """Is the decoder's upscaled feature map the limit? The targets of the first ``images`` images are
    clicked ``clicks`` times by :func:`evaluate_interactive`, one image at a time; at the last round the
    mask decoder's upscaled image features (transformer_dim / 8 channels at the low-res size, which
    every mask is a linear readout of) are captured, and the best linear readout for each target is
    fitted to its area coverage (logistic regression, Adam). Returns the model's own mean IoU at that
    click, the fitted readout's, and each one's share reaching 0.9. If the fitted readout cannot beat
    the model's, no choice of output token can: the features themselves must get better."""
    import numpy as np
    import torch.nn.functional as F

    from sam_lab.inference.masks import mask_iou

    predictor = SamPredictor(model)
    captured = {}  # the last call's features: round ``clicks`` once an image's evaluation returns
    hook = model.mask_decoder.output_upscaling.register_forward_hook(lambda m, i, o: captured.__setitem__("features", o.detach()))
    own, fitted = [], []
    try:
        for index in range(min(images, len(dataset))):
            item = dataset[index]
            result = evaluate_interactive(predictor, [item], max_clicks=clicks)
            features = captured["features"]  # (T, C, h, w), one row per target of this image
            gts = torch.as_tensor(item["masks"])
            coverage = F.interpolate(gts[:, None].float(), features.shape[-2:], mode="area")[:, 0].flatten(1)  # (T, h*w)
            x = features.flatten(2)
            x = (x - x.mean(2, keepdim=True)) / (x.std(2, keepdim=True) + 1e-6)  # (T, C, h*w)
            with torch.enable_grad():
                weight = torch.zeros(x.shape[:2], requires_grad=True)
                bias = torch.zeros(len(x), 1, requires_grad=True)
                optimiser = torch.optim.Adam([weight, bias], lr=0.2)
                for _ in range(fit_steps):
                    logits = torch.einsum("tc,tcn->tn", weight, x) + bias
                    # a sum over targets: each target's own readout gets its own mean loss's gradient
                    loss = F.binary_cross_entropy_with_logits(logits, coverage, reduction="none").mean(1).sum()
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
            low = logits.detach().reshape(len(x), 1, *features.shape[-2:])
            up = F.interpolate(low, gts.shape[-2:], mode="bilinear", align_corners=False)[:, 0] > 0
            own.extend(result.per_target_iou[:, -1].tolist())
            fitted.extend(mask_iou(up.numpy(), item["masks"]).tolist())
    finally:
        hook.remove()
    own, fitted = np.asarray(own), np.asarray(fitted)
    return {"targets": len(own), "clicks": clicks, "model_iou": float(own.mean()), "model_share_0.9": float((own >= 0.9).mean()),
            "readout_iou": float(fitted.mean()), "readout_share_0.9": float((fitted >= 0.9).mean())}


SIZE_BINS = ((0, 1000), (1000, 3000), (3000, 8000), (8000, None))  # mask area in pixels of the 256-px image


def reach_by_kind(dataset, interactive) -> dict:
    """The share of targets that reach IoU 0.9 before the 20-click cap, and their NoC@90, by mask
    area and by nesting level (0 whole, 1 part, 2 subpart); ``interactive`` is
    evaluate_interactive's result over the same dataset (targets in image order)."""
    import numpy as np

    areas, levels = [], []
    for index in range(len(dataset)):
        item = dataset[index]
        areas.extend(item["masks"].reshape(len(item["masks"]), -1).sum(1).tolist())
        levels.extend(item["level"].tolist())
    areas, levels, noc = np.asarray(areas), np.asarray(levels), np.asarray(interactive.per_target_noc90)
    if len(noc) != len(areas):
        raise ValueError(f"interactive: expected one NoC per mask of the dataset ({len(areas)}), got {len(noc)}")
    groups = {f"area {lo}-{hi or 'up'}": (areas >= lo) & (areas < (hi or np.inf)) for lo, hi in SIZE_BINS}
    groups.update({f"level {k}": levels == k for k in sorted(set(levels.tolist()))})
    return {name: {"targets": int(keep.sum()), "reach_0.9": float((noc[keep] < 20).mean()), "noc90": float(noc[keep].mean())}
            for name, keep in groups.items() if keep.any()}


class _LevelsAnswerer:
    """A perfect model of the data's levels: it answers a click with the masks containing it,
    smallest first (the largest repeated when there are fewer than three). Its IoU scores are
    never read; iou_calibration's head ceiling is computed from the ground truth alone."""

    def __init__(self, dataset):
        self.dataset, self.item = dataset, None

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):  # the dataset seen through the answerer: it knows each image's masks
        self.item = self.dataset[index]
        return self.item

    def set_image(self, image):
        pass

    def predict(self, point_coords, point_labels, multimask_output=True):
        masks = self.item["masks"]
        x, y = (int(v) for v in point_coords[0])
        inside = [masks[k] for k in np.argsort(masks.reshape(len(masks), -1).sum(1)) if masks[k, y, x]]
        answer = np.stack((inside + [inside[-1]] * 3)[:3])
        return answer, np.full(3, 0.5), answer.astype(np.float32)


def perfect_levels_ceiling(dataset) -> dict:
    """What the one-click pick and the IoU Pearson could reach if the model's three answers were
    exactly the levels containing the click and its IoU head were the best the training's clicks
    allow (iou_calibration's head ceiling): the part of the gap that is the data's ambiguity."""
    answerer = _LevelsAnswerer(dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the constant scores have no Pearson; unused
        calibration = iou_calibration(answerer, answerer)
    return {"pearson": calibration["pearson_head_ceiling"], "pick": calibration["pick_head_ceiling"]}


def measure(model, images: int, grid: int = 32, readout: bool = True) -> dict:
    from skimage import data

    predictor = SamPredictor(model)
    generated = SyntheticShapes(images, seed=10_000, image_size=model.image_encoder.img_size)
    synthetic = [generated[i] for i in range(len(generated))]  # drawn once, read by every measurement below
    started = time.time()
    interactive = evaluate_interactive(predictor, synthetic, max_clicks=20, progress=True)
    calibration = iou_calibration(predictor, synthetic)
    photos = SamplePhotos()
    photo_clicks = evaluate_interactive(predictor, photos, max_clicks=20)
    boxes = evaluate_boxes(predictor, photos)
    filters = {name: grid_filter_survivors(predictor, getattr(data, name)(), points_per_side=grid)
               for name in ("coffee", "coins", "astronaut")}
    return {
        "synthetic_targets": interactive.num_targets,
        "synthetic_oracle": interactive.miou_1click_oracle,
        "synthetic_predicted": interactive.miou_1click_predicted,
        "synthetic_noc85": interactive.noc85,
        "synthetic_noc90": interactive.noc90,
        "synthetic_iou_after_5_10_20": [float(interactive.iou_per_click[k]) for k in (4, 9, 19)],
        "synthetic_iou_pearson": calibration["pearson"],
        "synthetic_reach_by_kind": reach_by_kind(synthetic, interactive),
        # diagnostics, not targets: how much of the predicted pick's gap is the click's ambiguity
        "synthetic_unambiguous_share": interactive.unambiguous_share,
        "synthetic_predicted_unambiguous": interactive.miou_1click_predicted_unambiguous,
        "synthetic_predicted_any_object": interactive.miou_1click_predicted_any_object,
        "synthetic_iou_pearson_unambiguous": calibration["pearson_unambiguous"],
        "synthetic_iou_pearson_any_object": calibration["pearson_any_object"],
        "synthetic_head_ceiling": {"pearson": calibration["pearson_head_ceiling"], "pick": calibration["pick_head_ceiling"]},
        "synthetic_perfect_levels_ceiling": perfect_levels_ceiling(synthetic),
        "synthetic_low_res_ceiling": low_res_ceiling(synthetic, 4 * model.prompt_encoder.image_embedding_size[0])["mean"],
        "synthetic_low_res_ceiling_binary": low_res_ceiling(synthetic, 4 * model.prompt_encoder.image_embedding_size[0], binary=True),
        "synthetic_feature_readout": feature_readout_ceiling(model, synthetic) if readout else None,
        "photos_targets": photo_clicks.num_targets,
        "photos_oracle": photo_clicks.miou_1click_oracle,
        "photos_predicted": photo_clicks.miou_1click_predicted,
        "photos_noc90": photo_clicks.noc90,
        "photos_box": boxes["miou"],
        "photos_box_per_target": [round(v, 4) for v in boxes["per_target"]],
        "grid_filters": filters,
        "seconds": time.time() - started,
    }


def table(result: dict) -> str:
    lines = ["| metric | measured | target | met |", "|---|---|---|---|"]
    for key, (target, kind) in TARGETS.items():
        value = result[key]
        met = value >= target if kind == "min" else value <= target
        lines.append(f"| {key} | {value:.3f} | {'≥' if kind == 'min' else '≤'} {target} | {'yes' if met else f'no (gap {abs(value - target):.3f})'} |")
    if "synthetic_unambiguous_share" in result:
        lines.append(f"| (diagnostic) clicks in no other mask | {result['synthetic_unambiguous_share']:.3f} of targets | | |")
        lines.append(f"| (diagnostic) predicted pick on those / against any level containing the click | "
                     f"{result['synthetic_predicted_unambiguous']:.3f} / {result['synthetic_predicted_any_object']:.3f} | | |")
        lines.append(f"| (diagnostic) IoU Pearson on those / against any level containing the click | "
                     f"{result['synthetic_iou_pearson_unambiguous']:.3f} / {result['synthetic_iou_pearson_any_object']:.3f} | | |")
    for key, what in [("synthetic_head_ceiling", "the best IoU head the training's clicks allow, on this model's masks"),
                      ("synthetic_perfect_levels_ceiling", "the same head on perfect masks (the levels containing the click)")]:
        if key in result:
            lines.append(f"| (diagnostic) {what}: IoU Pearson / predicted pick | "
                         f"{result[key]['pearson']:.3f} / {result[key]['pick']:.3f} | | |")
    if "synthetic_low_res_ceiling" in result:
        lines.append(f"| (diagnostic) ground truth through the low-res mask size and back | mean IoU {result['synthetic_low_res_ceiling']:.3f} | | |")
    if result.get("synthetic_low_res_ceiling_binary"):
        c = result["synthetic_low_res_ceiling_binary"]
        lines.append(f"| (diagnostic) the same with the binary low-res target (coverage >= 0.5) | mean IoU {c['mean']:.3f}, "
                     f"{c['share_reaching_0.9']:.2f} of masks can reach 0.9 | | |")
    if result.get("synthetic_feature_readout"):
        r = result["synthetic_feature_readout"]
        lines.append(f"| (diagnostic) after {r['clicks']} clicks, {r['targets']} targets: the model's mask / the best linear readout of its "
                     f"upscaled features | IoU {r['model_iou']:.3f} / {r['readout_iou']:.3f}; reaching 0.9: "
                     f"{r['model_share_0.9']:.2f} / {r['readout_share_0.9']:.2f} | | |")
    for name, r in result.get("synthetic_reach_by_kind", {}).items():
        lines.append(f"| (diagnostic) {name}: {r['targets']} targets | {r['reach_0.9']:.2f} reach IoU 0.9 within 19 clicks, "
                     f"NoC@90 {r['noc90']:.1f} | | |")
    for name, f in result["grid_filters"].items():
        lines.append(f"| generator filters on {name}() | {f['survivors']} of {f['candidates']} kept "
                     f"(best stability {f['best_stability']:.2f}, best predicted IoU {f['best_predicted_iou']:.2f}) | > 0 | "
                     f"{'yes' if f['survivors'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None, help="a tiny checkpoint (default: the shipped weights)")
    parser.add_argument("--images", type=int, default=100, help="unseen synthetic images (seed 10000)")
    parser.add_argument("--config", default="tiny", help="the config --weights were trained at (tiny16: the patch-16 grid; tiny_conv: tiny16 with the conv stem)")
    parser.add_argument("--config-overrides", default="", help="the run's --config-overrides, for --weights of another size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the numbers to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.weights:
        model = build_sam(override_config(args.config, args.config_overrides))
        load_checkpoint(model, args.weights)
        model.eval()
    else:
        model = load_model("tiny")
    with torch.no_grad():
        result = measure(model, args.images)
    print(table(result))
    if args.out:
        text = json.dumps(result, indent=2)
        write_atomically(Path(args.out), lambda temp: Path(temp).write_text(text))


if __name__ == "__main__":
    main()
