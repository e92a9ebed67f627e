"""Class map ``zoomout``: superpixel pooling by hand and against nearest-neighbour upsampling,
layer choice, feature layout, painting of SVM scores, fit, caching and errors.

Untrained ResNet-18 (``pretrained=False``), the tiny synthetic dataset (64 px), few images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from wssbench.errors import UsageError
from wssbench.methods.superpixels import segment_means, slic_segments
from wssbench_plugins.zoomout import ZoomOut, box_means, coverage, default_layers, resolve_layers, to_uint8

LEVELS = [64, 128, 256, 512, 512, 512]  # layer1..layer4 of ResNet-18, then the distant and the global level


@pytest.fixture(scope="module")
def model(resnet18_classifier):
    return resnet18_classifier(8)


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return tiny_dataset


@pytest.fixture(scope="module")
def images(model, dataset):
    return model.preprocess([dataset.load_image(i) for i in dataset.ids("val")[:2]])  # (2, 3, 64, 64)


@pytest.fixture(scope="module")
def fitted(model, dataset):
    producer = ZoomOut(max_images=6, max_iter=3)
    producer.fit(model, dataset, "train", "test-key")
    return producer


def test_coverage_by_hand():
    segments = np.array([
        [0, 0, 1, 1],
        [0, 0, 0, 1],
        [2, 2, 1, 1],
        [2, 2, 1, 1],
    ])
    weights = coverage(segments, 2, 2)  # cells: top-left, top-right, bottom-left, bottom-right
    np.testing.assert_allclose(weights, [[4 / 5, 1 / 5, 0, 0], [0, 3 / 7, 0, 4 / 7], [0, 0, 1, 0]])


def test_coverage_pooling_is_the_mean_over_nearest_upsampled_features():
    rng = np.random.default_rng(0)
    image = (255 * rng.random((48, 40, 3))).astype(np.uint8)
    segments = slic_segments(image, 30, 10.0)  # (48, 40)
    for h, w in [(12, 10), (7, 9)]:
        feats = rng.random((5, h, w))  # (F, h, w)
        rows = (np.arange(48) + 0.5) * h / 48  # pixel centres in cell units
        cols = (np.arange(40) + 0.5) * w / 40
        upsampled = feats[:, rows.astype(int)][:, :, cols.astype(int)]  # (F, H, W) nearest neighbour
        pooled = coverage(segments, h, w) @ feats.reshape(5, -1).T  # (S, F)
        np.testing.assert_allclose(pooled, segment_means(upsampled, segments).T, rtol=1e-12)


def test_layers(model):
    assert default_layers(model.features) == ["layer1", "layer2", "layer3", "layer4"]
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    assert default_layers(plain) == ["0", "1", "2"]
    assert resolve_layers(model.features, " layer2 ,layer4.1.conv2") == ["layer2", "layer4.1.conv2"]
    with pytest.raises(UsageError, match="no module 'layer7'"):
        resolve_layers(model.features, "layer1,layer7")


def test_features_are_l2_normalised_levels(model, images):
    segments, features = ZoomOut(n_segments=40).superpixel_features(model, images)  # the default: every level
    for seg, feat in zip(segments, features):
        assert seg.shape == (64, 64) and feat.dtype == np.float32
        assert feat.shape == (seg.max() + 1, sum(LEVELS))
        for level in np.split(feat, np.cumsum(LEVELS)[:-1], axis=1):
            np.testing.assert_allclose(np.linalg.norm(level, axis=1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(feat[:, -512:], np.repeat(feat[:1, -512:], len(feat), axis=0))  # global level
    _, (last_only,) = ZoomOut(n_segments=40, layers="layer4").superpixel_features(model, images[:1])
    np.testing.assert_allclose(last_only, features[0][:, -3 * 512:], rtol=1e-5, atol=1e-6)
    _, (local,) = ZoomOut(n_segments=40, distant=False, global_level=False).superpixel_features(model, images[:1])
    np.testing.assert_allclose(local, features[0][:, :-1024], rtol=1e-5, atol=1e-6)
    _, (no_distant,) = ZoomOut(n_segments=40, distant=False).superpixel_features(model, images[:1])
    np.testing.assert_allclose(no_distant, np.delete(features[0], np.s_[-1024:-512], axis=1), rtol=1e-5, atol=1e-6)


def test_distant_level_box_means_by_hand():
    segments = np.array([
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 2, 2],
        [2, 2, 2, 2],
    ])
    maps = np.arange(16, dtype=float).reshape(1, 4, 4)  # one channel, one cell per pixel
    # scale 1: each superpixel's own bounding box
    np.testing.assert_allclose(box_means(segments, maps, 1.0)[:, 0], [(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4, np.mean(np.arange(8, 16))])
    # scale 2: superpixel 0's box (rows 0-2, cols 0-2, centre (1, 1)) grows to rows/cols [0, 3) clipped at 0
    grown = box_means(segments, maps, 2.0)[:, 0]
    assert grown[0] == pytest.approx(np.mean([0, 1, 2, 4, 5, 6, 8, 9, 10]))
    assert grown[2] == pytest.approx(np.mean(np.arange(4, 16)))  # rows 2-3 (centre 3) grown 2x: rows 1-3
    # a coarse 2 x 2 map: cell (0, 0) holds pixels rows/cols 0-1
    coarse = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    np.testing.assert_allclose(box_means(segments, coarse, 1.0)[:, 0], [1.0, 2.0, 3.5])


def test_default_layers_on_a_vgg_style_backbone_are_every_convolution():
    class VggLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(4, 8, 3), nn.ReLU(), nn.MaxPool2d(2))
            self.pre_logits = nn.Conv2d(8, 8, 1)

    assert default_layers(VggLike()) == ["features.1", "features.3", "features.6"]  # each convolution's ReLU


def test_fit_uses_the_whole_training_split_by_default_and_max_images_caps_it(model, dataset, monkeypatch):
    from wssbench_plugins import zoomout

    seen = []

    def recorder(bags, labels, *args, on_class=None, **kwargs):  # the mi-SVMs run in other processes: recorded here
        seen.append(len(bags))
        for c in range(labels.shape[1]):
            on_class(c + 1)
        return [None] * labels.shape[1]

    monkeypatch.setattr(zoomout, "fit_per_class", recorder)
    n = len(dataset.ids("train"))
    totals = []
    ZoomOut(n_segments=20)._train(model, dataset, "train", lambda done, total: totals.append(total))
    classes = dataset.num_classes - 1  # the progress counts the images' features, then each class's mi-SVM
    assert totals[-1] == n + classes and set(seen) == {n}
    seen.clear(), totals.clear()
    ZoomOut(n_segments=20, max_images=3)._train(model, dataset, "train", lambda done, total: totals.append(total))
    assert totals[-1] == 3 + classes and set(seen) == {3}
    assert zoomout.ZoomOut.max_images is None


class FixedScores:
    """Stands in for a fitted mi-SVM: superpixel s scores s - 3."""

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.arange(len(x)) - 3.0


def test_scores_painted_on_superpixels(model, images):
    producer = ZoomOut(n_segments=20)
    svms = [FixedScores() if c == 4 else None for c in range(8)]
    producer._svms[:] = svms  # as if fitted
    out = producer(model, images, torch.tensor([[4, 1], [-1, 4]]))  # (2, 2, 64, 64)
    for b, k in [(0, 0), (1, 1)]:
        segments = slic_segments(to_uint8(model, images)[b], 20, 10.0)
        scores = np.clip(np.arange(segments.max() + 1) - 3.0, 0, None)
        np.testing.assert_allclose(out[b, k].numpy(), scores[segments] / scores.max(), rtol=1e-6)
    assert (out[0, 1] == 0).all() and (out[1, 0] == 0).all()  # no SVM for class 1; padding


@pytest.mark.slow
def test_fit_trains_caches_and_reloads(model, dataset, images, fitted, monkeypatch):
    assert len(fitted.svms) == 8
    trained = [svm for svm in fitted.svms if svm is not None]
    assert trained and all(1 <= svm.n_iter_ <= 3 for svm in trained)
    classes = torch.tensor([[0, 1, 2], [3, 4, 5]])
    out = fitted(model, images, classes)

    real_train = ZoomOut._train
    monkeypatch.setattr(ZoomOut, "_train", lambda *args: pytest.fail("refitted instead of loading the cache"))
    again = ZoomOut(max_images=6, max_iter=3)
    again.fit(model, dataset, "train", "test-key")
    torch.testing.assert_close(again(model, images, classes), out, rtol=0, atol=0)

    trained_anew = []
    monkeypatch.setattr(ZoomOut, "_train", lambda *args: trained_anew.append(1) or real_train(*args))
    with pytest.warns(UserWarning, match="in all or none"):  # some class is in neither of 2 images
        ZoomOut(max_images=2, max_iter=3).fit(model, dataset, "train", "test-key")  # other options
        ZoomOut(max_images=2, max_iter=3).fit(model, dataset, "train", "other-classifier")
    assert len(trained_anew) == 2


def test_errors(model, images):
    with pytest.raises(UsageError, match="fit"):
        ZoomOut()(model, images, torch.tensor([[0], [1]]))
    for bad in ({"n_segments": 0}, {"max_images": 0}, {"svm_c": 0.0}):
        with pytest.raises(ValueError):
            ZoomOut(**bad)
