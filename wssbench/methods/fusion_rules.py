"""The threshold rule that fusion methods share: class maps and saliency maps against a
constant background score (registered as fusion ``threshold``; ``image-prior`` and ``integer-lp``
start from it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wssbench.results.curve import DEFAULT_GRID, check_grid


def normalise_saliency(maps: np.ndarray, sigma: float, quantile: float) -> np.ndarray:
    """Blur each raw saliency map (K, H, W) and scale it to [0, 1] by a robust maximum.

    Raw back-propagation maps are sparse speckle: a Gaussian blur of ``sigma`` times the
    image's shorter side turns them into region evidence; dividing by the ``quantile`` of the
    blurred map (instead of its maximum) keeps one hot pixel from flattening the rest.
    """
    from scipy.ndimage import gaussian_filter  # here, so that listing the plugins stays fast

    out = np.empty_like(maps, dtype=np.float32)
    s = sigma * min(maps.shape[1:])
    for k, m in enumerate(maps):
        m = gaussian_filter(m.astype(np.float32), s) if s > 0 else m.astype(np.float32)
        top = np.quantile(m, quantile)
        out[k] = np.clip(m / top, 0.0, 1.0) if top > 0 else 0.0
    return out


@dataclass(frozen=True)
class ThresholdRule:
    """Weighted mean of each class's class map and blurred saliency map; background below a threshold.

    For detected class k, with the class map ``C_k`` in [0, 1] and the normalised saliency map
    ``S_k`` (see ``normalise_saliency``), the foreground evidence is
    ``F_k = weight * C_k + (1 - weight) * S_k`` (just ``C_k`` or ``S_k`` when the other stage is
    off). Background evidence is the constant ``bg_threshold``, or, when the classifier has a
    background output and the pipeline passes its per-pixel probability ``background`` (H, W)
    (fusions that declare ``uses_background``), that probability: with ``fcn`` class maps (then
    the classifier's per-pixel softmax) and every class a candidate, the argmax is MIL-FCN's
    per-pixel argmax over all outputs. A pixel takes the label with
    the largest evidence; the probabilities are the evidences divided by their sum, so a
    refiner sees how sure the rule was. Defaults were chosen on the synthetic train split for
    the main job (fcn + gbp + densecrf: ``benchmarks/tune_fusion.py --refine densecrf``),
    never on val; without refinement the train optimum is bg_threshold 0.4, weight 0.25.
    """

    bg_threshold: float = 0.25
    weight: float = 0.75  # weight of the class map; 1 - weight goes to the saliency map
    sigma: float = 0.03  # saliency blur, as a fraction of the image's shorter side
    quantile: float = 0.99  # saliency maps are divided by this quantile
    # background thresholds at which the run also scores its label maps (before refiners): the
    # record's threshold curve (wssbench.results.curve); none: no curve
    curve: tuple[float, ...] | None = DEFAULT_GRID

    threshold_option = "bg_threshold"  # capability: the option ``labels_at`` sweeps

    def __post_init__(self) -> None:
        if not 0.0 < self.bg_threshold < 1.0:
            raise ValueError(f"bg_threshold must be in (0, 1), got {self.bg_threshold}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {self.weight}")
        if not 0.0 < self.quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {self.quantile}")
        if self.curve:
            check_grid(self.curve)

    def __call__(self, image, labels, class_maps, saliency_maps, background=None, background_score=None) -> np.ndarray:
        fg = self.foreground(image, labels, class_maps, saliency_maps)  # (K, H, W)
        bg = np.full((1, *fg.shape[1:]), self.bg_threshold, np.float32) if background is None else np.asarray(background, np.float32)[None]
        scores = np.concatenate([bg, fg])  # (K+1, H, W)
        return scores / np.maximum(scores.sum(0, keepdims=True), np.finfo(np.float32).tiny)  # (K+1, H, W)

    def labels_at(self, thresholds: tuple[float, ...], image, labels, class_maps, saliency_maps, background=None,
                  **extra) -> list[np.ndarray] | None:
        """The label maps (H, W) uint8 this rule gives at each background threshold in turn
        (the same argmax as ``__call__``, ties to background), from one evaluation of the
        foreground evidence; None when the background is the classifier's own probability
        (no threshold to sweep)."""
        evidence = self.threshold_evidence(image, labels, class_maps, saliency_maps, background, **extra)
        if evidence is None:
            return None
        top, label = evidence
        return [np.where(top > t, label, 0).astype(np.uint8) for t in thresholds]

    def threshold_evidence(self, image, labels, class_maps, saliency_maps, background=None,
                           **extra) -> tuple[np.ndarray, np.ndarray] | None:
        """What every threshold's label map is read from (capability, used by the threshold
        curve to score all thresholds in one pass, ``wssbench.results.metrics.confusions_at``):
        the largest foreground evidence (H, W) and its class label (H, W) uint8; a pixel is that
        class at threshold ``t`` when its evidence exceeds ``t``, background otherwise. None when
        the background is the classifier's own probability."""
        if background is not None:
            return None
        fg = self.foreground(image, labels, class_maps, saliency_maps, **extra)  # (K, H, W)
        if len(fg) == 0:
            return np.full(image.shape[:2], -np.inf, np.float32), np.zeros(image.shape[:2], np.uint8)
        values = np.concatenate([[0], np.asarray(labels)]).astype(np.uint8)
        return fg.max(0), values[fg.argmax(0) + 1]  # (H, W) each

    def foreground(self, image, labels, class_maps, saliency_maps, **extra) -> np.ndarray:
        """The foreground evidence ``F_k`` (K, H, W) float32 against which the background score is set."""
        h, w = image.shape[:2]
        evidence = []
        if class_maps is not None:
            evidence.append((self.weight if saliency_maps is not None else 1.0, class_maps))
        if saliency_maps is not None:
            s = normalise_saliency(saliency_maps, self.sigma, self.quantile)
            evidence.append((1.0 - self.weight if class_maps is not None else 1.0, s))
        fg = sum(wt * m for wt, m in evidence) if evidence else np.zeros((len(labels), h, w), np.float32)
        return np.asarray(fg, np.float32)
