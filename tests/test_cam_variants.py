"""Class maps ``gradcampp``, ``xgradcam``, ``layercam``, ``hirescam``, ``scorecam`` against pytorch-grad-cam.

The oracle is the library's per-layer map, ``get_cam_image(...)`` on the activations and
gradients its own hooks recorded for one target class per image: the map before the library's
ReLU, min-max scaling and resizing. Ours, before wssbench's normalisation, is
``combine(A, G)`` on ``layer_gradients`` (one forward pass, all K classes) and, after the ReLU
and the padding mask, the plugin's raw maps; they must agree per class to float tolerance.
The plugin's output must be the library's ReLU'd map taken through wssbench's own
normalisation (bilinear upsampling, division by the maximum): the one the library uses
instead (min-max, cv2 resizing) is not compared, as the issue asks.

Random weights, ``pretrained=False``: a timm ResNet-10t at 48 px (last features 2x2,
``layer3`` 3x3); Score-CAM, one forward pass per channel, on ``layer2`` (128 channels, 4x4)
and ``layer3`` at 32 px and on the last features (512 channels) at 64 px (marked slow). Three
requested classes per image, one of them padding.
"""

from __future__ import annotations

from copy import deepcopy
from functools import lru_cache

import numpy as np
import pytest
import timm
import torch

from wssbench.classifier.model import Classifier, upsample
from wssbench.host.registry import build_registry
from wssbench.methods.maps import layer_activations, layer_gradients, max_normalise
from wssbench_plugins.cam_variants import (
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
    grad_cam_pp,
    hires_cam,
    layer_cam,
    score_cam_raw,
    xgrad_cam,
)

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = torch.tensor([[3, 1, 5], [0, 7, -1]])  # (B, K), one padding entry
GRADIENT_METHODS = {  # ours: (plugin, combine); the library's class
    "gradcampp": (GradCAMPlusPlus, grad_cam_pp, "GradCAMPlusPlus"),
    "xgradcam": (XGradCAM, xgrad_cam, "XGradCAM"),
    "layercam": (LayerCAM, layer_cam, "LayerCAM"),
    "hirescam": (HiResCAM, hires_cam, "HiResCAM"),
}


@lru_cache
def resnet(pooling: str = "gap") -> Classifier:
    torch.manual_seed(0)
    backbone = timm.create_model("resnet10t", pretrained=False, num_classes=0, global_pool="")
    return Classifier(backbone, 512, 8, pooling=pooling).eval()


def images(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))  # (B, 3, H, W)


def library_maps(method: str, model: Classifier, x: torch.Tensor, layer: str) -> np.ndarray:
    """The library's per-layer maps (B, K, h, w) before its ReLU, one call per class column k.

    Each call hooks ``layer`` of a copy of the model (the library calls backward(), leaving
    .grad on the parameters), runs it with one ClassifierOutputTarget per image, then asks
    ``get_cam_image`` for the map of the activations and gradients it recorded.
    """
    copy = deepcopy(model)
    module = copy.features.get_submodule(layer)
    cam = getattr(pytorch_grad_cam, method)(copy, [module])
    columns = []
    for k in range(CLASSES.shape[1]):
        targets = [ClassifierOutputTarget(int(c)) for c in CLASSES[:, k].clamp(min=0)]
        if method == "ScoreCAM":  # its weights come with get_cam_image: only the hooked forward pass here
            cam.activations_and_grads(x)
        else:
            cam(x, targets)
        recorded = cam.activations_and_grads
        acts = recorded.activations[0].numpy()
        grads = recorded.gradients[0].numpy() if recorded.gradients else None  # Score-CAM records none
        columns.append(cam.get_cam_image(x, module, targets, acts, grads, False))  # (B, h, w)
    cam.activations_and_grads.release()
    return np.stack(columns, axis=1)  # (B, K, h, w)


def assert_close_where_requested(ours: torch.Tensor, expected: np.ndarray) -> None:
    """Per class, where a class is requested: equal to float tolerance relative to the map's scale."""
    ours = ours.detach().numpy()
    for b, k in zip(*np.nonzero(CLASSES.numpy() >= 0)):
        scale = np.abs(expected[b, k]).max()
        np.testing.assert_allclose(ours[b, k], expected[b, k], rtol=1e-4, atol=1e-5 * scale + 1e-12,
                                   err_msg=f"image {b}, class {int(CLASSES[b, k])}")


@pytest.mark.parametrize("layer", ["", "layer3"])
@pytest.mark.parametrize("pooling", ["gap", "lse"])
@pytest.mark.parametrize("name", sorted(GRADIENT_METHODS))
def test_gradient_variants_match_pytorch_grad_cam(name, pooling, layer):
    plugin, combine, library_name = GRADIENT_METHODS[name]
    model, x = resnet(pooling), images(48)
    expected = library_maps(library_name, model, x, layer)  # (B, K, h, w) before the ReLU

    a, g = layer_gradients(model, x, CLASSES, layer, name)  # one forward pass, all classes
    assert g.shape[:3] == (2, 3, a.shape[1])
    before_relu = combine(a, g)  # (B, K, h, w)
    assert before_relu.shape == expected.shape
    assert_close_where_requested(before_relu, expected)

    out = plugin(layer=layer)(model, x, CLASSES)  # (B, K, H, W)
    reference = max_normalise(upsample(torch.from_numpy(np.maximum(expected, 0)), x.shape[-2:]))
    reference[CLASSES < 0] = 0
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layer, size", [
    ("layer2", 32), pytest.param("layer3", 32, marks=pytest.mark.slow), pytest.param("", 64, marks=pytest.mark.slow),  # maps of 4x4, 2x2, 2x2
])
def test_scorecam_matches_pytorch_grad_cam(layer, size):
    model, x = resnet("lse"), images(size)
    expected = library_maps("ScoreCAM", model, x, layer)  # (B, K, h, w) before the ReLU

    raw = score_cam_raw(model, x, CLASSES, layer, batch_size=37)  # batches that straddle the two images
    assert_close_where_requested(raw, np.maximum(expected, 0))
    assert (raw[CLASSES < 0] == 0).all()

    out = ScoreCAM(layer=layer, batch_size=1000)(model, x, CLASSES)
    reference = max_normalise(upsample(torch.from_numpy(np.maximum(expected, 0)), x.shape[-2:]))
    reference[CLASSES < 0] = 0
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)


def test_scorecam_weights_by_hand():
    """Two channels, one of them the image's only bright half: the softmax of the masked scores."""
    from torch import nn

    conv = nn.Conv2d(3, 2, kernel_size=1, bias=False)
    model = Classifier(conv, 2, 2).eval()  # features = two 1x1 mixes of the channels, no pooling
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])[:, :, None, None])
        model.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]])[:, :, None, None])
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0] = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # channel 0: left half on
    x[0, 1] = torch.tensor([[0.0, 3.0], [0.0, 1.0]])  # channel 1: right half, 3 above 1
    classes = torch.tensor([[0, 1]])
    a = layer_activations(model, x, "", "scorecam")  # = x[:, :2]
    masks = torch.stack([x[0, 0], x[0, 1] / 3])  # each channel min-max normalised
    # scores of class c on image * mask_f: gap of head(conv(x * mask_f))
    s = torch.tensor([[(x[0, 0] * masks[f]).mean(), 2 * (x[0, 1] * masks[f]).mean()] for f in range(2)])  # (F, C)
    w = s.softmax(dim=0).T  # (K=C, F)
    expected = torch.einsum("kf,fhw->khw", w, a[0]).clamp(min=0)[None]
    torch.testing.assert_close(score_cam_raw(model, x, classes), expected)


def test_one_pass_matches_one_class_at_a_time():
    """All K classes from one graph equal K separate backward passes, one class each."""
    model, x = resnet("lse"), images(48)
    a, g = layer_gradients(model, x, CLASSES, "layer3", "test")
    for k in range(CLASSES.shape[1]):
        a1, g1 = layer_gradients(model, x, CLASSES[:, k:k + 1], "layer3", "test")
        torch.testing.assert_close(a1, a)
        torch.testing.assert_close(g1[:, 0], g[:, k])


def test_registered_with_options():
    registry = build_registry()
    for name in [*GRADIENT_METHODS, "scorecam"]:
        producer = registry.create("classmap", name, layer="layer3", scales="1.0,0.5", flip="true")
        assert producer.layer == "layer3" and producer.flip is True and not getattr(producer, "uses_forward", False)
        assert "et al." in registry.get("classmap", name).description or "Draelos" in registry.get("classmap", name).description
    with pytest.raises(Exception, match="batch_size"):
        registry.create("classmap", "scorecam", batch_size="0")
