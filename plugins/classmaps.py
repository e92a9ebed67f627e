"""Class map ``fcn``: the classifier's own class score maps (MIL-FCN; CAM for a ``gap`` head)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import wssbench

if TYPE_CHECKING:
    import torch


def select(maps: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Pick the requested classes: (B, C, h, w), (B, K) -> (B, K, h, w), zeros for padding."""
    import torch

    b, _, h, w = maps.shape
    picked = torch.gather(maps, 1, classes.clamp(min=0)[:, :, None, None].expand(-1, -1, h, w))
    return picked * (classes >= 0)[:, :, None, None]


def max_normalise(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Clip negatives and divide each (B, K) map by its maximum: values in [0, 1].

    In float32 whatever came in: in fp16 ``eps`` rounds to 0 and an all-negative map would
    become 0/0.
    """
    maps = maps.float().clamp(min=0)
    return maps / (maps.amax(dim=(2, 3), keepdim=True) + eps)


@dataclass(frozen=True)
class FCNScoreMaps:
    """Class score maps before global pooling, upsampled to the image (FCN; equal to CAM here)."""

    name = "fcn"

    def __call__(self, model, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        import torch

        from wssbench.classifier import upsample

        classes = torch.as_tensor(classes).to(images.device)
        with torch.no_grad():
            maps = select(model.score_maps(images), classes)  # (B, K, h, w)
            maps = upsample(maps, images.shape[-2:])  # (B, K, H, W)
        return max_normalise(maps)


@wssbench.hookimpl
def register_classmaps(register):
    register(FCNScoreMaps)
