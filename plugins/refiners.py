"""Refiner ``densecrf``: the fully connected CRF (pydensecrf). No refinement is ``--refine none``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_softmax

import wssbench


@dataclass(frozen=True)
class DenseCRF:
    """Fully connected CRF on the class probabilities (Kraehenbuehl & Koltun 2011); psa/SEAM defaults.

    Mean-field inference with a Gaussian smoothness kernel (``gaussian_sxy``,
    ``gaussian_compat``) and a bilateral appearance kernel (``bilateral_sxy`` in pixels,
    ``bilateral_srgb`` in colour levels, ``bilateral_compat``), as psa, SEAM and ToCo use on
    CAM probabilities: 3/3 and 80/13/10, 10 iterations.
    """

    name = "densecrf"
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 80.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 10.0
    iterations: int = 10

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")
        if min(self.gaussian_sxy, self.bilateral_sxy, self.bilateral_srgb) <= 0:
            raise ValueError("kernel widths (sxy, srgb) must be positive")

    def __call__(self, image: np.ndarray, probs: np.ndarray) -> np.ndarray:
        n, h, w = probs.shape
        if n < 2:
            return probs
        crf = dcrf.DenseCRF2D(w, h, n)
        crf.setUnaryEnergy(unary_from_softmax(np.ascontiguousarray(probs, np.float32)))  # (n, H*W) -log p
        crf.addPairwiseGaussian(sxy=self.gaussian_sxy, compat=self.gaussian_compat)
        crf.addPairwiseBilateral(
            sxy=self.bilateral_sxy, srgb=self.bilateral_srgb,
            rgbim=np.ascontiguousarray(image), compat=self.bilateral_compat,
        )
        q = crf.inference(self.iterations)
        return np.asarray(q, dtype=np.float32).reshape(n, h, w)  # (K+1, H, W)


@wssbench.hookimpl
def register_refiners(register):
    register(DenseCRF)
