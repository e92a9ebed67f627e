"""Fusion ``threshold`` (class map + saliency map against a background threshold), ``image-prior``
(the same, weighted by the image-level class probabilities) and ``background``."""

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
class ImagePriorFusion(ThresholdRule):
    """Image-level prior (Pinheiro & Collobert 2015's "ILP"): pixel class probabilities times image-level ones.

    MIL-ILP multiplies each pixel's class probability by the image-level probability of the
    class and takes the argmax: ``p'_k(x) = p_k(x) * P_k`` (their ``P`` is the softmax of the
    log-sum-exp pooled scores over 21 classes, background included). Here the pixel
    probabilities ``p_k(x)`` are the threshold rule's (:class:`wssbench.fusion_rules.ThresholdRule`,
    background at ``bg_threshold``) and the image-level probability of a detected class is the
    sigmoid of its classifier score, ``P_k = sigmoid(S_k)``: wssbench's classifiers are
    multi-label with no background output, so background's prior is 1 (it is in every image).
    The products are renormalised per pixel. Choice, not verified against their code: the
    paper's background prior and any threshold on ``P`` (none is applied here).
    """

    name = "image-prior"
    needs_scores = True  # capability: called with ``scores``, the classifier scores (K,) of ``labels``

    def __call__(self, image, labels, class_maps, saliency_maps, scores=None) -> np.ndarray:
        if scores is None:
            raise ValueError("image-prior fusion needs the image-level scores of the labels (scores=...)")
        probs = super().__call__(image, labels, class_maps, saliency_maps)  # (K+1, H, W)
        prior = np.r_[1.0, 1.0 / (1.0 + np.exp(-np.asarray(scores, np.float64)))].astype(np.float32)  # (K+1,)
        weighted = probs * prior[:, None, None]
        return weighted / weighted.sum(0, keepdims=True)  # (K+1, H, W)


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
    register(ImagePriorFusion)
    register(BackgroundOnly)
