"""The registered saliency methods: ``bp``, ``gbp``, ``deconv`` and ``multilayer``.

Each is a frozen dataclass whose fields are its options, called as
``method(model, images, classes) -> maps (B, K, H, W)`` float32. They share DCSM's
post-processing (:mod:`wssbench.saliency.dcsm`): options ``scales`` (default ``(1.0,)``) and
``distinct`` (default off). Without them the maps are raw, non-negative and not normalised;
with ``distinct`` they are DCSM's distinct maps, clipped at 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .backprop import check_classes, saliency_maps
from .dcsm import average_over_scales, distinct_maps
from .multilayer import multilayer_maps
from .rules import RULES, UNSUPPORTED

__all__ = ["Deconvnet", "GuidedBP", "MultiLayer", "SaliencyMethod", "VanillaBP"]


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class SaliencyMethod:
    """Base of the methods here: raw maps per scale, averaged, then optionally made distinct.

    Subclasses implement ``raw_maps(model, images, classes) -> (B, K, H, W)``.
    """

    distinct: bool = False  # DCSM's distinct maps (see wssbench.saliency.dcsm)
    scales: tuple[float, ...] = (1.0,)  # input scales whose maps are averaged; DCSM: 0.8, 1.0, 1.2

    def __post_init__(self) -> None:
        scales = tuple(float(s) for s in self.scales)
        if not scales or any(not s > 0 for s in scales):
            raise ValueError(f"scales must be one or more positive factors, got {self.scales!r}")
        object.__setattr__(self, "scales", scales)

    def __call__(self, model: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        classes = check_classes(classes, images.shape[0], images.device)  # (B, K)
        maps = average_over_scales(lambda x: self.raw_maps(model, x, classes), images, self.scales)  # (B, K, H, W)
        if self.distinct:
            maps = distinct_maps(maps, classes)
        return maps.float()

    def raw_maps(self, model: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class _Simonyan(SaliencyMethod):
    """Simonyan's map ``max_channel |d S_c / d x|`` under the class's ``rule``."""

    rule: ClassVar[str] = "vanilla"
    unsupported: ClassVar[str] = "error"  # an option (a field) where the rule can meet one

    def raw_maps(self, model: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return saliency_maps(model, images, classes, rule=self.rule, unsupported=self.unsupported)


@dataclass(frozen=True, kw_only=True)
class VanillaBP(_Simonyan):
    """Vanilla back-propagation saliency (Simonyan et al. 2014): max over channels of |dS_c/dx|.

    Ordinary autograd through every layer, so it works on any model. Options ``scales`` and
    ``distinct`` (DCSM's post-processing).
    """

    name: ClassVar[str] = "bp"
    rule: ClassVar[str] = "vanilla"


@dataclass(frozen=True, kw_only=True)
class _RectifierRule(_Simonyan):
    unsupported: str = "error"  # or "ignore": back-propagate through GELU, SiLU, ... unchanged

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("unsupported", self.unsupported, UNSUPPORTED)


@dataclass(frozen=True, kw_only=True)
class GuidedBP(_RectifierRule):
    """Guided back-propagation saliency (Springenberg et al. 2015): ReLUs pass positive signal only.

    The backward signal crosses a ReLU where its forward input was positive (``0 < x < 6``
    for ReLU6; modules and functional ``F.relu`` calls alike) and the signal itself is
    positive. Option ``unsupported``: ``error`` (default) refuses a model with an activation
    where the rule is undefined (GELU, SiLU, ...); ``ignore`` back-propagates through those
    unchanged. Options ``scales`` and ``distinct`` (DCSM's post-processing).
    """

    name: ClassVar[str] = "gbp"
    rule: ClassVar[str] = "guided"


@dataclass(frozen=True, kw_only=True)
class Deconvnet(_RectifierRule):
    """Deconvnet saliency (Zeiler & Fergus 2014): ReLUs pass positive signal, forward mask ignored.

    The backward signal crosses a ReLU (or ReLU6) wherever the signal itself is positive,
    whatever the forward input was. Options ``unsupported``, ``scales`` and ``distinct`` as
    for ``gbp``.
    """

    name: ClassVar[str] = "deconv"
    rule: ClassVar[str] = "deconv"


@dataclass(frozen=True, kw_only=True)
class MultiLayer(SaliencyMethod):
    """Multi-layer saliency (Shimoda & Yanai): summed max-|dS_c/dL_i| maps at intermediate layer inputs.

    Options: ``layers`` module names (default: conv3_1 ... conv5_3 for VGG, the last three
    stages otherwise; see :mod:`wssbench.saliency.multilayer`), ``rule`` (``guided``
    default, ``vanilla``, ``deconv``), ``signed`` (max over channels of the signed derivative
    instead of its absolute value; maps may then be negative), ``unsupported``, ``scales`` and
    ``distinct`` (DCSM's post-processing; DCSM is ``distinct=true, scales=0.8,1.0,1.2``).
    """

    name: ClassVar[str] = "multilayer"

    layers: tuple[str, ...] = ()
    rule: str = "guided"
    signed: bool = False
    unsupported: str = "error"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("rule", self.rule, RULES)
        _check_choice("unsupported", self.unsupported, UNSUPPORTED)
        object.__setattr__(self, "layers", tuple(self.layers))

    def raw_maps(self, model: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return multilayer_maps(model, images, classes, self.layers, self.rule, self.signed, self.unsupported)
