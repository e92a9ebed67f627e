"""Stage 2 from the command line: what ``wssbench segment`` and ``wssbench run --preset em-adapt``
(a preset that trains a segmentation network) share: resolve, train, segment, write, print."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wssbench.host.registry import default_registry
from wssbench.segmentation.config import SegmentConfig
from wssbench.segmentation.presets import segment_deviations
from wssbench.segmentation.run import resolve, segment
from wssbench.storage.cache import fingerprint
from wssbench.storage.io import check_run_dir


def default_out(config: SegmentConfig) -> Path:
    name = "-".join([config.dataset, config.split, config.segnet, config.objective])
    return Path("wssbench-runs") / f"segment-{name}-{fingerprint(config.to_dict(), 8)}"


def run_segmentation(config: SegmentConfig, out: str | None, as_json: bool) -> None:
    """Resolve, train, segment, write and print: ``wssbench segment`` and ``wssbench run --preset
    em-adapt`` (a preset that trains a network) end here."""
    registry = default_registry()
    config, parts = resolve(config, registry)
    out = Path(out) if out else default_out(config)
    replacing = check_run_dir(out)  # refused before any work when it is not a run's folder
    err = Console(stderr=True, quiet=os.environ.get("RANK", "0") != "0")
    if replacing:
        err.print(f"replacing the earlier run in {out}", soft_wrap=True, highlight=False)
    err.print(Panel(json.dumps(config.to_dict(), indent=1, default=str), title=f"wssbench segment -> {out}"))
    changed = segment_deviations(config, registry)
    if changed:
        listed = "; ".join(f"{d['option']}: {d['published']} -> {d['used']}" for d in changed)
        err.print(f"warning: --preset {config.preset}: {len(changed)} deviations from the published recipe (recorded): {listed}",
                  soft_wrap=True, highlight=False, markup=False)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True) as progress:
        record = segment(config, registry, out, progress, parts)
    if record is None:
        return
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        pseudo = record["pseudo_masks"]
        line = f"{record['method']}: {record['split']} mIoU {100 * record['miou']:.1f} (stage segmentation)"
        if pseudo:
            line += f"; pseudo-masks {pseudo['split']} mIoU {100 * pseudo['miou']:.1f} (stage pseudo-mask)"
        click.echo(line)
    err.print(f"wrote {out / 'result.json'} and {record['n_images']} masks under {out / 'masks'}")
