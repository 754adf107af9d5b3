"""Prompted 2D segmentation with SAM-family models: encode a slice once, then answer prompts fast.

One :class:`PromptSegmenter` serves SAM, HQ-SAM, LiteMedSAM and HQ-LiteMedSAM; they differ in input
size, pixel normalisation and whether the encoder also returns early features for HQ fusion.
Prompts and masks are in the slice's own pixel frame (``x`` = column, ``y`` = row); resizing to the
model's square input, padding and mapping back are done here, following segment_anything's
``ResizeLongestSide`` conventions.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.utils.transforms import ResizeLongestSide

from ..errors import InputError


@dataclass
class Prompt:
    """A box ``(x0, y0, x1, y1)`` and/or points ``(N, 2)`` as ``(x, y)`` with labels 1 (inside) / 0 (outside)."""

    box: tuple[float, float, float, float] | None = None
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), int))

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, float).reshape(-1, 2)
        self.point_labels = np.asarray(self.point_labels, int).reshape(-1)
        if len(self.points) != len(self.point_labels):
            raise InputError(f"{len(self.points)} points but {len(self.point_labels)} point labels")
        if self.box is None and not len(self.points):
            raise InputError("a prompt needs a box or at least one point")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if x1 < x0 or y1 < y0:
                raise InputError(f"box {self.box} is not (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1")


@dataclass
class ImageEmbedding:
    """Encoder output for one slice, plus the sizes needed to map prompts and masks."""

    features: torch.Tensor  # (1, 256, 64, 64)
    early_features: list[torch.Tensor] | None  # HQ fusion input, e.g. [(1, 64, 64, C)]
    original_size: tuple[int, int]  # slice (rows, cols)
    input_size: tuple[int, int]  # after resizing, before padding

    def nbytes(self) -> int:
        tensors = [self.features, *(self.early_features or [])]
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class MaskPrediction:
    mask: np.ndarray  # bool (rows, cols)
    iou: float  # the model's own estimate of the mask's IoU
    logits: np.ndarray  # float32 (rows, cols), > 0 inside


@dataclass
class PromptSegmenter:
    """A SAM-family model ready for slice-by-slice prompting.

    ``encode_image`` maps a normalised, padded ``(1, 3, S, S)`` tensor to ``(embedding, early_features)``;
    ``pixel_mean``/``pixel_std`` (0-255 scale) normalise SAM inputs; ``None`` keeps LiteMedSAM's [0, 1].
    """

    name: str
    model: torch.nn.Module  # holds image_encoder, prompt_encoder, mask_decoder
    image_size: int
    encode_image: Callable[[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor] | None]]
    pixel_mean: tuple[float, float, float] | None = None
    pixel_std: tuple[float, float, float] | None = None
    hq: bool = False  # decoder is HQ-SAM's MaskDecoderHQ
    backend: str = "torch"  # where encode_image runs: torch, cuda or onnx (see encoder_backends)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(rows, cols)`` image in [0, 1] → ``(1, 3, S, S)`` model input and the un-padded size."""
        if image.ndim != 2:
            raise InputError(f"a 2D slice is needed, got shape {image.shape}")
        h, w = ResizeLongestSide.get_preprocess_shape(*image.shape, self.image_size)
        tensor = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32, device=self.device)[None, None]
        tensor = F.interpolate(tensor, (h, w), mode="bilinear", align_corners=False, antialias=True)
        tensor = tensor.expand(1, 3, h, w)
        if self.pixel_mean is None:
            # LiteMedSAM's own preprocessing: min-max to [0, 1] per slice
            low, high = tensor.min(), tensor.max()
            tensor = (tensor - low) / torch.clamp(high - low, min=1e-8)
        else:
            mean = torch.tensor(self.pixel_mean, device=self.device).view(1, 3, 1, 1)
            std = torch.tensor(self.pixel_std, device=self.device).view(1, 3, 1, 1)
            tensor = (tensor * 255.0 - mean) / std
        padded = F.pad(tensor, (0, self.image_size - w, 0, self.image_size - h))
        return padded, (h, w)

    @torch.no_grad()
    def encode(self, image: np.ndarray) -> ImageEmbedding:
        """Run the image encoder on one ``(rows, cols)`` slice with values in [0, 1]."""
        tensor, input_size = self.preprocess(image)
        features, early = self.encode_image(tensor)
        return ImageEmbedding(features, early, tuple(image.shape), input_size)

    def _prompt_tensors(self, embedding: ImageEmbedding, prompt: Prompt):
        rows, cols = embedding.original_size
        scale = torch.tensor([embedding.input_size[1] / cols, embedding.input_size[0] / rows], device=self.device)
        points = boxes = None
        if len(prompt.points):
            coords = torch.as_tensor(prompt.points, dtype=torch.float32, device=self.device) * scale
            labels = torch.as_tensor(prompt.point_labels, dtype=torch.int64, device=self.device)
            points = (coords[None], labels[None])
        if prompt.box is not None:
            boxes = (torch.as_tensor(prompt.box, dtype=torch.float32, device=self.device).view(2, 2) * scale).view(1, 4)
        return points, boxes

    def decode(self, embedding: ImageEmbedding, prompt: Prompt, multimask: bool | None = None):
        """Low-resolution mask logits ``(1, 1, 4E, 4E)`` and IoU estimate ``(1, 1)``; differentiable."""
        points, boxes = self._prompt_tensors(embedding, prompt)
        if multimask is None:
            # One click is ambiguous (part or whole?): let SAM propose three masks and keep the best.
            multimask = prompt.box is None and len(prompt.points) == 1
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=None)
        decoder_args = dict(
            image_embeddings=embedding.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        if self.hq:
            decoder_args.update(hq_token_only=False, interm_embeddings=embedding.early_features)
        logits, iou = self.model.mask_decoder(**decoder_args)
        if logits.shape[1] > 1:
            best = iou.argmax(dim=1)
            logits, iou = logits[:, best], iou[:, best]
        return logits, iou

    def upscale(self, low_res_logits: torch.Tensor, embedding: ImageEmbedding) -> torch.Tensor:
        """Low-resolution logits → ``(1, 1, rows, cols)`` logits on the slice's pixel grid."""
        logits = F.interpolate(low_res_logits, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        logits = logits[..., : embedding.input_size[0], : embedding.input_size[1]]
        return F.interpolate(logits, embedding.original_size, mode="bilinear", align_corners=False)

    @torch.no_grad()
    def predict(self, embedding: ImageEmbedding, prompt: Prompt) -> MaskPrediction:
        low_res, iou = self.decode(embedding, prompt)
        logits = self.upscale(low_res, embedding)[0, 0].float().cpu().numpy()
        return MaskPrediction(logits > 0, float(iou.item()), logits)
