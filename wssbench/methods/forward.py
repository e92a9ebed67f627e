"""The classifier's one forward pass of a batch, shared by the stages that can use it.

A stage that can work from it declares ``from_forward(forward, classes) -> maps (B, K, H, W)``
(see ``hookspecs``); it reads ``forward.images`` (B, 3, H, W), ``forward.features``
(B, F, h, w), ``forward.score_maps`` (B, C, h, w) and ``forward.scores`` (B, C). A saliency
method's recorded pass (``wssbench.methods.saliency.backprop.Trace``) has the same attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wssbench.classifier.model import Classifier


@dataclass
class Forward:
    images: torch.Tensor  # (B, 3, H, W)
    features: torch.Tensor  # (B, F, h, w)
    score_maps: torch.Tensor  # (B, C, h, w)
    scores: torch.Tensor  # (B, C)
    rule = None  # nothing recorded for back-propagation


def plain_forward(model: Classifier, images: torch.Tensor) -> Forward:
    """One forward pass without autograd."""
    with torch.no_grad():
        return Forward(images, *model.forward_parts(images))
