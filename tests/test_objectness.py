"""Objectness from object proposals (``wssbench.methods.objectness``), Selective Search (``ss-boxes``,
``ss-segments``), the saliency ``objectness`` and refiner ``proposals``, and the presets
``mil-bb``, ``mil-seg``, ``fcn-mcg``.

Formulas are checked on hand-computed cases and against a literal per-pixel re-derivation
from explicit masks, written here independently of the integral-image and leaf code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import wssbench
from wssbench.errors import UsageError
from wssbench.host.registry import build_registry, default_registry
from wssbench.methods.objectness import BoxProposals, SegmentProposals, cached, coverage, objectness_map, smooth
from wssbench.seed.components import check
from wssbench.seed.config import build_config
from wssbench.seed.presets import PRESETS, deviations

pytestmark = pytest.mark.usefixtures("one_thread")

# two overlapping boxes on a 4 x 6 image: A = columns 0-3, rows 0-2; B = columns 2-5, rows 1-3
TWO_BOXES = np.array([[0, 0, 4, 3], [2, 1, 6, 4]])


def box_masks(boxes, shape):
    masks = np.zeros((len(boxes), *shape), bool)
    for m, (x0, y0, x1, y1) in zip(masks, boxes):
        m[y0:y1, x0:x1] = True
    return masks


def literal_smooth(probs, masks, weights, power):
    """The smoothing prior, pixel by pixel, from explicit masks (the reference)."""
    L, H, W = probs.shape
    means = np.array([[probs[l][m].mean() for m in masks] for l in range(L)])  # (L, N)
    cover = np.array([[sum(w for w, m in zip(weights, masks) if m[y, x]) for x in range(W)] for y in range(H)])
    out = probs.astype(np.float64).copy()
    for y in range(H):
        for x in range(W):
            if cover[y, x] > 0:
                out[:, y, x] = sum(w * means[:, n] for n, (w, m) in enumerate(zip(weights, masks)) if m[y, x]) / cover[y, x]
            if power > 0:
                out[1:, y, x] *= (cover[y, x] / cover.max()) ** power
    return out / out.sum(0)


def test_two_overlapping_boxes_hand_computed():
    boxes = BoxProposals(TWO_BOXES, None, (4, 6))
    expected = np.array([
        [1, 1, 1, 1, 0, 0],
        [1, 1, 2, 2, 1, 1],
        [1, 1, 2, 2, 1, 1],
        [0, 0, 1, 1, 1, 1],
    ]) / 2  # mass covering each pixel / its maximum (2, where both boxes lie)
    np.testing.assert_array_equal(objectness_map(boxes), expected)
    weighted = BoxProposals(TWO_BOXES, [1.0, 3.0], (4, 6))
    np.testing.assert_array_equal(coverage(weighted), [
        [1, 1, 1, 1, 0, 0],
        [1, 1, 4, 4, 3, 3],
        [1, 1, 4, 4, 3, 3],
        [0, 0, 3, 3, 3, 3],
    ])
    np.testing.assert_allclose(objectness_map(weighted)[1, 0], 0.25)


def test_segments_hand_computed_and_boxes_as_segments_agree():
    a = np.zeros((3, 4), bool)
    a[:, :2] = True  # the left half
    b = np.zeros((3, 4), bool)
    b[1:, 1:] = True  # an L-shaped overlap with a at column 1
    segments = SegmentProposals.from_masks(np.stack([a, b]), [2.0, 1.0])
    np.testing.assert_allclose(objectness_map(segments), np.array([
        [2, 2, 0, 0],
        [2, 3, 1, 1],
        [2, 3, 1, 1],
    ]) / 3)
    assert len(np.unique(segments.leaves)) == 4  # a only, a and b, b only, neither
    # the same two boxes as boxes and as masks: the integral-image and the leaf code agree
    rng = np.random.default_rng(0)
    probs = rng.random((3, 4, 6))
    as_boxes = BoxProposals(TWO_BOXES, [1.0, 2.0], (4, 6))
    as_segments = SegmentProposals.from_masks(box_masks(TWO_BOXES, (4, 6)), [1.0, 2.0])
    np.testing.assert_allclose(as_boxes.means(probs), as_segments.means(probs))
    np.testing.assert_allclose(as_boxes.paint(probs[:, 0, :2]), as_segments.paint(probs[:, 0, :2]))


def test_smoothing_hand_computed():
    # one row of 4 pixels, background and one class; box A covers x 0-1, box B x 1-3
    fg = np.array([0.8, 0.6, 0.2, 0.0])
    probs = np.stack([1 - fg, fg])[:, None, :]  # (2, 1, 4)
    boxes = BoxProposals([[0, 0, 2, 1], [1, 0, 4, 1]], None, (1, 4))
    s_a, s_b = 0.7, 0.8 / 3  # each box's mean foreground probability
    m = np.array([s_a, (s_a + s_b) / 2, s_b, s_b])  # mean over the boxes covering each pixel
    np.testing.assert_allclose(smooth(probs, boxes, power=0)[1, 0], m, rtol=1e-6)
    objectness = np.array([0.5, 1.0, 0.5, 0.5])  # coverage 1, 2, 1, 1 over its maximum
    weighted = m * objectness
    np.testing.assert_allclose(smooth(probs, boxes)[1, 0], weighted / (weighted + 1 - m), rtol=1e-6)


@pytest.mark.parametrize("form", ["boxes", "segments"])
@pytest.mark.parametrize("power", [0.0, 1.0, 2.0])
def test_smoothing_matches_a_literal_rederivation(form, power):
    rng = np.random.default_rng(1)
    boxes = np.array([[0, 0, 5, 4], [3, 2, 9, 7], [6, 0, 9, 3], [1, 5, 4, 7]])
    masks = box_masks(boxes, (7, 9))
    weights = rng.random(len(boxes)) + 0.1
    proposals = BoxProposals(boxes, weights, (7, 9)) if form == "boxes" else SegmentProposals.from_masks(masks, weights)
    probs = rng.random((3, 7, 9)) + 0.01
    probs /= probs.sum(0)
    out = smooth(probs, proposals, power)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, literal_smooth(probs, masks, weights, power), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-6)
    if power > 0:
        assert (out[1:, 4, 0] == 0).all()  # (row 4, column 0): no box, so background


def test_bad_proposals_are_refused():
    with pytest.raises(ValueError, match="weights"):
        BoxProposals(TWO_BOXES, [1.0], (4, 6))
    with pytest.raises(ValueError, match="non-negative"):
        BoxProposals(TWO_BOXES, [1.0, -1.0], (4, 6))
    with pytest.raises(ValueError, match="differ in size"):
        smooth(np.ones((2, 3, 3)) / 2, BoxProposals(TWO_BOXES, None, (4, 6)))


def scene():
    """Two flat rectangles (red, blue) on a flat grey 48 x 64 image."""
    image = np.full((48, 64, 3), 128, np.uint8)
    image[8:24, 6:30] = (220, 30, 30)
    image[26:44, 36:60] = (30, 30, 220)
    return image


def test_selective_search_finds_the_objects():
    image = scene()
    segments = wssbench.create("objectness", "ss-segments", min_size=20)(image)
    masks = segments.members[:, segments.leaves]  # (N, H, W)
    for y0, y1, x0, x1 in ((8, 24, 6, 30), (26, 44, 36, 60)):
        truth = np.zeros(image.shape[:2], bool)
        truth[y0:y1, x0:x1] = True
        assert any(np.array_equal(m, truth) for m in masks)
    assert masks[0].all()  # ranked from the last merge: the whole image first
    boxes = wssbench.create("objectness", "ss-boxes", min_size=20)(image)
    found = {tuple(b) for b in boxes.boxes.tolist()}
    assert {(6, 8, 30, 24), (36, 26, 60, 44), (0, 0, 64, 48)} <= found
    assert len(found) == len(boxes.boxes)  # each box once
    limited = wssbench.create("objectness", "ss-boxes", min_size=20, max_proposals=2)(image)
    assert len(limited.boxes) == 2
    again = wssbench.create("objectness", "ss-boxes", min_size=20)(image)
    np.testing.assert_array_equal(again.boxes, boxes.boxes)  # deterministic
    with pytest.raises(UsageError, match="color_space"):
        wssbench.create("objectness", "ss-boxes", color_space="xyz")


def test_hierarchy_has_every_merge():
    from wssbench_plugins.selective_search import group

    h = group(scene(), min_size=20)
    s = h.members.shape[1]
    assert h.members.shape == (2 * s - 1, s)  # S leaves, S - 1 merges, one region at the top
    assert h.members[-1].all() and (h.members[:s].sum(1) == 1).all()


def test_proposals_are_cached_by_image_content():
    calls = []

    @dataclass(frozen=True)
    class Counting:
        def __call__(self, image):
            calls.append(1)
            return BoxProposals(TWO_BOXES, None, image.shape[:2])

    image = np.zeros((4, 6, 3), np.uint8)
    first = cached(Counting(), "counting", {}, image)
    second = cached(Counting(), "counting", {}, image.copy())
    assert len(calls) == 1
    np.testing.assert_array_equal(first.boxes, second.boxes)
    cached(Counting(), "counting", {"other": 1}, image)  # other options: computed again
    assert len(calls) == 2


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "the payload ran"))


def test_a_cache_entry_holding_a_pickle_is_recomputed_and_never_run(tmp_path, monkeypatch):
    """Cache entries are arrays read without pickle: someone who can write to a shared
    WSSBENCH_HOME can recompute the checksum, but cannot make wssbench run their code."""
    import pickle
    import zlib

    from wssbench.storage.cache import seal

    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path / "home"))
    calls = []

    @dataclass(frozen=True)
    class Segments:
        def __call__(self, image):
            calls.append(1)
            return SegmentProposals.from_masks(np.array([[[1, 1, 0]], [[0, 1, 1]]], bool), [2.0, 1.0])

    image = np.zeros((1, 3, 3), np.uint8)
    first = cached(Segments(), "segments", {}, image)
    (entry,) = (tmp_path / "home" / "proposals").rglob("*.npz")
    marker = tmp_path / "PWNED"
    entry.write_bytes(seal(zlib.compress(pickle.dumps(_Payload(marker)))))
    again = cached(Segments(), "segments", {}, image)
    assert not marker.exists() and len(calls) == 2
    np.testing.assert_array_equal(again.paint(np.ones((1, 2))), first.paint(np.ones((1, 2))))
    np.testing.assert_array_equal(cached(Segments(), "segments", {}, image).weights, first.weights)  # read back now
    assert len(calls) == 2


# --- fusion with the class maps, through registered components ----------------------------


@dataclass(frozen=True)
class FixedBoxes:
    """Box A over x 0-1, box B over x 1-3 of a one-row image."""

    name = "fixed-boxes"

    def __call__(self, image):
        return BoxProposals([[0, 0, 2, 1], [1, 0, 4, 1]], None, image.shape[:2])


class FakeObjectness:
    @staticmethod
    @wssbench.hookimpl
    def register_objectness(register):
        register(FixedBoxes)


@pytest.fixture
def with_fixed_boxes():
    """A registry with the fake objectness method added; the default registry lacks it (the
    consumers look names up in the registry that creates them)."""
    return build_registry(plugins=[FakeObjectness()])


def test_image_prior_then_proposals_on_a_tiny_case(with_fixed_boxes):
    image = np.zeros((1, 4, 3), np.uint8)
    class_map = np.array([[[0.8, 0.6, 0.5, 0.0]]], np.float32)  # (K=1, H, W)
    fuse = with_fixed_boxes.create("fusion", "image-prior", bg_threshold=0.25)
    probs = fuse(image, np.array([3]), class_map, None, scores=np.array([40.0]))  # sigmoid(40) = 1
    fg = class_map[0, 0] / (class_map[0, 0] + 0.25)  # the threshold rule's probabilities
    np.testing.assert_allclose(probs[1, 0], fg, rtol=1e-5)
    assert probs.argmax(0).tolist() == [[1, 1, 1, 0]]
    refined = with_fixed_boxes.create("refiner", "proposals", method="fixed-boxes", cache=False)(image, probs)
    s_a, s_b = fg[:2].mean(), fg[1:].mean()
    m = np.array([s_a, (s_a + s_b) / 2, s_b, s_b])
    weighted = m * np.array([0.5, 1.0, 0.5, 0.5])
    np.testing.assert_allclose(refined[1, 0], weighted / (weighted + 1 - m), rtol=1e-5)
    assert refined.argmax(0).tolist() == [[1, 1, 0, 0]]  # little box mass at x = 2: background now


def test_objectness_saliency_is_the_map_of_the_images_pixels(resnet18_classifier):
    model = resnet18_classifier(5)
    image = scene()
    x = model.preprocess([image, image[::-1].copy()])  # (2, 3, H, W)
    method = wssbench.create("saliency", "objectness", method="ss-boxes", cache=False)
    maps = method(model, x, torch.tensor([[1, 3], [4, -1]]))  # (B, K, H, W)
    proposer = wssbench.create("objectness", "ss-boxes")
    expected = torch.from_numpy(objectness_map(proposer(image)))
    assert torch.equal(maps[0, 0], expected) and torch.equal(maps[0, 1], expected)  # class-agnostic
    assert torch.equal(maps[1, 0], torch.from_numpy(objectness_map(proposer(image[::-1].copy()))))
    assert (maps[1, 1] == 0).all()  # padding


def test_unknown_objectness_method_lists_the_known_ones():
    with pytest.raises(UsageError, match="unknown objectness 'bing'; available: .*ss-boxes"):
        wssbench.create("refiner", "proposals", method="bing")
    with pytest.raises(UsageError, match="unknown objectness 'fixed-boxes'"):  # a third party's: only where registered
        wssbench.create("refiner", "proposals", method="fixed-boxes")


def test_proposer_options_reach_the_objectness_method_and_are_checked(with_fixed_boxes):
    refiner = wssbench.create("refiner", "proposals", method="ss-boxes", proposer="max_proposals=7, scale=50")
    assert (refiner._proposer.max_proposals, refiner._proposer.scale) == (7, 50.0)
    assert len(refiner.proposals(scene()).boxes) <= 7
    with pytest.raises(UsageError, match="unknown option 'k' for objectness 'ss-boxes'; options: .*max_proposals"):
        wssbench.create("saliency", "objectness", method="ss-boxes", proposer="k=3")
    with pytest.raises(UsageError, match="bad value 'many' for option 'max_proposals'"):
        wssbench.create("refiner", "proposals", proposer="max_proposals=many")
    with pytest.raises(UsageError, match="proposer: expected KEY=VALUE"):
        wssbench.create("refiner", "proposals", proposer="max_proposals")
    with pytest.raises(UsageError, match="color_space must be hsv, lab or rgb"):
        wssbench.create("refiner", "proposals", proposer="color_space=xyz")
    assert with_fixed_boxes.create("saliency", "objectness", method="fixed-boxes")._proposer == FixedBoxes()


# --- presets -----------------------------------------------------------------------------


@pytest.mark.parametrize("preset, refine, saliency, method", [
    ("mil-bb", ("proposals",), None, ("proposals", "ss-boxes")),
    ("mil-seg", ("proposals",), None, ("proposals", "ss-segments")),
    ("fcn-mcg", ("sppxl-crf",), "objectness", ("saliency", "ss-segments")),
])
def test_presets_resolve(preset, refine, saliency, method):
    config = check(build_config({"preset": preset, "device": "cpu"}), default_registry())
    assert (config.classmap, config.fusion, config.refine, config.saliency) == ("fcn", "image-prior", refine, saliency)
    assert config.options_for(method[0])["method"] == method[1]
    assert config.backbone == "vgg16" and config.pretrained
    assert PRESETS[preset].published
    found = deviations(config, default_registry())
    assert [d for d in found if d["option"] == "proposals" and "Selective Search" in d["used"]]  # the substitution


@pytest.mark.parametrize("preset", ["mil-bb", "mil-seg", "fcn-mcg"])
def test_presets_run_end_to_end(preset, tiny_dataset):
    pipe = wssbench.Pipeline(preset=preset, backbone="resnet10t", pretrained=False, epochs=1, crop=64, limit=3, workers=1,
                             device="cpu", options={"dataset.preset": "tiny"})
    record = pipe.run()
    assert 0.0 <= record["miou"] <= 1.0
    options = {d["option"] for d in record["deviations"]}
    assert {"backbone", "pretrained", "proposals"} <= options
    predictions = list(pipe.predictions(limit=2))
    assert all(p.label_map.shape == (64, 64) for p in predictions)
