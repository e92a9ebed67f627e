"""``index.html``: one table per leaderboard group, readable without JavaScript.

Per table: the rank, then the leaderboard's columns in its order. The method cell is the row's
header and links to the page of the row's first record; mIoU shows mean ± std (n) with the
95 % interval drawn as a bar on the table's common scale where the leaderboard gives them, and
the single value otherwise. Published rows come last in a body of their own, marked, and stay
there whatever the sort. The script (``site.js``) makes every header a sort button
(``aria-sort`` follows) and applies the filter form (stage, dataset, backbone, method kind,
badge); without it the form stays hidden and the rows keep the leaderboard's order.
"""

from __future__ import annotations

from html import escape

from wssbench.leaderboard import Column
from wssbench.results.board import PRIOR_MARKS
from wssbench.site.content import LEGEND, PAGES, Badge, Score, SiteGroup, SiteRow, method_text, number, score_of
from wssbench.site.layout import document
from wssbench.site.svg import interval_bar, interval_css


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def badge_html(badge: Badge) -> str:
    return f'<span class="b {esc(badge.cls)}" title="{esc(badge.meaning)}">{esc(badge.text)}</span>'


def _scale(rows: tuple[SiteRow, ...]) -> tuple[float, float] | None:
    """The common scale of a table's interval bars: the lowest and highest bound or mean shown."""
    scores = [score_of(row.data) for row in rows]
    bounds = [v for score in scores if score.ci95 for v in (*score.ci95, score.value) if v is not None]
    return (min(bounds), max(bounds)) if bounds else None


def _miou_cell(row: SiteRow, column: Column, scale: tuple[float, float] | None) -> str:
    score: Score = score_of(row.data)
    if score.value is None:
        return '<td class="n" data-v="">-</td>'
    text = f"{score.value:.1f}"
    if column.key in (row.data.get("best") or ()):
        text = f'<strong class="best">{text}</strong>'
    if score.tied:
        text = f'<span class="tie" title="tied with the row above">≈</span> {text}'
    if score.std is not None:
        text += f" <small>± {score.std:.1f} ({score.n or 1})</small>"
    elif score.n is not None and score.n > 1:
        text += f" <small>({score.n})</small>"
    title = ""
    if score.ci95 is not None and scale is not None:
        text += interval_bar(*score.ci95, score.value, scale)
        title = f' title="95 % interval {score.ci95[0]:.1f}–{score.ci95[1]:.1f}"'
    return f'<td class="n" data-v="{score.value}"{title}>{text}</td>'


SHOWN_ELSEWHERE = ("marks",)  # the leaderboard's columns the site shows otherwise: the priors and † as badges
MISSING = '<td class="n" data-v="">-</td>'


def _cell(row: SiteRow, column: Column, scale: tuple[float, float] | None) -> str:
    if column.key == "miou":
        return _miou_cell(row, column, scale)
    if column.key == "ci95":
        ci = score_of(row.data).ci95
        return f'<td class="n" data-v="{ci[0]}">{ci[0]:.1f}–{ci[1]:.1f}</td>' if ci else MISSING
    value = row.data.get(column.key)
    if column.key == "method":
        label = esc(method_text(row.data))
        if row.entry is not None:
            label = f'<a href="{PAGES}/{esc(row.entry.name)}.html">{label}</a>'
        return f'<th scope="row">{label} {"".join(badge_html(b) for b in row.badges)}</th>'
    if column.numeric:
        v = number(value)
        if v is None:
            return '<td class="n" data-v="">-</td>'
        text = f"{v:.1f}"
        if column.key in (row.data.get("best") or ()):
            text = f'<strong class="best">{text}</strong>'
        return f'<td class="n" data-v="{v}">{text}</td>'
    return f"<td>{esc(value) if value not in (None, '') else '-'}</td>"


def _row(row: SiteRow, rank: int | None, columns: tuple[Column, ...], scale) -> str:
    keys = " ".join(b.key for b in row.badges if b.key)
    attrs = (f' data-row="" data-backbone="{esc(row.data.get("backbone") or "")}" data-kind="{esc(row.kind)}"'
             f' data-badges="{esc(keys)}"' + (' class="ref"' if row.data.get("published") else ' class="apart"' if row.data.get("unranked") else ""))
    rank_cell = f'<td class="n" data-v="{rank}">{rank}</td>' if rank is not None else '<td class="n" data-v="">-</td>'
    return f"<tr{attrs}>{rank_cell}{''.join(_cell(row, c, scale) for c in columns)}</tr>"


CHUNK = 100  # measured rows per table of a group: a long group is several tables, laid out as they scroll near


def shown_columns(site: SiteGroup) -> tuple[Column, ...]:
    return tuple(c for c in site.group.columns if c.key not in SHOWN_ELSEWHERE)


def _widths(site: SiteGroup, scale) -> list[int]:
    """Each column's width in ``ch`` (the rank, then the group's columns), from its longest text
    (a proportional font's letter is about 0.8 ch), so that the tables of a long group line up
    (``table-layout: fixed``)."""
    columns = shown_columns(site)
    widths = [max(3, len(str(len(site.rows)))) + 4]
    for c in columns:
        longest = 0
        for row in site.rows:
            value = row.data.get(c.key)
            if c.key == "miou":
                score = score_of(row.data)
                text = 4 + (len(f" ± {score.std:.1f} ({score.n or 1})") if score.std is not None else 0)
                text += 2 * score.tied + (10 if score.ci95 is not None and scale is not None else 0)
            elif c.key == "ci95":
                text = 10
            elif c.key == "method":
                text = 0.8 * len(method_text(row.data)) + sum(len(b.text) + 2 for b in row.badges)
            elif c.numeric:
                text = len(f"{value:.1f}") if number(value) is not None else 1
            else:
                text = 0.8 * len(str(value if value is not None else "-"))
            longest = max(longest, text)
        cap = 34 if c.key in ("method", "source") else 24
        widths.append(round(min(max(longest, len(c.header) + 3, 4), cap)) + 3)
    return widths


def _table(site: SiteGroup, sort: str) -> str:
    """The group's ranked rows as consecutive tables of ``CHUNK`` rows, each with the header; the
    rows tuned on their scored images, then the published rows, each in a body of their own after
    the last. One table where the group is short."""
    columns = shown_columns(site)
    scale = _scale(site.rows)
    head = ['<th scope="col" class="n" data-type="num">#</th>']
    for c in columns:
        sorted_by = ""
        if c.key == sort:
            sorted_by = ' aria-sort="descending"' if c.numeric else ' aria-sort="ascending"'
        kind = ' class="n" data-type="num"' if c.numeric else ' data-type="text"'
        head.append(f'<th scope="col"{kind}{sorted_by}>{esc(c.header)}</th>')
    measured = [row for row in site.rows if not row.data.get("published") and not row.data.get("unranked")]
    apart = [row for row in site.rows if row.data.get("unranked") and not row.data.get("published")]
    published = [row for row in site.rows if row.data.get("published")]
    chunks = [measured[i:i + CHUNK] for i in range(0, len(measured), CHUNK)] or [[]]
    header = f'<thead><tr>{"".join(head)}</tr></thead>'
    kind = "board"
    if len(chunks) > 1:  # the tables of a group line up: fixed column widths (``_css``)
        header = "<colgroup>" + "".join(f'<col class="k{i}">' for i in range(len(columns) + 1)) + "</colgroup>" + header
        kind = "board fixed"
    out = []
    for k, chunk in enumerate(chunks):
        label = f' aria-label="{esc(site.group.data)}, rows {k * CHUNK + 1} to {k * CHUNK + len(chunk)}"' if len(chunks) > 1 else ""
        out += [f'<div class="scroll{" more" if k else ""}"><table class="{kind}"{label}>{header}', '<tbody class="runs">']
        out += [_row(row, k * CHUNK + i + 1, columns, scale) for i, row in enumerate(chunk)]
        out.append("</tbody>")
        for rows, name, title in ((apart, "apart", "tuned on the images they are scored on: shown apart, not ranked"),
                                  (published, "refs", "published results, not ranked")):
            if rows and k == len(chunks) - 1:
                out.append(f'<tbody class="{name}"><tr class="sep"><th colspan="{len(columns) + 1}" scope="rowgroup">{title}</th></tr>')
                out += [_row(row, None, columns, scale) for row in rows]
                out.append("</tbody>")
        out.append("</table></div>")
    return "\n".join(out)


def _css(site: SiteGroup) -> str:
    """The size the group takes before it is laid out, and the column widths of a group of several tables."""
    rules = f"#{site.anchor}{{contain-intrinsic-size:auto {200 + 34 * len(site.rows)}px}}"
    if sum(not row.data.get("published") and not row.data.get("unranked") for row in site.rows) > CHUNK:
        rules += "".join(f"#{site.anchor} .k{i}{{width:{w}ch}}" for i, w in enumerate(_widths(site, _scale(site.rows))))
    return rules


def _section(site: SiteGroup, sort: str) -> str:
    group = site.group
    stage = f" — {group.stage} stage" if group.stage else ""
    notes = "".join(f"<li>{esc(note)}</li>" for note in group.notes)
    return "\n".join([
        f'<section class="group" id="{site.anchor}" data-dataset="{esc(group.dataset)}" data-stage="{esc(group.stage or "none")}">',
        f"<h2>{esc(group.data)}{esc(stage)} <small>({group.n_images} images, {esc(group.precision)}, {esc(group.protocol)})</small></h2>",
        f'<p class="caption">{esc(group.caption)}</p>',
        _table(site, sort),
        '<p class="empty" hidden>No row of this table matches the filters.</p>',
        f'<ul class="notes">{notes}</ul>' if notes else "",
        "</section>",
    ])


def _select(name: str, label: str, values: dict[str, str]) -> str:
    options = "".join(f'<option value="{esc(v)}">{esc(text)}</option>' for v, text in sorted(values.items(), key=lambda kv: kv[1].lower()))
    return f'<label>{esc(label)}<select name="{name}"><option value="">all</option>{options}</select></label>'


def _filters(sites: list[SiteGroup]) -> str:
    stages = {s.group.stage or "none": s.group.stage or "(none)" for s in sites}
    datasets = {s.group.dataset: s.group.dataset for s in sites}
    backbones = {r.data["backbone"]: r.data["backbone"] for s in sites for r in s.rows if r.data.get("backbone")}
    kinds = {r.kind: r.kind for s in sites for r in s.rows}
    badges = {b.key: f"{b.legend[0]}: {b.legend[1]}" for s in sites for r in s.rows for b in r.badges if b.key}
    parts = [_select("stage", "stage", stages), _select("dataset", "dataset", datasets), _select("backbone", "backbone", backbones),
             _select("kind", "method kind", kinds)]
    if badges:
        parts.append(_select("badge", "badge", badges))
    return (f'<form id="filters" hidden aria-label="filter the rows">{"".join(parts)}'
            '<button type="reset">show all</button><output id="shown" aria-live="polite"></output></form>')


def _legend(sites: list[SiteGroup]) -> str:
    """The marks and badges the page uses, each once: the table's marks first, then the badges, the priors last."""
    used: dict[str, str] = {}
    for row in (r for s in sites for r in s.rows):
        score = score_of(row.data)
        for mark, present in (("≈", score.tied), ("±", score.std is not None), ("▬", score.ci95 is not None)):
            if present:
                used.setdefault(mark, LEGEND[mark])
        for b in row.badges:
            used.setdefault(*(b.legend if b.legend[0] else (b.text, b.meaning)))
    order = [*LEGEND, *PRIOR_MARKS]
    ranked = sorted(used.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in ranked)
    best = '<dt><strong class="best">45.0</strong></dt><dd>the best measured value of its column (where values differ)</dd>'
    return f'<details class="legend" open><summary>Legend</summary><dl class="legend">{best}{items}</dl></details>'


def index_page(sites: list[SiteGroup], *, n_records: int, n_folders: int, sort: str, version: str) -> str:
    """The whole ``index.html``."""
    toc = "".join(f'<li><a href="#{s.anchor}">{esc(s.group.data)}{esc(" — " + s.group.stage + " stage" if s.group.stage else "")}'
                  f' ({s.group.n_images} images, {esc(s.group.precision)})</a></li>' for s in sites)
    n_rows = sum(not r.data.get("published") for s in sites for r in s.rows)
    n_published = sum(len(s.rows) for s in sites) - n_rows
    body = "\n".join([
        "<header>",
        "<h1>Weakly-supervised segmentation leaderboard</h1>",
        (f'<p class="muted">{n_records} runs from {n_folders} folder{"s" if n_folders != 1 else ""}, in {n_rows} rows of {len(sites)} '
         f'tables{f" beside {n_published} published results" if n_published else ""}, built by wssbench {esc(version)}. '
         "Rows compare only within a table (same data, images, stage, protocol and precision); each method links to its page: "
         "every option, per-class IoU, versions, timings and the command that re-runs it.</p>"),
        f'<nav aria-label="tables"><ul>{toc}</ul></nav>',
        "</header>",
        "<main>",
        _filters(sites),
        _legend(sites),
        *(_section(s, sort) for s in sites),
        "</main>",
    ])
    css = "".join(_css(s) for s in sites)
    if any(score_of(r.data).ci95 is not None for s in sites for r in s.rows):
        css += interval_css()
    return document("wssbench leaderboard", body, script=True, css=css, description="WSSS leaderboard: results with their recipes")
