"""Bottom-up salient-object detectors (``frequency-tuned``, ``spectral-residual``): no learning,
no labels, one map per image. Registered by :mod:`wssbench_plugins.salient`.

STC (Wei et al., TPAMI 2016) trains its first network on the saliency maps of simple images,
computed by DRFI (Jiang et al., CVPR 2013), a regional detector whose random-forest regressor
was trained on MSRA-B and whose release is MATLAB/C++ only. wssbench substitutes a published,
fully specified detector (recorded as a departure of the ``stc`` preset: the learned U2-Net-p
of :mod:`wssbench_plugins._u2netp` by default, or one of these two, which need no mask at all):

* ``frequency-tuned`` (Achanta, Hemami, Estrada & Suesstrunk, CVPR 2009): in
  CIELAB, ``S(x, y) = || I_mu - I_whc(x, y) ||``, with ``I_mu`` the image's mean Lab vector and
  ``I_whc`` the Lab image blurred by the 5x5 separable binomial kernel ``[1, 4, 6, 4, 1] / 16``
  (borders reflected). It was designed for salient-object segmentation: uniformly highlighted
  objects with full-resolution boundaries, as DRFI's maps.
* ``spectral-residual`` (Hou & Zhang, CVPR 2007): on the grey image downsampled to 64 px on its
  long side, ``R = log|F| - h3 * log|F|`` (``h3`` the 3x3 mean filter),
  ``S = g * |F^-1[exp(R + i angle(F))]|^2`` with ``g`` a Gaussian of sigma 8 (the paper's
  values; scipy's filters, borders reflected), resized back to the image bilinearly.

:func:`wssbench.segmentation.stc.saliency_map` normalises any detector's map to [0, 1]
(min-max, as both papers do before thresholding); a constant map is all 0.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.color import rgb2gray, rgb2lab
from skimage.transform import resize

BINOMIAL5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def frequency_tuned(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float64 (H, W): Achanta et al.'s saliency, unnormalised (Lab units)."""
    lab = rgb2lab(image)  # (H, W, 3)
    blurred = ndimage.convolve1d(ndimage.convolve1d(lab, BINOMIAL5, axis=0, mode="reflect"), BINOMIAL5, axis=1, mode="reflect")
    mean = lab.reshape(-1, 3).mean(0)  # (3,)
    return np.linalg.norm(blurred - mean, axis=-1)  # (H, W)


def spectral_residual(image: np.ndarray, side: int = 64, sigma: float = 8.0) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float64 (H, W): Hou & Zhang's saliency, unnormalised."""
    grey = rgb2gray(image)  # (H, W) in [0, 1]
    h, w = grey.shape
    scale = side / max(h, w)
    small = resize(grey, (max(1, round(h * scale)), max(1, round(w * scale))), order=1, anti_aliasing=True)  # (h', w')
    spectrum = np.fft.fft2(small)
    log_amplitude = np.log(np.abs(spectrum) + 1e-12)
    residual = log_amplitude - ndimage.uniform_filter(log_amplitude, size=3, mode="reflect")
    s = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    s = ndimage.gaussian_filter(s, sigma, mode="reflect")
    return resize(s, (h, w), order=1)  # (H, W)
