"""Class maps ``cam`` (Zhou et al. 2016) and ``gradcam`` (Selvaraju et al. 2017): feature maps weighted per class.

Both weight feature maps ``A`` (B, F, h, w) of the backbone per class and keep the positive
part:

* CAM: ``relu(sum_f w[c, f] A_f)`` with ``w`` the weights of the 1x1 class head. The head has
  no bias, so this equals the FCN score maps whatever the pooling; it is computed here from
  the weights, as CAM defines it.
* Grad-CAM: ``relu(sum_f alpha[c, f] A_f)`` with ``alpha[c, f]`` the spatial mean of
  ``dS_c / dA_f`` and ``S_c`` the pooled class score, on the output ``A`` of any module of
  the backbone (option ``layer``). On the last feature maps it equals CAM: the gradient of
  each pooling (``gap``, ``gmp``, ``lse``) with respect to the score map sums to one over
  the positions, so ``alpha[c] = w[c] / (h w)``. It differs on an earlier layer.

Both can average over input scales and horizontal flips, as CAM seeds are made in IRN and its
successors (``scales="1.0,0.5,1.5,2.0"``, ``flip=True``): each scale's maps are kept positive,
upsampled to the image and summed before the final max-normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Callable

import wssbench
from wssbench.errors import UsageError
from wssbench.methods.maps import max_normalise

if TYPE_CHECKING:  # torch is imported where maps are made, so listing the plugins stays fast
    import torch

RawMaps = Callable[["torch.nn.Module", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def parse_scales(scales: str) -> tuple[float, ...]:
    """Parse "1.0,0.5" into (1.0, 0.5); ValueError unless all are positive numbers."""
    try:
        values = tuple(float(s) for s in scales.split(",") if s.strip())
    except ValueError:
        values = ()
    if not values or any(s <= 0 for s in values):
        raise ValueError(f"scales must be comma-separated positive numbers, got '{scales}'")
    return values


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


def grad_cam_raw(model, images: torch.Tensor, classes: torch.Tensor, layer: str = "") -> torch.Tensor:
    """ReLU'd Grad-CAM at the resolution of ``layer`` (B, K, h, w), all K classes in one backward pass.

    ``layer`` names a module of ``model.features`` ("" is ``model.features`` itself, the last
    feature maps). The backbone runs without a graph up to that module; a forward hook
    swaps its output for a leaf ``A`` and turns gradient recording on from there, so only
    the rest of the network is recorded. Gradients are taken with respect to ``A`` alone:
    the parameters' ``.grad`` stay untouched.
    """
    import torch

    target = _submodule(model.features, layer)
    captured: list[torch.Tensor] = []

    def hook(module, inputs, output):
        torch.set_grad_enabled(True)  # undone when the enclosing no_grad block exits
        captured.append(output.detach().requires_grad_(True))  # (B, F, h, w)
        return captured[-1].clone()  # a copy, so an in-place op after the layer leaves A intact

    b, k = classes.shape
    with torch.no_grad():
        handle = target.register_forward_hook(hook)
        try:
            scores = model(images)  # (B, C)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise UsageError(f"gradcam: module '{layer}' ran {len(captured)} times in one forward pass; pick one that runs once")
        a = captured[0]
        picked = scores.gather(1, classes.clamp(min=0))  # (B, K)
        one_hot = torch.eye(k, dtype=picked.dtype, device=picked.device)[:, None, :].expand(k, b, k)  # (K, B, K)
        (grads,) = torch.autograd.grad(picked, a, grad_outputs=one_hot, is_grads_batched=True)  # (K, B, F, h, w)
        alpha = grads.mean(dim=(3, 4)).transpose(0, 1)  # (B, K, F)
        maps = torch.einsum("bkf,bfhw->bkhw", alpha, a.detach()).clamp(min=0)  # (B, K, h, w)
    return maps * (classes >= 0)[:, :, None, None]


def _submodule(features: torch.nn.Module, layer: str) -> torch.nn.Module:
    try:
        return features.get_submodule(layer)
    except AttributeError:
        raise UsageError(f"gradcam: no module '{layer}' in the backbone; see model.features.named_modules()") from None


def multiscale(
    raw: RawMaps, model, images: torch.Tensor, classes: torch.Tensor, scales: tuple[float, ...], flip: bool
) -> torch.Tensor:
    """Sum of ``raw`` maps over input scales (and flips), upsampled to the image, max-normalised."""
    import torch
    import torch.nn.functional as F

    from wssbench.classifier.model import upsample

    size = images.shape[-2:]
    total = torch.zeros(images.shape[0], classes.shape[1], *size, device=images.device)  # (B, K, H, W)
    for s in scales:
        x = images if s == 1 else F.interpolate(images, scale_factor=s, mode="bilinear", align_corners=False)
        total += upsample(raw(model, x, classes), size)
        if flip:
            total += upsample(raw(model, x.flip(-1), classes).flip(-1), size)
    return max_normalise(total)  # float32


@dataclass(frozen=True)
class CAM:
    """Class activation maps: head weights times the last feature maps, ReLU, upsampled (Zhou et al. 2016)."""

    name = "cam"
    scales: str = "1.0"  # comma-separated input scales whose maps are summed, e.g. "1.0,0.5,1.5,2.0"
    flip: bool = False  # also add the maps of the horizontally flipped images

    def __post_init__(self) -> None:
        parse_scales(self.scales)

    def __call__(self, model, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        import torch

        classes = torch.as_tensor(classes).to(images.device)
        return multiscale(cam_raw, model, images, classes, parse_scales(self.scales), self.flip)  # (B, K, H, W)

    @property
    def uses_forward(self) -> bool:
        """Capability: at one scale without flips, the maps come from the shared forward pass."""
        return parse_scales(self.scales) == (1.0,) and not self.flip

    def from_forward(self, model, forward, classes: torch.Tensor) -> torch.Tensor:
        """The same maps as ``__call__`` from the pipeline's shared forward pass (its features)."""
        import torch

        from wssbench.classifier.model import upsample

        classes = torch.as_tensor(classes).to(forward.features.device)
        raw = cam_from_features(model, forward.features, classes)  # (B, K, h, w)
        return max_normalise(upsample(raw, forward.images.shape[-2:]))  # (B, K, H, W)


@dataclass(frozen=True)
class GradCAM:
    """Grad-CAM: a backbone layer's feature maps weighted by the spatial mean of the score's gradient (Selvaraju et al. 2017)."""

    name = "gradcam"
    layer: str = ""  # module of the backbone whose output is weighted, e.g. "layer3"; "" = the last feature maps
    scales: str = "1.0"  # comma-separated input scales whose maps are summed
    flip: bool = False  # also add the maps of the horizontally flipped images

    def __post_init__(self) -> None:
        parse_scales(self.scales)

    def __call__(self, model, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        import torch

        raw = partial(grad_cam_raw, layer=self.layer)
        classes = torch.as_tensor(classes).to(images.device)
        return multiscale(raw, model, images, classes, parse_scales(self.scales), self.flip)  # (B, K, H, W)


@wssbench.hookimpl
def register_classmaps(register):
    register(CAM)
    register(GradCAM)
