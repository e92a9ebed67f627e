"""The leaderboard's file formats: Markdown, CSV, LaTeX and JSON, one table per group, the
legend of the marks and the deviation notes under each (the terminal table is the CLI's)."""

from __future__ import annotations

import csv
import io
import json
from typing import Callable

from wssbench.results.board import DEVIATION_MARK, Column, Group, Row, cell_text, chosen


def to_markdown(groups: list[Group]) -> str:
    """GitHub Markdown: per group a bold caption line and a table, best values in bold, then its notes."""
    blocks = []
    for group in groups:
        lines = [f"**{group.caption}**", "", _md_line(c.header for c in group.columns)]
        lines.append("|" + "|".join("---:" if c.numeric or c.key == "ci95" else "---" for c in group.columns) + "|")
        for row in group.rows:
            lines.append(_md_line(_marked(cell_text(row, c), c, row, "**{}**") for c in group.columns))
        if group.notes:
            lines += ["", *(f"{note}  " for note in group.notes)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


CSV_EXTRA = ("miou_std", "n_seeds", "seeds", "ci95_lo", "ci95_hi", "tied_with_above", "priors", "priors_detail", "unranked")


def to_csv(groups: list[Group]) -> str:
    """One CSV over all groups: a header of column keys, plain numbers (mIoU: the mean over
    seeds), ``best`` naming the marked columns, then the uncertainty and marks of each row."""
    columns = list({c.key: c for group in groups for c in group.columns if c.key not in ("ci95", "marks")}.values())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    head = ["dataset", "dataset_options", "split", "protocol", "n_images", "precision", "stage"]
    writer.writerow([*head, *(c.key for c in columns), "published", "best", "runs", *CSV_EXTRA, "deviations"])
    for group in groups:
        for row in group.rows:
            cells = ["" if row.cells.get(c.key) is None else row.cells.get(c.key) for c in columns]
            best = " ".join(c.key for c in columns if c.key in row.best)
            options = " ".join(f"{k}={v}" for k, v in group.dataset_options)
            deviations = "; ".join(f"{d.get('option')}: published {d.get('published')}{chosen(d)}, used {d.get('used')}" for d in row.deviations)
            lo, hi = row.ci95 or ("", "")
            extra = [_blank(row.std), row.n_seeds if not row.published else "", " ".join(map(str, row.seeds)), lo, hi,
                     _blank(row.tied_with_above), row.marks, row.priors_detail, row.unranked]
            writer.writerow([
                group.dataset, options, group.split, group.protocol, group.n_images, group.precision, group.stage or "",
                *cells, row.published, best, row.runs, *extra, deviations,
            ])
    return out.getvalue()


def to_latex(groups: list[Group]) -> str:
    """booktabs tables, one per group, best values in ``\\textbf``, published rows after a rule."""
    blocks = []
    for group in groups:
        spec = "".join("r" if c.numeric or c.key == "ci95" else "l" for c in group.columns)
        lines = [
            r"\begin{table}", r"\centering",
            r"\caption{" + latex_escape(group.caption).replace("—", "---") + "}",
            r"\begin{tabular}{" + spec + "}", r"\toprule",
            _tex_line(latex_escape(c.header) for c in group.columns), r"\midrule",
        ]
        for i, row in enumerate(group.rows):
            if (row.published or row.unranked) and (i == 0 or (group.rows[i - 1].published, group.rows[i - 1].unranked) != (row.published, row.unranked)):
                lines.append(r"\midrule")
            lines.append(_tex_line(_marked(latex_escape(cell_text(row, c, "--")), c, row, r"\textbf{{{}}}") for c in group.columns))
        lines += [r"\bottomrule", r"\end{tabular}"]
        lines += [r"\par\smallskip\footnotesize " + latex_escape(note) for note in group.notes]
        lines.append(r"\end{table}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def to_json(groups: list[Group]) -> str:
    """A list of groups: caption, notes, columns, rows (cells by key, ``published``, ``best``
    column keys, and ``miou_mean``, ``miou_std``, ``n_seeds``, ``seeds``, ``ci95``,
    ``tied_with_above``, ``priors``, ``unranked``; percentages)."""
    data = [
        {
            "dataset": g.dataset, "dataset_options": dict(g.dataset_options), "split": g.split,
            "protocol": g.protocol, "n_images": g.n_images, "precision": g.precision, "stage": g.stage,
            "caption": g.caption, "notes": list(g.notes),
            "columns": [{"key": c.key, "header": c.header, "numeric": c.numeric} for c in g.columns],
            "rows": [_json_row(row, g.columns) for row in g.rows],
        }
        for g in groups
    ]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _json_row(row: Row, columns: tuple[Column, ...]) -> dict:
    cells = {c.key: row.cells.get(c.key) for c in columns if c.key not in ("ci95", "marks")}
    out = {**cells, "published": row.published, "best": [c.key for c in columns if c.key in row.best], "runs": row.runs,
           "deviations": list(row.deviations)}
    if not row.published:
        out.update({
            "miou_mean": row.cells.get("miou"), "miou_std": row.std, "n_seeds": row.n_seeds, "seeds": list(row.seeds),
            "ci95": list(row.ci95) if row.ci95 else None, "tied_with_above": row.tied_with_above,
            "priors": [dict(p) for p in row.priors], "marks": row.marks, "unranked": row.unranked,
        })
    return out


FORMATTERS: dict[str, Callable[[list[Group]], str]] = {"markdown": to_markdown, "csv": to_csv, "latex": to_latex, "json": to_json}

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    DEVIATION_MARK: r"\dag{}", "≈": r"$\approx$", "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _blank(value) -> object:
    return "" if value is None else value


def _marked(text: str, column: Column, row: Row, template: str) -> str:
    return template.format(text) if column.key in row.best else text


def _md_line(cells) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _tex_line(cells) -> str:
    return " & ".join(cells) + r" \\"
