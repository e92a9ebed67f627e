"""The modules behind the built-in segnets: DeepLab-LargeFOV over a timm VGG, and smp models."""

from __future__ import annotations

import torch
from torch import nn

from wssbench.errors import UsageError


class LargeFOV(nn.Module):
    """VGG features made dense (output stride 8) + fc6 (atrous) + fc7 + fc8, DeepLab style."""

    def __init__(self, features: nn.Sequential, fc6: nn.Conv2d, fc7: nn.Conv2d, num_classes: int, dropout: float):
        super().__init__()
        self.features = features
        self.fc6, self.fc7 = fc6, fc7
        self.drop6, self.drop7 = nn.Dropout(dropout), nn.Dropout(dropout)  # Caffe's DROPOUT: single units, not whole channels
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
