"""A run over cached maps needs no forward pass: the classifier's scores are cached beside the maps
(``wssbench.seed.maps.from_caches``), and a sweep over fusion or refinement settings (a tuning grid)
reads everything back with the same numbers a run computing everything gets."""

import dataclasses

import pytest

import wssbench.seed.maps
from wssbench.classifier.training import TrainRecipe
from wssbench.host.registry import default_registry
from wssbench.seed.config import RunConfig
from wssbench.seed.run import run

FORWARDS = []


@pytest.fixture
def count_forwards(monkeypatch):
    real = wssbench.seed.maps.forward_batch

    def counting(*args, **kwargs):
        FORWARDS.append(1)
        return real(*args, **kwargs)

    FORWARDS.clear()
    monkeypatch.setattr(wssbench.seed.maps, "forward_batch", counting)
    return FORWARDS


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def config(threshold: float = 0.25, **changes) -> RunConfig:
    base = RunConfig(recipe=TrainRecipe(epochs=1, batch_size=8, crop=32), saliency="gbp", classmap="fcn",
                     options=(("dataset", "preset", "tiny"), ("fusion", "bg_threshold", threshold)), workers=1, batch_size=4)
    return dataclasses.replace(base, **changes)


def numbers(record: dict) -> dict:
    keep = ("miou", "per_class_iou", "pixel_accuracy", "confusion_matrix", "threshold_curve", "n_images")
    return {**{k: record[k] for k in keep}, "map": record["classifier"]["map"]}


@pytest.mark.parametrize("classes_from", ["predicted", "labels"])
def test_a_sweep_over_cached_maps_runs_no_forward_pass_and_scores_the_same(home, tmp_path, count_forwards, classes_from):
    run(config(classes_from=classes_from), default_registry(), tmp_path / "first")
    assert count_forwards  # the first run computes the maps
    count_forwards.clear()
    swept = run(config(0.4, classes_from=classes_from), default_registry(), tmp_path / "swept")
    assert count_forwards == []
    assert swept["timings"]["stages_seconds"].get("forward", 0.0) == 0.0
    fresh = run(config(0.4, classes_from=classes_from, cache_maps=False), default_registry(), tmp_path / "fresh")
    assert count_forwards  # nothing cached: the pass runs
    assert numbers(swept) == numbers(fresh)


def test_a_missing_map_or_score_runs_the_forward_pass_again(home, tmp_path, count_forwards):
    first = run(config(), default_registry(), tmp_path / "first")
    for section in ("maps/saliency-gbp-*", "maps/forward-scores-*"):
        entry = sorted(home.glob(f"{section}/*.npy"))[0]
        entry.unlink()
        count_forwards.clear()
        again = run(config(), default_registry(), tmp_path / f"again-{section[5:12]}")
        assert len(count_forwards) == 1  # only the batch of the missing entry
        assert numbers(again) == numbers(first)


def test_a_classifier_with_a_background_output_always_runs_it(home, tmp_path, count_forwards):
    """Its per-pixel background probability comes from the pass (``background_of``)."""
    run(config(background=True), default_registry(), tmp_path / "first")
    count_forwards.clear()
    run(config(0.4, background=True), default_registry(), tmp_path / "again")
    assert count_forwards
