"""Class map ``fcn``: the classifier's own class score maps (MIL-FCN; CAM for a ``gap`` head)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import wssbench
from wssbench.methods.maps import ScalesAndFlip

if TYPE_CHECKING:  # torch is imported where it is used, so listing the plugins stays fast
    import torch


@dataclass(frozen=True)
class FCNScoreMaps(ScalesAndFlip):
    """Class score maps before global pooling, upsampled to the image (FCN; equal to CAM here).

    Without a background output: each requested class's score map, bilinearly upsampled,
    negatives clipped, divided by its maximum. With one (``model.background``, MIL-FCN and
    MIL-sppxl): the per-pixel softmax over all C + 1 outputs of the upsampled score maps
    (``wssbench.classifier.model.pixel_probabilities``), the requested classes' rows: probabilities,
    not max-normalised, so that with the background row (which the pipeline hands to fusions
    that use it) their per-pixel argmax is MIL-FCN's inference.

    With several ``scales`` or ``flip``: PSA's and IRN's multi-scale CAM of these score maps
    (``wssbench.methods.maps.multiscale``: each pass's maps ReLU'd at their resolution, then
    upsampled and summed), where one pass upsamples before clipping. Not for a classifier with
    a background output: the pipeline's background row comes from its one forward pass.
    """

    name = "fcn"
    scales: str = "1.0"  # comma-separated input scales whose maps are summed, e.g. "1.0,0.5,1.5,2.0"
    flip: bool = False  # also add the maps of the horizontally flipped images

    @property
    def uses_forward(self) -> bool:
        """Capability: at one scale without flips, maps from the pipeline's shared forward pass (``from_forward``)."""
        return self.single_pass

    def __call__(self, model, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        import torch

        if not self.single_pass:
            return self.multiscale(model, images, torch.as_tensor(classes).to(images.device))
        with torch.no_grad():
            if getattr(model, "background", False):
                features = model.features(images)  # (B, F, h, w)
                return self.probabilities(model, features, model.head_maps(features)[:, 1:], classes, images.shape[-2:])
            return self.maps(model.score_maps(images), classes, images.shape[-2:])

    def from_forward(self, model, forward, classes: torch.Tensor) -> torch.Tensor:
        """The same maps from the pipeline's shared forward pass (its score maps)."""
        if getattr(model, "background", False):
            return self.probabilities(model, forward.features.detach(), forward.score_maps.detach(), classes,
                                      forward.images.shape[-2:])
        return self.maps(forward.score_maps.detach(), classes, forward.images.shape[-2:])

    def multiscale(self, model, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        from wssbench.errors import UsageError
        from wssbench.methods.maps import multiscale, parse_scales

        if getattr(model, "background", False):
            raise UsageError("fcn: scales and flip need a classifier without a background output "
                             "(its per-pixel softmax and background row come from one forward pass)")
        return multiscale(_positive_score_maps, model, images, classes, parse_scales(self.scales), self.flip)

    @staticmethod
    def maps(score_maps: torch.Tensor, classes: torch.Tensor, size) -> torch.Tensor:
        import torch

        from wssbench.classifier.model import upsample
        from wssbench.methods.maps import max_normalise, select

        classes = torch.as_tensor(classes).to(score_maps.device)
        maps = select(score_maps, classes)  # (B, K, h, w)
        return max_normalise(upsample(maps, size))  # (B, K, H, W)

    @staticmethod
    def probabilities(model, features: torch.Tensor, score_maps: torch.Tensor, classes: torch.Tensor, size) -> torch.Tensor:
        """A background classifier's per-pixel probabilities of the requested classes (B, K, H, W)."""
        import torch

        from wssbench.classifier.model import pixel_probabilities
        from wssbench.methods.maps import select

        with torch.no_grad():
            probs = pixel_probabilities(model, features, score_maps, size)  # (B, C+1, H, W)
            return select(probs[:, 1:], torch.as_tensor(classes).to(probs.device))  # (B, K, H, W)


def _positive_score_maps(model, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The requested classes' score maps, negatives clipped (B, K, h, w): PSA's ``forward_cam``."""
    import torch

    from wssbench.methods.maps import select

    with torch.no_grad():
        return select(model.score_maps(images), classes).clamp(min=0)


@wssbench.hookimpl
def register_classmaps(register):
    register(FCNScoreMaps)
