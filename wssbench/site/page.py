"""A record's page: the method and every option, deviations and departures, per-class IoU,
the threshold curve where recorded, diagnostics, classifier, timings, versions, the gallery
where the run folder has one, and the command that re-runs it. No script; everything from the
record is escaped.
"""

from __future__ import annotations

import shlex
from html import escape
from typing import Any

from wssbench.results.board import PRIOR_MARKS
from wssbench.site.content import Entry, SiteGroup, method_text, number, score_of
from wssbench.site.index import badge_html
from wssbench.site.layout import document
from wssbench.site.svg import curve_points, threshold_curve, value_bar

NUMERIC = ' class="n"'
SEGMENT_STAGES = ("segmentation", "pseudo-mask")  # written by ``wssbench segment``, which has no --from


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def value_html(value: Any) -> str:
    """Any JSON value as escaped HTML: mappings as nested definition lists."""
    if value is None:
        return '<span class="muted">none</span>'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return esc(f"{value:.6g}")
    if isinstance(value, dict):
        return kv_html(value) if value else '<span class="muted">{}</span>'
    if isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            return esc(", ".join("none" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in value)) or "[]"
        return "<ol>" + "".join(f"<li>{value_html(v)}</li>" for v in value) + "</ol>"
    return esc(value)


def kv_html(mapping: dict) -> str:
    return '<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{value_html(v)}</dd>" for k, v in mapping.items()) + "</dl>"


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f'<th scope="col"{NUMERIC if i in numeric else ""}>{esc(h)}</th>' for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else (f'<th scope="row">{c}</th>' if i == 0 else f"<td>{c}</td>")
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _section(title: str, content: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>\n{content}\n</section>'


def _summary(entry: Entry, site: SiteGroup) -> str:
    record, row, group = entry.record, entry.row, site.group
    score = score_of(row)
    items = {
        "data": group.data, "images": group.n_images, "stage": group.stage or "(not recorded)",
        "protocol": group.protocol, "precision": group.precision,
    }
    shown = [f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items.items()]
    miou = number(record.get("miou"))
    ci = record.get("ci95") if isinstance(record.get("ci95"), list) and len(record["ci95"]) == 2 else None
    interval = f" (95 % image-bootstrap interval {100 * ci[0]:.1f}–{100 * ci[1]:.1f})" if ci and all(number(v) is not None for v in ci) else ""
    shown.append(f"<dt>mIoU</dt><dd>{'-' if miou is None else f'{100 * miou:.1f} %'}{esc(interval)}</dd>")
    if score.std is not None or score.ci95 is not None:
        row_text = f"{score.value:.1f}" + (f" ± {score.std:.1f}" if score.std is not None else "") + f" over {score.n or 1} seed(s)"
        if score.ci95:
            row_text += f", 95 % interval {score.ci95[0]:.1f}–{score.ci95[1]:.1f}"
        if score.tied:
            row_text += "; tied with the row above"
        shown.append(f"<dt>its row</dt><dd>{esc(row_text)}</dd>")
    if isinstance(row.get("seeds"), list):
        shown.append(f"<dt>seeds</dt><dd>{value_html(row['seeds'])}</dd>")
    for key, label in (("pixel_accuracy", "pixel accuracy"),):
        v = number(record.get(key))
        shown.append(f"<dt>{label}</dt><dd>{'-' if v is None else f'{100 * v:.1f} %'}</dd>")
    classifier = record.get("classifier") if isinstance(record.get("classifier"), dict) else {}
    if number(classifier.get("map")) is not None:
        shown.append(f"<dt>classification mAP</dt><dd>{100 * classifier['map']:.1f} % ({esc(classifier.get('map_split') or '')})</dd>")
    auc = number(record.get("threshold_auc"))
    if auc is not None:
        shown.append(f"<dt>threshold AUC</dt><dd>{100 * auc:.1f} % (mean mIoU over the background-threshold grid)</dd>")
    priors = [p for p in record.get("priors") or () if isinstance(p, dict)]
    if priors:
        listed = "".join(f"<li><strong>{esc(p.get('mark'))}</strong> {esc(PRIOR_MARKS.get(str(p.get('mark')), ''))}"
                         f"{': ' + esc(p['what']) if p.get('what') else ''}</li>" for p in priors)
        shown.append(f"<dt>priors</dt><dd><ul>{listed}</ul></dd>")
    for key in ("tuning", "counts"):
        if isinstance(record.get(key), dict):
            shown.append(f"<dt>{esc(key)}</dt><dd>{kv_html(record[key])}</dd>")
    for key in ("seed", "created", "world_size"):
        if key in record:
            shown.append(f"<dt>{esc(key)}</dt><dd>{value_html(record[key])}</dd>")
    shown.append(f"<dt>source</dt><dd><code>{esc(entry.source)}</code></dd>")
    badges = "".join(badge_html(b) for b in entry.badges)
    return f'<dl class="kv">{"".join(shown)}</dl>' + (f"<p>{badges}</p>" if badges else "")


def _rerun(entry: Entry, shown_path: str) -> str:
    copy = f'<a href="{esc(entry.name)}/record.json" download="result.json">result.json</a>'
    if entry.record.get("stage") in SEGMENT_STAGES:
        return (f"<p>This record was written by <code>wssbench segment</code>, which has no <code>--from</code>: re-run it with "
                f"the options under Configuration. The record: {copy}.</p>")
    return (
        "<p>In the folder the leaderboard was built from:</p>"
        f"<pre><code>wssbench run --from {esc(shlex.quote(shown_path))}</code></pre>"
        f"<p>Or save this record ({copy}) and run:</p><pre><code>wssbench run --from result.json</code></pre>"
    )


def _components(record: dict) -> str:
    components = record.get("components") if isinstance(record.get("components"), dict) else {}
    rows = []
    for stage, c in components.items():
        if not isinstance(c, dict):
            rows.append([esc(stage), value_html(c), "", "", ""])
            continue
        rows.append([esc(stage), esc(c.get("name", "")), esc(c.get("kind", "")), esc(c.get("plugin", "")), value_html(c.get("options", {}))])
    return _table(["stage", "name", "kind", "plugin", "options"], rows) if rows else "<p>No components recorded.</p>"


def _deviations(record: dict) -> str:
    deviations = [d for d in record.get("deviations") or () if isinstance(d, dict)]
    parts = []
    if deviations:
        rows = [[esc(d.get("option")), value_html(d.get("published")), value_html(d.get("used")),
                 "unverified" if d.get("unverified") else ""] for d in deviations]
        parts.append(_table(["option", "published", "used", "note"], rows))
    else:
        preset = (record.get("config") or {}).get("preset")
        parts.append(f"<p>None: {'the run follows preset ' + esc(preset) if preset else 'the run names no published recipe'}.</p>")
    unverified = record.get("unverified")
    if unverified:
        parts.append(f"<p>Options of the preset chosen where the source could not be checked: {value_html(unverified)}</p>")
    return "".join(parts)


def _per_class(record: dict) -> str:
    """IoU per class, with precision and recall where the record's ``diagnostics`` hold them."""
    per_class = record.get("per_class_iou") if isinstance(record.get("per_class_iou"), dict) else {}
    diagnostics = record.get("diagnostics") if isinstance(record.get("diagnostics"), dict) else {}
    extra = [k for k in ("precision", "recall") if isinstance(diagnostics.get(k), dict)]

    def pct(value: Any) -> str:
        v = number(value)
        return "-" if v is None else f"{100 * v:.1f}"

    rows = []
    for name, value in per_class.items():
        v = number(value)
        rows.append([esc(name), pct(v), *(pct(diagnostics[k].get(name)) for k in extra), "" if v is None else value_bar(v)])
    header = ["class", "IoU %", *(f"{k} %" for k in extra), ""]
    return _table(header, rows, numeric=set(range(1, 2 + len(extra)))) if rows else "<p>Not recorded.</p>"


def _curve(record: dict) -> str | None:
    points = curve_points(record.get("threshold_curve"))
    if not points:
        return None
    used = _at(record.get("threshold_used"))
    if used is not None and used[0] is None:
        used = None
    if used is None:
        fusion = ((record.get("components") or {}).get("fusion") or {}).get("options") or {}
        t = number(fusion.get("bg_threshold"))
        used = (t, None) if t is not None else None
    best = _at(record.get("threshold_max"))
    if best is None or best[0] is None or best[1] is None:
        best = max(points, key=lambda p: p[1])
    auc = number(record.get("threshold_auc"))
    title = f"mIoU over background thresholds {points[0][0]:g} to {points[-1][0]:g}" + (f"; area (mean) {100 * auc:.1f}" if auc is not None else "")
    table = _table(["threshold", "mIoU %"], [[f"{t:g}", f"{m:.1f}"] for t, m in points], numeric={1})
    return (f"<p>{esc(title)}. The maximum is an oracle: its threshold is chosen on the scored split.</p>"
            f"{threshold_curve(points, used, best, title)}<details><summary>values</summary>{table}</details>")


def _at(value: Any) -> tuple[float | None, float | None] | None:
    """``threshold_used`` / ``threshold_max``: {threshold, miou} -> (threshold, mIoU %); a number is an mIoU."""
    if isinstance(value, dict):
        m = number(value.get("miou"))
        return number(value.get("threshold")), None if m is None else 100 * m
    m = number(value)
    return None if m is None else (None, 100 * m)


def _diagnostics(record: dict) -> str | None:
    """The record's ``diagnostics`` but precision and recall (in the per-class table): IoU by
    region size, the rate of predicted classes absent from the image, and any other key."""
    diagnostics = record.get("diagnostics")
    if not isinstance(diagnostics, dict):
        return None
    parts = []
    sizes = diagnostics.get("iou_by_size")
    if isinstance(sizes, dict) and all(isinstance(v, dict) for v in sizes.values()):
        rows = [[esc(size), "-" if number(v.get("iou")) is None else f"{100 * v['iou']:.1f}", value_html(v.get("regions"))]
                for size, v in sizes.items()]
        rule = f"<p>{esc(diagnostics['size_rule'])}.</p>" if isinstance(diagnostics.get("size_rule"), str) else ""
        parts.append(f"<h3>IoU by region size</h3>{rule}" + _table(["size", "IoU %", "regions"], rows, numeric={1, 2}))
    rest = {k: v for k, v in diagnostics.items() if k not in ("precision", "recall", "iou_by_size", "size_rule")}
    if rest:
        parts.append(kv_html(rest))
    return "".join(parts) or None


def _siblings(entry: Entry, names: dict) -> str | None:
    others = [p for p in entry.siblings if p != entry.path]
    if not others:
        return None
    links = "".join(f'<li><a href="{esc(names[p].name)}.html">{esc(names[p].source)}</a></li>' for p in others)
    return f"<p>This row of the leaderboard stands for {len(entry.siblings)} runs; the others:</p><ul>{links}</ul>"


def record_page(entry: Entry, site: SiteGroup, *, shown_path: str, gallery: list[str], entries: dict) -> str:
    """The page of ``entry``; ``gallery``: image files copied beside it (under ``entry.name/``);
    ``entries``: result.json path -> Entry, for the links to the other runs of its row."""
    record = entry.record
    title = method_text(entry.row) if entry.row.get("method") else entry.source
    sections = [
        _section("Result", _summary(entry, site), "result"),
        _section("Re-run", _rerun(entry, shown_path), "rerun"),
        _section("Method", _components(record), "method"),
        _section("Configuration", kv_html(record.get("config") or {}), "config"),
        _section("Deviations and departures", _deviations(record), "deviations"),
        _section("Per-class IoU", _per_class(record), "per-class"),
    ]
    optional = [("Threshold curve", _curve(record), "threshold"), ("Diagnostics", _diagnostics(record), "diagnostics")]
    if isinstance(record.get("classifier"), dict):
        optional.append(("Classifier", kv_html({k: v for k, v in record["classifier"].items() if k != "loss_history"}), "classifier"))
    for key, label in (("training", "Training"), ("timings", "Timings"), ("versions", "Versions"), ("counts", "Counts")):
        if isinstance(record.get(key), dict):
            optional.append((label, kv_html(record[key]), key))
    if gallery:
        images = "".join(f'<p><img class="gallery" src="{esc(entry.name)}/{esc(name)}" alt="gallery of {esc(entry.source)}: image, truth, maps, prediction"></p>' for name in gallery)
        optional.append(("Gallery", "<p>From <code>wssbench show</code>: image, ground truth, class map, saliency map, prediction.</p>" + images, "gallery"))
    optional.append(("Other runs of this row", _siblings(entry, entries), "row"))
    sections += [_section(t, c, a) for t, c, a in optional if c]
    body = "\n".join([
        f'<header><p><a href="../index.html#g{site.index + 1}">← leaderboard</a></p>',
        f"<h1>{esc(title)}</h1>",
        f'<p class="caption">{esc(site.group.caption)}</p></header>',
        "<main>", *sections, "</main>",
    ])
    return document(f"{title} — wssbench leaderboard", body)
