"""Class maps ``cam`` (Zhou et al. 2016) and ``gradcam`` (Selvaraju et al. 2017): feature maps weighted per class.

Both weight feature maps ``A`` (B, F, h, w) of the backbone per class and keep the positive
part:

* CAM: ``relu(sum_f w[c, f] A_f)`` with ``w`` the weights of the 1x1 class head. The head has
  no bias, so this equals the FCN score maps whatever the pooling; it is computed here from
  the weights, as CAM defines it.
* Grad-CAM: ``relu(sum_f alpha[c, f] A_f)`` with ``alpha[c, f]`` the spatial mean of
  ``dS_c / dA_f`` and ``S_c`` the pooled class score, on the output ``A`` of any module of
  the backbone (option ``layer``), all requested classes from one forward pass
  (``wssbench.methods.maps.layer_gradients``). On the last feature maps it equals CAM: the
  gradient of each pooling (``gap``, ``gmp``, ``lse``) with respect to the score map sums to
  one over the positions, so ``alpha[c] = w[c] / (h w)``. It differs on an earlier layer.

Both can sum over input scales and horizontal flips, as PSA and IRN make their CAM seeds
(``scales="1.0,0.5,1.5,2.0"``, ``flip=True``; ``wssbench.methods.maps.multiscale``): each
pass's maps are kept positive, upsampled to the image and summed before the final
max-normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import wssbench
from wssbench.methods.maps import LayerGradientMaps, ScalesAndFlip, gradient_maps, max_normalise, multiscale, parse_scales

if TYPE_CHECKING:  # torch is imported where maps are made, so listing the plugins stays fast
    import torch


def class_activation_maps(features: torch.Tensor, weight: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """CAM before any ReLU: (B, F, h, w) features, (C, F) head weights, (B, K) classes -> (B, K, h, w).

    ``CAM_c = sum_f weight[c, f] * features_f``; padding classes (< 0) get zero maps.
    """
    import torch

    w = weight[classes.clamp(min=0)]  # (B, K, F)
    maps = torch.einsum("bkf,bfhw->bkhw", w, features)  # (B, K, h, w)
    return maps * (classes >= 0)[:, :, None, None]


def cam_raw(model, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """ReLU'd CAM at the feature resolution (B, K, h, w)."""
    import torch

    with torch.no_grad():
        return cam_from_features(model, model.features(images), classes)


def cam_from_features(model, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """ReLU'd CAM (B, K, h, w) of the backbone's features (B, F, h, w)."""
    weight = model.head.weight[int(getattr(model, "background", False)):, :, 0, 0].detach()  # (C, F): foreground rows
    return class_activation_maps(features.detach(), weight, classes).clamp(min=0)


def grad_cam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM before its ReLU: ``sum_f mean_ij(G_f) A_f``; A (B, F, h, w), G (B, K, F, h, w) -> (B, K, h, w)."""
    import torch

    alpha = g.mean(dim=(3, 4))  # (B, K, F)
    return torch.einsum("bkf,bfhw->bkhw", alpha, a)  # (B, K, h, w)


def grad_cam_raw(model, images: torch.Tensor, classes: torch.Tensor, layer: str = "") -> torch.Tensor:
    """ReLU'd Grad-CAM at the resolution of ``layer`` (B, K, h, w), all K classes in one backward pass."""
    return gradient_maps(grad_cam, model, images, classes, layer=layer, method="gradcam")


@dataclass(frozen=True)
class CAM(ScalesAndFlip):
    """Class activation maps: head weights times the last feature maps, ReLU, upsampled (Zhou et al. 2016)."""

    name = "cam"
    scales: str = "1.0"  # comma-separated input scales whose maps are summed, e.g. "1.0,0.5,1.5,2.0"
    flip: bool = False  # also add the maps of the horizontally flipped images

    def __call__(self, model, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        import torch

        classes = torch.as_tensor(classes).to(images.device)
        return multiscale(cam_raw, model, images, classes, parse_scales(self.scales), self.flip)  # (B, K, H, W)

    @property
    def uses_forward(self) -> bool:
        """Capability: at one scale without flips, the maps come from the shared forward pass."""
        return self.single_pass

    def from_forward(self, model, forward, classes: torch.Tensor) -> torch.Tensor:
        """The same maps as ``__call__`` from the pipeline's shared forward pass (its features)."""
        import torch

        from wssbench.classifier.model import upsample

        classes = torch.as_tensor(classes).to(forward.features.device)
        raw = cam_from_features(model, forward.features, classes)  # (B, K, h, w)
        return max_normalise(upsample(raw, forward.images.shape[-2:]))  # (B, K, H, W)


@dataclass(frozen=True)
class GradCAM(LayerGradientMaps):
    """Grad-CAM: a backbone layer's feature maps weighted by the spatial mean of the score's gradient (Selvaraju et al. 2017)."""

    name = "gradcam"
    combine = staticmethod(grad_cam)


@wssbench.hookimpl
def register_classmaps(register):
    register(CAM)
    register(GradCAM)
