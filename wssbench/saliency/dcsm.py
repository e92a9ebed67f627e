"""DCSM's post-processing of saliency maps (Shimoda & Yanai, ECCV 2016): scales and distinct maps.

Shared by every saliency method here (options ``scales`` and ``distinct``):

* ``scales``: the maps are computed on the image resized by each factor (bilinear), resized
  back to the image size (bilinear) and averaged. DCSM used 0.8, 1.0 and 1.2.
* ``distinct``: for each requested class ``c`` of an image and each OTHER valid class ``k``
  of the same image, the map of ``k`` is subtracted from the map of ``c``; each difference is
  divided by its maximum over the image and squashed with ``tanh(3 x)``; the results are
  summed over ``k``. A class that is alone in its image is compared with an all-zero map
  (``tanh(3 M_c / max M_c)``). Padding classes (< 0) take no part. The sum can be negative
  where other classes dominate; it is clipped at 0, so distinct maps are non-negative and
  lie in ``[0, max(1, K' - 1)]`` for ``K'`` valid classes. Averaging over scales comes first,
  then the distinct step, once.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..classifier import upsample

__all__ = ["average_over_scales", "distinct_maps"]


def average_over_scales(
    maps_at: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, scales: Sequence[float]
) -> torch.Tensor:
    """The mean over ``scales`` of ``maps_at(images resized by s)``, each resized back: ``(B, K, H, W)``."""
    height, width = images.shape[-2:]
    total = None
    for s in scales:
        size = (max(1, round(height * s)), max(1, round(width * s)))
        x = images if size == (height, width) else upsample(images, size)  # (B, 3, h, w)
        maps = maps_at(x)  # (B, K, h, w)
        if maps.shape[-2:] != (height, width):
            maps = upsample(maps, (height, width))  # (B, K, H, W)
        total = maps if total is None else total + maps
    return total if len(scales) == 1 else total / len(scales)


def _squash(diff: torch.Tensor) -> torch.Tensor:
    """``tanh(3 d / max d)`` per map of ``(B, K, H, W)``; a map never above 0 goes to -1 where < 0."""
    peak = diff.amax(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(diff.dtype).tiny)  # (B, K, 1, 1)
    return torch.tanh(3 * (diff / peak))


def distinct_maps(maps: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """DCSM's distinct maps of ``maps (B, K, H, W)`` for ``classes (B, K)``; see the module docstring."""
    valid = (classes >= 0).to(maps.device)  # (B, K)
    k_count = classes.shape[1]
    total = torch.zeros_like(maps)  # (B, K, H, W)
    for k in range(k_count):
        pairs = valid & valid[:, k : k + 1]  # (B, K): c and k both real...
        pairs[:, k] = False  # ...and different columns
        if bool(pairs.any()):
            total += _squash(maps - maps[:, k : k + 1]) * pairs[:, :, None, None]  # map c minus map k
    alone = valid & (valid.sum(dim=1, keepdim=True) == 1)  # (B, K): the only class of its image
    if bool(alone.any()):
        total = torch.where(alone[:, :, None, None], _squash(maps), total)
    return total.clamp_min(0)
