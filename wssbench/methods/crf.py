"""The dense CRFs of the pseudo-mask methods (pydensecrf), each with its authors' parameters.

One mean-field inference (Kraehenbuehl & Koltun 2011) with a Gaussian smoothness kernel and a
bilateral appearance kernel; the methods differ in the unary and the kernel parameters:

========== ============================== ============ ================ ==== =====================================
params     unary                          gauss sxy/c  bilat sxy/rgb/c  iter source
========== ============================== ============ ================ ==== =====================================
PSA_CRF    -log p (``unary_from_softmax``) 3 / 3       80 / 13 / 10     10   psa tool/imutils.py 200-217
IRN_CRF    labels, gt_prob 0.7             3 / 3       50 / 5 / 10      10   irn misc/imutils.py 156-170
CLIP_ES_CRF -log p                         1 / 3       67 / 3 / 4       10   CLIP-ES eval_cam_with_crf.py 84-94
========== ============================== ============ ================ ==== =====================================

(``compat`` is the kernel weight; CLIP-ES's ``pos_w``/``bi_w``.) The bilateral kernel reads the
image passed in as given: callers pass what the authors' code passes (CLIP-ES: see
``wssbench_plugins._clip_es.crf_image``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CRFParams:
    gaussian_sxy: float
    gaussian_compat: float
    bilateral_sxy: float
    bilateral_srgb: float
    bilateral_compat: float
    iterations: int = 10


PSA_CRF = CRFParams(gaussian_sxy=3, gaussian_compat=3, bilateral_sxy=80, bilateral_srgb=13, bilateral_compat=10, iterations=10)
IRN_CRF = CRFParams(gaussian_sxy=3, gaussian_compat=3, bilateral_sxy=50, bilateral_srgb=5, bilateral_compat=10, iterations=10)
CLIP_ES_CRF = CRFParams(gaussian_sxy=1, gaussian_compat=3, bilateral_sxy=67, bilateral_srgb=3, bilateral_compat=4, iterations=10)
IRN_GT_PROB = 0.7  # irn misc/imutils.py crf_inference_label(..., gt_prob=0.7)


def _infer(image: np.ndarray, unary: np.ndarray, n: int, params: CRFParams) -> np.ndarray:
    import pydensecrf.densecrf as dcrf  # the compiled extension: loaded when a CRF runs

    h, w = image.shape[:2]
    crf = dcrf.DenseCRF2D(w, h, n)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))  # (n, H*W)
    crf.addPairwiseGaussian(sxy=params.gaussian_sxy, compat=params.gaussian_compat)
    crf.addPairwiseBilateral(sxy=params.bilateral_sxy, srgb=params.bilateral_srgb,
                             rgbim=np.ascontiguousarray(image, dtype=np.uint8), compat=params.bilateral_compat)
    return np.asarray(crf.inference(params.iterations), dtype=np.float32).reshape(n, h, w)  # (n, H, W)


def crf_from_scores(image: np.ndarray, scores: np.ndarray, params: CRFParams) -> np.ndarray:
    """CRF marginals (n, H, W) from scores (n, H, W) read as probabilities: unary ``-log(clip(p,
    1e-5, 1))``, not renormalised (``unary_from_softmax``, as PSA and CLIP-ES call it on
    [bg, CAMs] stacks that do not sum to 1). ``image``: uint8 (H, W, 3)."""
    from pydensecrf.utils import unary_from_softmax  # the compiled extension: loaded when a CRF runs

    n = scores.shape[0]
    if n < 2:
        raise ValueError("a CRF needs at least two labels")
    return _infer(image, unary_from_softmax(np.ascontiguousarray(scores, dtype=np.float32)), n, params)


def crf_from_labels(image: np.ndarray, labels: np.ndarray, n_labels: int, params: CRFParams,
                    gt_prob: float = IRN_GT_PROB) -> np.ndarray:
    """CRF marginals (n_labels, H, W) from a label map (H, W) of values 0 .. n_labels - 1, each
    pixel's own label with probability ``gt_prob`` and the others sharing the rest
    (``unary_from_labels(..., zero_unsure=False)``: label 0 is a label like any other), as IRN."""
    from pydensecrf.utils import unary_from_labels  # the compiled extension: loaded when a CRF runs

    if n_labels < 2:
        raise ValueError("a CRF needs at least two labels")
    unary = unary_from_labels(np.asarray(labels, dtype=np.int64), n_labels, gt_prob=gt_prob, zero_unsure=False)
    return _infer(image, unary, n_labels, params)
