"""Refiners ``sppxl`` (probabilities averaged within superpixels) and ``sppxl-crf`` (a CRF on them)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import wssbench
from wssbench.methods.superpixels import adjacency, check_slic, segment_means, slic_segments


def mean_field(unary: np.ndarray, edges: np.ndarray, weights: np.ndarray, iterations: int) -> np.ndarray:
    """Approximate marginals (L, S) of a Potts CRF on a graph, by parallel mean-field updates.

    Energy ``E(y) = sum_s unary[y_s, s] + sum_(i,j) weights_ij * [y_i != y_j]`` over the
    ``edges`` (E, 2). Starting from ``Q = softmax(-unary)``, each iteration sets
    ``Q_s(l) ∝ exp(-unary[l, s] + sum_j weights_sj * Q_j(l))`` for all s at once.
    """
    from scipy.sparse import coo_matrix
    from scipy.special import softmax

    n = unary.shape[1]
    i, j = edges.T
    w = coo_matrix((np.r_[weights, weights], (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()  # (S, S)
    q = softmax(-unary, axis=0)  # (L, S)
    for _ in range(iterations):
        q = softmax(-unary + (w @ q.T).T, axis=0)  # (L, S)
    return q


@dataclass(frozen=True)
class SuperpixelAverage:
    """Class probabilities averaged within each SLIC superpixel (MIL-sppxl's smoothing)."""

    name = "sppxl"
    n_segments: int = 100
    compactness: float = 10.0

    def __post_init__(self) -> None:
        check_slic(self.n_segments, self.compactness)

    def __call__(self, image: np.ndarray, probs: np.ndarray) -> np.ndarray:
        segments = slic_segments(image, self.n_segments, self.compactness)  # (H, W)
        return segment_means(probs, segments)[:, segments].astype(np.float32)  # (K+1, H, W)


@dataclass(frozen=True)
class SuperpixelCRF:
    """CRF over the SLIC superpixel adjacency graph: mean unaries, colour-weighted Potts pairwise, mean-field.

    Nodes are the superpixels s, labels the K+1 rows of ``probs``. The unary of label l is
    ``-log mean_s p_l`` (clipped at 1e-5, as pydensecrf does), and adjacent superpixels i, j
    (4-neighbourhood) pay ``pairwise * exp(-|rgb_i - rgb_j|^2 / (2 srgb^2))`` for differing
    labels, rgb being mean colours (0..255). Inference is mean-field (:func:`mean_field`,
    ``iterations`` parallel updates): on a graph of a few hundred nodes an update is one
    sparse product, and it yields approximate marginals, so the output stays probabilities
    (painted back to the pixels of each superpixel) and another refiner can follow. ICM
    would give hard labels and stop at its first local minimum, and no alpha-expansion
    library (PyMaxflow, gco) is installed. Defaults are untuned.
    """

    name = "sppxl-crf"
    n_segments: int = 100
    compactness: float = 10.0
    pairwise: float = 1.0  # Potts weight between identical colours
    srgb: float = 20.0  # colour scale of the pairwise weight, levels of 0..255
    iterations: int = 10

    def __post_init__(self) -> None:
        check_slic(self.n_segments, self.compactness)
        if self.pairwise < 0:
            raise ValueError(f"pairwise must be non-negative, got {self.pairwise}")
        if self.srgb <= 0:
            raise ValueError(f"srgb must be positive, got {self.srgb}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")

    def __call__(self, image: np.ndarray, probs: np.ndarray) -> np.ndarray:
        segments = slic_segments(image, self.n_segments, self.compactness)  # (H, W)
        unary = -np.log(np.maximum(segment_means(probs, segments), 1e-5))  # (K+1, S)
        rgb = segment_means(np.moveaxis(image, -1, 0).astype(np.float64), segments)  # (3, S)
        edges = adjacency(segments)  # (E, 2)
        distance2 = ((rgb[:, edges[:, 0]] - rgb[:, edges[:, 1]]) ** 2).sum(0)  # (E,)
        weights = self.pairwise * np.exp(-distance2 / (2 * self.srgb**2))  # (E,)
        q = mean_field(unary, edges, weights, self.iterations)  # (K+1, S)
        return q[:, segments].astype(np.float32)  # (K+1, H, W)


@wssbench.hookimpl
def register_refiners(register):
    register(SuperpixelAverage)
    register(SuperpixelCRF)
