"""A run started again after it was killed part-way: label maps it had finished are read back
(``wssbench.storage.predcache``), fusion and refiners run only for the rest, and every number of
the record equals an uninterrupted run's."""

import dataclasses
import json

import numpy as np
import pytest

import wssbench
from wssbench.classifier.training import TrainRecipe
from wssbench.host.registry import build_registry
from wssbench.seed.config import RunConfig
from wssbench.seed.run import run
from wssbench_plugins.fusion import ThresholdFusion

CALLS = []  # image ids the counting fusion was called on (inline: one worker)


@dataclasses.dataclass(frozen=True)
class CountingThreshold(ThresholdFusion):
    """The built-in threshold fusion, counting its calls."""

    name = "counting"

    def __call__(self, *args, **kwargs):
        CALLS.append(1)
        return super().__call__(*args, **kwargs)


class Plugin:
    @wssbench.hookimpl
    def register_fusion(self, register):
        register(CountingThreshold)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def config(**changes) -> RunConfig:
    base = RunConfig(recipe=TrainRecipe(epochs=1, batch_size=8, crop=32), fusion="counting", refine=("densecrf",),
                     options=(("dataset", "preset", "tiny"),), workers=1, batch_size=4)
    return dataclasses.replace(base, **changes)


def registry():
    return build_registry([Plugin()])


def numbers(record: dict) -> dict:
    """What a resumed run must reproduce exactly."""
    keep = ("miou", "per_class_iou", "pixel_accuracy", "confusion_matrix", "ci95", "diagnostics", "threshold_curve",
            "threshold_auc", "threshold_max", "n_images")
    return {k: record[k] for k in keep}


def test_a_run_killed_part_way_fuses_and_refines_only_the_rest(home, tmp_path):
    CALLS.clear()
    first = run(config(), registry(), tmp_path / "first")
    n = first["n_images"]
    assert len(CALLS) == n and first["prediction_cache"]["reused"] == 0
    entries = sorted((home / "predictions").glob("labels-*/*.npz"))
    assert len(entries) == n
    for entry in entries[n // 2:]:  # what a SIGKILL half way leaves: half of the label maps stored
        entry.unlink()
    CALLS.clear()
    resumed = run(config(), registry(), tmp_path / "resumed")
    assert len(CALLS) == n - n // 2  # only the images without a stored label map
    assert resumed["prediction_cache"]["reused"] == n // 2
    assert numbers(resumed) == numbers(first)
    for mask in sorted((tmp_path / "first" / "masks").iterdir()):
        assert mask.read_bytes() == (tmp_path / "resumed" / "masks" / mask.name).read_bytes()
    assert (tmp_path / "first" / "counts.npz").read_bytes() == (tmp_path / "resumed" / "counts.npz").read_bytes()


def test_a_changed_fusion_or_refiner_option_uses_other_entries(home, tmp_path):
    CALLS.clear()
    run(config(), registry(), tmp_path / "a")
    n = len(CALLS)
    for i, changed in enumerate([
        config(options=(("dataset", "preset", "tiny"), ("fusion", "bg_threshold", 0.4))),
        config(options=(("dataset", "preset", "tiny"), ("densecrf", "iterations", 3))),
        config(refine=()),
    ]):
        CALLS.clear()
        record = run(changed, registry(), tmp_path / f"b{i}")
        assert len(CALLS) == n and record["prediction_cache"]["reused"] == 0
    dirs = {json.loads((d / "key.json").read_text())["fusion"]["options"]["bg_threshold"] for d in (home / "predictions").iterdir()}
    assert dirs == {0.25, 0.4}


def test_a_damaged_label_map_is_recomputed(home, tmp_path):
    CALLS.clear()
    first = run(config(), registry(), tmp_path / "first")
    entry = sorted((home / "predictions").glob("labels-*/*.npz"))[0]
    blob = entry.read_bytes()
    entry.write_bytes(blob[:100] + bytes([blob[100] ^ 1]) + blob[101:])
    CALLS.clear()
    with pytest.warns(UserWarning, match="damaged cache entry"):
        again = run(config(), registry(), tmp_path / "again")
    assert len(CALLS) == 1 and numbers(again) == numbers(first)


def test_no_label_maps_are_kept_where_maps_are_not_cached(home, tmp_path):
    record = run(config(cache_maps=False), registry(), tmp_path / "run")
    assert "prediction_cache" not in record and not (home / "predictions").exists()


def test_the_entries_hold_no_pickle(home, tmp_path):
    run(config(), registry(), tmp_path / "run")
    entry = next((home / "predictions").glob("labels-*/*.npz"))
    from wssbench.storage.predcache import PredictionCache

    key = json.loads((entry.parent / "key.json").read_text())
    cache = PredictionCache({k: v for k, v in key.items() if k != "version"})
    assert cache.dir == entry.parent
    image_id, _, classes = entry.stem.partition("~")
    label_map, curve = cache.get(image_id, np.array([int(c) for c in classes.split("-") if c]))
    assert label_map.dtype == np.uint8 and curve is not None and curve.ndim == 3


def test_cache_show_and_prune_know_the_label_maps(home, tmp_path):
    from click.testing import CliRunner

    from wssbench.cli import cli

    run(config(), registry(), tmp_path / "run")
    shown = json.loads(CliRunner().invoke(cli, ["cache", "show", "--json"]).stdout)
    entries = [e for e in shown["entries"] if e["section"] == "predictions"]
    assert len(entries) == 1 and entries[0]["what"].startswith("label maps of counting + densecrf from synthetic/train")
    result = CliRunner().invoke(cli, ["cache", "prune", "predictions"])
    assert result.exit_code == 0 and not list((home / "predictions").glob("labels-*"))
