"""Helpers class-map producers share: picking the requested classes, max-normalising, a backbone
layer's activations and the gradients of all requested classes in one pass, and the
multi-scale + flip sum of PSA and IRN.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Callable

from wssbench.errors import UsageError

if TYPE_CHECKING:  # torch is imported where it is used, so listing the plugins stays fast
    import torch  # plugins import this module when they register: no torch until maps are made

# raw(model, images (B, 3, H, W), classes (B, K)) -> maps (B, K, h, w), non-negative, zero for padding
RawMaps = Callable[["torch.nn.Module", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]
# combine(A (B, F, h, w), G (B, K, F, h, w)) -> maps (B, K, h, w) before any ReLU
Combine = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def select(maps: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Pick the requested classes: (B, C, h, w), (B, K) -> (B, K, h, w), zeros for padding."""
    import torch  # plugins import this module when they register: no torch until maps are made

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


# --- multi-scale and flip ---------------------------------------------------------------------


def parse_scales(scales: str) -> tuple[float, ...]:
    """Parse "1.0,0.5" into (1.0, 0.5); ValueError unless all are positive numbers."""
    try:
        values = tuple(float(s) for s in scales.split(",") if s.strip())
    except ValueError:
        values = ()
    if not values or any(s <= 0 for s in values):
        raise ValueError(f"scales must be comma-separated positive numbers, got '{scales}'")
    return values


class ScalesAndFlip:
    """Mixin of the frozen producer dataclasses with the options ``scales: str`` and ``flip: bool``."""

    scales: str
    flip: bool

    def __post_init__(self) -> None:
        parse_scales(self.scales)

    @property
    def single_pass(self) -> bool:
        """One forward pass at the input size: scale 1.0 alone, no flip (the default)."""
        return parse_scales(self.scales) == (1.0,) and not self.flip


def rescale(images: torch.Tensor, scale: float) -> torch.Tensor:
    """Images (B, 3, H, W) resized to (round(H s), round(W s)) as PSA and IRN resize them.

    Their ``PIL.Image.resize(..., BICUBIC)`` at Python's ``round`` of the scaled size, the image
    itself where the size does not change. torch's bicubic with ``antialias=True`` is PIL's
    filter (on float images they agree to 1e-3 of 255); PIL resizes the uint8 image before
    normalisation and so clips the filter's overshoot to [0, 255], which normalised tensors
    here are not (an image can be any tensor).
    """
    import torch.nn.functional as F  # plugins import this module when they register: no torch until maps are made

    h, w = images.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return images
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True)


def multiscale(
    raw: RawMaps, model, images: torch.Tensor, classes: torch.Tensor, scales: tuple[float, ...], flip: bool
) -> torch.Tensor:
    """Maps summed over input scales and flips and max-normalised per class, in PSA's order.

    For each scale ``s`` (and, with ``flip``, the mirrored image too): ``raw`` maps of the
    rescaled image (:func:`rescale`), which are non-negative (PSA's and IRN's ``forward_cam``
    ends in a ReLU), bilinearly upsampled to the input size (align_corners=False), mirrored
    back; all are summed and each class map is divided by its maximum (PSA ``infer_cls.py``,
    IRN ``step/make_cam.py``). IRN sums a flip pair at the feature resolution before
    upsampling, equal up to rounding since bilinear resizing commutes with mirroring; its
    ``high_res`` maps are upsampled to the stride-16 padded size and cropped, equal to this
    where the image size is a multiple of the stride. Both add 1e-5 to the maximum; here
    ``max_normalise``'s 1e-8, so that each map's maximum is 1 as the class-map contract says.
    """
    import torch  # plugins import this module when they register: no torch until maps are made

    from wssbench.classifier.model import upsample  # plugins import this module when they register: no torch until maps are made

    size = images.shape[-2:]
    total = torch.zeros(images.shape[0], classes.shape[1], *size, device=images.device)  # (B, K, H, W)
    for s in scales:
        x = rescale(images, s)  # (B, 3, round(H s), round(W s))
        total += upsample(raw(model, x, classes), size)
        if flip:
            total += upsample(raw(model, x.flip(-1), classes), size).flip(-1)
    return max_normalise(total)  # float32


# --- one layer's activations and the gradients of K classes ------------------------------------


def layer_module(model, layer: str, method: str) -> torch.nn.Module:
    """The module ``layer`` of ``model.features`` ("" is ``model.features`` itself)."""
    try:
        return model.features.get_submodule(layer)
    except AttributeError:
        raise UsageError(f"{method}: no module '{layer}' in the backbone; see model.features.named_modules()") from None


def layer_activations(model, images: torch.Tensor, layer: str, method: str) -> torch.Tensor:
    """The output A (B, F, h, w) of the backbone module ``layer``, without a graph."""
    import torch  # plugins import this module when they register: no torch until maps are made

    captured: list[torch.Tensor] = []
    handle = layer_module(model, layer, method).register_forward_hook(lambda m, i, out: captured.append(out.detach()))
    try:
        with torch.no_grad():
            model.features(images)
    finally:
        handle.remove()
    _ran_once(captured, layer, method)
    return captured[0].clone()  # a copy: an in-place op after the layer would change the output


def layer_gradients(model, images: torch.Tensor, classes: torch.Tensor, layer: str, method: str
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """A (B, F, h, w), the output of the backbone module ``layer``, and G (B, K, F, h, w), the
    gradients ``dS_c / dA`` of the pooled scores of the K requested classes, from one forward pass.

    The backbone runs without a graph up to that module; a forward hook swaps its output for
    a leaf ``A`` and turns gradient recording on from there, so only the rest of the network
    is recorded. The K gradients come from that one graph in one batched backward pass
    (``torch.autograd.grad(..., is_grads_batched=True)``: the one-hot output gradients of the
    K classes, vmapped); the images of a batch do not interact (the model is in eval mode),
    so class k's backward of the batch's sum gives each image its own gradient. Gradients are
    taken with respect to ``A`` alone: the parameters' ``.grad`` stay untouched. Padding
    classes (< 0) get class 0's gradients; their maps are zeroed by the caller.
    """
    import torch  # plugins import this module when they register: no torch until maps are made

    captured: list[torch.Tensor] = []

    def hook(module, inputs, output):
        torch.set_grad_enabled(True)  # undone when the enclosing no_grad block exits
        captured.append(output.detach().requires_grad_(True))  # (B, F, h, w)
        return captured[-1].clone()  # a copy, so an in-place op after the layer leaves A intact

    b, k = classes.shape
    with torch.no_grad():
        handle = layer_module(model, layer, method).register_forward_hook(hook)
        try:
            scores = model(images)  # (B, C)
        finally:
            handle.remove()
        _ran_once(captured, layer, method)
        a = captured[0]
        picked = scores.gather(1, classes.clamp(min=0))  # (B, K)
        one_hot = torch.eye(k, dtype=picked.dtype, device=picked.device)[:, None, :].expand(k, b, k)  # (K, B, K)
        (grads,) = torch.autograd.grad(picked, a, grad_outputs=one_hot, is_grads_batched=True)  # (K, B, F, h, w)
    return a.detach(), grads.transpose(0, 1)  # (B, F, h, w), (B, K, F, h, w)


def _ran_once(captured: list, layer: str, method: str) -> None:
    if len(captured) != 1:
        raise UsageError(f"{method}: module '{layer}' ran {len(captured)} times in one forward pass; pick one that runs once")


def gradient_maps(combine: Combine, model, images: torch.Tensor, classes: torch.Tensor, layer: str = "",
                  method: str = "gradcam") -> torch.Tensor:
    """``relu(combine(A, G))`` (B, K, h, w) at the resolution of ``layer`` (:func:`layer_gradients`),
    zero for padding classes."""
    a, g = layer_gradients(model, images, classes, layer, method)  # (B, F, h, w), (B, K, F, h, w)
    maps = combine(a, g).clamp(min=0)  # (B, K, h, w)
    return maps * (classes >= 0)[:, :, None, None]


class GradientMaps(ScalesAndFlip):
    """Mixin of the producers made of a layer's activations and gradients: a frozen dataclass
    with the options ``layer``, ``scales`` and ``flip``, a ``name`` and a static ``combine(A, G)``
    (see :func:`gradient_maps`); maps of all requested classes from one forward pass per
    scale and flip."""

    name: str
    layer: str
    combine: Combine

    def __call__(self, model, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        import torch  # plugins import this module when they register: no torch until maps are made

        classes = torch.as_tensor(classes).to(images.device)
        raw = partial(gradient_maps, self.combine, layer=self.layer, method=self.name)
        return multiscale(raw, model, images, classes, parse_scales(self.scales), self.flip)  # (B, K, H, W)


@dataclass(frozen=True)
class LayerGradientMaps(GradientMaps):
    """:class:`GradientMaps` with its three options as fields (Grad-CAM and its variants): a
    producer subclasses it with a ``name`` and a ``combine`` and adds no field of its own."""

    layer: str = ""  # module of the backbone whose output is weighted, e.g. "layer3"; "" = the last feature maps
    scales: str = "1.0"  # comma-separated input scales whose maps are summed, e.g. "1.0,0.5,1.5,2.0"
    flip: bool = False  # also add the maps of the horizontally flipped images
