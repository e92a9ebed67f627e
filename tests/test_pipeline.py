"""Class selection, pooling heads, fusion rule and result bookkeeping, by hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from wssbench.classifier.model import POOLINGS
from wssbench.errors import UsageError
from wssbench.host.options import parse_option_strings
from wssbench.seed.config import RunConfig
from wssbench.seed.maps import select_classes


def test_select_predicted_classes():
    scores = torch.tensor([[2.0, -1.0, 0.5, 3.0], [-2.0, -3.0, -0.5, -4.0]])
    labels = torch.zeros(2, 4, dtype=torch.bool)
    classes = select_classes(scores, labels, RunConfig(max_classes=2))
    # image 0: sigmoid > 0.5 for 3, 0, 2 -> top two by score; image 1: none passes -> top one
    assert classes.tolist() == [[3, 0], [2, -1]]


def test_select_ground_truth_classes():
    scores = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    labels = torch.tensor([[False, True, True, False]])
    classes = select_classes(scores, labels, RunConfig(classes_from="labels"))
    assert classes.tolist() == [[2, 1]]  # ordered by score, only the labelled classes


def test_poolings_by_hand():
    maps = torch.tensor([[[[0.0, 1.0], [2.0, 5.0]]]])  # (1, 1, 2, 2)
    assert POOLINGS["gap"](maps, 5.0).item() == pytest.approx(2.0)
    assert POOLINGS["gmp"](maps, 5.0).item() == pytest.approx(5.0)
    r = 2.0
    expected = math.log(sum(math.exp(r * v) for v in (0, 1, 2, 5)) / 4) / r
    assert POOLINGS["lse"](maps, r).item() == pytest.approx(expected)


def test_threshold_fusion_by_hand():
    from wssbench_plugins.fusion import ThresholdFusion

    fusion = ThresholdFusion(bg_threshold=0.3, weight=0.5, sigma=0.0, quantile=1.0)
    image = np.zeros((1, 3, 3), np.uint8)
    class_maps = np.array([[[0.0, 0.4, 1.0]]], np.float32)  # (K=1, 1, 3)
    saliency = np.array([[[0.0, 2.0, 4.0]]], np.float32)  # normalised by its max: 0, 0.5, 1
    probs = fusion(image, np.array([5]), class_maps, saliency)
    # evidence: fg = 0.5*cm + 0.5*sal = 0, 0.45, 1.0 against bg 0.3
    np.testing.assert_allclose(probs[1, 0], [0.0, 0.45 / 0.75, 1.0 / 1.3], rtol=1e-6)
    assert probs.argmax(0).tolist() == [[0, 1, 1]]
    only_cm = fusion(image, np.array([5]), class_maps, None)
    assert only_cm.argmax(0).tolist() == [[0, 1, 1]]  # 0.4 > 0.3 with the class map alone


def test_config_rejects_bad_values():
    with pytest.raises(UsageError, match="classes-from"):
        RunConfig(classes_from="oracle")
    with pytest.raises(UsageError, match="neither a stage"):
        RunConfig(options=(("densecrf", "iterations", "5"),), refine=())
    with pytest.raises(UsageError, match="STAGE.KEY=VALUE"):
        parse_option_strings(("fusion=3",))
    assert RunConfig(options=(("fusion", "b", 1), ("dataset", "a", 2))).options[0][0] == "dataset"


def test_select_classes_without_cap_or_forced_top1():
    scores = torch.tensor([[2.0, 1.0, 0.5, 3.0], [-2.0, -3.0, -0.5, -4.0]])
    classes = select_classes(scores, None, RunConfig(max_classes=None, top1=False))
    assert classes.tolist() == [[3, 0, 1, 2], [-1, -1, -1, -1]]  # all four detected; none: all background
    nothing = select_classes(scores[1:], None, RunConfig(top1=False))
    assert nothing.shape == (1, 0)


def test_a_batch_with_no_detection_is_all_background(resnet18_classifier):
    from wssbench.runtime.timer import Timer
    from wssbench.seed.maps import stage_maps
    from wssbench_plugins.classmaps import FCNScoreMaps
    from wssbench_plugins.fusion import ThresholdFusion
    from wssbench_plugins.saliency import GuidedBP

    model = resnet18_classifier(4)
    x = torch.randn(2, 3, 32, 32)
    classes = np.zeros((2, 0), dtype=np.int64)
    for producer in (FCNScoreMaps(), GuidedBP()):
        maps, cached = stage_maps("s", producer, None, model, x, classes, [c for c in classes], ["a", "b"], Timer())
        assert [m.shape for m in maps] == [(0, 32, 32)] * 2 and not cached
    probs = ThresholdFusion()(np.zeros((32, 32, 3), np.uint8), np.zeros(0, int), maps[0], maps[0])
    assert probs.shape == (1, 32, 32) and (probs.argmax(0) == 0).all()


def test_image_prior_fusion_by_hand():
    from wssbench_plugins.fusion import ImagePriorFusion

    fusion = ImagePriorFusion(bg_threshold=0.3, weight=1.0, sigma=0.0, quantile=1.0)
    image = np.zeros((1, 2, 3), np.uint8)
    class_maps = np.array([[[0.6, 0.2]], [[0.6, 0.9]]], np.float32)  # (K=2, 1, 2)
    scores = np.array([0.0, np.log(3.0)])  # sigmoid: 0.5 and 0.75
    probs = fusion(image, np.array([1, 4]), class_maps, None, scores=scores)
    # pixel 0: evidence (0.3, 0.6, 0.6) times prior (1, 0.5, 0.75) = (0.3, 0.3, 0.45)
    np.testing.assert_allclose(probs[:, 0, 0], np.array([0.3, 0.3, 0.45]) / 1.05, rtol=1e-6)
    # pixel 1: (0.3, 0.2 * 0.5, 0.9 * 0.75) = (0.3, 0.1, 0.675)
    np.testing.assert_allclose(probs[:, 0, 1], np.array([0.3, 0.1, 0.675]) / 1.075, rtol=1e-6)
    with pytest.raises(ValueError, match="needs the image-level scores"):
        fusion(image, np.array([1, 4]), class_maps, None)
