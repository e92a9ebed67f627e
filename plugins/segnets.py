"""Segmentation networks: ``deeplab-largefov`` (VGG, the poster era's) and DeepLab v3 / v3+ (smp)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

import wssbench
from wssbench.errors import DataError, OfflineError, UsageError
from wssbench_plugins.backbones import TimmBackbones, _hub_reachable


class LargeFOV(nn.Module):
    """VGG features made dense (output stride 8) + fc6 (atrous) + fc7 + fc8, DeepLab style."""

    def __init__(self, features: nn.Sequential, fc6: nn.Conv2d, fc7: nn.Conv2d, num_classes: int, dropout: float):
        super().__init__()
        self.features = features
        self.fc6, self.fc7 = fc6, fc7
        self.drop6, self.drop7 = nn.Dropout2d(dropout), nn.Dropout2d(dropout)
        self.fc8 = nn.Conv2d(fc7.out_channels, num_classes, 1)
        nn.init.normal_(self.fc8.weight, std=0.01)
        nn.init.zeros_(self.fc8.bias)

    def new_parameters(self) -> list[nn.Parameter]:
        return list(self.fc8.parameters())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.features(images)  # (B, 512, H/8, W/8)
        x = self.drop6(torch.relu(self.fc6(x)))
        x = self.drop7(torch.relu(self.fc7(x)))
        return self.fc8(x)  # (B, N, H/8, W/8)


def densify_vgg(features: nn.Sequential) -> nn.Sequential:
    """DeepLab's surgery on VGG's conv layers: output stride 8 instead of 32.

    pool1-3 become 3x3 stride 2 padding 1 (as in DeepLab's prototxt), pool4 and pool5 3x3
    stride 1 padding 1, and the convolutions after pool4 (conv5_x) dilation 2.
    """
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    if len(pools) != 5:
        raise UsageError(f"deeplab-largefov needs a VGG (5 max-pools), got {len(pools)} pools")
    layers = list(features)
    for rank, i in enumerate(pools):
        layers[i] = nn.MaxPool2d(3, stride=2 if rank < 3 else 1, padding=1)
    for m in layers[pools[3] + 1 : pools[4]]:
        if isinstance(m, nn.Conv2d):
            m.dilation, m.padding = (2, 2), (2, 2)
    return nn.Sequential(*layers)


def decimate(conv: nn.Conv2d | None, out_channels: int, in_channels: int, kernel: int, dilation: int) -> nn.Conv2d:
    """A new conv (``kernel``, ``dilation``, same-size padding) initialised, when ``conv`` is given,
    by decimating its weights: every k-th filter and input, kernel taps spread evenly, as
    DeepLab-LargeFOV made its 1024 x 3 x 3 fc6 from VGG's 4096 x 7 x 7."""
    new = nn.Conv2d(in_channels, out_channels, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
    if conv is not None:
        with torch.no_grad():
            so, si = conv.out_channels // out_channels, conv.in_channels // in_channels
            taps = torch.linspace(0, conv.kernel_size[0] - 1, kernel).round().long()
            w = conv.weight[::so][:out_channels, ::si][:, :in_channels]
            new.weight.copy_(w[:, :, taps][:, :, :, taps])
            new.bias.copy_(conv.bias[::so][:out_channels])
    return new


@dataclass(frozen=True)
class DeepLabLargeFOV:
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

    @property
    def _cfg(self):
        return timm.get_pretrained_cfg(self.encoder) if timm.is_model(self.encoder) else None

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(getattr(self._cfg, "mean", None) or (0.485, 0.456, 0.406))

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(getattr(self._cfg, "std", None) or (0.229, 0.224, 0.225))

    def build(self, num_classes: int, weights: str | None = None) -> nn.Module:
        vgg, _ = TimmBackbones().build(self.encoder, pretrained=self.pretrained, weights=weights)
        initialised = self.pretrained or weights is not None
        source = getattr(vgg, "pre_logits", None)
        fc6 = decimate(source.fc1 if initialised and source is not None else None, self.channels, 512, self.fc6_kernel, self.fc6_dilation)
        fc7 = decimate(source.fc2 if initialised and source is not None else None, self.channels, self.channels, 1, 1)
        return LargeFOV(densify_vgg(vgg.features), fc6, fc7, num_classes, self.dropout)


class SmpNet(nn.Module):
    """An smp model with its encoder marked as ImageNet-initialised, the rest as new."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def new_parameters(self) -> list[nn.Parameter]:
        encoder = {id(p) for p in self.model.encoder.parameters()}
        return [p for p in self.model.parameters() if id(p) not in encoder]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)  # (B, N, H, W)


@dataclass(frozen=True)
class DeepLabV3Plus:
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
        if self.output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {self.output_stride}")
        if not timm.is_model(self.encoder):
            raise ValueError(f"unknown timm encoder '{self.encoder}'")

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(getattr(timm.get_pretrained_cfg(self.encoder), "mean", None) or (0.485, 0.456, 0.406))

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(getattr(timm.get_pretrained_cfg(self.encoder), "std", None) or (0.229, 0.224, 0.225))

    def build(self, num_classes: int, weights: str | None = None) -> nn.Module:
        import segmentation_models_pytorch as smp

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
