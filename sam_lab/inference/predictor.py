"""SamPredictor: encode an image once, then answer prompts in milliseconds.

Paper §3 and §7.1. ``set_image`` resizes the image (long side 1024), normalises, pads and
runs the heavy image encoder, keeping the embedding. ``predict`` then takes prompts in the
*original* image's pixels, runs prompt encoder + mask decoder, and returns masks at the original
size. Drop-in for Meta's ``segment_anything.SamPredictor``: same methods, arguments and returns.

It talks to the model only through SAM's attribute interface (``image_encoder``,
``prompt_encoder``, ``mask_decoder``, ``preprocess``, ``postprocess_masks``, ``mask_threshold``,
``image_format``, ``device``), so it also drives Meta's own ``Sam`` (the reference backend).

    predictor = SamPredictor(sam)
    predictor.set_image(image)                         # (H, W, 3) uint8
    masks, scores, logits = predictor.predict(point_coords=np.array([[500, 375]]),
                                              point_labels=np.array([1]))
    # masks (3, H, W) bool, scores (3,), logits (3, 256, 256)
    masks, scores, logits = predictor.predict_batch(point_coords=clicks[:, None], point_labels=np.ones((len(clicks), 1)))
    # one decoder call for B prompt sets: masks (B, 3, H, W), scores (B, 3), logits (B, 3, 256, 256)
    predictor.set_images([photo_1, photo_2, photo_3], batch_size=8)  # one encoder call per 8 images
    predictor.select_image(2)                          # then predict on any of them
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from ..modeling.mask_decoder import MaskDecoder
from ..modeling.sam import with_text_tokens
from .image_state import ImageState
from .transforms import ResizeLongestSide
from ..modeling.text_prompt import has_text_path, text_mask_prior
from .validation import check_flag, check_image, check_prompt_batch, check_prompt_set, check_text, check_texts


class SamPredictor(ImageState):
    def __init__(self, sam_model) -> None:
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)
        self.reset_image()

    def reset_image(self) -> None:
        super().reset_image()
        self._decoder_cache = None  # the decoder's prepared image side (see _image_side)

    # -------------------------------------------------------------------------- the image
    def set_image(self, image, image_format: str = "RGB") -> None:
        """Encode an (H, W, 3) uint8 image. ``image_format`` says its channel order ("RGB" or
        "BGR", e.g. from OpenCV). Grayscale and RGBA are converted (see ``validation``)."""
        resized, original_size = self._prepare(image, image_format)
        image_torch = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        self.set_torch_image(image_torch, original_size)

    def _prepare(self, image, image_format: str):
        """A user's image, checked, in the model's channel order, resized: (resized, (H, W))."""
        image = check_image(image, image_format)
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        return self.transform.apply_image(image), image.shape[:2]

    @torch.no_grad()
    def set_images(self, images, image_format: str = "RGB", batch_size: int = 8) -> None:
        """Encode several images, ``batch_size`` at a time in one encoder call each (the GPU's
        fast path: a batch keeps the device busy), and keep every embedding. Image 0 becomes
        the current one; :meth:`select_image` switches to another without encoding again."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        if isinstance(images, np.ndarray) or not hasattr(images, "__len__") or len(images) == 0:
            raise ValueError("images: expected a non-empty list of (H, W, 3) uint8 images")
        prepared = []
        for index, image in enumerate(images):
            try:
                prepared.append(self._prepare(image, image_format))
            except (TypeError, ValueError) as error:
                raise type(error)(f"image {index}: {error}") from None
        self.reset_image()
        encoded = []
        for start in range(0, len(prepared), batch_size):
            chunk = prepared[start : start + batch_size]
            batch = torch.stack([
                self.model.preprocess(torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous())
                for resized, _ in chunk
            ])
            features = self.model.image_encoder(batch)
            encoded += [(features[i : i + 1], tuple(int(s) for s in original), tuple(resized.shape[:2]))
                        for i, (resized, original) in enumerate(chunk)]
        self._encoded = encoded
        self.select_image(0)

    def select_image(self, index: int) -> None:
        """Make image ``index`` of the last :meth:`set_images` call the current one."""
        encoded = getattr(self, "_encoded", [])
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(encoded):
            raise ValueError(f"index: expected an image index in [0, {len(encoded)}) from set_images, got {index!r}")
        self.features, self.original_size, self.input_size = encoded[index]
        self.is_image_set = True
        self._prepare_image_side()

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: Tuple[int, ...]) -> None:
        """Encode a (1, 3, h, w) tensor already resized by ``self.transform`` (long side = the
        model's input size). ``original_image_size``: (H, W) before resizing."""
        size = self.model.image_encoder.img_size
        if (
            not isinstance(transformed_image, torch.Tensor)
            or transformed_image.ndim != 4
            or transformed_image.shape[:2] != (1, 3)
            or max(transformed_image.shape[2:]) != size
        ):
            shape = tuple(transformed_image.shape) if hasattr(transformed_image, "shape") else type(transformed_image).__name__
            raise ValueError(
                f"transformed_image: expected a (1, 3, h, w) tensor with max(h, w) == {size} "
                f"(use predictor.transform.apply_image_torch), got {shape}"
            )
        self.reset_image()
        self._encoded = []  # a single image replaces the images of set_images
        self.original_size = tuple(int(s) for s in original_image_size)
        self.input_size = tuple(int(s) for s in transformed_image.shape[-2:])
        input_image = self.model.preprocess(transformed_image)
        self.features = self.model.image_encoder(input_image)  # (1, 256, 64, 64)
        self.is_image_set = True
        self._prepare_image_side()

    @torch.no_grad()
    def _prepare_image_side(self) -> None:
        """Do the decoder's prompt-independent work for the new image now, so that the first
        click costs what every later one does (ViT-B: ~20 ms here, against a 15 s encode)."""
        _, dense = self.model.prompt_encoder(points=None, boxes=None, masks=None)
        self._image_side(dense)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _embedding_grid(self) -> Tuple[int, int]:
        return tuple(self.model.prompt_encoder.image_embedding_size)

    # -------------------------------------------------------------------------- prompts
    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: Optional[bool] = None,
        return_logits: bool = False,
        text: Optional[str] = None,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt set, in original-image pixels.

        point_coords (N, 2) (x, y) pixels and point_labels (N,) with 1 = foreground,
        0 = background; box (4,) x0, y0, x1, y1; mask_input (1, 256, 256) low-res logits from a
        previous call (refinement). ``multimask_output`` returns 3 candidates (whole / part /
        subpart) instead of 1 — use it for a single ambiguous click. ``text`` (a string, e.g.
        "red circle") is a text prompt, alone or with the others, for a model with a text path
        (``load_text_model``). ``multimask_output`` defaults to True, or False when ``text`` is
        given: a caption names one mask.
        Returns masks (C, H, W) bool (or logits with ``return_logits``), IoU scores (C,) and
        low-res logits (C, 256, 256), as numpy arrays.
        """
        self._require_image()
        text_tokens = None if text is None else self._text_tokens([check_text(text)], "text")
        if multimask_output is None:
            multimask_output = text is None
        coords, labels, box, mask_input, multimask_output, return_logits = check_prompt_set(
            point_coords, point_labels, box, mask_input, multimask_output, return_logits, self.original_size, self.low_res_size
        )

        coords_torch = labels_torch = box_torch = mask_torch = None
        if coords is not None:
            coords = self.transform.apply_coords(coords, self.original_size)
            coords_torch = torch.as_tensor(coords, dtype=torch.float, device=self.device)[None]
            labels_torch = torch.as_tensor(labels, dtype=torch.int, device=self.device)[None]
        if box is not None:
            box = self.transform.apply_boxes(box, self.original_size)
            box_torch = torch.as_tensor(box, dtype=torch.float, device=self.device)
        if mask_input is not None:
            mask_torch = torch.as_tensor(mask_input, dtype=torch.float, device=self.device)[None]

        masks, iou_predictions, low_res = self.predict_torch(
            coords_torch, labels_torch, box_torch, mask_torch, multimask_output, return_logits, text_tokens=text_tokens
        )
        return (
            masks[0].detach().cpu().numpy(),
            iou_predictions[0].detach().float().cpu().numpy(),
            low_res[0].detach().float().cpu().numpy(),
        )

    def predict_batch(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        boxes: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: Optional[bool] = None,
        return_logits: bool = False,
        texts: Optional[list] = None,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Many prompt sets for the one image, in one decoder call; numpy in and out, in original-
        image pixels. Prompt set b is ``point_coords[b]`` (N, 2) with ``point_labels[b]`` (N,),
        ``boxes[b]`` (4,) and ``mask_input[b]`` (1, 256, 256), each optional, all with the same B
        (every set has the same number of points N), and ``texts[b]`` a string (a model with a
        text path; ``multimask_output`` then defaults to False, as in ``predict``). Each set is checked as ``predict`` checks
        one, and an error names the set. Returns masks (B, C, H, W), scores (B, C) and low-res
        logits (B, C, 256, 256): row b is what ``predict`` returns for set b."""
        self._require_image()
        text_tokens = None if texts is None else self._text_tokens(check_texts(texts), "texts")
        if multimask_output is None:
            multimask_output = texts is None
        multimask_output = check_flag("multimask_output", multimask_output)
        return_logits = check_flag("return_logits", return_logits)
        coords, labels, boxes, mask_input, _ = check_prompt_batch(
            point_coords, point_labels, boxes, mask_input, self.original_size, self.low_res_size, texts
        )
        coords_torch = labels_torch = box_torch = mask_torch = None
        if coords is not None:
            resized = self.transform.apply_coords(coords.reshape(-1, 2), self.original_size)
            coords_torch = torch.as_tensor(resized.reshape(coords.shape), dtype=torch.float, device=self.device)
            labels_torch = torch.as_tensor(labels, dtype=torch.int, device=self.device)
        if boxes is not None:
            box_torch = torch.as_tensor(self.transform.apply_boxes(boxes, self.original_size),
                                        dtype=torch.float, device=self.device)
        if mask_input is not None:
            mask_torch = torch.as_tensor(mask_input, dtype=torch.float, device=self.device)
        masks, scores, low_res = self.predict_torch(coords_torch, labels_torch, box_torch, mask_torch, multimask_output,
                                                    return_logits, text_tokens=text_tokens)
        return masks.cpu().numpy(), scores.float().cpu().numpy(), low_res.float().cpu().numpy()

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        text_tokens: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prompts, already in resized-image pixels (``self.transform.apply_*_torch``).

        point_coords (B, N, 2), point_labels (B, N), boxes (B, 4), mask_input (B, 1, 256, 256),
        text_tokens (B, T, C) from the model's text path (``model.text_encoder.embed_texts``).
        Returns masks (B, C, H, W), IoU (B, C) and low-res logits (B, C, 256, 256).
        """
        low_res, iou_predictions = self.decode_low_res(point_coords, point_labels, boxes, mask_input, multimask_output,
                                                       text_tokens=text_tokens)
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou_predictions, low_res

    @torch.no_grad()
    def decode_low_res(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        text_tokens: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``predict_torch`` without the upsampling: low-res logits (B, C, 256, 256) and IoU
        (B, C) for a batch of prompt sets in resized-image pixels. The mask generator decodes
        with this and upsamples only the candidates that survive its filters."""
        self._require_image()
        _check_batch(point_coords, point_labels, boxes, mask_input, self.low_res_size, text_tokens)
        prompts = (point_coords, point_labels, boxes, mask_input, text_tokens)
        batch = next((len(x) for x in prompts if x is not None), 1)
        chunk = self._decode_chunk() if batch > 1 else 1
        if batch > chunk:  # the same answers as one call (prompt sets are decoded independently)
            parts = [self._decode(*(None if x is None else x[i : i + chunk] for x in prompts), multimask_output)
                     for i in range(0, batch, chunk)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return self._decode(*prompts, multimask_output)

    #: the most bytes one prompt set's largest decoder tensor may take, times the sets of a chunk
    DECODE_CHUNK_BYTES = 16 * 2**20

    def _decode_chunk(self) -> int:
        """How many prompt sets one decoder call takes on the CPU. A big batch allocates tensors of
        hundreds of MB (ViT-B's upscaled features are 8 MiB per prompt set), and on Linux every
        fresh allocation above glibc's mmap threshold (at most 32 MiB) is page-faulted anew, which
        costs more than the arithmetic. Chunks whose tensors stay under 16 MiB reuse the heap.
        Before the folded attention, 64 ViT-B prompts decoded in 1.35 s as 16 chunks of 4 and
        1.16 s as 32 of 2, against 3.4 s in one call; with it, 1.08 s in chunks of 2 (2 threads,
        benchmarks/README.md). On a GPU, or for a decoder that does not say its width (a
        learner's own), the whole batch goes at once."""
        width = getattr(self.model.mask_decoder, "transformer_dim", None)
        if not isinstance(width, int):
            return 2**31
        h, w = self.low_res_size
        return items_per_chunk(4 * h * w * max(1, width // 8), self.DECODE_CHUNK_BYTES, self.device)  # fp32 upscaled features

    def _text_tokens(self, texts, name: str) -> torch.Tensor:
        if not has_text_path(self.model):
            raise ValueError(f"{name}: this model has no text path; load one with "
                             "sam_lab.load_text_model('tiny') or add one with modeling.text_prompt.add_text_path")
        return self.model.text_encoder.embed_texts(texts).to(self.device)

    def _decode(self, point_coords, point_labels, boxes, mask_input, text_tokens, multimask_output):
        points = (point_coords, point_labels) if point_coords is not None else None
        mask_input = text_mask_prior(self.model, self.features, text_tokens, mask_input)
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        sparse, dense = with_text_tokens(sparse, dense, text_tokens)
        dense_pe, image_side = self._image_side(dense)
        extra = {} if image_side is None else {"image_side": image_side}
        return self.model.mask_decoder(
            image_embeddings=self.features,
            image_pe=dense_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            **extra,
        )

    def _image_side(self, dense: torch.Tensor):
        """The current image's prompt-independent decoder work, kept from one prompt to the next:
        the dense positional encoding and, for prompts without a mask, the decoder's prepared image
        side (``MaskDecoder.prepare_image``; None for any other decoder class: Meta's, a learner's).

        It is recomputed whenever it could have changed: another image, any parameter or buffer of
        the prompt encoder or mask decoder replaced or changed in place (a swapped stage, an
        optimiser step, ``load_state_dict``; tensors count their in-place changes), a module's
        class changed, or autocast switched. ``set_image`` prepares it, so no click waits for it. Answers are bit for bit those without it (tests/test_components.py)."""
        model = self.model
        sources = [self.features, *model.prompt_encoder.parameters(), *model.prompt_encoder.buffers(),
                   *model.mask_decoder.parameters(), *model.mask_decoder.buffers()]
        # module classes too: a learner may swap a stage's class in place (``module.__class__ = Mine``)
        classes = tuple(type(m) for m in (*model.prompt_encoder.modules(), *model.mask_decoder.modules()))
        key = (tuple(_version(t) for t in sources), classes, _autocast_state(self.device.type))
        cache = self._decoder_cache
        if cache is None or cache["key"] != key or len(cache["sources"]) != len(sources) or any(
            a is not b for a, b in zip(cache["sources"], sources)
        ):
            cache = {"key": key, "sources": sources, "dense_pe": model.prompt_encoder.get_dense_pe(), "side": None}
            self._decoder_cache = cache
        decoder = model.mask_decoder
        # only our own decoder takes image_side (a learner's subclass may override forward without it)
        if type(decoder) is not MaskDecoder or not decoder.shares_image_side(self.features, dense):
            return cache["dense_pe"], None
        # the shared dense prompt is a view of the no-mask vector: the same memory, unchanged,
        # means the same prompt (the cache holds `dense`, so its memory cannot be reused meanwhile)
        dense_key = (dense.untyped_storage().data_ptr(), dense.storage_offset(), dense.stride()[1:],
                     tuple(dense.shape[1:]), dense.dtype, _version(dense))
        if cache["side"] is None or cache["side"][0] != dense_key:
            cache["side"] = (dense_key, dense, decoder.prepare_image(self.features, cache["dense_pe"], dense))
        return cache["dense_pe"], cache["side"][2]


def _version(t: torch.Tensor):
    """A tensor's count of in-place changes; a fresh object (never equal) for tensors that keep
    none (made under ``torch.inference_mode``), so that nothing is cached for them."""
    try:
        return t._version
    except RuntimeError:
        return object()


def _autocast_state(device_type: str):
    try:
        return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError, RuntimeError):  # an older torch, or a device autocast does not know
        return torch.is_autocast_enabled()


def items_per_chunk(bytes_per_item: int, budget: int, device) -> int:
    """How many items of ``bytes_per_item`` to process at once so that a chunk stays within
    ``budget`` bytes: on the CPU a fresh allocation above glibc's mmap threshold is page-faulted
    in anew every time (see ``SamPredictor._decode_chunk``); elsewhere, everything at once."""
    if torch.device(device).type != "cpu":
        return 2**31
    return max(1, budget // max(1, bytes_per_item))


def _check_batch(point_coords, point_labels, boxes, mask_input, low_res_size, text_tokens=None) -> None:
    """Shapes of batched torch prompts: one batch size B shared by all that are given."""
    batch = {}
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords/point_labels: give both or neither")
    if point_coords is not None:
        if point_coords.ndim != 3 or point_coords.shape[-1] != 2:
            raise ValueError(f"point_coords: expected shape (B, N, 2), got {tuple(point_coords.shape)}")
        if tuple(point_labels.shape) != tuple(point_coords.shape[:2]):
            raise ValueError(
                f"point_labels: expected shape {tuple(point_coords.shape[:2])} to match point_coords, "
                f"got {tuple(point_labels.shape)}"
            )
        batch["point_coords"] = point_coords.shape[0]
    if boxes is not None:
        if boxes.ndim != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"boxes: expected shape (B, 4), got {tuple(boxes.shape)}")
        batch["boxes"] = boxes.shape[0]
    if mask_input is not None:
        if mask_input.ndim != 4 or tuple(mask_input.shape[1:]) != (1, *low_res_size):
            raise ValueError(
                f"mask_input: expected shape (B, 1, {low_res_size[0]}, {low_res_size[1]}), got {tuple(mask_input.shape)}"
            )
        batch["mask_input"] = mask_input.shape[0]
    if text_tokens is not None:
        if text_tokens.ndim != 3:
            raise ValueError(f"text_tokens: expected shape (B, T, C), got {tuple(text_tokens.shape)}")
        batch["text_tokens"] = text_tokens.shape[0]
    if batch:
        first, size = next(iter(batch.items()))
        for name, other in batch.items():
            if other != size:
                raise ValueError(f"{name}: expected batch size {size} to match {first}, got {other}")
