"""The simulated annotator of the data engine's assisted-manual stage (paper §4).

In the paper, annotators labelled masks in a browser tool driven by SAM: click foreground and
background points, refine, accept, move on to the next object in order of prominence, and move
on to the next image once an image had taken long enough. This annotator does the same with a
picture's hidden ground truth in place of a person's eyes:

1. It takes the image's objects in order of size, largest first (its notion of prominence).
2. For each object it clicks with the evaluation protocol's rule
   (:func:`sam_lab.evaluation.next_eval_click`): first the point farthest from the object's
   boundary, then the point farthest from the boundary of the error region (a positive click on
   a missed part, a negative one on a wrongly included part), feeding the last mask back as the
   mask prompt, as the tool does.
3. After the first click it keeps the candidate of the three that is closest to the object (a
   person sees which one they meant); later clicks ask for one mask.
4. It accepts the model's mask once its IoU with the object reaches ``iou_target``, and gives up
   on the object after ``max_clicks`` clicks (the paper's annotators skipped masks that took too
   long).
5. With ``brush`` (the default) it then fixes the pixels still wrong with the tool's brush and
   eraser, as the paper's annotators could ("pixel-precise brush and eraser tools"), so the kept
   mask is the object itself; without it the kept mask is the model's.
6. It stops working on the image once ``image_seconds`` of simulated time are spent.

Simulated time: ``seconds_per_mask`` for each object it starts (finding it, accepting or giving
up), ``seconds_per_click`` for each click, and one second per ``brush_pixels_per_second`` pixels
brushed. A mask's cost is the time spent on the image divided by the masks it kept, so the time
lost on skipped objects counts.

Why the brush matters here: a model fine-tuned on its own accepted masks (IoU 0.9 with the truth,
drawn by the model) learned nothing new and got slightly worse in our measurements (the README's
data-engine levers); the masks people correct are what teach it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch

from ..evaluation.interactive import farthest_from_boundary, next_eval_click
from ..inference.masks import mask_iou


@dataclass(frozen=True)
class SimulatedAnnotator:
    iou_target: float = 0.9  # accept a mask at this IoU with the object
    max_clicks: int = 10  # give up on an object after this many clicks
    seconds_per_click: float = 3.0
    seconds_per_mask: float = 5.0  # per object started: find it, then accept it or give up
    image_seconds: float = 150.0  # move on to the next image after this much time on one
    brush: bool = True  # fix the accepted mask's remaining errors with brush and eraser
    brush_pixels_per_second: float = 100.0

    def __post_init__(self) -> None:
        if not 0 < self.iou_target <= 1:
            raise ValueError(f"iou_target: expected an IoU in (0, 1], got {self.iou_target!r}")
        if isinstance(self.max_clicks, bool) or not isinstance(self.max_clicks, int) or self.max_clicks < 1:
            raise ValueError(f"max_clicks: expected a whole number >= 1, got {self.max_clicks!r}")
        if not isinstance(self.brush, bool):
            raise ValueError(f"brush: expected True or False, got {self.brush!r}")
        if isinstance(self.brush_pixels_per_second, bool) or not isinstance(self.brush_pixels_per_second, (int, float)) \
                or not self.brush_pixels_per_second > 0:
            raise ValueError(f"brush_pixels_per_second: expected a positive rate, got {self.brush_pixels_per_second!r}")
        for name in ("seconds_per_click", "seconds_per_mask", "image_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name}: expected a number of seconds >= 0, got {value!r}")

    # ------------------------------------------------------------------------ one object
    @torch.no_grad()
    def annotate_object(self, predictor, truth: np.ndarray) -> "ObjectResult":
        """Click on one object (an (H, W) bool mask) with the predictor's image set."""
        clicks: List[np.ndarray] = [farthest_from_boundary(truth)]
        labels: List[int] = [1]
        mask_input = None
        iou, mask, score = 0.0, None, float("nan")
        for k in range(self.max_clicks):
            masks, scores, low_res = predictor.predict(
                point_coords=np.array(clicks), point_labels=np.array(labels), mask_input=mask_input,
                multimask_output=(k == 0), return_logits=False,
            )
            ious = mask_iou(masks, truth[None])
            best = int(np.argmax(ious)) if k == 0 else 0  # the candidate the person meant
            mask, iou, score = masks[best], float(ious[best]), float(scores[best])
            mask_input = low_res[best][None]
            if iou >= self.iou_target:
                result = ObjectResult(mask, iou, k + 1, True, score, np.array(clicks), np.array(labels))
                if self.brush:
                    result.brushed_pixels = int((mask != truth).sum())
                    result.kept = truth.copy()
                return result
            nxt = next_eval_click(mask, truth)
            if nxt is None:  # cannot happen below the target, but never loop on nothing
                break
            clicks.append(nxt[0])
            labels.append(nxt[1])
        used = min(len(clicks), self.max_clicks)
        return ObjectResult(mask, iou, used, False, score, np.array(clicks[:used]), np.array(labels[:used]))

    def cost(self, obj: "ObjectResult") -> float:
        """Simulated seconds spent on one object: finding it, its clicks, its brushing."""
        return self.seconds_per_mask + self.seconds_per_click * obj.clicks + obj.brushed_pixels / self.brush_pixels_per_second

    # ------------------------------------------------------------------------ one image
    def annotate_image(self, predictor, image: np.ndarray, truths: np.ndarray,
                       done: Optional[Sequence[bool]] = None, spent: float = 0.0) -> "ImageResult":
        """Annotate an image's objects (``truths``: (K, H, W) bool) in order of size until the time
        budget is spent. ``done`` marks objects already labelled (semi-automatic stage: a
        pre-filled mask matches them), which the annotator leaves alone; ``spent`` is time
        already spent on the image."""
        predictor.set_image(image)
        areas = truths.reshape(len(truths), -1).sum(1)
        order = [int(k) for k in np.argsort(-areas, kind="stable") if done is None or not done[k]]
        result = ImageResult(seconds=spent)
        for k in order:
            if result.seconds + self.seconds_per_mask + self.seconds_per_click > self.image_seconds:
                result.out_of_time = True
                break
            obj = self.annotate_object(predictor, truths[k])
            obj.truth_index = k
            result.seconds += self.cost(obj)
            result.objects.append(obj)
        return result


@dataclass
class ObjectResult:
    mask: np.ndarray  # the model's last mask
    iou: float  # its IoU with the object
    clicks: int
    accepted: bool  # reached the IoU target within the click budget
    predicted_iou: float
    coords: np.ndarray  # (clicks, 2) the clicks (x, y)
    labels: np.ndarray  # (clicks,) 1 object, 0 background
    truth_index: int = -1
    brushed_pixels: int = 0  # pixels fixed with the brush and eraser after accepting
    kept: Optional[np.ndarray] = None  # the mask kept, if brushing changed it

    @property
    def kept_mask(self) -> np.ndarray:
        """What goes into the dataset: the brushed mask, or the model's."""
        return self.mask if self.kept is None else self.kept


@dataclass
class ImageResult:
    objects: List[ObjectResult] = field(default_factory=list)
    seconds: float = 0.0
    out_of_time: bool = False

    @property
    def accepted(self) -> List[ObjectResult]:
        return [o for o in self.objects if o.accepted]

    @property
    def clicks(self) -> int:
        return int(sum(o.clicks for o in self.objects))
