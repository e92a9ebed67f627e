"""Class map ``fcn``: the classifier's own class score maps (MIL-FCN; CAM for a ``gap`` head)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import wssbench

if TYPE_CHECKING:  # torch is imported where it is used, so listing the plugins stays fast
    import torch


@dataclass(frozen=True)
class FCNScoreMaps:
    """Class score maps before global pooling, upsampled to the image (FCN; equal to CAM here)."""

    name = "fcn"
    uses_forward = True  # capability: maps from the pipeline's shared forward pass (``from_forward``)

    def __call__(self, model, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            return self.maps(model.score_maps(images), classes, images.shape[-2:])

    def from_forward(self, model, forward, classes: torch.Tensor) -> torch.Tensor:
        """The same maps from the pipeline's shared forward pass (its score maps)."""
        return self.maps(forward.score_maps.detach(), classes, forward.images.shape[-2:])

    @staticmethod
    def maps(score_maps: torch.Tensor, classes: torch.Tensor, size) -> torch.Tensor:
        import torch

        from wssbench.classifier import upsample
        from wssbench.maps import max_normalise, select

        classes = torch.as_tensor(classes).to(score_maps.device)
        maps = select(score_maps, classes)  # (B, K, h, w)
        return max_normalise(upsample(maps, size))  # (B, K, H, W)


@wssbench.hookimpl
def register_classmaps(register):
    register(FCNScoreMaps)
