"""The contract of every registered class-map producer (see ``wssbench.host.hookspecs``).

Each gets an untrained ResNet-18 classifier, two 64 px synthetic images and K in {1, 2} requested
classes with a padding entry; a producer that ``needs_fit`` is first fitted on the tiny synthetic
train split (with ``max_images`` small where it has that option). The maps must be float32
(B, K, H, W), finite, in [0, 1], each either zero or with maximum 1, zero for padding, the same
on a second call (made under ``torch.no_grad``), and leave the model and images as they were.
Producers with the options ``scales`` and ``flip`` are checked once more with two scales and
flips on.
"""

from __future__ import annotations

import pytest
import torch

from wssbench.host.options import option_fields
from wssbench.host.registry import build_registry

REGISTRY = build_registry()
CLASSES = {1: torch.tensor([[2], [-1]]), 2: torch.tensor([[0, 3], [5, -1]])}  # (B, K)
# options that keep a producer quick on the tiny model; the contract checked is the same
QUICK = {"scorecam": {"layer": "layer1"}}  # one forward pass per channel: layer1's 64, not the last 512
MULTISCALE = [n for n in REGISTRY.names("classmap") if {"scales", "flip"} <= set(option_fields(REGISTRY.get("classmap", n).factory))]


@pytest.fixture(scope="module")
def model(resnet18_classifier):
    return resnet18_classifier(8)


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return tiny_dataset


@pytest.fixture(scope="module")
def producers(model, dataset, tmp_path_factory):
    """One producer per name, created (and fitted) on first use."""
    made = {}

    def get(name: str, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in made:
            factory = REGISTRY.get("classmap", name).factory
            if name == "clip-es":  # no CLIP weights exist here: a tiny random ViT CLIP saved in OpenAI's layout
                pytest.importorskip("open_clip", reason="clip-es needs open_clip (pip install -e '.[clip]')")
                from test_clip_es import save_tiny_clip

                options = {"weights": str(save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny.pt")), **options}
            options = {**({"max_images": 6} if "max_images" in option_fields(factory) else {}), **QUICK.get(name, {}), **options}
            producer = REGISTRY.create("classmap", name, **options)
            if getattr(producer, "needs_fit", False):
                producer.fit(model, dataset, "train", "contract-test")
            made[key] = producer
        return made[key]

    return get


def snapshot(model: torch.nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "training": model.training,
    }


@pytest.mark.parametrize("k", sorted(CLASSES))
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "zoomout" else n  # fitting mi-SVMs: ~25 s
                                  for n in REGISTRY.names("classmap")])
def test_classmap_contract(name, k, model, dataset, producers):
    check_contract(producers(name), k, model, dataset)


@pytest.mark.parametrize("name", MULTISCALE)
def test_classmap_contract_scales_and_flip(name, model, dataset, producers):
    producer = producers(name, scales="1.0,0.5", flip="true")
    assert not getattr(producer, "uses_forward", False), "several passes cannot come from the shared one"
    check_contract(producer, 2, model, dataset)


def check_contract(producer, k: int, model, dataset) -> None:
    images = model.preprocess([dataset.load_image(i) for i in dataset.ids("val")[:2]])  # (2, 3, 64, 64)
    classes = CLASSES[k]
    before, images_before = snapshot(model), images.clone()

    out = producer(model, images, classes)
    with torch.no_grad():
        again = producer(model, images, classes)

    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.shape == (2, k, 64, 64)
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    peaks = out.amax(dim=(2, 3))  # (B, K)
    assert ((peaks == 0) | ((peaks - 1).abs() < 1e-5)).all(), "each map is zero or divided by its maximum"
    assert (out[classes < 0] == 0).all(), "padding classes get zero maps"
    torch.testing.assert_close(again, out, rtol=0, atol=0)

    torch.testing.assert_close(images, images_before, rtol=0, atol=0)
    after = snapshot(model)
    assert after["requires_grad"] == before["requires_grad"] and after["training"] == before["training"]
    for key, value in before["state"].items():
        torch.testing.assert_close(after["state"][key], value, rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
