"""mi-SVM on a toy bag problem whose instance labels are known.

2-D points: a positive bag holds 3 points of a tight 'positive' cluster at (2.5, 2.5) among 7
points of a broad negative cloud around the origin; a negative bag holds 10 negative points.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.svm import LinearSVC

from wssbench_plugins._misvm import MISVM


def toy(seed: int, n_pos: int = 40, n_neg: int = 40, size: int = 10, k: int = 3):
    """Bags (size, 2), bag labels bool (N,), true instance labels bool (N * size,)."""
    rng = np.random.default_rng(seed)
    bags, truth = [], []
    for i in range(n_pos + n_neg):
        k_i = k if i < n_pos else 0
        bags.append(np.concatenate([rng.normal((2.5, 2.5), 0.5, (k_i, 2)), rng.normal(0.0, 1.0, (size - k_i, 2))]))
        truth.append(np.arange(size) < k_i)
    return bags, np.arange(n_pos + n_neg) < n_pos, np.concatenate(truth)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_instance_labels(seed):
    bags, bag_labels, truth = toy(seed)
    x = np.concatenate(bags)
    model = MISVM().fit(bags, bag_labels)
    assert 1 < model.n_iter_ <= model.max_iter
    assert (model.instance_labels_ == truth).mean() >= 0.95
    assert ((model.decision_function(x) > 0) == truth).mean() >= 0.95
    # the plain SVM that takes every instance of a positive bag as positive
    naive = LinearSVC(random_state=0).fit(x, np.repeat(bag_labels, [len(b) for b in bags]))
    assert ((naive.decision_function(x) > 0) == truth).mean() < 0.85


def test_negative_bags_stay_negative_and_each_positive_bag_keeps_a_positive():
    bags, bag_labels, _ = toy(0)
    bags[0] = np.random.default_rng(9).normal(0.0, 1.0, (10, 2))  # a positive bag without positive points
    model = MISVM().fit(bags, bag_labels)
    per_bag = np.split(model.instance_labels_, np.cumsum([len(b) for b in bags])[:-1])
    assert not any(labels.any() for labels, y in zip(per_bag, bag_labels) if not y)
    assert all(labels.any() for labels, y in zip(per_bag, bag_labels) if y)
    assert per_bag[0].sum() == 1
    assert per_bag[0][np.argmax(model.decision_function(bags[0]))]


def test_deterministic():
    bags, bag_labels, _ = toy(3)
    x = np.concatenate(bags)
    a, b = MISVM().fit(bags, bag_labels), MISVM().fit(bags, bag_labels)
    np.testing.assert_array_equal(a.instance_labels_, b.instance_labels_)
    np.testing.assert_array_equal(a.decision_function(x), b.decision_function(x))


def test_max_iter_one_is_the_plain_svm():
    bags, bag_labels, _ = toy(0)
    model = MISVM(max_iter=1).fit(bags, bag_labels)
    assert model.n_iter_ == 1
    np.testing.assert_array_equal(model.instance_labels_, np.repeat(bag_labels, [len(b) for b in bags]))


def test_errors():
    bags, bag_labels, _ = toy(0, n_pos=2, n_neg=2)
    with pytest.raises(NotFittedError):
        MISVM().decision_function(bags[0])
    with pytest.raises(ValueError, match="positive and one negative"):
        MISVM().fit(bags, np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="empty"):
        MISVM().fit([*bags[:3], np.zeros((0, 2))], bag_labels)
    with pytest.raises(ValueError, match="bag labels"):
        MISVM().fit(bags, bag_labels[:3])


def test_each_svm_is_the_standard_hinge_loss_svm():
    """Andrews et al.'s SVM: hinge loss (scikit-learn's LinearSVC default is the squared hinge)."""
    bags, bag_labels, _ = toy(4)
    x = np.concatenate(bags)
    model = MISVM().fit(bags, bag_labels)
    assert model.svm_.loss == "hinge"
    reference = LinearSVC(loss="hinge", dual=True, random_state=0, max_iter=10000).fit(x, model.instance_labels_)
    np.testing.assert_allclose(model.svm_.decision_function(x), reference.decision_function(x), rtol=1e-6, atol=1e-8)
    squared = MISVM(loss="squared_hinge").fit(bags, bag_labels)
    assert squared.svm_.loss == "squared_hinge"


def test_classes_fitted_in_parallel_processes_equal_a_one_process_fit():
    """zoomout fits its classes' mi-SVMs in several processes (``fit_per_class``): the same hyperplanes."""
    from wssbench_plugins.zoomout import fit_per_class

    rng = np.random.default_rng(0)
    bags = [rng.normal(size=(int(rng.integers(3, 9)), 5)).astype(np.float32) for _ in range(12)]
    labels = rng.random((12, 4)) < 0.5  # (N, C)
    labels[:, 3] = True  # in every bag: no SVM
    for b, bag in enumerate(bags):
        bag[:2] += 2.0 * labels[b, :3].sum()  # positive bags get instances apart
    done = []
    serial = fit_per_class(bags, labels, 1.0, 10, jobs=1)
    parallel = fit_per_class(bags, labels, 1.0, 10, jobs=2, on_class=done.append)
    assert done == [1, 2, 3, 4] and serial[3] is None and parallel[3] is None
    for one, two in zip(serial[:3], parallel[:3]):
        np.testing.assert_array_equal(one[0].svm_.coef_, two[0].svm_.coef_)
        np.testing.assert_array_equal(one[0].instance_labels_, two[0].instance_labels_)
        assert one[0].svm_.intercept_ == two[0].svm_.intercept_ and one[1] == two[1]
    direct = MISVM().fit(bags, labels[:, 0])
    np.testing.assert_array_equal(direct.svm_.coef_, parallel[0][0].svm_.coef_)
