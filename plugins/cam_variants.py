"""Class maps ``gradcampp``, ``xgradcam``, ``layercam``, ``hirescam`` and ``scorecam``: Grad-CAM's successors.

The formulas are those of ``jacobgil/pytorch-grad-cam`` (PyPI ``grad-cam`` 1.5, the library
WSSS code uses; its ``get_cam_weights`` / ``get_cam_image``), on the output ``A`` (B, F, h, w)
of a backbone module (option ``layer``, "" = the last feature maps) with ``G = dS_c / dA`` the
gradient of the pooled score ``S_c`` (the library's ``ClassifierOutputTarget``); sums over the
positions ``ij`` unless said otherwise:

* Grad-CAM++: ``a = G^2 / (2 G^2 + sum_ij(A) G^3 + 1e-6)``, 0 where ``G == 0``;
  ``w_f = sum_ij relu(G) a``; ``sum_f w_f A_f``. The paper's eq. 19 takes the derivatives of
  ``exp(S_c)``; its closed form needs only ``G``, and the factor ``exp(S_c)`` it puts on the
  weights is a constant per class, which normalisation removes.
* XGrad-CAM: ``w_f = sum_ij G A / (sum_ij A + 1e-7)``; ``sum_f w_f A_f``.
* LayerCAM: ``sum_f relu(G_f) A_f``, element-wise.
* HiResCAM: ``sum_f G_f A_f``, element-wise.
* Score-CAM: no gradients. Each channel ``A_f`` is upsampled to the input size (bilinear,
  align_corners=True, as ``torch.nn.UpsamplingBilinear2d``), min-max normalised
  (``+ 1e-8``) and multiplies the input image; ``w_f = softmax_f`` of the class's pooled score
  on those ``F`` masked images; ``sum_f w_f A_f``. The authors' code (haofanwang/Score-CAM)
  differs: it weights by the class's softmax probability over the classes, sums the
  upsampled channels and skips constant ones; the library's version is the one here.

Each then keeps the positive part (the library's ReLU) and, as every class-map producer, is
upsampled and divided by its maximum, where the library subtracts the minimum first (its
min-max ``scale_cam_image``). Unlike the library (one target per image per call), all
requested classes of a batch come from one forward pass: the gradient methods take the K
classes' gradients from its one graph (``wssbench.methods.maps.layer_gradients``); Score-CAM
runs the ``B F`` masked images once, in batches, and reads every class's score from them.
Scales and flips are summed as for ``cam`` (``wssbench.methods.maps.multiscale``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import wssbench
from wssbench.methods.maps import LayerGradientMaps, ScalesAndFlip, layer_activations, multiscale, parse_scales

if TYPE_CHECKING:  # torch is imported where maps are made, so listing the plugins stays fast
    import torch


# combine(A (B, F, h, w), G (B, K, F, h, w)) -> maps (B, K, h, w) before the ReLU


def weighted_sum(w: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``sum_f w[b, k, f] A[b, f]``: (B, K, F), (B, F, h, w) -> (B, K, h, w)."""
    import torch

    return torch.einsum("bkf,bfhw->bkhw", w, a)


def grad_cam_pp(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    g2 = g.pow(2)  # (B, K, F, h, w)
    sum_a = a.sum(dim=(2, 3))[:, None, :, None, None]  # (B, 1, F, 1, 1)
    alpha = (g2 / (2 * g2 + sum_a * g2 * g + 1e-6)).masked_fill(g == 0, 0)  # (B, K, F, h, w)
    return weighted_sum((g.clamp(min=0) * alpha).sum(dim=(3, 4)), a)


def xgrad_cam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    sum_a = a.sum(dim=(2, 3))[:, None]  # (B, 1, F)
    return weighted_sum((g * a[:, None]).sum(dim=(3, 4)) / (sum_a + 1e-7), a)


def layer_cam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (g.clamp(min=0) * a[:, None]).sum(dim=2)  # (B, K, h, w)


def hires_cam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (g * a[:, None]).sum(dim=2)  # (B, K, h, w)


def score_cam_weights(model, images: torch.Tensor, a: torch.Tensor, classes: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Score-CAM's channel weights (B, K, F): softmax over the channels of each class's score
    on the images masked by their min-max normalised, upsampled channels of A (B, F, h, w)."""
    import torch
    import torch.nn.functional as F

    b, f = a.shape[:2]
    flat = a.reshape(b * f, 1, *a.shape[2:])  # (B F, 1, h, w): image-major
    scores = []
    with torch.no_grad():
        for start in range(0, b * f, batch_size):
            masks = F.interpolate(flat[start:start + batch_size], size=images.shape[-2:], mode="bilinear",
                                  align_corners=True)  # (n, 1, H, W)
            low, high = masks.amin(dim=(2, 3), keepdim=True), masks.amax(dim=(2, 3), keepdim=True)
            masks = (masks - low) / (high - low + 1e-8)
            owner = torch.arange(start, start + len(masks), device=images.device) // f  # (n,) image of each mask
            scores.append(model(images[owner] * masks))  # (n, C)
    scores = torch.cat(scores).view(b, f, -1)  # (B, F, C)
    picked = scores.gather(2, classes.clamp(min=0)[:, None, :].expand(b, f, classes.shape[1]))  # (B, F, K)
    return picked.float().softmax(dim=1).transpose(1, 2)  # (B, K, F)


def score_cam_raw(model, images: torch.Tensor, classes: torch.Tensor, layer: str = "", batch_size: int = 64) -> torch.Tensor:
    """ReLU'd Score-CAM at the resolution of ``layer`` (B, K, h, w), zero for padding classes."""
    a = layer_activations(model, images, layer, "scorecam")  # (B, F, h, w)
    w = score_cam_weights(model, images, a, classes, batch_size)  # (B, K, F)
    maps = weighted_sum(w.to(a.dtype), a).clamp(min=0)  # (B, K, h, w)
    return maps * (classes >= 0)[:, :, None, None]


@dataclass(frozen=True)
class GradCAMPlusPlus(LayerGradientMaps):
    """Grad-CAM++: feature maps weighted by positive gradients with per-position coefficients (Chattopadhay et al. WACV 2018)."""

    name = "gradcampp"
    combine = staticmethod(grad_cam_pp)


@dataclass(frozen=True)
class XGradCAM(LayerGradientMaps):
    """XGrad-CAM: feature maps weighted by the activation-weighted sum of their gradients (Fu et al. BMVC 2020)."""

    name = "xgradcam"
    combine = staticmethod(xgrad_cam)


@dataclass(frozen=True)
class LayerCAM(LayerGradientMaps):
    """LayerCAM: feature maps weighted position by position by their positive gradients (Jiang et al. TIP 2021)."""

    name = "layercam"
    combine = staticmethod(layer_cam)


@dataclass(frozen=True)
class HiResCAM(LayerGradientMaps):
    """HiResCAM: feature maps times their gradients, element-wise, summed over channels (Draelos & Carin 2020)."""

    name = "hirescam"
    combine = staticmethod(hires_cam)


@dataclass(frozen=True)
class ScoreCAM(ScalesAndFlip):
    """Score-CAM: feature maps weighted by the softmax of the class score of the image masked by each (Wang et al. CVPRW 2020)."""

    name = "scorecam"
    layer: str = ""  # module of the backbone whose channels mask the image, e.g. "layer3"; "" = the last feature maps
    batch_size: int = 64  # masked images per forward pass
    scales: str = "1.0"  # comma-separated input scales whose maps are summed
    flip: bool = False  # also add the maps of the horizontally flipped images

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    def __call__(self, model, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        import torch

        def raw(model, x, classes):
            return score_cam_raw(model, x, classes, self.layer, self.batch_size)

        classes = torch.as_tensor(classes).to(images.device)
        return multiscale(raw, model, images, classes, parse_scales(self.scales), self.flip)  # (B, K, H, W)


@wssbench.hookimpl
def register_classmaps(register):
    for factory in (GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM, ScoreCAM):
        register(factory)
