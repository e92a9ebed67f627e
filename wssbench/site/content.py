"""What the site shows, taken from the leaderboard's groups: rows in their JSON form, the records
behind each row, the badges and the filter values. No grouping or ranking happens here.

A row is read from the leaderboard's JSON form (``wssbench.leaderboard.to_json``), so that keys
the leaderboard adds flow through: ``miou_mean``, ``miou_std``, ``n_seeds``, ``seeds``,
``ci95: [lo, hi]`` (percent), ``tied_with_above``, ``priors`` (``[{mark, what}]``, the marks
explained by ``wssbench.results.board.PRIOR_MARKS``) and ``unranked`` (tuned on its scored
images: shown apart). The records behind a row are ``Row.paths``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wssbench import leaderboard
from wssbench.leaderboard import Group
from wssbench.results.board import PRIOR_MARKS

PAGES = "runs"  # the folder of the row pages, under the site's root


@dataclass(frozen=True)
class Badge:
    text: str  # shown in the row
    meaning: str  # its tooltip: what it means for this row
    key: str = ""  # filter value ("" where the badge is not a filter: identical runs, published)
    cls: str = ""  # CSS class
    legend: tuple[str, str] = ("", "")  # its legend entry (mark, what it means), shared by the rows that carry it


@dataclass(frozen=True)
class Entry:
    """One record: its page and the row it belongs to."""

    path: Path  # its result.json
    record: dict
    name: str  # its page is PAGES/NAME.html, its files (a copy of the record, the gallery) PAGES/NAME/
    source: str  # its folder, relative to the folder sources are named from
    group: int  # index of its table
    row: dict  # its row, in the leaderboard's JSON form
    badges: tuple[Badge, ...]
    siblings: tuple[Path, ...]  # the records of its row, itself included


@dataclass(frozen=True)
class SiteRow:
    data: dict  # the row in the leaderboard's JSON form
    entry: Entry | None  # the page a row links to (its first record); None for a published row
    kind: str  # method kind, a filter value
    badges: tuple[Badge, ...]


@dataclass(frozen=True)
class SiteGroup:
    group: Group
    data: dict  # the group in the leaderboard's JSON form
    rows: tuple[SiteRow, ...]
    index: int

    @property
    def anchor(self) -> str:
        return f"g{self.index + 1}"


def table_of(groups: list[Group]) -> list[dict]:
    """The leaderboard's JSON form of ``groups`` (read through the module, so what it adds flows through)."""
    return json.loads(leaderboard.to_json(groups))


def method_kind(record: dict | None) -> str:
    """``segmentation network`` (a record from ``wssbench segment``), else the maps the method fuses:
    ``class map + saliency``, ``class map``, ``saliency``; ``published`` for a reference row."""
    if record is None:
        return "published"
    config = record.get("config") or {}
    components = record.get("components") if isinstance(record.get("components"), dict) else {}
    if "segnet" in components or config.get("segnet") or record.get("stage") in ("segmentation", "pseudo-mask"):
        return "segmentation network" if record.get("stage") != "pseudo-mask" else "pseudo-masks"
    maps = [label for key, label in (("classmap", "class map"), ("saliency", "saliency")) if config.get(key)]
    return " + ".join(maps) or "other"


def prior_badges(row: dict) -> tuple[Badge, ...]:
    """The row's ``priors`` (``[{mark, what}]``: what entered besides the image labels) as badges."""
    badges = []
    for prior in row.get("priors") or ():
        mark, what = (prior.get("mark"), prior.get("what")) if isinstance(prior, dict) else (prior, None)
        if mark in (None, ""):
            continue
        general = PRIOR_MARKS.get(str(mark), "a prior")
        badges.append(Badge(str(mark), f"{general}: {what}" if what else general, key=f"prior:{mark}", cls="prior",
                            legend=(str(mark), general)))
    return tuple(badges)


def row_badges(row: dict) -> tuple[Badge, ...]:
    badges = []
    if row.get("published"):
        badges.append(Badge("published", LEGEND["published"], cls="ref", legend=("published", LEGEND["published"])))
    deviations = [d for d in row.get("deviations") or () if isinstance(d, dict)]
    if deviations:
        listed = "; ".join(f"{d.get('option')}: published {d.get('published')}, used {d.get('used')}" for d in deviations)
        badges.append(Badge(f"{leaderboard.DEVIATION_MARK}{len(deviations)}", f"departs from the published recipe: {listed}",
                            key="deviates", cls="dev", legend=(f"{leaderboard.DEVIATION_MARK}n", LEGEND["†n"])))
    badges.extend(prior_badges(row))
    runs, seeds = row.get("runs") or 1, row.get("n_seeds") or 1
    if isinstance(runs, int) and isinstance(seeds, int) and runs > seeds:
        badges.append(Badge(f"×{runs}", f"stands for {runs} runs: {runs - seeds} repeated with the same seed and the same scores",
                            legend=("×N", LEGEND["×N"])))
    return tuple(badges)


LEGEND = {
    "≈": "tied with the row above: the 95 % paired-bootstrap interval of the difference contains 0",
    "±": "mean ± sample standard deviation over training seeds, (n) the number of seeds",
    "▬": "the 95 % image (and seed) bootstrap interval of the mIoU, on the table's common scale; the tick is the mean",
    "†n": "n deviations from the published recipe; the notes under the table name each",
    "×N": "the row stands for N runs, some repeated with the same seed and the same scores",
    "published": "a published number, shown for context and never ranked",
}


def method_text(row: dict) -> str:
    """The row's method label without the leaderboard's ``†`` (the site shows it as a badge with the departures)."""
    text = str(row.get("method") if row.get("method") is not None else "-")
    return text.removesuffix(f" {leaderboard.DEVIATION_MARK}") if row.get("deviations") else text


def page_name(source: str, path: Path) -> str:
    """A file name from the record's folder, made unique (and stable across builds) by a hash of its path."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source).strip("-.")[:60] or "run"
    return f"{slug}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def site_groups(groups: list[Group], records: dict[Path, dict], root: Path) -> tuple[list[SiteGroup], list[Entry]]:
    """The groups with their rows joined to their records, and one entry per record.

    ``records``: result.json path -> record, the paths being those in the rows' ``paths``;
    ``root``: the folder the rows' sources are named from.
    """
    table = table_of(groups)
    out, entries = [], []
    for index, (group, data) in enumerate(zip(groups, table)):
        rows = []
        for row, row_data in zip(group.rows, data["rows"]):
            badges = row_badges(row_data)
            mine = []
            for path in row.paths:
                source = path.parent.relative_to(root).as_posix() if path.is_relative_to(root) else path.parent.as_posix()
                mine.append(Entry(path, records[path], page_name(source, path), source, index, row_data, badges, tuple(row.paths)))
            entries.extend(mine)
            record = mine[0].record if mine else None
            kind = "published" if row_data.get("published") else method_kind(record) if record else "other"
            rows.append(SiteRow(row_data, mine[0] if mine else None, kind, badges))
        out.append(SiteGroup(group, data, tuple(rows), index))
    return out, entries


def number(value: Any) -> float | None:
    """A finite number, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class Score:
    """The mIoU of a row as the site shows it: the mean over seeds where the leaderboard gives one."""

    value: float | None
    std: float | None = None
    n: int | None = None
    ci95: tuple[float, float] | None = None
    tied: bool = False


def score_of(row: dict) -> Score:
    mean = number(row.get("miou_mean"))
    value = mean if mean is not None else number(row.get("miou"))
    ci = row.get("ci95")
    interval = None
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(number(v) is not None for v in ci):
        interval = (float(min(ci)), float(max(ci)))
    n = row.get("n_seeds")
    return Score(value, number(row.get("miou_std")), n if isinstance(n, int) and not isinstance(n, bool) else None,
                 interval, row.get("tied_with_above") is True)
