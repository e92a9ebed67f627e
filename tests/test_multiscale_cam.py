"""Multi-scale and flip class maps (``-O classmap.scales=... -O classmap.flip=true``) for fcn, cam,
gradcam and the variants: PSA's and IRN's order of operations re-derived literally here, the
default (one scale, no flip) unchanged, flips of a mirror-symmetric case, the shared forward
pass only at the default.

The re-derivation follows PSA ``infer_cls.py`` and IRN ``step/make_cam.py``: each scale's image
resized with PIL's bicubic filter to ``round(size * s)``, ``forward_cam`` (the score maps of
the classes, then a ReLU), bilinear upsampling to the image (align_corners=False), the flipped
pass mirrored back, the sum, each class divided by its maximum (+ 1e-5 there, ``EPS`` here).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from wssbench.classifier.model import Classifier, upsample
from wssbench.errors import UsageError
from wssbench.host.registry import build_registry
from wssbench.methods.forward import plain_forward
from wssbench.methods.maps import max_normalise, rescale, select
from wssbench_plugins.cam import CAM, GradCAM, cam_raw, grad_cam_raw
from wssbench_plugins.cam_variants import ScoreCAM, score_cam_raw
from wssbench_plugins.classmaps import FCNScoreMaps

pytestmark = pytest.mark.usefixtures("one_thread")

REGISTRY = build_registry()
CLASSES = torch.tensor([[3, 1], [0, -1]])  # (B, K), one padding entry
EPS = 1e-8  # PSA and IRN add 1e-5 to the maximum; wssbench 1e-8, so that each peak is 1 (gradient maps are small)
WITH_SCALES = ["fcn", "cam", "gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "scorecam"]


@lru_cache
def resnet() -> Classifier:
    torch.manual_seed(0)
    backbone = timm.create_model("resnet10t", pretrained=False, num_classes=0, global_pool="")
    return Classifier(backbone, 512, 8, pooling="lse").eval()


def images(h: int = 40, w: int = 56) -> torch.Tensor:
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(3))  # (B, 3, H, W)


def pil_bicubic(x: torch.Tensor, s: float) -> torch.Tensor:
    """PSA's and IRN's resizing, channel by channel on float images: PIL BICUBIC to round(size * s)."""
    h, w = x.shape[-2:]
    size = (round(w * s), round(h * s))
    if size == (w, h):
        return x
    out = [[np.asarray(Image.fromarray(c.numpy(), mode="F").resize(size, Image.BICUBIC)) for c in im] for im in x]
    return torch.from_numpy(np.array(out))


def psa_multiscale(forward_cam, x: torch.Tensor, scales, flip: bool, mirror_back: bool = True) -> torch.Tensor:
    total = 0
    for s in scales:
        for mirrored in (False, True) if flip else (False,):
            xs = pil_bicubic(x, s)
            cam = forward_cam(xs.flip(-1) if mirrored else xs)  # (B, K, h, w), ReLU'd
            cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
            total = total + (cam.flip(-1) if mirrored and mirror_back else cam)
    return total / (total.amax(dim=(2, 3), keepdim=True) + EPS)


def test_rescale_is_pil_bicubic():
    x = images()
    for s in (0.5, 0.75, 1.5, 2.0):
        torch.testing.assert_close(rescale(x, s), pil_bicubic(x, s), rtol=0, atol=2e-5)
    assert rescale(x, 1.0) is x
    assert rescale(torch.zeros(1, 3, 5, 7), 0.5).shape[-2:] == (2, 4)  # round(2.5) = 2, round(3.5) = 4, as Python's round


@pytest.mark.parametrize("producer", [FCNScoreMaps, CAM])
def test_order_of_operations_is_psa_irn(producer):
    model, x = resnet(), images()
    scales = (1.0, 0.5, 1.5, 2.0)

    def forward_cam(xs):
        with torch.no_grad():
            return select(model.score_maps(xs), CLASSES).clamp(min=0)  # (B, K, h, w)

    expected = psa_multiscale(forward_cam, x, scales, flip=True)
    out = producer(scales="1.0,0.5,1.5,2.0", flip=True)(model, x, CLASSES)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)

    # the test tells the orders apart: a ReLU after the sum, or no mirroring back, differ
    sum_then_relu = psa_multiscale(lambda xs: select(model.score_maps(xs), CLASSES).detach(), x, scales, flip=True)
    assert (max_normalise(sum_then_relu) - out).abs().max() > 1e-2
    not_mirrored_back = psa_multiscale(forward_cam, x, scales, flip=True, mirror_back=False)
    assert (not_mirrored_back - out).abs().max() > 1e-2


def test_gradient_methods_per_pass_then_sum():
    """gradcam and its variants: each pass's ReLU'd map, upsampled, mirrored back, summed, max-normalised."""
    model, x = resnet(), images()
    expected = psa_multiscale(lambda xs: grad_cam_raw(model, xs, CLASSES, layer="layer3"), x, (1.0, 0.5), flip=True)
    out = GradCAM(layer="layer3", scales="1.0,0.5", flip=True)(model, x, CLASSES)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_default_is_one_pass():
    """scales=1.0, flip=false: today's maps, bit for bit: one pass, upsampled, divided by the max."""
    model, x = resnet(), images()
    forward = plain_forward(model, x)
    size = x.shape[-2:]
    fcn = FCNScoreMaps()
    today_fcn = max_normalise(upsample(select(forward.score_maps, CLASSES), size))  # upsampled, then clipped
    assert fcn.uses_forward and CAM().uses_forward
    torch.testing.assert_close(fcn(model, x, CLASSES), today_fcn, rtol=0, atol=0)
    torch.testing.assert_close(fcn.from_forward(model, forward, CLASSES), today_fcn, rtol=0, atol=0)
    today_cam = max_normalise(upsample(cam_raw(model, x, CLASSES), size))  # clipped, then upsampled
    torch.testing.assert_close(CAM()(model, x, CLASSES), today_cam, rtol=0, atol=0)
    torch.testing.assert_close(CAM().from_forward(model, forward, CLASSES), today_cam, rtol=0, atol=0)
    today_gradcam = max_normalise(upsample(grad_cam_raw(model, x, CLASSES, "layer3"), size))
    torch.testing.assert_close(GradCAM(layer="layer3")(model, x, CLASSES), today_gradcam, rtol=0, atol=0)
    # fcn's one pass clips after upsampling, its several passes before: on maps of mixed signs they differ
    pooled = Classifier(nn.Sequential(nn.Identity(), nn.AvgPool2d(4)), 3, 3).eval()  # score maps: pooled image channels
    with torch.no_grad():
        pooled.head.weight.copy_(torch.eye(3)[:, :, None, None])
    x, classes = images(16, 16), torch.tensor([[0, 1], [2, -1]])
    assert (fcn(pooled, x, classes) - FCNScoreMaps(scales="1.0,1.0")(pooled, x, classes)).abs().max() > 1e-2


@pytest.mark.parametrize("name", WITH_SCALES)
def test_uses_forward_only_at_default(name):
    for options in ({"scales": "1.0,0.5"}, {"flip": "true"}, {"scales": "0.5"}):
        assert not getattr(REGISTRY.create("classmap", name, **options), "uses_forward", False)


def mirror_model() -> Classifier:
    """A mirror-equivariant classifier: a 3x3 convolution with left-right symmetric kernels and
    symmetric padding, a ReLU, 4x4 average pooling (image sides multiples of 4), a 1x1 head.
    A symmetric input alone would not do: a strided CNN's maps of a symmetric image are not
    symmetric."""
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 6, kernel_size=3, padding=1)
    model = Classifier(nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(4)), 6, 4, pooling="lse").eval()
    with torch.no_grad():
        conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)
        model.head.weight.abs_()  # positive scores on the non-negative features: no map all zero
    return model


@pytest.mark.parametrize("name", WITH_SCALES)
def test_flip_of_symmetric_input_changes_nothing(name):
    model = mirror_model()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    x = (x + x.flip(-1)) / 2  # left-right symmetric
    classes = torch.tensor([[0, 2], [3, -1]])
    options = {"layer": "0"} if name != "fcn" and name != "cam" else {}
    plain = REGISTRY.create("classmap", name, scales="1.0,0.5", **options)
    flipped = REGISTRY.create("classmap", name, scales="1.0,0.5", flip="true", **options)
    out = flipped(model, x, classes)
    torch.testing.assert_close(out, plain(model, x, classes), rtol=1e-4, atol=1e-4)
    assert (out.amax(dim=(2, 3))[classes >= 0] > 0.99).all(), "no map is all zero"


@pytest.mark.slow
def test_scorecam_scales_use_masked_passes_at_each_scale():
    model, x = resnet(), images(32, 32)
    expected = psa_multiscale(lambda xs: score_cam_raw(model, xs, CLASSES, "layer3"), x, (1.0, 1.5), flip=False)
    out = ScoreCAM(layer="layer3", scales="1.0,1.5")(model, x, CLASSES)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_fcn_scales_refused_with_background_output():
    model = Classifier(nn.Sequential(nn.Conv2d(3, 4, 1), nn.AvgPool2d(4)), 4, 3, background=True).eval()
    with pytest.raises(UsageError, match="background"):
        FCNScoreMaps(scales="1.0,0.5")(model, torch.zeros(1, 3, 16, 16), torch.tensor([[0]]))
    assert FCNScoreMaps()(model, torch.zeros(1, 3, 16, 16), torch.tensor([[0]])).shape == (1, 1, 16, 16)


def test_bad_scales():
    for name in WITH_SCALES:
        with pytest.raises(UsageError, match="scales"):
            REGISTRY.create("classmap", name, scales="1.0,0")
