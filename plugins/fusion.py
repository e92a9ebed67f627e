"""Fusion ``threshold`` (class map + saliency map against a background threshold) and ``background``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import wssbench
from wssbench.fusion_rules import ThresholdRule


@dataclass(frozen=True)
class ThresholdFusion(ThresholdRule):
    """Weighted mean of each class's class map and blurred saliency map; background below a threshold.

    See :class:`wssbench.fusion_rules.ThresholdRule` for the rule and its defaults.
    """

    name = "threshold"


@dataclass(frozen=True)
class BackgroundOnly:
    """Everything background: the floor of every table."""

    name = "background"
    needs_maps = False  # capability: the pipeline computes no class or saliency maps for it

    def __call__(self, image, labels, class_maps, saliency_maps) -> np.ndarray:
        probs = np.zeros((len(labels) + 1, *image.shape[:2]), np.float32)
        probs[0] = 1.0
        return probs


@wssbench.hookimpl
def register_fusion(register):
    register(ThresholdFusion)
    register(BackgroundOnly)
