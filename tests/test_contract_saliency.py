"""The saliency contract (``hookspecs.register_saliency``), for every registered method.

A tiny :class:`~wssbench.classifier.model.Classifier` (timm ResNet-18 features, 5 classes, random
weights) and two 64 px images: shape ``(B, K, H, W)``, float32, finite, non-negative, zero for
padding, deterministic, the model left exactly as it was, and for a method that
``shares_forward`` the same maps from a shared trace.
"""

from __future__ import annotations

import pytest
import torch
from test_saliency import assert_unchanged, snapshot  # noqa: F401 (fixture)

from wssbench.host.registry import build_registry

pytestmark = pytest.mark.usefixtures("one_thread")


REGISTRY = build_registry()
# Options that keep a method fast and its maps non-trivial on a random model: dcsm's 500 px
# canvas would take half a minute, and it maps only classes detected at some scale.
OPTIONS = {"dcsm": {"canvas": 96, "threshold": 0.0}}


@pytest.fixture(scope="module")
def model(resnet18_classifier):
    return resnet18_classifier(5)


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # (B, 3, H, W)


@pytest.mark.parametrize("name", REGISTRY.names("saliency"))
def test_contract(name, model, images):
    method = REGISTRY.create("saliency", name, **OPTIONS.get(name, {}))
    classes = torch.tensor([[1, 3], [4, -1]])  # (B, K), -1 is padding
    before = snapshot(model)
    maps = method(model, images, classes)
    assert maps.shape == (2, 2, 64, 64) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and (maps >= 0).all()
    assert (maps[1, 1] == 0).all() and (maps[:, 0].amax((1, 2)) > 0).all()
    assert torch.equal(method(model, images, classes), maps)  # deterministic
    assert method(model, images, torch.zeros((2, 0), dtype=torch.long)).shape == (2, 0, 64, 64)
    assert_unchanged(model, before)
    if getattr(method, "shares_forward", False):  # the shared-forward capability gives the same maps
        from wssbench.methods.saliency import record

        with record(model, images, **method.forward_spec(model)) as trace:
            assert torch.equal(method.from_trace(trace, classes), maps)
