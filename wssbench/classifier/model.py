"""The image-label classifier every method explains: a backbone, a 1x1 class head, global pooling.

As in CAM and IRN, the head is by default a bias-free 1x1 convolution (``bias=True`` gives the
authors' fc8, which has one) applied to the feature maps,
so the score maps before pooling are the FCN class maps and the pooled scores are the image
classification scores::

    features (B, F, h, w) --1x1 conv--> score maps (B, C, h, w) --pool--> scores (B, C)

Pooling ``gap`` (average, CAM), ``gmp`` (max, MIL-FCN) or ``lse`` (log-sum-exp with
sharpness ``r``, Pinheiro & Collobert 2015; ``r -> 0`` is average, ``r -> inf`` is max).

With ``background=True`` (MIL-FCN, MIL-sppxl) the head has one more output, the background
class, as output 0 of the head (label 0, as in the masks). ``score_maps``, ``forward`` and
``forward_parts`` still give the C foreground classes, indexed as without it, so that every
stage reads them alike; the background comes from ``background_maps(features)`` and
:func:`pixel_probabilities` (the per-pixel softmax over all C + 1 outputs).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wssbench.errors import UsageError


def _gap(maps: torch.Tensor, r: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    if valid is None:
        return maps.mean(dim=(2, 3))
    w = valid[:, None].to(maps.dtype)  # (B, 1, h, w)
    return (maps * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3))


def _gmp(maps: torch.Tensor, r: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    if valid is None:
        return maps.amax(dim=(2, 3))
    return maps.masked_fill(~valid[:, None], -torch.inf).amax(dim=(2, 3))


def _lse(maps: torch.Tensor, r: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    flat = maps.flatten(2)  # (B, C, h*w)
    if valid is None:
        return (torch.logsumexp(r * flat, dim=2) - math.log(flat.shape[2])) / r
    keep = valid.flatten(1)[:, None]  # (B, 1, h*w)
    count = keep.sum(dim=2).to(maps.dtype)  # (B, 1)
    return (torch.logsumexp((r * flat).masked_fill(~keep, -torch.inf), dim=2) - count.log()) / r


# pooling(maps (B, C, h, w), r, valid (B, h, w) bool or None: the positions to pool) -> (B, C)
POOLINGS: dict[str, Callable[..., torch.Tensor]] = {"gap": _gap, "gmp": _gmp, "lse": _lse}


class Classifier(nn.Module):
    """``model(images) -> scores (B, C)``; ``model.score_maps(images) -> (B, C, h, w)``."""

    def __init__(
        self,
        features: nn.Module,
        num_features: int,
        num_classes: int,
        pooling: str = "gap",
        lse_r: float = 5.0,
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        bias: bool = False,
        background: bool = False,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise UsageError(f"unknown pooling '{pooling}'; available: {', '.join(POOLINGS)}")
        self.features = features
        self.background = background  # capability: output 0 of the head is a background class
        self.head = nn.Conv2d(num_features, num_classes + int(background), kernel_size=1, bias=bias)
        self.pooling = pooling
        self.lse_r = lse_r
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def num_classes(self) -> int:
        """The foreground classes C (the background output, when there is one, not counted)."""
        return self.head.out_channels - int(self.background)

    def head_maps(self, features: torch.Tensor) -> torch.Tensor:
        """Every output of the head: (B, C + 1, h, w) with the background first, else (B, C, h, w)."""
        return self.head(features)

    def background_maps(self, features: torch.Tensor) -> torch.Tensor:
        """The background output's score map (B, 1, h, w); only with ``background=True``."""
        if not self.background:
            raise UsageError("this classifier has no background output (build it with background=True)")
        bias = None if self.head.bias is None else self.head.bias[:1]
        return F.conv2d(features, self.head.weight[:1], bias)  # (B, 1, h, w)

    def pool(self, maps: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Global pooling of score maps (B, N, h, w) -> (B, N), over the ``valid`` positions
        (B, h, w) bool only when given (training crops: not the zero padding)."""
        return POOLINGS[self.pooling](maps, self.lse_r, valid)

    def score_maps(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))[:, int(self.background):]  # (B, C, h, w)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.score_maps(images))  # (B, C)

    def forward_parts(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One forward pass, every stage's output: features (B, F, h, w), score maps (B, C, h, w)
        and pooled scores (B, C); what the pipeline shares between its stages."""
        features = self.features(images)  # (B, F, h, w)
        maps = self.head(features)[:, int(self.background):]  # (B, C, h, w)
        return features, maps, POOLINGS[self.pooling](maps, self.lse_r)

    def preprocess(self, images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
        """uint8 images (B, H, W, 3) -> normalised float tensor (B, 3, H, W) on the model's device."""
        batch = torch.from_numpy(np.stack(list(images)) if isinstance(images, list) else images)
        batch = batch.to(self.mean.device).permute(0, 3, 1, 2).float().div_(255.0)
        return (batch - self.mean) / self.std


def downsample_factor(model: Classifier, size: int = 224) -> int:
    """The output stride of the score maps, measured with a dummy forward pass."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        h = model.score_maps(torch.zeros(1, 3, size, size, device=device)).shape[-1]
    model.train(was_training)
    return max(1, round(size / h))


def pixel_probabilities(model: Classifier, features: torch.Tensor, score_maps: torch.Tensor,
                        size: tuple[int, int]) -> torch.Tensor:
    """Per-pixel class probabilities of a classifier with a background output: the head's
    C + 1 score maps (background first) bilinearly upsampled to ``size``, then a softmax over
    the classes at each pixel -> (B, C + 1, H, W). Their argmax is MIL-FCN's inference (Pathak
    et al. 2015: the upsampled heat-maps, per-pixel argmax); they are Pinheiro & Collobert's
    ``p_ij(k)``. ``score_maps`` (B, C, h, w) are the foreground maps of the same pass."""
    logits = torch.cat([model.background_maps(features).to(score_maps.dtype), score_maps], dim=1)  # (B, C+1, h, w)
    return torch.softmax(upsample(logits.float(), size), dim=1)  # (B, C+1, H, W)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of (B, K, h, w) maps to ``size``."""
    if maps.shape[1] == 0:  # no class: torch refuses an empty input
        return maps.new_zeros((maps.shape[0], 0, *size))
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
