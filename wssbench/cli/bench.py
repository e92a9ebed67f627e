"""``wssbench bench FILE.toml``: run a bench (:mod:`wssbench.bench`) and print its table."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from wssbench.bench import load_bench, run_bench
from wssbench.cli import traceback_option
from wssbench.cli.progress import progress_display
from wssbench.errors import UsageError
from wssbench.host.registry import default_registry
from wssbench.results.board import DEVIATION_MARK
from wssbench.seed.labels import per_seed_text
from wssbench.storage.cache import fingerprint


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def tuned_text(per_seed: list[dict | None]) -> str:
    """The values a row's seeds chose, as the leaderboard writes them: ``k=0.3`` when every seed
    chose 0.3, ``k=0.3/0.3/0.4`` in seed order when they differ ("" when nothing was tuned)."""
    chosen = [t or {} for t in per_seed]
    names = list(dict.fromkeys(k for t in chosen for k in t))
    return ", ".join(f"{k}={per_seed_text([t.get(k) for t in chosen])}" for k in names)


def cost_line(rows: list[dict], wall: float) -> str:
    """What the table cost: the runs' own recorded times (tuning and any classifier training
    they did included; a resumed run counts what it took when it ran) and this invocation's wall."""
    known = [r["seconds"] for r in rows if r["seconds"] is not None]
    missing = len(rows) - len(known)
    return (f"time: the rows' runs took {sum(known) / 60:.1f} min as recorded (tuning and training included"
            + (f"; {missing} rows from before timings were kept left out" if missing else "")
            + f"); this invocation {wall / 60:.1f} min wall")


@click.command("bench")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder of the rows' runs (default: wssbench-runs/bench-<file>).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="A run option set on every row, over the file (e.g. --set precision=bf16 --set device=cuda).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON on stdout.")
@traceback_option
def bench_command(file: Path, out: Path | None, settings: tuple[str, ...], as_json: bool) -> None:
    """Run every row of a bench FILE (TOML), resuming finished rows, and print the table."""
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
    started = time.time()
    with progress_display(console) as progress:  # training, fits and each row's images, bars or lines
        rows = run_bench(spec, out, registry, lambda line: console.print(line, markup=False, soft_wrap=True), progress, f"{file}: ")
    if as_json:
        click.echo(json.dumps({"title": spec.get("title", file.stem), "rows": rows}, indent=2))
        return
    best = max((r["miou"] for r in rows if r["miou"] is not None), default=None)
    first = rows[0]
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
        tuned = tuned_text(r["tuned"])
        table.add_row(
            r["label"] + (f" {DEVIATION_MARK}" if r["deviations"] else ""),
            f"[bold]{miou}[/bold]" if r["miou"] == best else miou,
            f"[{_pct(r['ci95'][0])}, {_pct(r['ci95'][1])}]" if r["ci95"] else "-", _pct(r["pixel_accuracy"]),
            tuned or "-",
            f"{pub['miou']} ({pub.get('dataset', '')} {pub.get('split', '')}; {pub.get('source', '')})" if pub else "-",
        )
    # a pipe or a file (a long bench run under nohup): rich would wrap every cell to 80 columns
    Console(width=None if sys.stdout.isatty() else 240).print(table)
    click.echo(cost_line(rows, time.time() - started))
    for r in rows:
        if r["deviations"]:
            listed = ", ".join(str(d.get("option")) for d in r["deviations"])
            click.echo(f"{DEVIATION_MARK} {r['label']}: {listed} (each with what was published and used: "
                       f"wssbench leaderboard {out})")
