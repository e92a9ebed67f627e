"""Inference: class probabilities at one or several scales, with and without a horizontal flip,
averaged at the image's resolution; optionally refined by a dense CRF; then argmax."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from wssbench.runtime.precision import autocast
from wssbench.segmentation.train import SegModel


@torch.no_grad()
def predict_probs(model: SegModel, images: list[np.ndarray], scales: tuple[float, ...] = (1.0,), flip: bool = False,
                  precision: str = "fp32") -> torch.Tensor:
    """uint8 images of one size (B, H, W, 3) -> softmax probabilities (B, N, H, W), float32 on the CPU.

    The mean over ``scales`` (the input resized by each) and, with ``flip``, over the mirrored
    input (its output mirrored back) of the softmax, each upsampled bilinearly to (H, W).
    """
    x = model.preprocess(images)  # (B, 3, H, W)
    size = tuple(x.shape[-2:])
    total, count = None, 0
    for s in scales:
        xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        for mirrored in ((False, True) if flip else (False,)):
            inp = xs.flip(-1) if mirrored else xs
            with autocast(x.device, precision):
                logits = model(inp).float()  # (B, N, h, w)
            if mirrored:
                logits = logits.flip(-1)
            probs = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).softmax(1)
            total = probs if total is None else total + probs
            count += 1
    return (total / count).cpu()  # (B, N, H, W)


def segment_images(model: SegModel, batches: Iterator[tuple[list[str], list[np.ndarray], list[np.ndarray]]],
                   scales: tuple[float, ...], flip: bool, crf: Any = None,
                   precision: str = "fp32") -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(image id, ground truth (H, W), prediction (H, W) uint8) per image; ``crf`` is a refiner
    (``refine(image, probs) -> probs``) or None."""
    for ids, images, masks in batches:
        probs = predict_probs(model, images, scales, flip, precision).numpy()  # (B, N, H, W)
        for image_id, image, mask, p in zip(ids, images, masks, probs):
            if crf is not None:
                p = crf(image, p)
            yield image_id, mask, p.argmax(0).astype(np.uint8)
