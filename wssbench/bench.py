"""A bench: a table of runs described in a TOML file, resumable (``wssbench bench FILE``).

    title = "..."                       # the table's caption
    tune_split = "train"                # where ``tune`` grids are searched: no image of it may be scored
    tune_limit = 120                    # images of the tune split to search on
    [defaults]                          # any ``wssbench run`` option, by its name
    dataset = "synthetic"
    seeds = [0, 1, 2]                   # each seed a full run (also per row); one row of the table
    [[rows]]
    label = "FCN+GBP"                   # the row's name and its folder
    preset = "fcn-gbp"                  # run options, as in [defaults]; options as a table:
    options = { "fusion.bg_threshold" = 0.3 }
    tune = { "fusion.bg_threshold" = [0.2, 0.3, 0.4] }
    published = { miou = 41.4, dataset = "voc2012", split = "val", source = "Shimoda & Yanai (poster)" }
    [[rows]]
    label = "PSA"                       # a pseudo-mask row: the row's run options describe its seeds
    split = "train"                     # (classes from the ground-truth labels, no saliency, no refiner)
    classmap = "cam"
    pseudomask = { method = "psa", options = { epochs = 2 }, backbone = "resnet50" }

Each row runs into ``OUT/<label>/`` (with ``seeds``: ``OUT/<label>/seed-<s>/``, each seed a
full run, classifier trained with that seed, tuned on its own); a run whose ``result.json`` was
made from the same row description is skipped, so a bench killed half-way resumes where it
stopped. A row whose tuning images overlap the images it is scored on is refused before any
row runs; each tuned record names its tuning split, how many images and a digest of their ids,
the scores of the grid, how they were found (a grid over the background threshold alone, of a
row with no refiner, from one run's threshold curve; else a run per value) and what it cost.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from wssbench.api import Pipeline
from wssbench.errors import DataError, UsageError
from wssbench.pseudomask.config import PseudoMaskConfig
from wssbench.pseudomask.config import check_all as check_walk
from wssbench.pseudomask.run import run as make_pseudo_masks
from wssbench.results.counts import ImageCounts
from wssbench.results.records import without_later_defaults
from wssbench.results.uncertainty import estimate_from
from wssbench.seed.components import check
from wssbench.seed.config import RunConfig, build_config, merge
from wssbench.seed.record import describe_components, versions
from wssbench.segmentation.config import SegmentConfig
from wssbench.segmentation.describe import build_segment_config, is_segment_preset
from wssbench.segmentation.record import describe as describe_segment
from wssbench.segmentation.run import resolve as resolve_segment
from wssbench.segmentation.run import segment
from wssbench.storage.cache import fingerprint
from wssbench.storage.io import check_run_dir

ROW_KEYS = {"label", "tune", "published", "seeds", "pseudomask"}
PSEUDOMASK_KEYS = {"method", "options", "backbone", "weights", "pretrained", "fit_split"}
SEEDS_OF_A_WALK = {"classes_from": "labels", "saliency": "none", "refine": "none"}  # what a pseudo-mask row's seeds are
SET_BY_BENCH = {"out", "as_json", "from_record"}


def load_bench(path: Path, registry: Any = None, overrides: dict | None = None) -> dict:
    """Read a bench file and check every row (names, options, value types, labels) before
    anything runs; each row's checked config is kept under ``row["_config"]``."""
    try:
        spec = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: bench file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"{path}: not valid TOML ({e})") from None
    rows = spec.get("rows")
    if not rows:
        raise DataError(f"{path}: no [[rows]]")
    spec["_set"] = dict(overrides or {})  # --set: over every row
    labels: dict[str, int] = {}
    for i, row in enumerate(rows):
        if "label" not in row:
            raise DataError(f"{path}: row {i + 1} has no label")
        where = f"{path}: row '{row['label']}': "
        if row["label"] in labels or slug(row["label"]) in map(slug, labels):
            raise UsageError(f"{where}a label used twice (rows {labels.get(row['label'], '?')} and {i + 1}); each row needs its own")
        labels[row["label"]] = i + 1
        if registry is not None and row.get("pseudomask") is not None:
            if row.get("tune"):
                raise UsageError(f"{where}'tune' searches seed-stage options; this row makes pseudo-masks")
            row["_config"] = check_walk(row_config(spec, row, where), registry)
        elif registry is not None and is_segment_preset(row_description(spec, row, where).get("preset")):
            if row.get("tune"):
                raise UsageError(f"{where}'tune' searches seed-stage options; this row trains a segmentation network")
            row["_config"] = resolve_segment(row_config(spec, row, where), registry)[0]
        elif registry is not None:
            row["_config"] = check(row_config(spec, row, where), registry)
            grid = row.get("tune") or {}
            for values in itertools.product(*grid.values()):
                trial = dict(zip(grid, values))
                check(row_config(spec, row, where, extra_options=trial), registry)
        row["_seeds"] = row_seeds(spec, row, where)
    return spec


def row_seeds(spec: dict, row: dict, where: str) -> list[int] | None:
    """The row's ``seeds`` (the row's own, else ``[defaults]``'s): a list of distinct integers, or None."""
    seeds = row.get("seeds", spec.get("defaults", {}).get("seeds"))
    if seeds is None:
        return None
    if not isinstance(seeds, list) or not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise UsageError(f"{where}seeds: expected a list of distinct non-negative integers, e.g. seeds = [0, 1, 2]; got {seeds!r}")
    return seeds


def tuning_ids(spec: dict, row: dict, registry) -> tuple[list[str], list[str]]:
    """The ids a row tunes on and the ids it is scored on."""
    config = row["_config"]
    dataset = registry.create("dataset", config.dataset, root=config.data_root, **config.options_for("dataset"))
    dataset.prepare()
    split = spec.get("tune_split", "train")
    if hasattr(dataset, "check_split"):
        dataset.check_split(split)
    return dataset.ids(split)[: spec.get("tune_limit")], dataset.ids(config.split)[: config.limit]


def check_tuning_split(spec: dict, row: dict, registry, where: str) -> None:
    """Refuse a row whose tuning images overlap its scored ones (before any row runs)."""
    tune, scored = tuning_ids(spec, row, registry)
    overlap = set(tune) & set(scored)
    if overlap:
        raise UsageError(f"{where}tune_split '{spec.get('tune_split', 'train')}' shares {len(overlap)} images with the scored "
                         f"split '{row['_config'].split}' (e.g. {sorted(overlap)[0]}); tune on images that are never scored")


def row_description(spec: dict, row: dict, where: str = "") -> dict:
    """A row's run options: ``[defaults]`` < the row, merged key by key (component options per
    STAGE.KEY: a row's ``options`` adds to the defaults' and wins where both set a key)."""
    defaults = {k: v for k, v in spec.get("defaults", {}).items() if k != "seeds"}
    own = {k: v for k, v in row.items() if k not in ROW_KEYS and not k.startswith("_")}
    for key in (set(defaults) | set(own)) & SET_BY_BENCH:
        raise UsageError(f"{where}'{key}' is set by bench itself")
    return merge(defaults, own, spec.get("_set", {}))


def row_config(spec: dict, row: dict, where: str = "", extra_options: dict | None = None, **overrides: Any
               ) -> RunConfig | SegmentConfig | PseudoMaskConfig:
    """The config of a row (the preset, if any, fills what the row and defaults leave unset);
    a row naming a segmentation preset (EM-Adapt, CCNN) gets a :class:`SegmentConfig`, a row
    with ``pseudomask`` a :class:`PseudoMaskConfig` whose seeds are the row's run options."""
    description = row_description(spec, row, where)
    walk = row.get("pseudomask")
    if walk is not None:
        if not isinstance(walk, dict) or "method" not in walk or set(walk) - PSEUDOMASK_KEYS:
            raise UsageError(f"{where}pseudomask: expected a table with 'method' and optionally "
                             f"{', '.join(sorted(PSEUDOMASK_KEYS - {'method'}))}; got {walk!r}")
        seeds = build_config(merge(description, overrides, SEEDS_OF_A_WALK), where=where)
        options = tuple((str(k), v) for k, v in (walk.get("options") or {}).items())
        return PseudoMaskConfig(seeds, walk["method"], options, walk.get("backbone"), walk.get("weights"), walk.get("pretrained"),
                                walk.get("fit_split"))
    if is_segment_preset(description.get("preset")):
        return build_segment_config(merge(description, overrides), where=where)
    return build_config(merge(row_description(spec, row, where), {"options": extra_options or {}}, overrides), where=where)


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", label).strip("_") or "row"


def tune_row(spec: dict, row: dict, registry, progress: Any = None) -> tuple[dict, dict]:
    """Grid-search ``row['tune']`` on the tune split; returns the chosen options and a report.

    A grid over the background threshold alone, of a row with no refiner, is read from one run's
    threshold curve (``wssbench.results.curve``: the fusion applied at every threshold to the
    same maps, which with no refiner is each threshold's run exactly); any other grid runs the
    pipeline once per combination (the maps come from the cache after the first)."""
    grid = row["tune"]
    split = spec.get("tune_split", "train")
    tune, scored = tuning_ids(spec, row, registry)
    setting = {"split": split, "limit": spec.get("tune_limit"), "seed": row["_config"].seed}
    started = time.time()
    scores, method = None, "a run per value"
    swept = curve_option(row, registry)
    if swept:
        thresholds = grid[swept]
        config = row_config(spec, row, extra_options={swept: thresholds[0], "fusion.curve": sorted(set(thresholds))}, **setting)
        curve = {p["threshold"]: p["miou"] for p in Pipeline(config, registry=registry).run(progress=progress).get("threshold_curve") or []}
        if all(float(t) in curve for t in thresholds):
            scores, method = [{"options": {swept: t}, "miou": curve[float(t)]} for t in thresholds], "one run's threshold curve"
    if scores is None:
        scores = []
        for values in itertools.product(*grid.values()):
            choice = dict(zip(grid, values))
            config = row_config(spec, row, extra_options=choice, **setting)
            record = Pipeline(config, registry=registry).run(progress=progress)
            scores.append({"options": choice, "miou": record["miou"]})
    best = max(scores, key=lambda s: -1.0 if s["miou"] is None else s["miou"])
    report = {"split": split, "limit": spec.get("tune_limit"), "n_images": len(tune), "ids_digest": fingerprint(sorted(tune)),
              "overlap": len(set(tune) & set(scored)), "grid": grid, "scores": scores, "chosen": best["options"],
              "method": method,
              "seconds": time.time() - started}  # the grid's runs, with the classifier's training when it was not cached yet
    return best["options"], {**report, "at_edge": grid_edges(grid, best["options"])}


def curve_option(row: dict, registry) -> str | None:
    """The tune grid's one key when it is the row's fusion's background threshold and the row
    has no refiner (then one run's threshold curve scores the whole grid); else None."""
    config = row["_config"]
    if not isinstance(config, RunConfig) or config.refine or len(row["tune"]) != 1:
        return None
    option = getattr(registry.get("fusion", config.fusion).factory, "threshold_option", None)
    values = next(iter(row["tune"].values()))
    key = f"fusion.{option}"
    if option is None or key not in row["tune"] or len(set(values)) < 2 \
            or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in values):  # a curve needs two points in [0, 1]
        return None
    return key


def grid_edges(grid: dict[str, list], chosen: dict[str, Any]) -> list[str]:
    """The numeric options of a grid of 3 or more values whose chosen value is its smallest or
    largest: the optimum may lie outside the grid."""
    return [
        key for key, values in grid.items()
        if len(values) > 2 and all(isinstance(v, (int, float)) for v in values)
        and chosen[key] in (min(values), max(values))
    ]


# Run options that change how fast a row runs, never its numbers: not part of a row's identity.
SPEED_ONLY = ("workers", "loader_workers", "cache_maps", "batch_size", "device", "skip_checks")


def row_key(spec: dict, row: dict, registry) -> str:
    """What makes a finished row's result valid: its checked config (options that only change
    speed left out), the components' code defaults, the tuning setup and the versions."""
    config = row["_config"]
    # unset options (None) are left out, so that an option added later with a default that keeps
    # the old behaviour does not make finished rows look changed
    described = without_later_defaults({k: v for k, v in config.to_dict().items() if v is not None})
    for key in SPEED_ONLY:
        described.pop(key, None)
    if isinstance(config, SegmentConfig):

        components = describe_segment(config, registry)
    elif isinstance(config, PseudoMaskConfig):
        components = describe_components(config.seeds, registry)
    else:
        components = describe_components(config, registry)
    return fingerprint({
        "config": described, "tune": row.get("tune"), "tune_split": spec.get("tune_split"),
        "tune_limit": spec.get("tune_limit"), "components": components,
        "versions": versions(),
    })


def _quiet(message: str) -> None:
    return None


def run_seconds(record: dict) -> float | None:
    """What a finished run cost, from its record: its tuning (the classifier's training included
    where the tuning trained it) and its run; None for a record from before timings were kept."""
    total = (record.get("timings") or {}).get("total_seconds")
    if total is None:
        return None
    return total + ((record.get("tuning") or {}).get("seconds") or 0.0)


def run_row(spec: dict, row: dict, out: Path, registry, say: Callable[[str], None] = _quiet, progress: Any = None) -> dict:
    """Run one row (one seed of it) into ``out``, unless a finished run of the same row is
    there already; tune first where the row asks. ``say`` receives one line per step."""
    from wssbench.api import Pipeline  # the run machinery imports torch: loaded when a row runs

    key = row_key(spec, row, registry)
    result = out / "result.json"
    if result.is_file():
        record = json.loads(result.read_text())
        if record.get("bench_row") == key:
            say(f"{row['label']}: done already ({result})")
            return record
    tuning = None
    config = row["_config"]
    if row.get("tune"):
        say(f"{row['label']}: tuning {', '.join(row['tune'])} on {spec.get('tune_split', 'train')}")
        chosen, tuning = tune_row(spec, row, registry, progress)
        for option in tuning["at_edge"]:
            say(f"warning: row '{row['label']}': the best {option} ({chosen[option]}) is at the edge of its grid {row['tune'][option]}; widen it")
        config = row_config(spec, row, extra_options=chosen, seed=row["_config"].seed)
    if check_run_dir(out):
        say(f"{row['label']}: replacing the earlier result in {out}")
    say(f"{row['label']}: running")
    annotations = {"bench_row": key, "bench_label": row["label"], "tuning": tuning, "published": row.get("published")}
    if isinstance(config, SegmentConfig):
        record = segment(config, registry, out, progress, annotations=annotations)
    elif isinstance(config, PseudoMaskConfig):
        record = make_pseudo_masks(config, registry, out, progress, annotations=annotations)
    else:
        record = Pipeline(config, registry=registry).run(out, progress, annotations=annotations)
    say(f"{row['label']}: finished in {run_seconds(record):.0f} s" + (f" ({tuning['seconds']:.0f} s of it tuning)" if tuning else ""))
    return record


def seed_runs(spec: dict, row: dict, out: Path, registry) -> list[tuple[dict, Path]]:
    """The runs of a row: itself in ``out``, or with ``seeds`` one per seed in ``out/seed-<s>``
    (the row with its config at that seed)."""
    if not row.get("_seeds"):
        return [(row, out)]

    runs = []
    for s in row["_seeds"]:
        config = row_config(spec, row, seed=s)
        if isinstance(config, PseudoMaskConfig):
            config = check_walk(config, registry)
        elif not isinstance(config, SegmentConfig):
            config = check(config, registry)
        runs.append(({**row, "_config": config}, out / f"seed-{s}"))
    return runs


def summary(records: list[dict]) -> dict:
    """A row's mean over its seeds, their spread and the bootstrap interval (fractions), from
    the records' stored counts where they have them."""

    mious = [r["miou"] for r in records if r.get("miou") is not None]
    out = {"miou": float(np.mean(mious)) if mious else None, "miou_std": float(np.std(mious, ddof=1)) if len(mious) > 1 else None,
           "n_seeds": len(records), "seeds": [r.get("seed") for r in records], "ci95": None,
           "pixel_accuracy": float(np.mean([r["pixel_accuracy"] for r in records if r.get("pixel_accuracy") is not None] or [np.nan]))}
    files = [r.get("_counts_path") for r in records]
    if mious and all(files):
        samples = np.stack([ImageCounts.load_samples(f) for f in files], axis=1)
        out["ci95"] = list(estimate_from(mious, samples).ci95)
    return out


def plan(spec: dict, out: Path, registry, where: str = "") -> list[tuple[dict, list[tuple[dict, Path]]]]:
    """Every row with its runs (one per seed) and their folders, all checked before any runs:
    tuning never sees a scored image, and no run folder holds anything a run did not write."""
    for row in spec["rows"]:
        if row.get("tune"):
            check_tuning_split(spec, row, registry, f"{where}row '{row['label']}': ")
    planned = [(row, seed_runs(spec, row, out / slug(row["label"]), registry)) for row in spec["rows"]]
    for _, runs in planned:
        for _, folder in runs:
            check_run_dir(folder)
    return planned


def run_bench(spec: dict, out: Path, registry, say: Callable[[str], None] = _quiet, progress: Any = None,
              where: str = "") -> list[dict]:
    """Run (or resume) every row of a loaded bench; one summary per row (``summary`` and the
    row's label, data, tuning, published number and deviations), in the file's order."""
    rows = []
    for row, runs in plan(spec, out, registry, where):
        records = []
        for seeded, folder in runs:
            record = run_row(spec, seeded, folder, registry, say, progress)
            counts = (record.get("counts") or {}).get("file")
            records.append({**record, "_counts_path": folder / counts if counts else None})
        rows.append({
            "label": row["label"], **summary(records),
            "dataset": records[0]["dataset"], "split": records[0]["split"], "protocol": records[0]["protocol"],
            "tuned": [(r.get("tuning") or {}).get("chosen") for r in records], "published": row.get("published"),
            "deviations": records[0].get("deviations") or [],
            "seconds": None if None in (times := [run_seconds(r) for r in records]) else sum(times),
        })
    return rows
