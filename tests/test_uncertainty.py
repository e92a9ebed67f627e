"""Per-image counts, the image bootstrap, paired differences, error diagnostics, threshold curves."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from wssbench.errors import DataError, UsageError
from wssbench.results.counts import CountsAccumulator, ImageCounts, miou
from wssbench.results.curve import CurveAccumulator
from wssbench.results.diagnostics import diagnostics
from wssbench.results.metrics import ConfusionMatrix
from wssbench.results.uncertainty import check_resamples, difference, estimate


def random_split(n: int, c: int = 4, size: int = 12, seed: int = 0, noise: float = 0.3):
    """n images (size x size) of c labels with ignore borders, and noisy predictions."""
    rng = np.random.default_rng(seed)
    images = []
    for k in range(n):
        gt = rng.integers(0, c, (size, size)).astype(np.uint8)
        gt[0] = 255
        pred = np.where(rng.random((size, size)) < noise, rng.integers(0, c, (size, size)), gt).astype(np.uint8)
        pred[pred == 255] = 0
        images.append((f"im{k:03d}", gt, pred))
    return images


def counts_of(images, c: int = 4) -> ImageCounts:
    acc = CountsAccumulator(c)
    for image_id, gt, pred in images:
        acc.update(image_id, gt, pred)
    return acc.result()


def test_summed_counts_give_the_confusion_matrix_miou_and_subsets_are_scored_alone():
    images = random_split(30)
    cm = ConfusionMatrix(4)
    for _, gt, pred in images:
        cm.update(gt, pred)
    counts = counts_of(images)
    assert counts.miou() == pytest.approx(cm.compute().miou, abs=1e-12)
    part = ConfusionMatrix(4)
    for _, gt, pred in images[5:12]:
        part.update(gt, pred)
    assert counts.subset([i for i, _, _ in images[5:12]]).miou() == pytest.approx(part.compute().miou, abs=1e-12)
    # a prediction of 255 on a counted pixel is a miss of its class, as in the metric
    gt = np.zeros((2, 2), np.uint8)
    pred = np.array([[0, 255], [0, 0]], np.uint8)
    one = counts_of([("a", gt, pred)], 2)
    assert one.intersection[0, 0] == 3 and one.union[0, 0] == 4 and one.truth[0, 0] == 4


def test_counts_round_trip_and_damaged_files_are_one_line_errors(tmp_path):
    counts = counts_of(random_split(5))
    path = tmp_path / "counts.npz"
    counts.save(path)
    back = ImageCounts.load(path)
    assert back.ids == counts.ids and np.array_equal(back.union, counts.union) and np.array_equal(back.pixels, counts.pixels)
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(DataError, match="counts.npz: not a readable"):
        ImageCounts.load(path)
    with pytest.raises(DataError, match="not found"):
        ImageCounts.load(tmp_path / "missing.npz")
    np.savez(path, version=1, ids=np.array(["a"]), intersection=np.ones((1, 2)), union=np.zeros((1, 2)),
             truth=np.ones((1, 2)), pixels=np.ones(1))
    with pytest.raises(DataError, match="inconsistent"):
        ImageCounts.load(path)


def test_a_pickled_object_in_a_count_file_is_refused_not_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("x",))

    path = tmp_path / "counts.npz"
    np.savez(path, version=1, ids=np.array([Payload()], dtype=object), intersection=np.zeros((1, 2)),
             union=np.zeros((1, 2)), truth=np.zeros((1, 2)), pixels=np.ones(1))
    with pytest.raises(DataError):
        ImageCounts.load(path)
    assert not marker.exists()


def test_interval_matches_scipy_percentile_bootstrap():
    counts = counts_of(random_split(40, noise=0.4))
    ours = estimate([counts], n_resamples=20000)

    def statistic(index, axis=-1):
        index = np.asarray(index, np.int64)
        return miou(counts.intersection[index].sum(-2), counts.union[index].sum(-2))

    ref = stats.bootstrap((np.arange(40),), statistic, vectorized=True, n_resamples=20000, method="percentile",
                          confidence_level=0.95, random_state=np.random.default_rng(2))
    assert ours.ci95[0] == pytest.approx(ref.confidence_interval.low, abs=0.004)
    assert ours.ci95[1] == pytest.approx(ref.confidence_interval.high, abs=0.004)
    assert ours.ci95[0] < ours.mean < ours.ci95[1]
    assert ours.n_seeds == 1 and ours.std is None


def test_identical_images_give_a_zero_width_interval_and_seeds_give_mean_and_std():
    gt = np.array([[0, 1], [1, 1]], np.uint8)
    pred = np.array([[0, 1], [0, 1]], np.uint8)
    counts = counts_of([(f"i{k}", gt, pred) for k in range(8)], 2)
    # class 0: I 1, U 2 -> 0.5; class 1: I 2, U 3 -> 2/3
    assert counts.miou() == pytest.approx((0.5 + 2 / 3) / 2)
    e = estimate([counts], n_resamples=200)
    assert e.ci95 == pytest.approx((e.mean, e.mean))
    better = counts_of([(f"i{k}", gt, gt) for k in range(8)], 2)  # perfect: 1.0
    e2 = estimate([counts, better], n_resamples=500)
    assert e2.mean == pytest.approx((counts.miou() + 1.0) / 2)
    assert e2.std == pytest.approx(np.std([counts.miou(), 1.0], ddof=1))
    assert e2.ci95[0] == pytest.approx(counts.miou()) and e2.ci95[1] == pytest.approx(1.0)  # seeds drawn with replacement


def test_a_row_compared_with_itself_is_tied_and_clearly_different_rows_are_not():
    images = random_split(40, noise=0.3)
    a = counts_of(images)
    same = difference([a], [a], n_resamples=500)
    assert same.mean == 0.0 and same.ci95 == (0.0, 0.0) and same.tied
    worse = counts_of(random_split(40, noise=0.7))
    d = difference([a], [worse], n_resamples=500)
    assert d.mean > 0.2 and not d.tied and d.ci95[0] > 0
    # images in another order are aligned by id
    shuffled = a.subset(list(reversed(a.ids)))
    assert difference([a], [shuffled], n_resamples=200).ci95 == (0.0, 0.0)
    with pytest.raises(UsageError, match="different images"):
        difference([a], [a.subset(list(a.ids[:10]))], n_resamples=200)


def test_stored_samples_give_the_same_intervals_and_pair_runs_on_the_same_images():
    """A run's resampled mIoUs are computed once (canonical draws) and combined later."""
    from wssbench.results.uncertainty import difference_from, estimate_from, run_samples

    a, b = counts_of(random_split(40, noise=0.3, seed=5)), counts_of(random_split(40, noise=0.3, seed=6))
    b = ImageCounts(a.ids, b.intersection, b.union, b.truth, b.pixels)  # the same image ids
    sa, sb = run_samples(a, 300), run_samples(b, 300)
    assert np.array_equal(sa, run_samples(a.subset(list(reversed(a.ids))), 300))  # order does not matter
    assert estimate_from([a.miou()], sa[:, None]) == estimate([a], 300)
    assert difference_from([a.miou()], sa[:, None], [b.miou()], sb[:, None]) == difference([a], [b], 300)


def test_paired_differences_are_narrower_than_the_rows_intervals():
    base = random_split(60, noise=0.35, seed=3)
    a = counts_of(base)
    # b: the same predictions, a few pixels worse on every image: a small but consistent difference
    b_images = []
    for image_id, gt, pred in base:
        worse = pred.copy()
        worse[1, :3] = (gt[1, :3] + 1) % 4
        b_images.append((image_id, gt, worse))
    b = counts_of(b_images)
    d = difference([a], [b], n_resamples=1000)
    ea, eb = estimate([a]), estimate([b])
    assert ea.ci95[0] < eb.ci95[1]  # the rows' own intervals overlap ...
    assert d.ci95[0] > 0  # ... but the paired difference is clear


def test_bootstrap_resamples_below_100_are_refused():
    with pytest.raises(UsageError, match="at least 100"):
        check_resamples(50)
    assert check_resamples(100) == 100


def test_diagnostics_hand_case():
    # 10 x 10 image: class 1 covers 30 px (large? 30 % -> large), class 2 covers 3 px (small), class 3 absent
    gt = np.zeros((10, 10), np.uint8)
    gt[:3] = 1
    gt[9, :3] = 2
    pred = gt.copy()
    pred[0, :5] = 0  # 5 of class 1 missed
    pred[5, 0] = 3  # class 3 made up on 1 background pixel
    counts = counts_of([("a", gt, pred)], 4)
    d = diagnostics(counts, ["background", "one", "two", "three"])
    assert d["recall"]["one"] == pytest.approx(25 / 30) and d["precision"]["one"] == 1.0
    assert d["precision"]["three"] == 0.0 and d["recall"]["three"] is None
    assert d["iou_by_size"]["large"] == {"iou": pytest.approx(25 / 30), "regions": 1}
    assert d["iou_by_size"]["small"] == {"iou": 1.0, "regions": 1}
    assert d["iou_by_size"]["medium"] == {"iou": None, "regions": 0}
    assert d["absent_class_rate"] == pytest.approx(1 / 3) and d["predicted_classes"] == 3


def test_threshold_curve_summary_and_the_run_threshold_off_the_grid():
    gt = np.array([[0, 0, 1, 1]], np.uint8)
    acc = CurveAccumulator((0.0, 0.5, 1.0), 2, used=0.3)
    assert acc.points == (0.0, 0.5, 1.0, 0.3)
    # at 0.0 everything foreground, at 0.5 perfect, at 1.0 everything background, at 0.3 perfect
    fg, perfect, bg = np.ones((1, 4), np.uint8), gt.copy(), np.zeros((1, 4), np.uint8)
    acc.update(gt, [fg, perfect, bg, perfect])
    s = acc.summary()
    assert [p["miou"] for p in s["threshold_curve"]] == [pytest.approx(0.25), 1.0, pytest.approx(0.25)]
    assert s["threshold_auc"] == pytest.approx(0.5)
    assert s["threshold_max"] == {"threshold": 0.5, "miou": 1.0, "oracle": True}
    assert s["threshold_used"] == {"threshold": 0.3, "miou": 1.0}
    with pytest.raises(UsageError):
        CurveAccumulator((0.5, 0.2), 2)


def test_a_run_records_its_counts_interval_diagnostics_and_threshold_curve(tmp_path, tiny_dataset, monkeypatch):
    """End to end on the tiny dataset: the counts file beside result.json reproduces the record's
    mIoU; without refiners, the curve at the run's own threshold is the run's mIoU."""
    import json

    import wssbench

    pipe = wssbench.Pipeline(saliency="gbp", classmap="fcn", refine="none", epochs=1, workers=1,
                             options={"dataset.preset": "tiny", "fusion.bg_threshold": 0.3})
    record = pipe.run(out=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "result.json").read_text())["counts"]["file"] == "counts.npz"
    counts = ImageCounts.load(tmp_path / "run" / "counts.npz")
    assert counts.ids == tuple(tiny_dataset.ids("val")) and counts.miou() == pytest.approx(record["miou"], abs=1e-12)
    assert ImageCounts.load_samples(tmp_path / "run" / "counts.npz").shape == (record["counts"]["resamples"],)
    lo, hi = record["ci95"]
    assert lo <= record["miou"] <= hi
    assert set(record["diagnostics"]) >= {"precision", "recall", "iou_by_size", "absent_class_rate"}
    assert [p["threshold"] for p in record["threshold_curve"]] == [round(0.05 * i, 2) for i in range(20)]
    assert record["threshold_used"] == {"threshold": 0.3, "miou": pytest.approx(record["miou"], abs=1e-12)}
    assert record["threshold_max"]["oracle"] is True
    assert record["threshold_auc"] == pytest.approx(np.mean([p["miou"] for p in record["threshold_curve"]]))
    assert record["priors"] == []
    off = wssbench.Pipeline(saliency="gbp", classmap="fcn", refine="none", epochs=1, workers=1,
                            options={"dataset.preset": "tiny", "fusion.curve": "none"}).run()
    assert "threshold_curve" not in off
