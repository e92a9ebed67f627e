"""Fusion ``threshold`` (class map + saliency map against a background threshold), ``image-prior``
(the same, weighted by the image-level class probabilities) and ``background``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import wssbench
from wssbench.methods.fusion_rules import ThresholdRule


@dataclass(frozen=True)
class ThresholdFusion(ThresholdRule):
    """Weighted mean of each class's class map and blurred saliency map; background below a threshold.

    See :class:`wssbench.methods.fusion_rules.ThresholdRule` for the rule and its defaults.
    """

    name = "threshold"
    uses_background = True  # capability: called with the classifier's ``background`` probability (or None)


@dataclass(frozen=True)
class ImagePriorFusion(ThresholdRule):
    """Image-level prior (Pinheiro & Collobert 2015's "ILP"): pixel class probabilities times image-level ones.

    MIL-ILP multiplies each pixel's class probability by the image-level probability of the
    class and takes the argmax: ``p'_k(x) = p_k(x) * P_k`` (their ``P`` is the softmax of the
    log-sum-exp pooled scores over 21 classes, background included). The pixel probabilities
    ``p_k(x)`` are the threshold rule's (:class:`wssbench.methods.fusion_rules.ThresholdRule`).

    * A classifier with a background output (``--background``, the ``mil-sppxl`` preset): the
      rule's background row is the classifier's per-pixel background probability, and
      ``P = softmax(S_bg, S_1 .. S_K)`` over the pooled background score and the candidates'
      scores, as the paper; with ``--classes-from all`` (every class a candidate, the preset)
      and ``fcn`` class maps this is exactly ``argmax_k p_k(x) P_k`` over all 21 classes.
    * Without one (wssbench's multi-label classifiers, the poster presets): background at
      ``bg_threshold``, ``P_k = sigmoid(S_k)`` for a detected class and background's prior 1
      (it is in every image): a choice, as the paper's prior needs a background output.

    The products are renormalised per pixel. No threshold on ``P`` is applied (none verified).
    """

    name = "image-prior"
    needs_scores = True  # capability: called with ``scores``, the classifier scores (K,) of ``labels``
    uses_background = True  # capability: called with ``background`` (H, W) and ``background_score`` (or None)

    def __call__(self, image, labels, class_maps, saliency_maps, scores=None, background=None, background_score=None) -> np.ndarray:
        if scores is None:
            raise ValueError("image-prior fusion needs the image-level scores of the labels (scores=...)")
        probs = super().__call__(image, labels, class_maps, saliency_maps, background)  # (K+1, H, W)
        weighted = probs * self.image_prior(scores, background_score)[:, None, None]
        return weighted / weighted.sum(0, keepdims=True)  # (K+1, H, W)

    @staticmethod
    def image_prior(scores, background_score=None) -> np.ndarray:
        """The image-level probabilities (K+1,): background first."""
        if background_score is not None:
            from scipy.special import softmax

            return softmax(np.r_[background_score, np.asarray(scores, np.float64)]).astype(np.float32)
        return np.r_[1.0, 1.0 / (1.0 + np.exp(-np.asarray(scores, np.float64)))].astype(np.float32)

    def foreground(self, image, labels, class_maps, saliency_maps, scores=None, background_score=None) -> np.ndarray:
        """The threshold rule's evidence times each class's prior (background's is 1 without a
        background output: the threshold curve sweeps the constant against these)."""
        fg = super().foreground(image, labels, class_maps, saliency_maps)
        if scores is None:
            return fg
        return fg * self.image_prior(scores, background_score)[1:, None, None]


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
