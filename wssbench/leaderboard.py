"""The leaderboard: every result record under a folder, grouped, ranked and formatted.

``find_records`` reads the ``result.json`` files, ``build_groups`` turns them into tables of
comparable rows, and ``to_markdown`` / ``to_csv`` / ``to_latex`` / ``to_json`` render them (the
terminal table lives in ``wssbench.cli.leaderboard``).

Rules, in one place:

- Rows compare only on the same data, images and protocol, so a group is one (dataset, its
  options such as ``preset``, split, protocol, number of images, precision, stage); a
  ``--limit`` run gets a group of its own, and the caption names everything that defines it.
  Records without ``stage`` or ``precision`` (older ones) read as no stage and fp32.
- One experiment is one row: options that do not change results (``NEUTRAL``: workers, loader
  workers, map caching, batch size, device, data folder) do not make a second row when the
  scores are the same; the row says how many identical runs it stands for. Where such an
  option did change the scores, each row names its value.
- A record's ``deviations`` (``[{option, published, used}]``: where a preset run departs from
  the published setting) mark its method with ``†`` and add a note under the table naming each
  departure, so a published number never sits beside a deviating row unmarked.
- Values are percentages rounded to one decimal, and "best" is decided on those rounded
  values, so every tie that reads equal is marked. A column is marked only where it tells rows
  apart: at least two measured values, not all equal.
- Published rows (``wssbench.results.references``) join a group only when its dataset, split and
  protocol match and it covers the whole split. They come after the measured rows, are flagged
  ``published``, and are never ranked: "best" is the best of the runs in the folder.
- Runs that differ only in their training seed are one row: the mean over the seeds, their
  sample standard deviation and number (``51.3 ± 1.2 (4)``), ranked by the mean. Where the runs
  kept their per-image counts (``counts.npz``), the row has a 95 % interval from the image (and
  seed) bootstrap of :mod:`wssbench.results.uncertainty`, and each row is compared with the row
  ranked just above it by a paired bootstrap of their difference: an interval containing 0 is a
  tie (``≈``), and the best value is marked on every row tied with the top one.
- A row tuned on images it is scored on (its record's ``tuning.overlap``) is shown apart, after
  the ranked rows, marked ``T``, never ranked. Every row states its priors as badges (pretrained
  weights, components trained with masks or boxes, CLIP, deviations) with a legend.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from wssbench.errors import DataError
from wssbench.results import references
from wssbench.results.board import DEVIATION_MARK, TIE_MARK, Column, Group, Row, cell_text
from wssbench.results.counts import ImageCounts
from wssbench.results.formats import FORMATTERS, latex_escape, to_csv, to_json, to_latex, to_markdown
from wssbench.results.records import is_score, read_record, without_later_defaults
from wssbench.results.uncertainty import DEFAULT_RESAMPLES, combine, difference_from, percentile_interval, run_samples
from wssbench.seed.labels import as_text, method_label, per_seed_text

__all__ = [  # the tables as data and their formats are re-exported: one import for leaderboard users
    "DEVIATION_MARK", "FORMATTERS", "NEUTRAL", "SORT_KEYS", "TIE_MARK", "Column", "Group", "Row", "build_groups", "cell_text",
    "experiment_key", "find_records", "find_records_in", "find_saliency_records", "group_key", "latex_escape", "method_label", "read_record",
    "to_csv", "to_json", "to_latex", "to_markdown",
]
NEUTRAL = ("workers", "loader_workers", "cache_maps", "batch_size", "device", "data_root", "skip_checks")


TEXT_COLUMNS = (Column("method", "method"), Column("backbone", "backbone"), Column("pooling", "pooling"))
SCORE_COLUMNS = (Column("miou", "mIoU", True), Column("pixel_accuracy", "pixel acc.", True), Column("map", "cls. mAP", True))
SOURCE_COLUMN = Column("source", "source")
# from `wssbench saliency-eval --out FILE.json` records under the same folder, matched to a run by
# its classifier and saliency method (wssbench.evaluation.columns_for_run)
SALIENCY_COLUMNS = (Column("pointing", "pointing", True), Column("sanity", "sanity check"))
SORT_KEYS = ("miou", "auc", "pixel_accuracy", "map", "method")
AUC_COLUMN = Column("auc", "thr. AUC", True)  # the mean mIoU over the background-threshold grid (wssbench.results.curve)
CI_COLUMN = Column("ci95", "95 % CI")
MARKS_COLUMN = Column("marks", "priors")


def find_records(root: Path, *, strict: bool = False) -> list[tuple[Path, dict]]:
    """Every valid ``result.json`` under ``root``, recursively; invalid ones are skipped with a
    warning (``strict``: the first one raises its ``DataError``).

    Hidden folders are not searched: a run is written in a hidden temporary folder beside its
    output and renamed into place when complete (``io.atomic_dir``).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: {'not a folder' if root.exists() else 'folder not found'}")
    paths = []
    for folder, subfolders, files in os.walk(root):  # os.walk, not rglob: no Path per mask file (1,449 per VOC run)
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        if "result.json" in files:
            paths.append(Path(folder) / "result.json")
    paths.sort()
    if not paths:
        raise DataError(f"no result.json under {root}")
    found = []
    for path in paths:
        try:
            found.append((path, read_record(path)))
        except DataError as e:
            if strict:
                raise
            warnings.warn(f"skipped {e}", stacklevel=2)
    if not found:
        raise DataError(f"no valid result.json under {root} ({len(paths)} skipped)")
    return found


def find_records_in(roots: list[Path], *, strict: bool = False) -> tuple[list[tuple[Path, dict]], Path]:
    """The records under several folders (records from several people) merged, and the folder
    their sources are named from.

    One folder: ``find_records`` and that folder. Several: their records under resolved paths,
    named from the folders' deepest common parent; a record met again in a later folder with
    the same content (the same file reached twice, or a copy of a run) counts once.
    """
    if len(roots) == 1:
        return find_records(roots[0], strict=strict), Path(roots[0])
    merged, seen = [], set()
    for root in roots:
        mine = set()
        for path, record in find_records(root, strict=strict):
            content = json.dumps(record, sort_keys=True)
            if content not in seen:
                merged.append((path.resolve(), record))
                mine.add(content)
        seen |= mine
    return merged, Path(os.path.commonpath([Path(root).resolve() for root in roots]))


def group_key(record: dict) -> tuple:
    """(dataset, split, protocol, n_images, dataset options, precision, stage): what rows must share."""
    config = record["config"]
    dataset_options = tuple(sorted((str(k), as_text(v)) for k, v in ((config.get("options") or {}).get("dataset") or {}).items()))
    stage = record.get("stage") if isinstance(record.get("stage"), str) else None
    precision = config.get("precision") or "fp32"
    return (record["dataset"], record["split"], record["protocol"], record["n_images"], dataset_options, precision, stage or "")


def experiment_key(record: dict) -> str:
    """The run's config without the options that do not change results (``NEUTRAL``) and
    without its training seed (runs that differ only in seed are one row), as text.

    An option a bench tuned (``tuning.chosen``) is each seed's outcome, not a condition of the
    experiment: seed 2 may choose another threshold than seeds 0 and 1 from the same grid. Its
    value is left out and what was tuned how (the grid, the split, the number of images) is in.
    A recipe field added later is left out at its default (``LATER_RECIPE_DEFAULTS``): a seed
    run recorded before the field existed is the same experiment as one recorded after."""
    config = {k: v for k, v in without_later_defaults(record["config"]).items() if k not in (*NEUTRAL, "seed")}
    if isinstance(config.get("recipe"), dict):
        config["recipe"] = {k: v for k, v in config["recipe"].items() if k != "seed"}
    chosen = tuned_values(record)
    if chosen:
        options = {stage: dict(opts) for stage, opts in (config.get("options") or {}).items() if isinstance(opts, dict)}
        for name in chosen:
            stage, _, key = name.partition(".")
            options.get(stage, {}).pop(key, None)
        tuning = record["tuning"]
        config["options"] = {stage: opts for stage, opts in options.items() if opts}
        config["tuned"] = {k: tuning.get(k) for k in ("grid", "split", "limit", "ids_digest")}
    return json.dumps(config, sort_keys=True, default=str)


def tuned_values(record: dict) -> dict:
    """The options a bench tuned for this run and the values it chose (``{}`` when none)."""
    tuning = record.get("tuning") if isinstance(record.get("tuning"), dict) else None
    chosen = tuning.get("chosen") if tuning else None
    return dict(chosen) if isinstance(chosen, dict) else {}


def find_saliency_records(root: Path) -> list[dict]:
    """Every ``wssbench saliency-eval`` record (JSON with ``"kind": "saliency-eval"``) under ``root``."""
    found = []
    for path in sorted(Path(root).rglob("*.json")):
        if path.name == "result.json" or any(d.startswith(".") for d in path.relative_to(root).parts):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("kind") == "saliency-eval":
            found.append(data)
    return found


def build_groups(
    records: list[tuple[Path, dict]], root: Path, *, with_references: bool = True, per_class: bool = False, sort: str = "miou",
    saliency: list[dict] = (), bootstrap: int = DEFAULT_RESAMPLES,
) -> list[Group]:
    """One group per ``group_key``, one row per experiment (its seeds together), sorted by
    ``sort``, with intervals and ties from ``bootstrap`` resamples, best values marked.

    ``saliency``: saliency-eval records; a run whose classifier and saliency method one of them
    evaluated gets its pointing game and sanity check beside its mIoU (guided BP's failed
    sanity check shows next to its score)."""
    measured: dict[tuple, dict[str, list[tuple[Path, dict]]]] = {}
    for path, record in sorted(records, key=lambda pr: pr[0].parts):
        measured.setdefault(group_key(record), {}).setdefault(experiment_key(record), []).append((path, record))
    groups = []
    for key in sorted(measured):
        dataset, split, protocol, n_images, dataset_options, precision, stage = key
        rows = [row for runs in measured[key].values() for row in _experiment_rows(runs, Path(root), saliency, bootstrap)]
        rows.sort(key=_sort_key(sort))
        ranked = _mark_ties([r for r in rows if not r.unranked], sort)
        unranked = [r for r in rows if r.unranked]
        columns = TEXT_COLUMNS + SCORE_COLUMNS
        columns += tuple(c for c, present in ((CI_COLUMN, any(r.ci95 for r in rows)),
                                               (AUC_COLUMN, any(r.cells.get("auc") is not None for r in rows))) if present)
        columns += tuple(c for c in SALIENCY_COLUMNS if any(row.cells.get(c.key) is not None for row in rows))
        columns += (_class_columns(rows) if per_class else ())
        columns += ((MARKS_COLUMN,) if any(r.marks for r in rows) else ()) + (SOURCE_COLUMN,)
        published = []
        if with_references and not dataset_options:
            published = sorted(_published_rows(dataset, split, protocol, n_images, stage or None), key=_sort_key(sort))
        groups.append(Group(
            dataset, split, protocol, n_images, columns=columns, rows=tuple(_mark_best(ranked, columns) + unranked + published),
            dataset_options=dataset_options, precision=precision, stage=stage or None,
        ))
    return groups


def _experiment_rows(runs: list[tuple[Path, dict]], root: Path, saliency: list[dict] = (),
                     bootstrap: int = DEFAULT_RESAMPLES) -> list[Row]:
    """The rows of one experiment. Identical repeats (same seed, same scores) count once; the
    seeds make one row; where runs of the same seed scored differently, the neutral options
    that vary split them into rows that name their values."""
    unique: dict[tuple, list[tuple[Path, dict]]] = {}
    for path, record in runs:
        unique.setdefault((record.get("seed"), *_scores(record)), []).append((path, record))
    seeds = [key[0] for key in unique]
    varying = []
    if len(seeds) != len(set(seeds)):  # the same seed scored differently: a neutral option changed the numbers
        varying = [k for k in NEUTRAL if len({as_text(r["config"].get(k)) for _, r in runs}) > 1]
    variants: dict[tuple, list[list[tuple[Path, dict]]]] = {}
    for n, repeats in enumerate(unique.values()):
        config = repeats[0][1]["config"]
        if varying or len(seeds) == len(set(seeds)):
            variant = tuple(as_text(config.get(k)) for k in varying)
        else:  # the same seed scored differently and no neutral option says why: each its own row
            variant = (n,)
        variants.setdefault(variant, []).append(repeats)
    out = []
    for values, members in variants.items():
        row = _seed_row([m[0] for m in members], root, saliency, bootstrap)
        cells = dict(row.cells)
        if varying:
            cells["method"] += " {" + ", ".join(f"{k}={v}" for k, v in zip(varying, values)) + "}"
        repeats = sum(len(m) for m in members) - len(members)
        if len(members) > 1:
            cells["source"] += f" ({len(members)} seeds)"
        if repeats:
            cells["source"] += f" (+{repeats} identical)"
        out.append(replace(row, cells=cells, runs=sum(len(m) for m in members), paths=tuple(p for m in members for p, _ in m)))
    return out


def _scores(record: dict) -> tuple:
    classifier = record.get("classifier") if isinstance(record.get("classifier"), dict) else {}
    return tuple(_pct(v) for v in (record.get("miou"), record.get("pixel_accuracy"), classifier.get("map")))


def _seed_row(runs: list[tuple[Path, dict]], root: Path, saliency: list[dict], bootstrap: int) -> Row:
    """One row from one run per seed: means over the seeds, their spread and interval."""
    runs = sorted(runs, key=lambda pr: (pr[1].get("seed") is None, pr[1].get("seed") or 0, pr[0].parts))
    rows = [_measured_row(path, record, root, saliency) for path, record in runs]
    first = rows[0]
    cells = dict(first.cells)
    for key, value in first.cells.items():
        values = [r.cells.get(key) for r in rows]
        if isinstance(value, float) and all(isinstance(v, float) for v in values):
            cells[key] = round(float(np.mean(values)), 1)
    seeds = tuple(int(r.get("seed")) for _, r in runs if isinstance(r.get("seed"), int))
    mious = [r["miou"] for _, r in runs if is_score(r.get("miou")) and r.get("miou") is not None]
    std = round(100 * float(np.std(mious, ddof=1)), 1) if len(mious) > 1 else None
    samples = _samples(runs, bootstrap)
    ci95 = None
    if samples is not None:
        lo, hi = percentile_interval(combine(samples))
        ci95 = (round(100 * lo, 1), round(100 * hi, 1))
    method = cells.get("method")
    for name, value in tuned_values(runs[0][1]).items():  # the seeds chose differently: each seed's value, in seed order
        if isinstance(method, str):
            method = method.replace(f"{name}={as_text(value)}", f"{name}={per_seed_text([tuned_values(r).get(name) for _, r in runs])}", 1)
    cells["method"] = method
    tuned_on_scored = any(_tuned_on_scored(r) for _, r in runs)
    priors = _priors(runs[0][1]) + (({"mark": "T", "what": "tuned on the scored images"},) if tuned_on_scored else ())
    return replace(first, cells=cells, seeds=seeds if len(seeds) == len(runs) else (), std=std, ci95=ci95,
                   priors=priors, unranked=tuned_on_scored, samples=samples, points=tuple(mious))


def _samples(runs: list[tuple[Path, dict]], bootstrap: int) -> np.ndarray | None:
    """(B, R) the runs' bootstrap samples (stored with their counts, else computed from them);
    None when a run kept no counts or they were scored on different images."""
    columns, digests = [], set()
    for path, record in runs:
        counts = record.get("counts") if isinstance(record.get("counts"), dict) else None
        if not counts or not isinstance(counts.get("file"), str):
            return None
        file = path.parent / counts["file"]
        stored = ImageCounts.load_samples(file)  # DataError naming the file: a record's counts are part of it
        if stored is None or len(stored) != bootstrap:
            stored = run_samples(ImageCounts.load(file), bootstrap)
        columns.append(stored)
        digests.add(counts.get("ids_digest"))
    if len(digests) > 1:
        return None
    return np.stack(columns, axis=1)


def _tuned_on_scored(record: dict) -> bool:
    """Whether the run chose something on images it is scored on (its ``tuning.overlap``)."""
    tuning = record.get("tuning") if isinstance(record.get("tuning"), dict) else None
    return bool(tuning and tuning.get("overlap"))


def _priors(record: dict) -> tuple[dict, ...]:
    """What entered besides the image labels: the record's own ``priors``, else, for records
    written before they were, the pretrained weights its config names."""
    if isinstance(record.get("priors"), list):
        return tuple(p for p in record["priors"] if isinstance(p, dict) and "mark" in p)
    config = record["config"]
    backbone = str(record.get("backbone") or config.get("backbone") or "")
    if config.get("pretrained") or config.get("weights") or backbone.startswith("imagenet:"):
        return ({"mark": "I", "what": f"ImageNet weights of {backbone}"},)
    return ()


def _mark_ties(rows: list[Row], sort: str) -> list[Row]:
    """Each ranked row compared with the one above by the paired bootstrap of their mIoU
    (rows ranked by mIoU, both with samples on the same images); ``tied_with_above``."""
    if sort != "miou":
        return rows
    out = []
    for i, row in enumerate(rows):
        above = rows[i - 1] if i else None
        tied = None
        if above is not None and row.samples is not None and above.samples is not None \
                and row.samples.shape[0] == above.samples.shape[0]:
            paired = row.seeds == above.seeds and len(row.seeds) == row.samples.shape[1]
            tied = difference_from(above.points, above.samples, row.points, row.samples, paired_seeds=paired).tied
        out.append(replace(row, tied_with_above=tied))
    return out


def _pct(value: Any) -> float | None:
    if not is_score(value) or value is None or math.isnan(value):
        return None
    return round(100.0 * value, 1)


def _saliency_cells(record: dict, saliency: list[dict]) -> dict[str, Any]:
    """The pointing game (%) and the sanity check ("fail (rho 0.74)") of the run's saliency method."""
    if not saliency:
        return {}
    from wssbench.evaluation import columns_for_run  # loads torch: only where saliency records are shown

    for evaluation in saliency:
        columns = columns_for_run(evaluation, record)
        if columns:
            sanity = columns.get("sanity")
            rho = columns.get("sanity_rho")
            return {"pointing": _pct(columns.get("pointing")),
                    "sanity": f"{sanity} (rho {rho:.2f})" if sanity and rho is not None else sanity}
    return {}


def _measured_row(path: Path, record: dict, root: Path, saliency: list[dict] = ()) -> Row:
    config = record["config"]
    classifier = record.get("classifier") if isinstance(record.get("classifier"), dict) else {}
    per_class = record.get("per_class_iou") if isinstance(record.get("per_class_iou"), dict) else {}
    deviations = tuple(d for d in (record.get("deviations") or ()) if isinstance(d, dict))
    cells = {
        "method": (record.get("method") or method_label(config)) + (f" {DEVIATION_MARK}" if deviations else ""),
        "backbone": record.get("backbone") or config.get("backbone"),
        "pooling": config.get("pooling"),
        "miou": _pct(record["miou"]),
        "pixel_accuracy": _pct(record.get("pixel_accuracy")),
        "map": _pct(classifier.get("map")),
        "auc": _pct(record.get("threshold_auc")),
        "source": path.parent.relative_to(root).as_posix(),
    }
    cells.update({f"iou:{name}": _pct(value) for name, value in per_class.items()})
    cells.update(_saliency_cells(record, saliency))
    return Row(cells, deviations=deviations, paths=(path,))


def _published_rows(dataset: str, split: str, protocol: str, n_images: int, stage: str | None) -> list[Row]:
    """The matching references; a reference that names its stage joins only a group of that stage
    (records without a stage, from before stages were recorded, are seed runs)."""
    return [
        Row({"method": ref.label, "miou": value, "source": f"published: {ref.source}"}, published=True)
        for ref, value in references.matching(dataset, split, protocol, n_images)
        if ref.stage in (None, stage or "seed")
    ]


def _class_columns(rows: list[Row]) -> tuple[Column, ...]:
    keys = dict.fromkeys(key for row in rows for key in row.cells if key.startswith("iou:"))
    return tuple(Column(key, key[len("iou:"):], True) for key in keys)


def _sort_key(key: str) -> Callable[[Row], tuple]:
    if key == "method":
        return lambda row: (row.cells["method"], row.cells["source"])
    return lambda row: (row.cells.get(key) is None, -(row.cells.get(key) or 0.0), row.cells["source"])


def _mark_best(rows: list[Row], columns: tuple[Column, ...]) -> list[Row]:
    """The best value per numeric column, marked on every row that holds it; for mIoU also on
    the rows tied with the top row (a chain of ``≈`` from the top)."""
    best = {}
    for column in (c for c in columns if c.numeric):
        values = [row.cells[column.key] for row in rows if row.cells.get(column.key) is not None]
        if len(values) >= 2 and len(set(values)) > 1:
            best[column.key] = max(values)
    top_tied = set()
    if "miou" in best:
        for i, row in enumerate(rows):
            if row.cells.get("miou") == best["miou"] or (i and i - 1 in top_tied and row.tied_with_above):
                top_tied.add(i)
    marked = []
    for i, row in enumerate(rows):
        keys = {k for k, v in best.items() if row.cells.get(k) == v}
        if "miou" in best:
            keys.discard("miou")
            if i in top_tied:
                keys.add("miou")
        marked.append(replace(row, best=frozenset(keys)))
    return marked
