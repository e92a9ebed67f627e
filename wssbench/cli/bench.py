"""``wssbench bench FILE.toml``: a table of runs described in a file, resumable.

    title = "..."                       # the table's caption
    tune_split = "train"                # where ``tune`` grids are searched (never the reported split)
    tune_limit = 120                    # images of the tune split to search on
    [defaults]                          # any ``wssbench run`` option, by its name
    dataset = "synthetic"
    [[rows]]
    label = "FCN+GBP"                   # the row's name and its folder
    preset = "fcn-gbp"                  # run options, as in [defaults]; options as a table:
    options = { "fusion.bg_threshold" = 0.3 }
    tune = { "fusion.bg_threshold" = [0.2, 0.3, 0.4] }
    published = { miou = 41.4, dataset = "voc2012", split = "val", source = "Shimoda & Yanai (poster)" }

Each row runs into ``OUT/<label>/``; a row whose ``result.json`` was made from the same row
description is skipped, so a bench killed half-way resumes where it stopped.
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

ROW_KEYS = {"label", "tune", "published"}
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
    return spec


def row_description(spec: dict, row: dict, where: str = "") -> dict:
    """A row's run options: ``[defaults]`` < the row, merged key by key (component options per
    STAGE.KEY: a row's ``options`` adds to the defaults' and wins where both set a key)."""
    defaults = spec.get("defaults", {})
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
    if split == row["_config"].split:
        raise UsageError(f"row '{row['label']}': tune_split '{split}' is the reported split; tune on another")
    scores = []
    for values in itertools.product(*grid.values()):
        choice = dict(zip(grid, values))
        config = row_config(spec, row, extra_options=choice, split=split, limit=spec.get("tune_limit"))
        record = Pipeline(config, registry=registry).run(progress=progress)
        scores.append({"options": choice, "miou": record["miou"]})
    best = max(scores, key=lambda s: s["miou"])
    report = {"split": split, "limit": spec.get("tune_limit"), "grid": grid, "scores": scores, "chosen": best["options"]}
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
        config = row_config(spec, row, extra_options=chosen)
    if check_run_dir(out):
        console.print(f"{row['label']}: replacing the earlier result in {out}", soft_wrap=True)
    console.print(f"{row['label']}: running")
    annotations = {"bench_row": key, "bench_label": row["label"], "tuning": tuning, "published": row.get("published")}
    if isinstance(config, SegmentConfig):
        from wssbench.segmentation.run import segment

        return segment(config, registry, out, progress, annotations=annotations)
    return Pipeline(config, registry=registry).run(out, progress, annotations=annotations)


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
    for row in spec["rows"]:  # every row's folder is checked before the first row runs
        check_run_dir(out / slug(row["label"]))
    with progress_display(console) as progress:  # training, fits and each row's images, bars or lines
        records = [(row, run_row(spec, row, out / slug(row["label"]), registry, console, progress)) for row in spec["rows"]]
    rows = [
        {
            "label": row["label"], "miou": rec["miou"], "pixel_accuracy": rec["pixel_accuracy"],
            "dataset": rec["dataset"], "split": rec["split"], "protocol": rec["protocol"],
            "tuned": rec.get("tuning", {}) and rec["tuning"]["chosen"], "published": row.get("published"),
            "deviations": rec.get("deviations") or [],
        }
        for row, rec in records
    ]
    if as_json:
        click.echo(json.dumps({"title": spec.get("title", file.stem), "rows": rows}, indent=2))
        return
    best = max((r["miou"] for r in rows if r["miou"] is not None), default=None)
    first = records[0][1]
    table = Table(title=spec.get("title", file.stem), caption=(
        f"measured: {first['dataset']} {first['split']}, {first['protocol']}, mIoU % from one confusion matrix; "
        "published: the paper's number, on the dataset and split named; best measured in bold; "
        f"{DEVIATION_MARK}: the run departs from the published recipe (listed below the table)"))
    for col, justify in (("row", "left"), ("mIoU", "right"), ("pixel acc.", "right"), ("tuned on " + spec.get("tune_split", "train"), "left"), ("published", "left")):
        table.add_column(col, justify=justify)
    for r in rows:
        miou = _pct(r["miou"])
        pub = r["published"]
        table.add_row(
            r["label"] + (f" {DEVIATION_MARK}" if r["deviations"] else ""),
            f"[bold]{miou}[/bold]" if r["miou"] == best else miou, _pct(r["pixel_accuracy"]),
            ", ".join(f"{k}={v}" for k, v in (r["tuned"] or {}).items()) or "-",
            f"{pub['miou']} ({pub.get('dataset', '')} {pub.get('split', '')}; {pub.get('source', '')})" if pub else "-",
        )
    Console().print(table)
    for r in rows:
        if r["deviations"]:
            listed = ", ".join(str(d.get("option")) for d in r["deviations"])
            click.echo(f"{DEVIATION_MARK} {r['label']}: {listed} (each with what was published and used: "
                       f"wssbench leaderboard {out})")
