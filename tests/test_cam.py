"""Class maps ``cam`` and ``gradcam``: a hand-computed CAM, agreement with pytorch-grad-cam's GradCAM,
Grad-CAM = CAM on the last feature maps, flips and scales, and a model left as it was.

Random weights, ``pretrained=False``, 64 px inputs.
"""

from __future__ import annotations

from copy import deepcopy
from functools import lru_cache

import numpy as np
import pytest
import timm
import torch
from torch import nn

from wssbench.classifier.model import POOLINGS, Classifier
from wssbench.errors import UsageError
from wssbench.host.registry import build_registry
from wssbench.methods.maps import select
from wssbench_plugins.cam import CAM, GradCAM, cam_raw, class_activation_maps, grad_cam_raw

grad_cam_ref = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

CLASSES = torch.tensor([[3, 1, 5], [0, 7, -1]])  # (B, K), one padding entry


@lru_cache
def resnet(pooling: str = "gap") -> Classifier:
    torch.manual_seed(0)
    backbone = timm.create_model("resnet18", pretrained=False, num_classes=0, global_pool="")
    return Classifier(backbone, 512, 8, pooling=pooling).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # (B, 3, H, W)


def block_model(pool: int) -> Classifier:
    """Features = the first two image channels (a fixed 1x1 conv), average-pooled by ``pool``."""
    conv = nn.Conv2d(3, 2, kernel_size=1, bias=False)
    model = Classifier(nn.Sequential(conv, nn.AvgPool2d(pool)), 2, 3).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])[:, :, None, None])
        model.head.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.5], [0.0, 1.0]])[:, :, None, None])
    return model


A0 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
A1 = torch.tensor([[0.0, 1.0], [2.0, -1.0]])


def test_cam_by_hand():
    model = block_model(pool=1)
    image = torch.stack([A0, A1, torch.zeros(2, 2)])[None]  # (1, 3, 2, 2)
    classes = torch.tensor([[0, 1, 2, -1]])
    features = model.features(image)  # (1, 2, 2, 2) = the first two channels
    raw = class_activation_maps(features, model.head.weight[:, :, 0, 0], classes)  # (1, 4, 2, 2)
    expected = torch.stack([
        A0 - A1,  # [[1, 1], [1, 5]]
        2 * A0 + 0.5 * A1,  # [[2, 4.5], [7, 7.5]]
        A1,  # [[0, 1], [2, -1]]
        torch.zeros(2, 2),  # padding
    ])[None]
    torch.testing.assert_close(raw, expected)
    torch.testing.assert_close(cam_raw(model, image, classes), expected.clamp(min=0))


def test_cam_normalised_and_upsampled():
    model = block_model(pool=4)
    image = torch.kron(torch.stack([A0, A1, torch.zeros(2, 2)]), torch.ones(4, 4))[None]  # (1, 3, 8, 8)
    out = CAM()(model, image, torch.tensor([[0, 2, -1]]))
    assert out.shape == (1, 3, 8, 8) and out.dtype == torch.float32
    # bilinear upsampling (align_corners=False) keeps the 2x2 values in the 8x8 corners
    corners = out[0][:, [0, 0, 7, 7], [0, 7, 0, 7]]  # (3, 4)
    expected = torch.tensor([[1.0, 1, 1, 5], [0, 1, 2, 0], [0, 0, 0, 0]]) / torch.tensor([[5.0], [2.0], [1.0]])
    torch.testing.assert_close(corners, expected)
    torch.testing.assert_close(out.amax(dim=(2, 3)), torch.tensor([[1.0, 1.0, 0.0]]))


@pytest.mark.parametrize("pooling", sorted(POOLINGS))
def test_cam_is_score_maps(pooling, images):
    model = resnet(pooling)
    with torch.no_grad():
        fcn = select(model.score_maps(images), CLASSES).clamp(min=0)  # (B, K, h, w)
    torch.testing.assert_close(cam_raw(model, images, CLASSES), fcn)


def minmax(maps: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's normalisation of each (H, W) map: min to 0, max to 1."""
    low = maps.min(axis=(-2, -1), keepdims=True)
    return (maps - low) / (1e-7 + (maps - low).max(axis=(-2, -1), keepdims=True))


@pytest.mark.parametrize("layer", ["", pytest.param("layer3", marks=pytest.mark.slow)])
@pytest.mark.parametrize("pooling", sorted(POOLINGS))
def test_gradcam_matches_pytorch_grad_cam(pooling, layer, images):
    model = resnet(pooling)
    ours = GradCAM(layer=layer)(model, images, CLASSES).numpy()  # (B, K, H, W)
    copy = deepcopy(model)  # pytorch-grad-cam calls backward(), leaving .grad on the parameters
    reference = grad_cam_ref.GradCAM(copy, [copy.features.get_submodule(layer)])
    for k in range(CLASSES.shape[1]):
        targets = [ClassifierOutputTarget(int(c)) for c in CLASSES[:, k].clamp(min=0)]
        expected = reference(images, targets)  # (B, H, W), min-max normalised
        for b in range(len(images)):
            if CLASSES[b, k] >= 0:
                np.testing.assert_allclose(minmax(ours[b, k]), expected[b], rtol=1e-5, atol=1e-5)
    reference.activations_and_grads.release()


@pytest.mark.parametrize("pooling", sorted(POOLINGS))
def test_gradcam_on_last_features_is_cam(pooling, images):
    model = resnet(pooling)
    torch.testing.assert_close(GradCAM()(model, images, CLASSES), CAM()(model, images, CLASSES), rtol=1e-4, atol=1e-4)
    h, w = model.features(images).shape[-2:]
    scaled = grad_cam_raw(model, images, CLASSES) * h * w  # alpha = w[c] / (h w)
    torch.testing.assert_close(scaled, cam_raw(model, images, CLASSES), rtol=1e-4, atol=1e-7)
    earlier = GradCAM(layer="layer3")(model, images, CLASSES)
    assert (earlier - CAM()(model, images, CLASSES)).abs().max() > 0.05


@pytest.mark.parametrize("producer", [CAM(scales="1.0,0.5", flip=True), GradCAM(scales="1.0,0.75", flip=True)])
def test_flip_and_scales(producer, images):
    model = resnet()
    out = producer(model, images, CLASSES)
    assert out.shape == (2, 3, 64, 64)
    torch.testing.assert_close(producer(model, images.flip(-1), CLASSES), out.flip(-1), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out, type(producer)()(model, images, CLASSES), atol=1e-3)


def test_gradcam_leaves_no_trace(images):
    model = resnet("lse")
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    with torch.no_grad():
        out = GradCAM(layer="layer2")(model, images, CLASSES)
        assert not torch.is_grad_enabled()
    assert out.shape == (2, 3, 64, 64) and not out.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    assert all(not m._forward_hooks for m in model.modules())


def test_bad_options():
    registry = build_registry()
    for name in ("cam", "gradcam"):
        with pytest.raises(UsageError, match="scales"):
            registry.create("classmap", name, scales="1.0,-2")
    with pytest.raises(UsageError, match="no module 'layer9'"):
        GradCAM(layer="layer9")(resnet(), torch.zeros(1, 3, 32, 32), torch.tensor([[0]]))
