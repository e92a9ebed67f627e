"""The leaderboard's tables as data: columns, rows with their uncertainty and marks, groups.

:mod:`wssbench.leaderboard` fills them from result records; :mod:`wssbench.results.formats`
renders them (Markdown, CSV, LaTeX, JSON; the terminal table lives in the CLI). Values are
percentages rounded to one decimal.

Marks, explained under every table that uses them (:attr:`Group.notes`):

- ``†``: the run departs from its preset's published recipe (the note lists how);
- ``≈``: the row's mIoU is tied with the row ranked just above it (the paired bootstrap
  interval of their difference contains 0);
- prior badges, what entered besides the image labels (:data:`PRIOR_MARKS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEVIATION_MARK = "†"
TIE_MARK = "≈"
# A row's priors: what entered the method besides the training images' labels.
PRIOR_MARKS = {
    "I": "pretrained weights (ImageNet classification)",
    "S": "a component trained with pixel masks (a salient-object detector)",
    "B": "a component trained with boxes or masks (object proposals such as MCG or BING)",
    "C": "image-text pretraining (CLIP)",
    "T": "tuned on the images it is scored on (shown apart, not ranked)",
}


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    numeric: bool = False


@dataclass(frozen=True)
class Row:
    """Cells by column key: text, a percentage rounded to one decimal, or None (no value).

    A measured row stands for one experiment: one run, or one run per training seed (``seeds``);
    ``cells["miou"]`` is then the mean over the seeds, ``std`` their sample standard deviation
    and ``ci95`` the image-and-seed bootstrap interval (percent), when the runs kept their counts.
    """

    cells: dict[str, Any]
    published: bool = False
    best: frozenset[str] = frozenset()  # keys of the columns where this row holds the best value
    deviations: tuple[dict, ...] = ()  # {option, published, used} where the run departs from the published setting
    runs: int = 1  # runs this row stands for (seeds and identical repeats)
    seeds: tuple[int, ...] = ()
    std: float | None = None  # percent, over seeds
    ci95: tuple[float, float] | None = None  # percent
    tied_with_above: bool | None = None  # None: not compared (no counts, first row, published)
    priors: tuple[dict, ...] = ()  # {mark, what}
    unranked: bool = False  # tuned on its scored images: shown apart
    points: tuple[float, ...] = ()  # the runs' mIoUs (fractions), one per seed
    samples: Any = field(default=None, compare=False, repr=False)  # (B, R) the runs' bootstrap samples, or None
    paths: tuple[Path, ...] = ()  # the result.json of every run the row stands for (none for a published row)

    @property
    def n_seeds(self) -> int:
        return max(1, len(self.seeds))

    @property
    def priors_detail(self) -> str:
        """Each badge with its meaning and the row's own detail: the legend, row by row (CSV)."""
        return "; ".join(f"{p['mark']}: {PRIOR_MARKS.get(p['mark'], '')} ({p.get('what', '')})" for p in self.priors)

    @property
    def marks(self) -> str:
        """The prior badges and the deviation count, e.g. ``I S †2``."""
        badges = sorted({p["mark"] for p in self.priors if p.get("mark") in PRIOR_MARKS}, key=list(PRIOR_MARKS).index)
        if self.deviations:
            badges.append(f"{DEVIATION_MARK}{len(self.deviations)}")
        return " ".join(badges)


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
        if any(row.n_seeds > 1 for row in self.rows):
            text += "; mIoU as mean ± std (seeds) over training seeds"
        if any(row.ci95 for row in self.rows):
            text += "; 95 % CI: image (and seed) bootstrap"
        if any(row.unranked for row in self.rows):
            text += "; rows tuned on their scored images are shown apart, not ranked"
        if any(row.published for row in self.rows):
            text += "; published rows are not ranked"
        return text

    @property
    def notes(self) -> tuple[str, ...]:
        """The legend of the marks used, then one line per deviating row:
        ``† SOURCE: OPTION published P, used U; ...``."""
        legend = []
        if any(row.tied_with_above for row in self.rows):
            legend.append(f"{TIE_MARK} tied with the row above (95 % paired-bootstrap interval of the difference contains 0)")
        used = {p["mark"] for row in self.rows for p in row.priors}
        legend += [f"{mark}: {what}" for mark, what in PRIOR_MARKS.items() if mark in used]
        if any(row.deviations for row in self.rows):
            legend.append(f"{DEVIATION_MARK}n: n deviations from the published recipe (listed below)")
        deviating = tuple(
            f"{DEVIATION_MARK} {row.cells.get('source')}: "
            + "; ".join(f"{d.get('option')} published {d.get('published')}{chosen(d)}, used {d.get('used')}" for d in row.deviations)
            for row in self.rows
            if row.deviations
        )
        return (*legend, *deviating)


def chosen(deviation: dict) -> str:
    """`` (unverified)`` where the preset's value was a choice, not checked against the source."""
    return " (unverified)" if deviation.get("unverified") else ""


def cell_text(row: Row, column: Column, missing: str = "-") -> str:
    """A cell as text: numbers with one decimal; mIoU over several seeds as ``51.3 ± 1.2 (4)``,
    ``≈`` before a value tied with the row above; the CI as ``[49.8, 52.7]``."""
    if column.key == "ci95":
        return f"[{row.ci95[0]:.1f}, {row.ci95[1]:.1f}]" if row.ci95 else missing
    if column.key == "marks":
        return row.marks or missing
    value = row.cells.get(column.key)
    if value is None:
        return missing
    if not column.numeric:
        return str(value)
    text = f"{value:.1f}"
    if column.key == "miou":
        if row.n_seeds > 1 and row.std is not None:
            text = f"{text} ± {row.std:.1f} ({row.n_seeds})"
        if row.tied_with_above:
            text = f"{TIE_MARK} {text}"
    return text
