"""Superpixel helpers and the refiners ``sppxl`` and ``sppxl-crf`` on hand-computed cases."""

import math

import numpy as np
import pytest

from wssbench.errors import UsageError
from wssbench.host.registry import build_registry
from wssbench.methods.superpixels import adjacency, segment_areas, segment_means, slic_segments
from wssbench_plugins import superpixel
from wssbench_plugins.superpixel import SuperpixelAverage, SuperpixelCRF, mean_field

SEGMENTS = np.array([
    [0, 0, 1],
    [2, 2, 1],
])


def test_segment_means_areas_adjacency():
    values = np.array([[[1.0, 2.0, 3.0], [4.0, 6.0, 5.0]]])  # (1, 2, 3)
    np.testing.assert_allclose(segment_means(values, SEGMENTS), [[1.5, 4.0, 5.0]])
    np.testing.assert_array_equal(segment_areas(SEGMENTS), [2, 2, 2])
    np.testing.assert_array_equal(adjacency(SEGMENTS), [[0, 1], [0, 2], [1, 2]])


def test_slic_segments_are_numbered_from_zero_without_gaps():
    rng = np.random.default_rng(0)
    image = np.kron(rng.integers(0, 255, (4, 4, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    segments = slic_segments(image, 20, 10.0)
    assert segments.shape == (32, 32)
    np.testing.assert_array_equal(np.unique(segments), np.arange(segments.max() + 1))


def inject(monkeypatch, segments):
    monkeypatch.setattr(superpixel, "slic_segments", lambda image, n, c: segments)


def test_sppxl_averages_within_superpixels(monkeypatch):
    inject(monkeypatch, SEGMENTS)
    fg = np.array([[0.2, 0.6, 0.1], [0.9, 0.5, 0.3]], np.float32)
    probs = np.stack([1 - fg, fg])  # (2, 2, 3)
    # superpixel 0: (0.2 + 0.6) / 2 = 0.4; 1: (0.1 + 0.3) / 2 = 0.2; 2: (0.9 + 0.5) / 2 = 0.7
    expected_fg = np.array([[0.4, 0.4, 0.2], [0.7, 0.7, 0.2]])
    out = SuperpixelAverage()(np.zeros((2, 3, 3), np.uint8), probs)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.stack([1 - expected_fg, expected_fg]), atol=1e-6)


def halves(monkeypatch, right_colour):
    """Two superpixels, left and right half of a 4x4 image; left sure background, right weak foreground."""
    segments = np.repeat([[0, 0, 1, 1]], 4, axis=0)
    inject(monkeypatch, segments)
    image = np.full((4, 4, 3), 100, np.uint8)
    image[:, 2:] = right_colour
    fg = np.array([0.1, 0.55])[segments]
    return image, np.stack([1 - fg, fg]).astype(np.float32)  # (2, 4, 4)


def test_mean_field_one_update_by_hand():
    # unaries -log p: node 0 p = (0.9, 0.1), node 1 p = (0.45, 0.55); one edge of weight 1.
    # Q starts at p; one update: Q_1 ∝ (0.45 e^{0.9}, 0.55 e^{0.1}), Q_0 ∝ (0.9 e^{0.45}, 0.1 e^{0.55})
    p = np.array([[0.9, 0.45], [0.1, 0.55]])
    q = mean_field(-np.log(p), np.array([[0, 1]]), np.array([1.0]), iterations=1)
    node1 = np.array([0.45 * math.exp(0.9), 0.55 * math.exp(0.1)])
    node0 = np.array([0.9 * math.exp(0.45), 0.1 * math.exp(0.55)])
    np.testing.assert_allclose(q[:, 1], node1 / node1.sum())
    np.testing.assert_allclose(q[:, 0], node0 / node0.sum())


def test_pairwise_term_flips_a_weak_unary(monkeypatch):
    # Energies with Potts weight 1: E(bg, bg) = -log 0.9 - log 0.45 = 0.90, E(bg, fg) = -log 0.9
    # - log 0.55 + 1 = 1.70, E(fg, fg) = -log 0.1 - log 0.55 = 2.90: the optimum flips node 1.
    image, probs = halves(monkeypatch, right_colour=100)
    alone = SuperpixelCRF(pairwise=0.0)(image, probs)
    coupled = SuperpixelCRF(pairwise=1.0)(image, probs)
    np.testing.assert_allclose(alone, probs, atol=1e-6)  # no pairwise term: the unaries back
    np.testing.assert_array_equal(coupled.argmax(0), 0)
    np.testing.assert_allclose(coupled.sum(0), 1.0, atol=1e-6)


def test_colour_edge_cuts_the_pairwise_term(monkeypatch):
    # |rgb difference|^2 = 3 * 150^2: weight exp(-67500 / 800) ~ 2e-37, node 1 keeps foreground
    image, probs = halves(monkeypatch, right_colour=250)
    out = SuperpixelCRF(pairwise=1.0)(image, probs)
    np.testing.assert_array_equal(out.argmax(0), np.repeat([[0, 0, 1, 1]], 4, axis=0))


def test_crf_on_a_real_image_keeps_shapes_and_is_deterministic():
    rng = np.random.default_rng(1)
    image = np.kron(rng.integers(0, 255, (4, 4, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    probs = rng.dirichlet(np.ones(3), size=(32, 32)).transpose(2, 0, 1).astype(np.float32)
    crf = SuperpixelCRF(n_segments=30)
    out = crf(image, probs)
    assert out.shape == probs.shape and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out, crf(image, probs))


@pytest.mark.parametrize("name, options", [
    ("sppxl", {"n_segments": 0}), ("sppxl", {"compactness": 0.0}),
    ("sppxl-crf", {"n_segments": 0}), ("sppxl-crf", {"pairwise": -1.0}),
    ("sppxl-crf", {"srgb": 0.0}), ("sppxl-crf", {"iterations": 0}),
])
def test_bad_options(name, options):
    with pytest.raises(UsageError, match=f"refiner '{name}'"):
        build_registry().create("refiner", name, **options)
