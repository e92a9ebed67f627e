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
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..cache import fingerprint
from ..errors import DataError, UsageError
from ..io import write_json
from ..pipeline import check, resolve, run
from ..record import describe_components, versions
from ..registry import default_registry
from . import traceback_option
from .run import config_from_options, run_command, run_defaults

ROW_KEYS = {"label", "tune", "published"}


def load_bench(path: Path) -> dict:
    try:
        spec = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: bench file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"{path}: not valid TOML ({e})") from None
    rows = spec.get("rows")
    if not rows:
        raise DataError(f"{path}: no [[rows]]")
    known = set(run_defaults())
    for i, row in enumerate(rows):
        if "label" not in row:
            raise DataError(f"{path}: row {i + 1} has no label")
        for key in set(row) - ROW_KEYS | set(spec.get("defaults", {})):
            if key not in known:
                raise UsageError(f"{path}: row '{row.get('label', i + 1)}': unknown run option '{key}'")
    return spec


def row_options(spec: dict, row: dict) -> tuple[dict, set[str]]:
    """``run`` option values for a row: defaults < [defaults] < preset < the row itself.

    The values go through ``run``'s own command-line parser, so they are checked exactly as
    ``wssbench run`` checks them.
    """
    given = {**spec.get("defaults", {}), **{k: v for k, v in row.items() if k not in ROW_KEYS}}
    params = {p.name: p for p in run_command.params}
    args: list[str] = []
    for key, value in given.items():
        if key in ("out", "as_json"):
            raise UsageError(f"row '{row['label']}': '{key}' is set by bench itself")
        param = params[key]
        if key == "options":
            pairs = value.items() if isinstance(value, dict) else (v.split("=", 1) for v in value)
            args += [a for k, v in pairs for a in ("-O", f"{k}={v}")]
        elif getattr(param, "is_flag", False):
            if value:
                args.append(param.opts[0])
            elif param.secondary_opts:
                args.append(param.secondary_opts[0])
        else:
            for v in value if isinstance(value, list) else [value]:
                args += [param.opts[0], str(v)]
    try:
        ctx = run_command.make_context("run", args)
    except click.ClickException as e:
        raise UsageError(f"row '{row['label']}': {e.format_message()}") from None
    return dict(ctx.params), set(given)


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", label).strip("_") or "row"


def tune_row(spec: dict, row: dict, kw: dict, explicit: set[str], registry) -> tuple[dict, dict]:
    """Grid-search ``row['tune']`` on the tune split; returns the chosen options and a report."""
    grid = row["tune"]
    split = spec.get("tune_split", "train")
    if split == kw["split"]:
        raise UsageError(f"row '{row['label']}': tune_split '{split}' is the reported split; tune on another")
    scores = []
    for values in itertools.product(*grid.values()):
        choice = dict(zip(grid, values))
        trial = {**kw, "split": split, "limit": spec.get("tune_limit"), "refine": kw["refine"]}
        trial["options"] = tuple(kw["options"]) + tuple(f"{k}={v}" for k, v in choice.items())
        config, parts = resolve(config_from_options(trial, explicit | {"options"}), registry)
        with tempfile.TemporaryDirectory() as tmp:
            record = run(config, registry, Path(tmp) / "trial", parts=parts)
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


def run_row(spec: dict, row: dict, out: Path, registry, console: Console) -> dict:
    kw, explicit = row_options(spec, row)
    base = check(config_from_options(kw, explicit), registry)  # the key needs names and options, not built models
    key = fingerprint({
        "row": row, "defaults": spec.get("defaults", {}),
        "tune_split": spec.get("tune_split"), "tune_limit": spec.get("tune_limit"),
        "config": base.to_dict(), "components": describe_components(base, registry),  # defaults in code count
        "versions": versions(),
    })
    result = out / "result.json"
    if result.is_file():
        record = json.loads(result.read_text())
        if record.get("bench_row") == key:
            console.print(f"[dim]{row['label']}: done already ({result})[/dim]")
            return record
    tuning = None
    if row.get("tune"):
        console.print(f"{row['label']}: tuning {', '.join(row['tune'])} on {spec.get('tune_split', 'train')}")
        chosen, tuning = tune_row(spec, row, kw, explicit, registry)
        for option in tuning["at_edge"]:
            console.print(f"[yellow]warning: row '{row['label']}': the best {option} ({chosen[option]}) is at the edge of its grid {row['tune'][option]}; widen it[/yellow]")
        kw["options"] = tuple(kw["options"]) + tuple(f"{k}={v}" for k, v in chosen.items())
        explicit = explicit | {"options"}
    console.print(f"{row['label']}: running")
    config, parts = resolve(config_from_options(kw, explicit), registry)
    record = run(config, registry, out, parts=parts)
    record["bench_row"] = key
    record["bench_label"] = row["label"]
    record["tuning"] = tuning
    record["published"] = row.get("published")
    write_json(result, record)
    return record


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


@click.command("bench")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder of the rows' runs (default: wssbench-runs/bench-<file>).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON on stdout.")
@traceback_option
def bench_command(file: Path, out: Path | None, as_json: bool) -> None:
    """Run every row of a bench FILE (TOML), resuming finished rows, and print the table."""
    spec = load_bench(file)
    out = out or Path("wssbench-runs") / f"bench-{file.stem}"
    console = Console(stderr=True)
    registry = default_registry()
    records = [(row, run_row(spec, row, out / slug(row["label"]), registry, console)) for row in spec["rows"]]
    rows = [
        {
            "label": row["label"], "miou": rec["miou"], "pixel_accuracy": rec["pixel_accuracy"],
            "dataset": rec["dataset"], "split": rec["split"], "protocol": rec["protocol"],
            "tuned": rec.get("tuning", {}) and rec["tuning"]["chosen"], "published": row.get("published"),
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
        "published: the paper's number, on the dataset and split named; best measured in bold"))
    for col, justify in (("row", "left"), ("mIoU", "right"), ("pixel acc.", "right"), ("tuned on " + spec.get("tune_split", "train"), "left"), ("published", "left")):
        table.add_column(col, justify=justify)
    for r in rows:
        miou = _pct(r["miou"])
        pub = r["published"]
        table.add_row(
            r["label"], f"[bold]{miou}[/bold]" if r["miou"] == best else miou, _pct(r["pixel_accuracy"]),
            ", ".join(f"{k}={v}" for k, v in (r["tuned"] or {}).items()) or "-",
            f"{pub['miou']} ({pub.get('dataset', '')} {pub.get('split', '')}; {pub.get('source', '')})" if pub else "-",
        )
    Console().print(table)
