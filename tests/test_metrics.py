"""mIoU against scikit-learn's confusion matrix and a hand-computed case."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion

from wssbench.errors import DataError
from wssbench.results.metrics import ConfusionMatrix, confusion, confusions_at, scores


def random_pair(rng, shape=(17, 23), c=5):
    gt = rng.integers(0, c, shape).astype(np.uint8)
    gt[rng.random(shape) < 0.1] = 255
    pred = rng.integers(0, c, shape).astype(np.uint8)
    return gt, pred


def test_confusion_matches_sklearn():
    rng = np.random.default_rng(0)
    gt, pred = random_pair(rng)
    keep = gt != 255
    expected = sk_confusion(gt[keep], pred[keep], labels=list(range(5)))
    got = confusion(gt, pred, 5)
    np.testing.assert_array_equal(got[:, :5], expected)
    assert got[:, 5].sum() == 0


def test_iou_matches_sklearn_jaccard():
    from sklearn.metrics import jaccard_score

    rng = np.random.default_rng(1)
    gt, pred = random_pair(rng, c=4)
    keep = gt != 255
    expected = jaccard_score(gt[keep], pred[keep], labels=list(range(4)), average=None)
    np.testing.assert_allclose(scores(confusion(gt, pred, 4)).iou, expected)


def test_one_batch_equals_many():
    rng = np.random.default_rng(2)
    pairs = [random_pair(rng) for _ in range(6)]
    many = ConfusionMatrix(5)
    for gt, pred in pairs:
        many.update(gt, pred)
    one = ConfusionMatrix(5)
    one.update(np.concatenate([g for g, _ in pairs]), np.concatenate([p for _, p in pairs]))
    np.testing.assert_array_equal(many.matrix, one.matrix)
    assert many.compute().miou == one.compute().miou


def test_hand_computed_case():
    # truth: 0 0 1 1 / 255 ignored; prediction: 0 1 1 1
    gt = np.array([[0, 0, 1, 1, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1, 0]], np.uint8)
    s = scores(confusion(gt, pred, 3))
    # class 0: TP 1, FN 1, FP 0 -> 1/2; class 1: TP 2, FP 1 -> 2/3; class 2 absent -> NaN
    np.testing.assert_allclose(s.iou[:2], [0.5, 2 / 3])
    assert np.isnan(s.iou[2])
    assert s.miou == pytest.approx((0.5 + 2 / 3) / 2)
    assert s.pixel_accuracy == pytest.approx(3 / 4)


def test_mean_of_split_is_not_mean_of_images():
    a_gt, a_pred = np.zeros((1, 4), np.uint8), np.zeros((1, 4), np.uint8)
    b_gt = np.array([[1, 1, 1, 1, 1, 1, 1, 1]], np.uint8)
    b_pred = np.array([[1, 0, 0, 0, 0, 0, 0, 0]], np.uint8)
    cm = ConfusionMatrix(2)
    cm.update(a_gt, a_pred)
    cm.update(b_gt, b_pred)
    # class 0: TP 4, FP 7 -> 4/11; class 1: TP 1, FN 7 -> 1/8
    assert cm.compute().miou == pytest.approx((4 / 11 + 1 / 8) / 2)


def test_predicted_ignore_counts_as_a_miss():
    gt = np.array([[1, 1]], np.uint8)
    pred = np.array([[1, 255]], np.uint8)
    s = scores(confusion(gt, pred, 2))
    assert s.iou[1] == pytest.approx(0.5)
    assert s.pixel_accuracy == pytest.approx(0.5)


def test_out_of_range_labels_are_errors():
    gt = np.zeros((2, 2), np.uint8)
    with pytest.raises(DataError, match="predicted label 7"):
        confusion(gt, np.full((2, 2), 7, np.uint8), 3)
    with pytest.raises(DataError, match="shape"):
        confusion(gt, np.zeros((3, 2), np.uint8), 3)
    # the one-pass curve checks the same things
    evidence, label = np.zeros((2, 2), np.float32), np.ones((2, 2), np.uint8)
    with pytest.raises(DataError, match="ground-truth label 5"):
        confusions_at(np.full((2, 2), 5, np.uint8), evidence, label, [0.5], 3)
    with pytest.raises(DataError, match="prediction shape"):
        confusions_at(gt, np.zeros((3, 2), np.float32), np.ones((3, 2), np.uint8), [0.5], 3)
    with pytest.raises(DataError, match="label map shape"):
        confusions_at(gt, evidence, np.ones((2, 3), np.uint8), [0.5], 3)


@pytest.mark.parametrize("seed", range(4))
def test_confusions_at_every_threshold_equal_one_confusion_each(seed):
    """The one-pass threshold curve against its definition: a label map per threshold, each scored."""
    rng = np.random.default_rng(seed)
    h, w, c = 37, 29, 6
    gt = rng.integers(0, c, (h, w))
    gt[rng.random((h, w)) < 0.1] = 255
    evidence = rng.choice([0.1, 0.25, 0.5, 0.7], (h, w)).astype(np.float32)  # ties with the thresholds themselves
    free = rng.random((h, w)) < 0.3
    evidence[free] = rng.random(int(free.sum()))
    evidence[0, :3] = np.nan
    label = rng.integers(1, c, (h, w)).astype(np.uint8)
    thresholds = [0.5, 0.1, 0.25, 0.9, 0.25, 0.0]  # unsorted, with a repeat
    expected = np.stack([confusion(gt, np.where(evidence > t, label, 0), c) for t in thresholds])
    np.testing.assert_array_equal(confusions_at(gt, evidence, label, thresholds, c), expected)


def test_confusions_at_by_hand():
    gt = np.array([[1, 1, 0, 255]])
    evidence = np.array([[0.9, 0.3, 0.6, 0.9]], np.float32)
    label = np.array([[1, 2, 2, 1]], np.uint8)
    at = confusions_at(gt, evidence, label, [0.5, 0.2], 3)
    # t = 0.5: predictions 1, 0, 2 (the 255 pixel is not counted); t = 0.2: 1, 2, 2
    np.testing.assert_array_equal(at[0], [[0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(at[1], [[0, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])


def test_the_threshold_rule_curve_is_its_label_maps_scored():
    """The pipeline's curve (``predict_one``: one pass) equals scoring ``labels_at``'s maps one by one."""
    import wssbench
    from wssbench.runtime.workers import predict_one
    from wssbench.seed.maps import ImageMaps

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (24, 20, 3), np.uint8)
    mask = rng.integers(0, 4, (24, 20)).astype(np.uint8)
    labels = np.array([1, 3])
    maps = ImageMaps("x", image, mask, labels, rng.random((2, 24, 20)).astype(np.float32),
                     rng.random((2, 24, 20)).astype(np.float32), np.zeros(4), np.zeros(4))
    fusion = wssbench.create("fusion", "threshold")
    points = (0.05, 0.2, 0.35, 0.6)
    _, _, matrices = predict_one(maps, fusion, [], (points, 5))
    at = fusion.labels_at(points, image, labels, maps.class_maps, maps.saliency_maps)
    np.testing.assert_array_equal(matrices, np.stack([confusion(mask, p, 5) for p in at]))
    assert len({m.tobytes() for m in matrices}) > 1  # the thresholds do separate pixels here
