"""The contract of every registered fusion method and refiner (see ``wssbench.host.hookspecs``).

Each gets a tiny image with a few flat regions and noise, K in {1, 3} detected labels and maps
in [0, 1]; fusion also without class maps, without saliency maps and without both. The output
must be float32 (K+1, H, W), finite, non-negative, sum to 1 over the first axis, leave the
inputs untouched and be the same on a second call.
"""

import numpy as np
import pytest

from wssbench.host.registry import build_registry

H, W = 24, 32
REGISTRY = build_registry()


def smooth(rng, n, cells=(3, 4)):
    """n random [0, 1] fields (n, H, W): constant on a coarse grid, plus a little noise."""
    coarse = rng.random((n, *cells))
    fields = np.kron(coarse, np.ones((H // cells[0], W // cells[1]))) + 0.1 * rng.random((n, H, W))
    return np.clip(fields, 0.0, 1.0).astype(np.float32)


def tiny_image(rng):
    return (255 * smooth(rng, 3)).astype(np.uint8).transpose(1, 2, 0).copy()  # (H, W, 3)


def check_probs(out, k, again):
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == (k + 1, H, W)
    assert np.isfinite(out).all()
    assert (out >= 0).all()
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(out, again)


@pytest.mark.parametrize("maps", ["both", "classmaps", "saliency", "none"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", REGISTRY.names("fusion"))
def test_fusion_contract(name, k, maps):
    rng = np.random.default_rng(k)
    image = tiny_image(rng)
    labels = rng.choice(np.arange(1, 21), size=k, replace=False)
    class_maps = smooth(rng, k) if maps in ("both", "classmaps") else None
    saliency_maps = smooth(rng, k) if maps in ("both", "saliency") else None
    inputs = [image, labels, class_maps, saliency_maps]
    before = [None if a is None else a.copy() for a in inputs]
    fusion = REGISTRY.create("fusion", name)
    extra = {"scores": rng.normal(size=k)} if getattr(fusion, "needs_scores", False) else {}  # capability
    out = fusion(*inputs, **extra)
    check_probs(out, k, fusion(*inputs, **extra))
    for a, b in zip(inputs, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", REGISTRY.names("refiner"))
def test_refiner_contract(name, k):
    rng = np.random.default_rng(k)
    image = tiny_image(rng)
    probs = rng.random((k + 1, H, W), dtype=np.float32) + 0.01
    probs /= probs.sum(0)  # (K+1, H, W)
    inputs = [image, probs]
    before = [a.copy() for a in inputs]
    refiner = REGISTRY.create("refiner", name)
    out = refiner(*inputs)
    check_probs(out, k, refiner(*inputs))
    for a, b in zip(inputs, before):
        np.testing.assert_array_equal(a, b)
