"""The leaderboard: every result record under a folder, grouped, ranked and formatted.

``find_records`` reads the ``result.json`` files, ``build_groups`` turns them into tables of
comparable rows, and ``to_markdown`` / ``to_csv`` / ``to_latex`` / ``to_json`` render them (the
terminal table lives in ``wssbench.cli.leaderboard``).

Rules, in one place:

- Rows compare only on the same data, images and protocol, so a group is one (dataset, its
  options such as ``preset``, split, protocol, number of images, precision, stage); a
  ``--limit`` run gets a group of its own, and the caption names everything that defines it.
  Records without ``stage`` or ``precision`` (older ones) read as no stage and fp32.
- One experiment is one row: options that do not change results (``NEUTRAL``: workers, loader
  workers, map caching, batch size, device, data folder) do not make a second row when the
  scores are the same; the row says how many identical runs it stands for. Where such an
  option did change the scores, each row names its value.
- A record's ``deviations`` (``[{option, published, used}]``: where a preset run departs from
  the published setting) mark its method with ``†`` and add a note under the table naming each
  departure, so a published number never sits beside a deviating row unmarked.
- Values are percentages rounded to one decimal, and "best" is decided on those rounded
  values, so every tie that reads equal is marked. A column is marked only where it tells rows
  apart: at least two measured values, not all equal.
- Published rows (``wssbench.results.references``) join a group only when its dataset, split and
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

from wssbench.errors import DataError
from wssbench.results import references
from wssbench.seed.config import parse_option_strings, recorded_value
from wssbench.seed.presets import PRESETS, TRAIN


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    numeric: bool = False


DEVIATION_MARK = "†"
NEUTRAL = ("workers", "loader_workers", "cache_maps", "batch_size", "device", "data_root")


@dataclass(frozen=True)
class Row:
    """Cells by column key: text, a percentage rounded to one decimal, or None (no value)."""

    cells: dict[str, Any]
    published: bool = False
    best: frozenset[str] = frozenset()  # keys of the columns where this row holds the best value
    deviations: tuple[dict, ...] = ()  # {option, published, used} where the run departs from the published setting
    runs: int = 1  # identical runs this row stands for


@dataclass(frozen=True)
class Group:
    """One table: runs over the same data and images under the same protocol, then published rows."""

    dataset: str
    split: str
    protocol: str
    n_images: int
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    dataset_options: tuple[tuple[str, str], ...] = ()  # e.g. (("preset", "tiny"),)
    precision: str = "fp32"
    stage: str | None = None  # "seed", "pseudo-mask", "segmentation"; None for records without one

    @property
    def data(self) -> str:
        """``synthetic [preset=tiny] val``: the dataset with its options, and the split."""
        options = ", ".join(f"{k}={v}" for k, v in self.dataset_options)
        return f"{self.dataset}{f' [{options}]' if options else ''} {self.split}"

    @property
    def caption(self) -> str:
        stage = f"{self.stage} stage, " if self.stage else ""
        text = (
            f"{self.data} ({self.n_images} images, {self.precision}) — {stage}{self.protocol} mIoU, one confusion "
            "matrix over the split, 255 ignored; values in %; best measured value per column marked"
        )
        if any(row.published for row in self.rows):
            text += "; published rows are not ranked"
        return text

    @property
    def notes(self) -> tuple[str, ...]:
        """One line per deviating row: ``† SOURCE: OPTION published P, used U; ...``."""
        return tuple(
            f"{DEVIATION_MARK} {row.cells.get('source')}: "
            + "; ".join(f"{d.get('option')} published {d.get('published')}{_chosen(d)}, used {d.get('used')}" for d in row.deviations)
            for row in self.rows
            if row.deviations
        )


TEXT_COLUMNS = (Column("method", "method"), Column("backbone", "backbone"), Column("pooling", "pooling"))
SCORE_COLUMNS = (Column("miou", "mIoU", True), Column("pixel_accuracy", "pixel acc.", True), Column("map", "cls. mAP", True))
SOURCE_COLUMN = Column("source", "source")
# from `wssbench saliency-eval --out FILE.json` records under the same folder, matched to a run by
# its classifier and saliency method (wssbench.evaluation.columns_for_run)
SALIENCY_COLUMNS = (Column("pointing", "pointing", True), Column("sanity", "sanity check"))
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


def group_key(record: dict) -> tuple:
    """(dataset, split, protocol, n_images, dataset options, precision, stage): what rows must share."""
    config = record["config"]
    dataset_options = tuple(sorted((str(k), _as_text(v)) for k, v in ((config.get("options") or {}).get("dataset") or {}).items()))
    stage = record.get("stage") if isinstance(record.get("stage"), str) else None
    precision = config.get("precision") or "fp32"
    return (record["dataset"], record["split"], record["protocol"], record["n_images"], dataset_options, precision, stage or "")


def experiment_key(record: dict) -> str:
    """The run's config without the options that do not change results (``NEUTRAL``), as text."""
    config = {k: v for k, v in record["config"].items() if k not in NEUTRAL}
    return json.dumps(config, sort_keys=True, default=str)


def find_saliency_records(root: Path) -> list[dict]:
    """Every ``wssbench saliency-eval`` record (JSON with ``"kind": "saliency-eval"``) under ``root``."""
    import json

    found = []
    for path in sorted(Path(root).rglob("*.json")):
        if path.name == "result.json" or any(d.startswith(".") for d in path.relative_to(root).parts):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("kind") == "saliency-eval":
            found.append(data)
    return found


def build_groups(
    records: list[tuple[Path, dict]], root: Path, *, with_references: bool = True, per_class: bool = False, sort: str = "miou",
    saliency: list[dict] = (),
) -> list[Group]:
    """One group per ``group_key``, one row per experiment, sorted by ``sort``, best values marked.

    ``saliency``: saliency-eval records; a run whose classifier and saliency method one of them
    evaluated gets its pointing game and sanity check beside its mIoU (guided BP's failed
    sanity check shows next to its score)."""
    measured: dict[tuple, dict[str, list[tuple[Path, dict]]]] = {}
    for path, record in sorted(records, key=lambda pr: pr[0].parts):
        measured.setdefault(group_key(record), {}).setdefault(experiment_key(record), []).append((path, record))
    groups = []
    for key in sorted(measured):
        dataset, split, protocol, n_images, dataset_options, precision, stage = key
        rows = [row for runs in measured[key].values() for row in _experiment_rows(runs, Path(root), saliency)]
        rows.sort(key=_sort_key(sort))
        evaluated = tuple(c for c in SALIENCY_COLUMNS if any(row.cells.get(c.key) is not None for row in rows))
        columns = TEXT_COLUMNS + SCORE_COLUMNS + evaluated + (_class_columns(rows) if per_class else ()) + (SOURCE_COLUMN,)
        published = []
        if with_references and not dataset_options:
            published = sorted(_published_rows(dataset, split, protocol, n_images, stage or None), key=_sort_key(sort))
        groups.append(Group(
            dataset, split, protocol, n_images, columns=columns, rows=tuple(_mark_best(rows, columns) + published),
            dataset_options=dataset_options, precision=precision, stage=stage or None,
        ))
    return groups


def _experiment_rows(runs: list[tuple[Path, dict]], root: Path, saliency: list[dict] = ()) -> list[Row]:
    """The rows of one experiment: one per distinct score; a neutral option that changed the scores is named."""
    rows = [_measured_row(path, record, root, saliency) for path, record in runs]
    by_score: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        by_score.setdefault(tuple(row.cells.get(k) for k in ("miou", "pixel_accuracy", "map")), []).append(i)
    varying = []
    if len(by_score) > 1:
        varying = [k for k in NEUTRAL if len({_as_text(r["config"].get(k)) for _, r in runs}) > 1]
    out = []
    for members in by_score.values():
        first = rows[members[0]]
        cells = dict(first.cells)
        if varying:
            config = runs[members[0]][1]["config"]
            cells["method"] += " {" + ", ".join(f"{k}={_as_text(config.get(k))}" for k in varying) + "}"
        if len(members) > 1:
            cells["source"] += f" (+{len(members) - 1} identical)"
        out.append(replace(first, cells=cells, runs=len(members)))
    return out


def cell_text(row: Row, column: Column, missing: str = "-") -> str:
    value = row.cells.get(column.key)
    if value is None:
        return missing
    return f"{value:.1f}" if column.numeric else str(value)


def to_markdown(groups: list[Group]) -> str:
    """GitHub Markdown: per group a bold caption line and a table, best values in bold, then its notes."""
    blocks = []
    for group in groups:
        lines = [f"**{group.caption}**", "", _md_line(c.header for c in group.columns)]
        lines.append("|" + "|".join("---:" if c.numeric else "---" for c in group.columns) + "|")
        for row in group.rows:
            lines.append(_md_line(_marked(cell_text(row, c), c, row, "**{}**") for c in group.columns))
        if group.notes:
            lines += ["", *(f"{note}  " for note in group.notes)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def to_csv(groups: list[Group]) -> str:
    """One CSV over all groups: a header of column keys, plain numbers, ``best`` naming the marked columns."""
    columns = list({c.key: c for group in groups for c in group.columns}.values())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    head = ["dataset", "dataset_options", "split", "protocol", "n_images", "precision", "stage"]
    writer.writerow([*head, *(c.key for c in columns), "published", "best", "runs", "deviations"])
    for group in groups:
        for row in group.rows:
            cells = [cell_text(row, c, missing="") for c in columns]
            best = " ".join(c.key for c in columns if c.key in row.best)
            options = " ".join(f"{k}={v}" for k, v in group.dataset_options)
            deviations = "; ".join(f"{d.get('option')}: published {d.get('published')}{_chosen(d)}, used {d.get('used')}" for d in row.deviations)
            writer.writerow([
                group.dataset, options, group.split, group.protocol, group.n_images, group.precision, group.stage or "",
                *cells, row.published, best, row.runs, deviations,
            ])
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
        lines += [r"\bottomrule", r"\end{tabular}"]
        lines += [r"\par\smallskip\footnotesize " + latex_escape(note).replace(DEVIATION_MARK, r"\dag{}") for note in group.notes]
        lines.append(r"\end{table}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def to_json(groups: list[Group]) -> str:
    """A list of groups: caption, columns, rows (cells by key, ``published``, ``best`` column keys)."""
    data = [
        {
            "dataset": g.dataset, "dataset_options": dict(g.dataset_options), "split": g.split,
            "protocol": g.protocol, "n_images": g.n_images, "precision": g.precision, "stage": g.stage,
            "caption": g.caption, "notes": list(g.notes),
            "columns": [{"key": c.key, "header": c.header, "numeric": c.numeric} for c in g.columns],
            "rows": [
                {**{c.key: row.cells.get(c.key) for c in g.columns}, "published": row.published,
                 "best": [c.key for c in g.columns if c.key in row.best], "runs": row.runs,
                 "deviations": list(row.deviations)}
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


def _chosen(deviation: dict) -> str:
    """`` (unverified)`` where the preset's value was a choice, not checked against the source."""
    return " (unverified)" if deviation.get("unverified") else ""


def _follows_preset(config: dict, preset: str) -> bool:
    """True when the run's components are the preset's (options given on the command line win)."""
    known = PRESETS.get(preset)
    if known is None:
        return False
    from wssbench.classifier.training import TrainRecipe
    from wssbench.seed.config import RECIPE_KEYS

    for key, value in known.options.items():
        if key == "options" or key in TRAIN:
            continue  # component options are listed in the label; a changed schedule is a deviation (†)
        used = (config.get("recipe") or {}).get(key, getattr(TrainRecipe, key)) if key in RECIPE_KEYS else config.get(key)
        if recorded_value(key, used) != recorded_value(key, value):
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


def _saliency_cells(record: dict, saliency: list[dict]) -> dict[str, Any]:
    """The pointing game (%) and the sanity check ("fail (rho 0.74)") of the run's saliency method."""
    if not saliency:
        return {}
    from wssbench.evaluation import columns_for_run

    for evaluation in saliency:
        columns = columns_for_run(evaluation, record)
        if columns:
            sanity = columns.get("sanity")
            rho = columns.get("sanity_rho")
            return {"pointing": _pct(columns.get("pointing")),
                    "sanity": f"{sanity} (rho {rho:.2f})" if sanity and rho is not None else sanity}
    return {}


def _measured_row(path: Path, record: dict, root: Path, saliency: list[dict] = ()) -> Row:
    config = record["config"]
    classifier = record.get("classifier") if isinstance(record.get("classifier"), dict) else {}
    per_class = record.get("per_class_iou") if isinstance(record.get("per_class_iou"), dict) else {}
    deviations = tuple(d for d in (record.get("deviations") or ()) if isinstance(d, dict))
    cells = {
        "method": (record.get("method") or method_label(config)) + (f" {DEVIATION_MARK}" if deviations else ""),
        "backbone": record.get("backbone") or config.get("backbone"),
        "pooling": config.get("pooling"),
        "miou": _pct(record["miou"]),
        "pixel_accuracy": _pct(record.get("pixel_accuracy")),
        "map": _pct(classifier.get("map")),
        "source": path.parent.relative_to(root).as_posix(),
    }
    cells.update({f"iou:{name}": _pct(value) for name, value in per_class.items()})
    cells.update(_saliency_cells(record, saliency))
    return Row(cells, deviations=deviations)


def _published_rows(dataset: str, split: str, protocol: str, n_images: int, stage: str | None) -> list[Row]:
    """The matching references; a reference that names its stage joins only a group of that stage."""
    return [
        Row({"method": ref.label, "miou": value, "source": f"published: {ref.source}"}, published=True)
        for ref, value in references.matching(dataset, split, protocol, n_images)
        if getattr(ref, "stage", None) in (None, stage)
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
