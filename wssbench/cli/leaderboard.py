"""``wssbench leaderboard``: every run under one or more folders, ranked, in a table, a file format, or a static site."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from wssbench.cli import traceback_option
from wssbench.errors import UsageError
from wssbench.leaderboard import FORMATTERS, SORT_KEYS, Group, build_groups, cell_text, find_records_in, find_saliency_records
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
@click.argument("roots", metavar="DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", *FORMATTERS, "html"]), default="table", show_default=True,
              help="Output format; html: a static site in --out.")
@click.option("--out", type=click.Path(path_type=Path), help="The site's folder (--format html): new, empty, or a site this command wrote.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--references/--no-references", default=True, show_default=True, help="Add published VOC 2012 numbers where a group matches them.")
@click.option("--per-class", is_flag=True, help="A column per class (IoU).")
@click.option("--sort", type=click.Choice(SORT_KEYS), default="miou", show_default=True, help="Rank rows by this column (numbers descending; auc: the mean mIoU over the background-threshold grid).")
@click.option("--bootstrap", type=int, default=DEFAULT_RESAMPLES, show_default=True, help="Resamples of the image bootstrap behind the 95 % intervals and ties (at least 100).")
@traceback_option
def leaderboard_command(roots: tuple[Path, ...], fmt: str, out: Path | None, as_json: bool, references: bool, per_class: bool,
                        sort: str, bootstrap: int) -> None:
    """Rank every run (result.json) under DIR: one table per dataset, split, protocol and precision.

    On a terminal a table; piped or redirected, the same as --format markdown.

    Identical runs that differ only in options that do not change results (workers, batch
    size, device, ...) make one row; a run that deviates from a published setting is marked.
    Several DIRs merge (records from several people); a record found again in a later DIR
    with the same content (a copy of a run) counts once.

    --format html --out SITE writes a static site: index.html (sortable, filterable tables) and
    a page per record; it replaces SITE only when SITE is new, empty, or a site it wrote whose
    files are unchanged, and refuses a damaged result.json instead of leaving it out.
    """
    if as_json:
        if fmt not in ("table", "json"):
            raise UsageError(f"--json and --format {fmt} ask for different formats; give one")
        fmt = "json"
    check_resamples(bootstrap)
    if fmt == "html" and out is None:
        raise UsageError("--format html writes a site: give its folder with --out SITE")
    if out is not None and fmt != "html":
        raise UsageError(f"--out is the site's folder, for --format html only (--format {fmt} prints to stdout)")
    if fmt == "html":
        from wssbench.site import check_site_dir  # only for --format html: the text formats stay light

        check_site_dir(out)  # refused before any record is read
    records, root = find_records_in(list(roots), strict=fmt == "html")
    saliency = [s for r in dict.fromkeys(roots) for s in find_saliency_records(r)]
    groups = build_groups(records, root, with_references=references, per_class=per_class, sort=sort, saliency=saliency,
                          bootstrap=bootstrap)
    if fmt == "html":
        from wssbench.site import build_site  # only for --format html

        replaced, pages = build_site(groups, dict(records), out, root=root, base=Path.cwd(), n_folders=len(set(roots)), sort=sort)
        click.echo(f"{'replaced' if replaced else 'wrote'} {out / 'index.html'} and {pages} record pages under {out / 'runs'}")
        return
    if fmt == "table" and not sys.stdout.isatty():  # a pipe or a file: rich would wrap every cell to 80 columns
        fmt = "markdown"
    if fmt in FORMATTERS:
        click.echo(FORMATTERS[fmt](groups), nl=False)
        return
    console = Console()
    for i, group in enumerate(groups):
        if i:
            console.print()
        console.print(rich_table(group))
