"""The leaderboard: every result record under a folder, grouped, ranked and formatted.

``find_records`` reads the ``result.json`` files, ``build_groups`` turns them into tables of
comparable rows, and ``to_markdown`` / ``to_csv`` / ``to_latex`` / ``to_json`` render them (the
terminal table lives in ``wssbench.cli.leaderboard``).

Rules, in one place:

- Rows compare only on the same images under the same protocol, so a group is one
  (dataset, split, protocol, number of images); a ``--limit`` run gets a group of its own.
- Values are percentages rounded to one decimal, and "best" is decided on those rounded
  values, so every tie that reads equal is marked. A column is marked only where it tells rows
  apart: at least two measured values, not all equal.
- Published rows (``wssbench.references``) join a group only when its dataset, split and
  protocol match and it covers the whole split. They come after the measured rows, are flagged
  ``published``, and are never ranked: "best" is the best of the runs in the folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from . import references
from .errors import DataError
from .config import parse_option_strings
from .presets import PRESETS


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    numeric: bool = False


@dataclass(frozen=True)
class Row:
    """Cells by column key: text, a percentage rounded to one decimal, or None (no value)."""

    cells: dict[str, Any]
    published: bool = False
    best: frozenset[str] = frozenset()  # keys of the columns where this row holds the best value


@dataclass(frozen=True)
class Group:
    """One table: runs over the same images under the same protocol, then published rows."""

    dataset: str
    split: str
    protocol: str
    n_images: int
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    stage: str = "seed"  # the record's ``stage``: seed (maps), pseudo-mask, or segmentation (network)

    @property
    def caption(self) -> str:
        stage = "" if self.stage == "seed" else f"{self.stage} stage, "
        text = (
            f"{self.dataset} {self.split} ({self.n_images} images) — {stage}{self.protocol} mIoU, one confusion "
            "matrix over the split, 255 ignored; values in %; best measured value per column marked"
        )
        if any(row.published for row in self.rows):
            text += "; published rows are not ranked"
        return text


TEXT_COLUMNS = (Column("method", "method"), Column("backbone", "backbone"), Column("pooling", "pooling"))
SCORE_COLUMNS = (Column("miou", "mIoU", True), Column("pixel_accuracy", "pixel acc.", True), Column("map", "cls. mAP", True))
SOURCE_COLUMN = Column("source", "source")
SORT_KEYS = ("miou", "pixel_accuracy", "map", "method")
REQUIRED = {"dataset": str, "split": str, "protocol": str, "n_images": int, "config": dict}


def read_record(path: Path) -> dict:
    """One result record, checked for what the leaderboard needs; DataError naming the file if not."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: not a JSON object")
    for key, kind in REQUIRED.items():
        if not isinstance(record.get(key), kind):
            raise DataError(f"{path}: '{key}' missing or not a {kind.__name__}")
    if "miou" not in record:
        raise DataError(f"{path}: 'miou' missing")
    for key in ("miou", "pixel_accuracy"):
        if not _is_score(record.get(key)):
            raise DataError(f"{path}: '{key}' is not a number")
    return record


def find_records(root: Path) -> list[tuple[Path, dict]]:
    """Every valid ``result.json`` under ``root``, recursively; invalid ones are skipped with a warning.

    Hidden folders are not searched: a run is written in a hidden temporary folder beside its
    output and renamed into place when complete (``io.atomic_dir``).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: {'not a folder' if root.exists() else 'folder not found'}")
    paths = sorted(p for p in root.rglob("result.json") if not any(d.startswith(".") for d in p.relative_to(root).parts))
    if not paths:
        raise DataError(f"no result.json under {root}")
    found = []
    for path in paths:
        try:
            found.append((path, read_record(path)))
        except DataError as e:
            warnings.warn(f"skipped {e}", stacklevel=2)
    if not found:
        raise DataError(f"no valid result.json under {root} ({len(paths)} skipped)")
    return found


def method_label(config: dict) -> str:
    """The preset's name if the run follows it, else e.g. ``fcn+gbp/threshold/densecrf``.

    Component options set with ``-O`` (dataset options aside) follow in brackets, and a run that
    changed a preset's components says which preset it started from.
    """
    preset = config.get("preset")
    follows = bool(preset) and _follows_preset(config, preset)
    if follows:
        label = preset
    else:
        maps = "+".join(name for name in (config.get("classmap"), config.get("saliency")) if name)
        label = f"{maps or '-'}/{config.get('fusion') or '-'}/{'+'.join(config.get('refine') or ['none'])}"
    from_preset = _preset_options(preset) if follows else {}
    options = [
        f"{stage}.{key}={value}"
        for stage, opts in sorted((config.get("options") or {}).items())
        if stage != "dataset"
        for key, value in sorted(opts.items())
        if from_preset.get((stage, key)) != _as_text(value)  # the preset's own setting goes without saying
    ]
    if options:
        label += f" [{', '.join(options)}]"
    if preset and not follows:
        label += f" (from {preset})"
    return label


def build_groups(
    records: list[tuple[Path, dict]], root: Path, *, with_references: bool = True, per_class: bool = False, sort: str = "miou"
) -> list[Group]:
    """One group per (dataset, split, protocol, n_images), rows sorted by ``sort``, best values marked."""
    measured: dict[tuple, list[Row]] = {}
    for path, record in records:
        # rows of different stages (seed maps, pseudo-masks, segmentation networks) never share a table
        key = (record["dataset"], record["split"], record["protocol"], record["n_images"], str(record.get("stage", "seed")))
        measured.setdefault(key, []).append(_measured_row(path, record, Path(root)))
    groups = []
    for key in sorted(measured):
        rows = sorted(measured[key], key=_sort_key(sort))
        columns = TEXT_COLUMNS + SCORE_COLUMNS + (_class_columns(rows) if per_class else ()) + (SOURCE_COLUMN,)
        published = sorted(_published_rows(*key[:4]), key=_sort_key(sort)) if with_references else []
        groups.append(Group(*key[:4], columns=columns, rows=tuple(_mark_best(rows, columns) + published), stage=key[4]))
    return groups


def cell_text(row: Row, column: Column, missing: str = "-") -> str:
    value = row.cells.get(column.key)
    if value is None:
        return missing
    return f"{value:.1f}" if column.numeric else str(value)


def to_markdown(groups: list[Group]) -> str:
    """GitHub Markdown: per group a bold caption line and a table, best values in bold."""
    blocks = []
    for group in groups:
        lines = [f"**{group.caption}**", "", _md_line(c.header for c in group.columns)]
        lines.append("|" + "|".join("---:" if c.numeric else "---" for c in group.columns) + "|")
        for row in group.rows:
            lines.append(_md_line(_marked(cell_text(row, c), c, row, "**{}**") for c in group.columns))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def to_csv(groups: list[Group]) -> str:
    """One CSV over all groups: a header of column keys, plain numbers, ``best`` naming the marked columns."""
    columns = list({c.key: c for group in groups for c in group.columns}.values())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["dataset", "split", "protocol", "n_images", *(c.key for c in columns), "published", "best"])
    for group in groups:
        for row in group.rows:
            cells = [cell_text(row, c, missing="") for c in columns]
            best = " ".join(c.key for c in columns if c.key in row.best)
            writer.writerow([group.dataset, group.split, group.protocol, group.n_images, *cells, row.published, best])
    return out.getvalue()


def to_latex(groups: list[Group]) -> str:
    """booktabs tables, one per group, best values in ``\\textbf``, published rows after a rule."""
    blocks = []
    for group in groups:
        spec = "".join("r" if c.numeric else "l" for c in group.columns)
        lines = [
            r"\begin{table}", r"\centering",
            r"\caption{" + latex_escape(group.caption).replace("—", "---") + "}",
            r"\begin{tabular}{" + spec + "}", r"\toprule",
            _tex_line(latex_escape(c.header) for c in group.columns), r"\midrule",
        ]
        for i, row in enumerate(group.rows):
            if row.published and (i == 0 or not group.rows[i - 1].published):
                lines.append(r"\midrule")
            lines.append(_tex_line(_marked(latex_escape(cell_text(row, c, "--")), c, row, r"\textbf{{{}}}") for c in group.columns))
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def to_json(groups: list[Group]) -> str:
    """A list of groups: caption, columns, rows (cells by key, ``published``, ``best`` column keys)."""
    data = [
        {
            "dataset": g.dataset, "split": g.split, "protocol": g.protocol, "n_images": g.n_images, "stage": g.stage,
            "caption": g.caption,
            "columns": [{"key": c.key, "header": c.header, "numeric": c.numeric} for c in g.columns],
            "rows": [
                {**{c.key: row.cells.get(c.key) for c in g.columns}, "published": row.published,
                 "best": [c.key for c in g.columns if c.key in row.best]}
                for row in g.rows
            ],
        }
        for g in groups
    ]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


FORMATTERS: dict[str, Callable[[list[Group]], str]] = {"markdown": to_markdown, "csv": to_csv, "latex": to_latex, "json": to_json}

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _is_score(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _pct(value: Any) -> float | None:
    if not _is_score(value) or value is None or math.isnan(value):
        return None
    return round(100.0 * value, 1)


def _follows_preset(config: dict, preset: str) -> bool:
    """True when the run's components are the preset's (options given on the command line win)."""
    known = PRESETS.get(preset)
    if known is None:
        return False
    for key, value in known.options.items():
        if key == "options":
            continue  # component options: those the command line changed are listed in the label
        expected = list(value) if isinstance(value, tuple) else (None if value == "none" else value)
        if config.get(key) != expected:
            return False
    return True


def _preset_options(preset: str | None) -> dict[tuple[str, str], str]:
    """(stage, key) -> value text of the component options a preset sets."""
    known = PRESETS.get(preset or "")
    texts = tuple(known.options.get("options", ())) if known else ()
    return {(stage, key): value for stage, key, value in parse_option_strings(texts)}


def _as_text(value: Any) -> str:
    """An option value as it is written on the command line (lists comma-separated, booleans lower case)."""
    if isinstance(value, (list, tuple)):
        return ",".join(_as_text(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _measured_row(path: Path, record: dict, root: Path) -> Row:
    config = record["config"]
    classifier = record.get("classifier") if isinstance(record.get("classifier"), dict) else {}
    per_class = record.get("per_class_iou") if isinstance(record.get("per_class_iou"), dict) else {}
    cells = {
        "method": record.get("method") or method_label(config),  # a segment record names its method
        "backbone": record.get("backbone") or config.get("backbone"),
        "pooling": config.get("pooling"),
        "miou": _pct(record["miou"]),
        "pixel_accuracy": _pct(record.get("pixel_accuracy")),
        "map": _pct(classifier.get("map")),
        "source": path.parent.relative_to(root).as_posix(),
    }
    cells.update({f"iou:{name}": _pct(value) for name, value in per_class.items()})
    return Row(cells)


def _published_rows(dataset: str, split: str, protocol: str, n_images: int) -> list[Row]:
    return [
        Row({"method": ref.label, "miou": value, "source": f"published: {ref.source}"}, published=True)
        for ref, value in references.matching(dataset, split, protocol, n_images)
    ]


def _class_columns(rows: list[Row]) -> tuple[Column, ...]:
    keys = dict.fromkeys(key for row in rows for key in row.cells if key.startswith("iou:"))
    return tuple(Column(key, key[len("iou:"):], True) for key in keys)


def _sort_key(key: str) -> Callable[[Row], tuple]:
    if key == "method":
        return lambda row: (row.cells["method"], row.cells["source"])
    return lambda row: (row.cells.get(key) is None, -(row.cells.get(key) or 0.0), row.cells["source"])


def _mark_best(rows: list[Row], columns: tuple[Column, ...]) -> list[Row]:
    best = {}
    for column in (c for c in columns if c.numeric):
        values = [row.cells[column.key] for row in rows if row.cells.get(column.key) is not None]
        if len(values) >= 2 and len(set(values)) > 1:
            best[column.key] = max(values)
    return [replace(row, best=frozenset(k for k, v in best.items() if row.cells.get(k) == v)) for row in rows]


def _marked(text: str, column: Column, row: Row, template: str) -> str:
    return template.format(text) if column.key in row.best else text


def _md_line(cells) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _tex_line(cells) -> str:
    return " & ".join(cells) + r" \\"
