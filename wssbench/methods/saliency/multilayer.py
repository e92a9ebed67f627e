"""Multi-layer saliency (the poster's): class-score derivatives at several intermediate layers.

For each tapped layer ``i`` the derivative ``v_i^c = d S_c / d L_i`` is taken at the layer's
INPUT ``L_i`` (the tensor entering it), reduced to a map by the maximum over channels of its
absolute value (``signed=True``: of its signed value), bilinearly upsampled to the image size
and summed over the layers::

    M^c = sum_i  upsample( max_channel |v_i^c| )          # (H, W)

All layers and all classes come from one forward pass and one backward pass per class, which
stops at the shallowest tapped layer (:func:`~wssbench.methods.saliency.backprop.record`,
:func:`~wssbench.methods.saliency.backprop.trace_gradients` with the reduction :func:`layer_maps`).
The rule at rectifiers is guided back-propagation by default, as in the poster.

Default layers (``layers=()``), found in the timm model inside the model given (the model
itself, or for wssbench's :class:`~wssbench.classifier.model.Classifier` its backbone ``features``):

* a plain network whose ``features`` is an ``nn.Sequential`` with max-pooling stages (timm's
  VGG): the inputs of every convolution of the last three pooling stages. For VGG-16 these
  are conv3_1 ... conv5_3, the nine layers of the authors' code (timm ``features.10`` ...
  ``features.28``; ``features.features.10`` ... in a Classifier).
* any other timm model: the inputs of the modules of its last three ``feature_info`` stages
  (ResNet: ``layer2``, ``layer3``, ``layer4``; MobileNetV2: ``blocks.2``, ``blocks.4``,
  ``blocks.6``).

A name in ``layers`` is a module path in the model given, or else in its timm backbone
(``layer3`` finds ``features.layer3`` in a Classifier).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from wssbench.classifier.model import upsample
from wssbench.errors import UsageError
from wssbench.methods.saliency.backprop import channel_max_abs, record, trace_gradients

__all__ = ["default_layers", "layer_maps", "layer_paths", "multilayer_maps", "resolve_layers"]

STAGES = 3  # the number of deepest stages tapped by default


def _backbone(model: nn.Module) -> tuple[str, nn.Module] | None:
    """(path, module) of the first timm model (a module with ``feature_info``) inside ``model``."""
    for path, module in model.named_modules():
        if isinstance(getattr(module, "feature_info", None), list):
            return path, module
    return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def default_layers(model: nn.Module) -> list[str]:
    """The module paths (in ``model``) whose inputs are tapped by default; see the module docstring."""
    found = _backbone(model)
    if found is None:
        raise UsageError(f"multilayer: no timm model inside {type(model).__name__} to choose default layers; pass layers=...")
    prefix, backbone = found
    features = getattr(backbone, "features", None)
    if isinstance(features, nn.Sequential):
        pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        if len(pools) > STAGES:
            first = pools[-STAGES - 1] + 1  # the first module after the last non-tapped stage
            return [_join(prefix, f"features.{i}") for i in range(first, len(features)) if isinstance(features[i], nn.Conv2d)]
    stages = [info["module"] for info in backbone.feature_info[-STAGES:]]
    return [_join(prefix, name) for name in stages]


def resolve_layers(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Module paths in ``model`` for ``names`` (paths in ``model`` or in its timm backbone)."""
    found = _backbone(model)
    paths = []
    for name in names:
        candidates = [name] + ([_join(found[0], name)] if found and found[0] else [])
        path = next((p for p in candidates if _has_module(model, p)), None)
        if path is None:
            where = f" or in its timm backbone '{found[0]}'" if found and found[0] else ""
            raise UsageError(f"multilayer: no module '{name}' in {type(model).__name__}{where}")
        paths.append(path)
    return paths


def _has_module(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def layer_maps(size: tuple[int, int], signed: bool = False) -> Callable[[list[torch.Tensor]], torch.Tensor]:
    """The reduction of the layers' gradients ``[(B, C_i, h_i, w_i), ...]`` to the multi-layer
    map ``(B, H, W)`` at ``size`` (a ``reduce`` for :func:`~.backprop.trace_gradients`)."""

    def combine(grads: list[torch.Tensor]) -> torch.Tensor:
        # Bilinear upsampling is linear: maps of the same resolution are summed first and
        # upsampled once (VGG-16: 3 upsamplings for 9 layers).
        by_size: dict[tuple[int, int], torch.Tensor] = {}
        for g in grads:  # (B, C_i, h_i, w_i)
            m = g.amax(dim=1) if signed else channel_max_abs(g)  # (B, h_i, w_i)
            key = tuple(m.shape[-2:])
            by_size[key] = by_size[key] + m if key in by_size else m
        return sum(upsample(m[:, None], size)[:, 0] for m in by_size.values())  # (B, H, W)

    return combine


def layer_paths(model: nn.Module, layers: Sequence[str] = ()) -> list[str]:
    """The module paths tapped for ``layers`` (:func:`resolve_layers`), or the defaults for ``()``."""
    return resolve_layers(model, layers) if layers else default_layers(model)


def multilayer_maps(
    model: nn.Module,
    images: torch.Tensor,
    classes: torch.Tensor,
    layers: Sequence[str] = (),
    rule: str = "guided",
    signed: bool = False,
    unsupported: str = "error",
    signal: str = "pooled",
) -> torch.Tensor:
    """The multi-layer map of each requested class, ``(B, K, H, W)``, raw (not normalised).

    ``layers``: module names (see :func:`resolve_layers`), or ``()`` for the default layers.
    Non-negative unless ``signed``. Padding classes (< 0) get all-zero maps. ``signal`` as in
    :func:`~.backprop.trace_gradients`.
    """
    with record(model, images, rule, layer_paths(model, layers), at_input=True, unsupported=unsupported) as trace:
        return trace_gradients(trace, classes, signal, layer_maps(images.shape[-2:], signed))
