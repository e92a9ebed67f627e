"""Deletion and insertion (Petsiuk et al., "RISE", BMVC 2018, sec. 4.2): causal faithfulness.

Deletion starts from the image and replaces its pixels, most salient first, by a baseline
("zero"); insertion starts from the baseline ("blur": a blurred copy of the image) and puts
the image's pixels back in the same order. After every step of ``ceil(H W / steps)`` pixels
the class probability is measured; the score is the area under that curve over the fraction
of pixels changed, by the trapezoidal rule on [0, 1]. A good map makes deletion fall fast
(low AUC) and insertion rise fast (high AUC).

As in the authors' code (``eclique/RISE``, ``evaluation.py``):

* the curve has ``n + 1`` points, the untouched start and one after each of the ``n`` steps;
  the authors' step is 224 pixels on 224 x 224 images, i.e. ``steps=224`` here, the default;
* the order is the pixels sorted by decreasing saliency; ties keep row-major order (a stable
  sort; the authors' ``np.flip(np.argsort(...))`` takes tied pixels last-first);
* "zero" is zero in the NORMALISED input (the authors' ``torch.zeros_like`` on normalised
  tensors), i.e. the dataset's mean colour; "blur" is a Gaussian blur with an 11-pixel kernel
  and sigma 5 (their ``gkern(11, 5)``), here ``torchvision``'s ``gaussian_blur``, which pads
  by reflection where the authors' convolution pads with zeros (only a 5-pixel border
  differs).

The probability: RISE explains a softmax classifier; the wssbench classifiers are
multi-label (trained with a sigmoid per class), so the probability of class ``c`` is
``sigmoid(S_c)`` of the class score. RISE explains the top predicted class;
:func:`wssbench.evaluation.evaluate_saliency` scores every ground-truth class of an image
(the classes the maps are made for in WSSS). The ``n + 1`` images of a curve are built at once from
a rank map and classified ``batch_size`` at a time.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torchvision.transforms.functional import gaussian_blur

from wssbench.errors import UsageError

STEPS = 224  # the authors': 224 pixels a step on 224 x 224 images
BLUR_KERNEL, BLUR_SIGMA = 11, 5.0  # the authors' gkern(11, 5)


def zero_baseline(image: torch.Tensor) -> torch.Tensor:
    """Zero in the normalised input (3, H, W): the dataset's mean colour."""
    return torch.zeros_like(image)


def blur_baseline(image: torch.Tensor) -> torch.Tensor:
    """The image (3, H, W) blurred by a Gaussian of kernel 11 and sigma 5."""
    return gaussian_blur(image[None], [BLUR_KERNEL, BLUR_KERNEL], [BLUR_SIGMA, BLUR_SIGMA])[0]


BASELINES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"zero": zero_baseline, "blur": blur_baseline}


def auc(curve: np.ndarray) -> float:
    """Area under ``curve`` (n + 1,) sampled evenly on [0, 1], by the trapezoidal rule."""
    curve = np.asarray(curve, dtype=np.float64)
    return float((curve.sum() - curve[0] / 2 - curve[-1] / 2) / (len(curve) - 1))


def salient_ranks(saliency: np.ndarray) -> np.ndarray:
    """The rank (H, W) of every pixel in decreasing saliency; ties in row-major order."""
    order = np.argsort(-saliency.reshape(-1).astype(np.float64), kind="stable")
    ranks = np.empty(order.size, dtype=np.int64)
    ranks[order] = np.arange(order.size)
    return ranks.reshape(saliency.shape)


def causal_curve(
    model: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    finish: torch.Tensor,
    saliency: np.ndarray,
    cls: int,
    steps: int = STEPS,
    batch_size: int = 32,
) -> np.ndarray:
    """Class probabilities (n + 1,) as the pixels of ``finish`` (3, H, W) replace those of
    ``start`` (3, H, W), most salient first, ``ceil(H W / steps)`` pixels a step.

    ``model(images (B, 3, H, W)) -> scores (B, C)``; the probability is ``sigmoid(scores[:, cls])``.
    """
    if steps < 1:
        raise UsageError(f"deletion/insertion: steps must be at least 1, got {steps}")
    height, width = saliency.shape
    if start.shape[-2:] != (height, width) or finish.shape != start.shape:
        raise UsageError(f"deletion/insertion: map {saliency.shape} does not fit images {tuple(start.shape)}, {tuple(finish.shape)}")
    per_step = math.ceil(height * width / steps)
    n = math.ceil(height * width / per_step)
    ranks = torch.from_numpy(salient_ranks(saliency)).to(start.device)  # (H, W)
    changed = torch.arange(n + 1, device=start.device) * per_step  # (n + 1,) pixels replaced before each point
    probs = []
    with torch.no_grad():
        for first in range(0, n + 1, batch_size):
            done = changed[first : first + batch_size]  # (b,)
            replaced = (ranks[None] < done[:, None, None])[:, None]  # (b, 1, H, W)
            images = torch.where(replaced, finish[None], start[None])  # (b, 3, H, W)
            probs.append(torch.sigmoid(model(images)[:, cls].float()).cpu())
    return torch.cat(probs).numpy().astype(np.float64)  # (n + 1,)


def deletion(model, image: torch.Tensor, saliency: np.ndarray, cls: int, steps: int = STEPS,
             baseline: str = "zero", batch_size: int = 32) -> tuple[float, np.ndarray]:
    """Deletion AUC (lower is better) and its curve: ``image`` (3, H, W) turns into the baseline."""
    return _game(model, image, saliency, cls, steps, baseline, batch_size, insert=False)


def insertion(model, image: torch.Tensor, saliency: np.ndarray, cls: int, steps: int = STEPS,
              baseline: str = "blur", batch_size: int = 32) -> tuple[float, np.ndarray]:
    """Insertion AUC (higher is better) and its curve: the baseline turns into ``image`` (3, H, W)."""
    return _game(model, image, saliency, cls, steps, baseline, batch_size, insert=True)


def _game(model, image, saliency, cls, steps, baseline, batch_size, insert: bool) -> tuple[float, np.ndarray]:
    if baseline not in BASELINES:
        raise UsageError(f"unknown baseline '{baseline}'; available: {', '.join(BASELINES)}")
    substrate = BASELINES[baseline](image)
    start, finish = (substrate, image) if insert else (image, substrate)
    curve = causal_curve(model, start, finish, saliency, cls, steps, batch_size)
    return auc(curve), curve
