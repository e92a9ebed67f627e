"""Rich renderings of a run config and of a result record, and plain lines that hold paths."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

if TYPE_CHECKING:
    from wssbench.seed.config import RunConfig


def print_line(console: Console, text: str) -> None:
    """Print ``text`` as is: no markup, no highlighting, and never wrapped (a path piped to a
    file or another program stays whole; a terminal folds the line itself)."""
    console.print(escape(text), soft_wrap=True, highlight=False)


def config_panel(config: RunConfig, out: Path) -> Panel:
    data = config.to_dict()
    lines = []
    for key, value in data.items():
        if key == "recipe":
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        lines.append(f"[bold]{key}[/bold]: {value}")
    lines.append(f"[bold]out[/bold]: {out}")
    return Panel("\n".join(lines), title="wssbench run", expand=False)


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def result_table(record: dict) -> Table:
    """Per-class IoU, mIoU and pixel accuracy in percent, numbers right-aligned."""
    caption = (
        f"{record['dataset']} {record['split']} ({record['n_images']} images), {record['protocol']}; "
        "IoU from one confusion matrix over the split, 255 ignored; '-' = class absent"
    )
    table = Table(title="per-class IoU (%)", caption=caption)
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for name, value in record["per_class_iou"].items():
        table.add_row(name, _pct(value))
    table.add_section()
    table.add_row("[bold]mIoU[/bold]", f"[bold]{_pct(record['miou'])}[/bold]")
    table.add_row("pixel accuracy", _pct(record["pixel_accuracy"]))
    if "classifier" in record and record["classifier"].get("map") is not None:
        table.add_row(f"classifier mAP ({record['classifier']['map_split']})", _pct(record["classifier"]["map"]))
    return table
