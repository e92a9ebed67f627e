"""Salient-object detectors ``u2netp`` (learned, from DUTS masks), ``frequency-tuned`` and
``spectral-residual`` (bottom-up): what STC's first network trains on, in place of DRFI."""

from __future__ import annotations

from dataclasses import dataclass

import wssbench

PIXEL_MASKS = {"mark": "S", "what": "salient-object detector U2-Net-p (trained on DUTS-TR masks)"}


@dataclass(frozen=True)
class U2NetP:
    """U2-Net-p (Qin et al., Pattern Recognition 2020), trained on DUTS-TR salient-object masks; needs the 'salient' extra."""

    name = "u2netp"
    priors = (PIXEL_MASKS,)  # capability: what entered besides image labels (the leaderboard's badge)

    def __call__(self, image):
        from wssbench_plugins._u2netp import u2netp_saliency  # onnxruntime: only when a map is made

        return u2netp_saliency(image)


@dataclass(frozen=True)
class FrequencyTuned:
    """Frequency-tuned saliency (Achanta et al., CVPR 2009): the Lab image's distance to its mean colour, bottom-up."""

    name = "frequency-tuned"

    def __call__(self, image):
        from wssbench_plugins._bottom_up import frequency_tuned  # scikit-image: only when a map is made

        return frequency_tuned(image)


@dataclass(frozen=True)
class SpectralResidual:
    """Spectral-residual saliency (Hou & Zhang, CVPR 2007): the log-spectrum's residual, bottom-up."""

    name = "spectral-residual"

    def __call__(self, image):
        from wssbench_plugins._bottom_up import spectral_residual  # scikit-image: only when a map is made

        return spectral_residual(image)


@wssbench.hookimpl
def register_salient(register):
    register(U2NetP)
    register(FrequencyTuned)
    register(SpectralResidual)
