"""``wssbench bench FILE.toml``: a table of runs described in a file, resumable.

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

Each row runs into ``OUT/<label>/`` (with ``seeds``: ``OUT/<label>/seed-<s>/``, each seed a
full run, classifier trained with that seed, tuned on its own); a run whose ``result.json`` was
made from the same row description is skipped, so a bench killed half-way resumes where it
stopped. A row whose tuning images overlap the images it is scored on is refused before any
row runs; each tuned record names its tuning split, how many images and a digest of their ids.
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from wssbench.cli import traceback_option
from wssbench.cli.progress import progress_display
from wssbench.errors import DataError, UsageError
from wssbench.leaderboard import DEVIATION_MARK
from wssbench.seed.config import RunConfig, build_config, merge
from wssbench.segmentation.config import SegmentConfig
from wssbench.segmentation.describe import build_segment_config, is_segment_preset
from wssbench.storage.cache import fingerprint
from wssbench.storage.io import check_run_dir

ROW_KEYS = {"label", "tune", "published", "seeds"}
SET_BY_BENCH = {"out", "as_json", "from_record"}


def load_bench(path: Path, registry: Any = None, overrides: dict | None = None) -> dict:
    """Read a bench file and check every row (names, options, value types, labels) before
    anything runs; each row's checked config is kept under ``row["_config"]``."""
    from wssbench.seed.components import check
    from wssbench.segmentation.run import resolve as resolve_segment

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
        if registry is not None and is_segment_preset(row_description(spec, row, where).get("preset")):
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


def row_config(spec: dict, row: dict, where: str = "", extra_options: dict | None = None, **overrides: Any) -> RunConfig | SegmentConfig:
    """The config of a row (the preset, if any, fills what the row and defaults leave unset);
    a row naming a segmentation preset (EM-Adapt, CCNN) gets a :class:`SegmentConfig`."""
    description = row_description(spec, row, where)
    if is_segment_preset(description.get("preset")):
        return build_segment_config(merge(description, overrides), where=where)
    return build_config(merge(row_description(spec, row, where), {"options": extra_options or {}}, overrides), where=where)


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", label).strip("_") or "row"


def tune_row(spec: dict, row: dict, registry, progress: Any = None) -> tuple[dict, dict]:
    """Grid-search ``row['tune']`` on the tune split; returns the chosen options and a report."""
    from wssbench.api import Pipeline

    grid = row["tune"]
    split = spec.get("tune_split", "train")
    tune, scored = tuning_ids(spec, row, registry)
    seed = {"seed": row["_config"].seed}
    scores = []
    for values in itertools.product(*grid.values()):
        choice = dict(zip(grid, values))
        config = row_config(spec, row, extra_options=choice, split=split, limit=spec.get("tune_limit"), **seed)
        record = Pipeline(config, registry=registry).run(progress=progress)
        scores.append({"options": choice, "miou": record["miou"]})
    best = max(scores, key=lambda s: s["miou"])
    report = {"split": split, "limit": spec.get("tune_limit"), "n_images": len(tune), "ids_digest": fingerprint(sorted(tune)),
              "overlap": len(set(tune) & set(scored)), "grid": grid, "scores": scores, "chosen": best["options"]}
    return best["options"], {**report, "at_edge": grid_edges(grid, best["options"])}


def grid_edges(grid: dict[str, list], chosen: dict[str, Any]) -> list[str]:
    """The numeric options of a grid of 3 or more values whose chosen value is its smallest or
    largest: the optimum may lie outside the grid."""
    return [
        key for key, values in grid.items()
        if len(values) > 2 and all(isinstance(v, (int, float)) for v in values)
        and chosen[key] in (min(values), max(values))
    ]


# Run options that change how fast a row runs, never its numbers: not part of a row's identity.
SPEED_ONLY = ("workers", "loader_workers", "cache_maps", "batch_size", "device")


def row_key(spec: dict, row: dict, registry) -> str:
    """What makes a finished row's result valid: its checked config (options that only change
    speed left out), the components' code defaults, the tuning setup and the versions."""
    from wssbench.seed.record import describe_components, versions

    config = row["_config"]
    described = config.to_dict()
    for key in SPEED_ONLY:
        described.pop(key, None)
    if isinstance(config, SegmentConfig):
        from wssbench.segmentation.record import describe as describe_segment

        components = describe_segment(config, registry)
    else:
        components = describe_components(config, registry)
    return fingerprint({
        "config": described, "tune": row.get("tune"), "tune_split": spec.get("tune_split"),
        "tune_limit": spec.get("tune_limit"), "components": components,
        "versions": versions(),
    })


def run_row(spec: dict, row: dict, out: Path, registry, console: Console, progress: Any = None) -> dict:
    from wssbench.api import Pipeline

    key = row_key(spec, row, registry)
    result = out / "result.json"
    if result.is_file():
        record = json.loads(result.read_text())
        if record.get("bench_row") == key:
            console.print(f"[dim]{row['label']}: done already ({result})[/dim]", soft_wrap=True)
            return record
    tuning = None
    config = row["_config"]
    if row.get("tune"):
        console.print(f"{row['label']}: tuning {', '.join(row['tune'])} on {spec.get('tune_split', 'train')}")
        chosen, tuning = tune_row(spec, row, registry, progress)
        for option in tuning["at_edge"]:
            console.print(f"[yellow]warning: row '{row['label']}': the best {option} ({chosen[option]}) is at the edge of its grid {row['tune'][option]}; widen it[/yellow]")
        config = row_config(spec, row, extra_options=chosen, seed=row["_config"].seed)
    if check_run_dir(out):
        console.print(f"{row['label']}: replacing the earlier result in {out}", soft_wrap=True)
    console.print(f"{row['label']}: running")
    annotations = {"bench_row": key, "bench_label": row["label"], "tuning": tuning, "published": row.get("published")}
    if isinstance(config, SegmentConfig):
        from wssbench.segmentation.run import segment

        return segment(config, registry, out, progress, annotations=annotations)
    return Pipeline(config, registry=registry).run(out, progress, annotations=annotations)


def seed_runs(spec: dict, row: dict, out: Path, registry) -> list[tuple[dict, Path]]:
    """The runs of a row: itself in ``out``, or with ``seeds`` one per seed in ``out/seed-<s>``
    (the row with its config at that seed)."""
    if not row.get("_seeds"):
        return [(row, out)]
    from wssbench.seed.components import check

    runs = []
    for s in row["_seeds"]:
        config = row_config(spec, row, seed=s)
        config = config if isinstance(config, SegmentConfig) else check(config, registry)
        runs.append(({**row, "_config": config}, out / f"seed-{s}"))
    return runs


def summary(records: list[dict]) -> dict:
    """A row's mean over its seeds, their spread and the bootstrap interval (fractions), from
    the records' stored counts where they have them."""
    import numpy as np

    from wssbench.results.counts import ImageCounts
    from wssbench.results.uncertainty import estimate_from

    mious = [r["miou"] for r in records if r.get("miou") is not None]
    out = {"miou": float(np.mean(mious)) if mious else None, "miou_std": float(np.std(mious, ddof=1)) if len(mious) > 1 else None,
           "n_seeds": len(records), "seeds": [r.get("seed") for r in records], "ci95": None,
           "pixel_accuracy": float(np.mean([r["pixel_accuracy"] for r in records if r.get("pixel_accuracy") is not None] or [np.nan]))}
    files = [r.get("_counts_path") for r in records]
    if mious and all(files):
        samples = np.stack([ImageCounts.load_samples(f) for f in files], axis=1)
        out["ci95"] = list(estimate_from(mious, samples).ci95)
    return out


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


@click.command("bench")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder of the rows' runs (default: wssbench-runs/bench-<file>).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="A run option set on every row, over the file (e.g. --set precision=bf16 --set device=cuda).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON on stdout.")
@traceback_option
def bench_command(file: Path, out: Path | None, settings: tuple[str, ...], as_json: bool) -> None:
    """Run every row of a bench FILE (TOML), resuming finished rows, and print the table."""
    from wssbench.host.registry import default_registry

    registry = default_registry()
    overrides = {}
    for text in settings:
        key, eq, value = text.partition("=")
        if not eq or not key:
            raise UsageError(f"--set {text}: expected KEY=VALUE, e.g. --set precision=bf16")
        overrides[key.strip().replace("-", "_")] = value
    spec = load_bench(file, registry, overrides)
    suffix = "-" + fingerprint(overrides, 6) if overrides else ""
    out = out or Path("wssbench-runs") / f"bench-{file.stem}{suffix}"
    console = Console(stderr=True)
    for row in spec["rows"]:  # tuning never sees a scored image: checked on the data, before any row runs
        if row.get("tune"):
            check_tuning_split(spec, row, registry, f"{file}: row '{row['label']}': ")
    plan = [(row, seed_runs(spec, row, out / slug(row["label"]), registry)) for row in spec["rows"]]
    for _, runs in plan:  # every run's folder is checked before the first row runs
        for _, folder in runs:
            check_run_dir(folder)
    with progress_display(console) as progress:  # training, fits and each row's images, bars or lines
        records = []
        for row, runs in plan:
            done = []
            for seeded, folder in runs:
                record = run_row(spec, seeded, folder, registry, console, progress)
                counts = (record.get("counts") or {}).get("file")
                done.append({**record, "_counts_path": folder / counts if counts else None})
            records.append((row, done))
    rows = [
        {
            "label": row["label"], **summary(recs),
            "dataset": recs[0]["dataset"], "split": recs[0]["split"], "protocol": recs[0]["protocol"],
            "tuned": [(r.get("tuning") or {}).get("chosen") for r in recs], "published": row.get("published"),
            "deviations": recs[0].get("deviations") or [],
        }
        for row, recs in records
    ]
    if as_json:
        click.echo(json.dumps({"title": spec.get("title", file.stem), "rows": rows}, indent=2))
        return
    best = max((r["miou"] for r in rows if r["miou"] is not None), default=None)
    first = records[0][1][0]
    table = Table(title=spec.get("title", file.stem), caption=(
        f"measured: {first['dataset']} {first['split']}, {first['protocol']}, mIoU % from one confusion matrix; "
        "with seeds: mean ± std (n) over training seeds; 95 % CI: image (and seed) bootstrap; "
        "published: the paper's number, on the dataset and split named; best measured in bold; "
        f"{DEVIATION_MARK}: the run departs from the published recipe (listed below the table); "
        f"wssbench leaderboard {out} marks ties"))
    for col, justify in (("row", "left"), ("mIoU", "right"), ("95 % CI", "right"), ("pixel acc.", "right"),
                         ("tuned on " + spec.get("tune_split", "train"), "left"), ("published", "left")):
        table.add_column(col, justify=justify)
    for r in rows:
        miou = _pct(r["miou"]) + (f" ± {100 * r['miou_std']:.1f} ({r['n_seeds']})" if r["miou_std"] is not None else "")
        pub = r["published"]
        tuned = "; ".join(sorted({", ".join(f"{k}={v}" for k, v in t.items()) for t in r["tuned"] if t}))
        table.add_row(
            r["label"] + (f" {DEVIATION_MARK}" if r["deviations"] else ""),
            f"[bold]{miou}[/bold]" if r["miou"] == best else miou,
            f"[{_pct(r['ci95'][0])}, {_pct(r['ci95'][1])}]" if r["ci95"] else "-", _pct(r["pixel_accuracy"]),
            tuned or "-",
            f"{pub['miou']} ({pub.get('dataset', '')} {pub.get('split', '')}; {pub.get('source', '')})" if pub else "-",
        )
    Console().print(table)
    for r in rows:
        if r["deviations"]:
            listed = ", ".join(str(d.get("option")) for d in r["deviations"])
            click.echo(f"{DEVIATION_MARK} {r['label']}: {listed} (each with what was published and used: "
                       f"wssbench leaderboard {out})")
