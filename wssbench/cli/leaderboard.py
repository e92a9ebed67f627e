"""``wssbench leaderboard``: every run under a folder, ranked, in a table or a file format."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from wssbench.cli import traceback_option
from wssbench.errors import UsageError
from wssbench.leaderboard import FORMATTERS, SORT_KEYS, Group, build_groups, cell_text, find_records, find_saliency_records
from wssbench.results.uncertainty import DEFAULT_RESAMPLES, check_resamples


def rich_table(group: Group) -> Table:
    """Numbers right-aligned, best measured values in bold, published rows in italic after a rule."""
    table = Table(caption=Text("\n".join((group.caption, *group.notes))))  # Text: brackets are not markup
    for column in group.columns:
        if column.numeric:
            table.add_column(column.header, justify="right", no_wrap=True)
        elif column.key in ("method", "source"):
            table.add_column(column.header, overflow="fold")
        else:
            table.add_column(column.header, no_wrap=True)
    previous = None
    for row in group.rows:
        if previous is not None and (row.published, row.unranked) != (previous.published, previous.unranked):
            table.add_section()  # unranked rows (tuned on their scored images), then published ones, apart
        cells = [Text(cell_text(row, c), style="bold" if c.key in row.best else "") for c in group.columns]
        table.add_row(*cells, style="italic" if row.published else None)
        previous = row
    return table


@click.command("leaderboard")
@click.argument("root", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", *FORMATTERS]), default="table", show_default=True, help="Output format.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--references/--no-references", default=True, show_default=True, help="Add published VOC 2012 numbers where a group matches them.")
@click.option("--per-class", is_flag=True, help="A column per class (IoU).")
@click.option("--sort", type=click.Choice(SORT_KEYS), default="miou", show_default=True, help="Rank rows by this column (numbers descending; auc: the mean mIoU over the background-threshold grid).")
@click.option("--bootstrap", type=int, default=DEFAULT_RESAMPLES, show_default=True, help="Resamples of the image bootstrap behind the 95 % intervals and ties (at least 100).")
@traceback_option
def leaderboard_command(root: Path, fmt: str, as_json: bool, references: bool, per_class: bool, sort: str, bootstrap: int) -> None:
    """Rank every run (result.json) under DIR: one table per dataset, split, protocol and precision.

    Identical runs that differ only in options that do not change results (workers, batch
    size, device, ...) make one row; a run that deviates from a published setting is marked.
    """
    if as_json:
        if fmt not in ("table", "json"):
            raise UsageError(f"--json and --format {fmt} ask for different formats; give one")
        fmt = "json"
    check_resamples(bootstrap)
    groups = build_groups(find_records(root), root, with_references=references, per_class=per_class, sort=sort,
                          saliency=find_saliency_records(root), bootstrap=bootstrap)
    if fmt in FORMATTERS:
        click.echo(FORMATTERS[fmt](groups), nl=False)
        return
    console = Console()
    for i, group in enumerate(groups):
        if i:
            console.print()
        console.print(rich_table(group))
