"""Segmentation networks: ``deeplab-largefov`` (VGG, the poster era's) and DeepLab v3 / v3+ (smp)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import wssbench
from wssbench.errors import DataError, OfflineError

if TYPE_CHECKING:  # torch, timm and smp are imported where they are used: listing plugins stays fast
    from torch import nn


def _normalisation(encoder: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std of the encoder's ImageNet weights (timm's pretrained_cfg), ImageNet's by default."""
    import timm

    cfg = timm.get_pretrained_cfg(encoder) if timm.is_model(encoder) else None
    return (tuple(getattr(cfg, "mean", None) or (0.485, 0.456, 0.406)),
            tuple(getattr(cfg, "std", None) or (0.229, 0.224, 0.225)))


class EncoderNormalisation:
    """``mean`` and ``std``: the normalisation of the ``encoder``'s ImageNet weights (timm's)."""

    encoder: str

    @property
    def mean(self) -> tuple[float, float, float]:
        return _normalisation(self.encoder)[0]

    @property
    def std(self) -> tuple[float, float, float]:
        return _normalisation(self.encoder)[1]


@dataclass(frozen=True)
class DeepLabLargeFOV(EncoderNormalisation):
    """DeepLab-LargeFOV (Chen et al., ICLR 2015) on a timm VGG: stride 8, fc6 3x3 dilation 12, 1024 ch.

    The network EM-Adapt and CCNN-era work trained. conv5 dilated by 2 and pool4/pool5 at
    stride 1 (output stride 8); fc6 ``fc6_kernel`` x ``fc6_kernel`` with dilation
    ``fc6_dilation`` and ``channels`` outputs, fc7 1x1, both with dropout; fc8 1x1 to the
    classes. With ImageNet weights, fc6/fc7 are decimated from VGG's fully connected layers
    as DeepLab did; without, they start random. CCNN's FCN-8s-atrous is ``fc6_kernel=4,
    fc6_dilation=4, channels=4096``. Differences from the Caffe original: ceil-mode pooling
    becomes padding 1 (sizes can differ by one pixel); timm's VGG weights are torchvision's,
    not the Caffe VGG-16 (different mean subtraction: RGB 0..1 normalised).
    """

    name = "deeplab-largefov"
    encoder: str = "vgg16"
    pretrained: bool = False
    fc6_kernel: int = 3
    fc6_dilation: int = 12
    channels: int = 1024
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if not self.encoder.startswith("vgg"):
            raise ValueError(f"encoder must be a timm VGG (vgg11, vgg16, vgg16_bn, ...), got '{self.encoder}'")

    def build(self, num_classes: int, weights: str | None = None) -> nn.Module:
        from wssbench_plugins._segnet_modules import LargeFOV, decimate, densify_vgg
        from wssbench_plugins.backbones import TimmBackbones

        vgg, _ = TimmBackbones().build(self.encoder, pretrained=self.pretrained, weights=weights)
        initialised = self.pretrained or weights is not None
        source = getattr(vgg, "pre_logits", None)
        fc6 = decimate(source.fc1 if initialised and source is not None else None, self.channels, 512, self.fc6_kernel, self.fc6_dilation)
        fc7 = decimate(source.fc2 if initialised and source is not None else None, self.channels, self.channels, 1, 1)
        return LargeFOV(densify_vgg(vgg.features), fc6, fc7, num_classes, self.dropout)


@dataclass(frozen=True)
class DeepLabV3Plus(EncoderNormalisation):
    """DeepLabV3+ (Chen et al., ECCV 2018) from segmentation-models-pytorch on any timm encoder.

    ``encoder`` is a timm model name (smp's ``tu-`` encoders), output stride 16 by default,
    ASPP rates 12/24/36, logits at the input resolution.
    """

    name = "deeplabv3plus"
    architecture = "DeepLabV3Plus"
    encoder: str = "resnet50"
    pretrained: bool = False
    output_stride: int = 16
    aspp_dropout: float = 0.5

    def __post_init__(self) -> None:
        import timm

        if self.output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {self.output_stride}")
        if not timm.is_model(self.encoder):
            raise ValueError(f"unknown timm encoder '{self.encoder}'")

    def build(self, num_classes: int, weights: str | None = None) -> nn.Module:
        import segmentation_models_pytorch as smp

        from wssbench_plugins._segnet_modules import SmpNet
        from wssbench_plugins.backbones import _hub_reachable

        kwargs: dict = {}
        if weights is not None:
            if not Path(weights).is_file():
                raise DataError(f"{weights}: weights file not found")
            kwargs["pretrained_cfg_overlay"] = {"file": str(weights)}
        elif self.pretrained and not _hub_reachable():
            raise OfflineError(f"cannot download pretrained weights for timm encoder '{self.encoder}' (no network?); "
                               f"pass --weights FILE with a local checkpoint instead")
        model = getattr(smp, self.architecture)(
            encoder_name=f"tu-{self.encoder}", encoder_weights=True if (self.pretrained or weights) else None,
            encoder_output_stride=self.output_stride, decoder_aspp_dropout=self.aspp_dropout, classes=num_classes,
            **kwargs,
        )
        return SmpNet(model)


@dataclass(frozen=True)
class DeepLabV3(DeepLabV3Plus):
    """DeepLabV3 (Chen et al., 2017) from segmentation-models-pytorch on any timm encoder (stride 8)."""

    name = "deeplabv3"
    architecture = "DeepLabV3"
    output_stride: int = 8


@wssbench.hookimpl
def register_segnets(register):
    register(DeepLabLargeFOV)
    register(DeepLabV3Plus)
    register(DeepLabV3)
