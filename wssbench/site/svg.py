"""Drawings: the 95 % interval bar of a row (CSS), a per-class IoU bar and the threshold curve (SVG).

Geometry goes in SVG attributes or in classes, never in ``style`` attributes, so that the
pages' Content-Security-Policy can forbid inline styles other than the site's own stylesheet.
"""

from __future__ import annotations

from html import escape

from wssbench.site.content import number


def _esc(text: object) -> str:
    return escape(str(text), quote=True)


BAR_WIDTH = 64  # pixels, the interval bar of a row


def interval_bar(lo: float, hi: float, mean: float | None, scale: tuple[float, float]) -> str:
    """The interval [lo, hi] (and a tick at ``mean``) on the table's common ``scale`` (min, max),
    as three elements placed by the classes of ``interval_css`` (whole pixels: what a 64-pixel
    bar can show). Not SVG: a thousand SVG roots in a table cost Chromium a third of a second
    to lay out. The numbers are in its ``aria-label``."""
    start, stop = scale
    span = stop - start

    def x(v: float) -> int:
        return BAR_WIDTH // 2 if span <= 0 else min(max(round((BAR_WIDTH - 1) * (v - start) / span), 0), BAR_WIDTH - 1)

    left, right = x(lo), x(hi)
    tick = f'<i class="ct x{x(mean)}"></i>' if mean is not None else ""
    return (f'<span class="ci" role="img" aria-label="95 % interval {lo:.1f} to {hi:.1f}">'
            f'<i class="cb x{left} w{max(right - left, 1)}"></i>{tick}</span>')


def interval_css() -> str:
    """The rules ``interval_bar`` places its marks with: ``x0``..``x64`` (left), ``w1``..``w64`` (width)."""
    return "".join(f".ci .x{i}{{left:{i}px}}" for i in range(BAR_WIDTH + 1)) + "".join(
        f".ci .w{i}{{width:{i}px}}" for i in range(1, BAR_WIDTH + 1))


def value_bar(fraction: float, width: int = 120) -> str:
    """A horizontal bar of ``fraction`` (0..1) of ``width`` pixels, for a per-class IoU."""
    w = max(0.0, min(1.0, fraction)) * width
    return f'<svg class="bar" width="{width}" height="10" viewBox="0 0 {width} 10" aria-hidden="true"><rect x="0" y="1" width="{w:.1f}" height="8"/></svg>'


def curve_points(curve: object) -> list[tuple[float, float]]:
    """``threshold_curve`` ([{threshold, miou}] or [[threshold, miou]], mIoU a fraction as in
    the record) -> sorted (threshold, mIoU %) pairs; malformed entries are left out."""
    points = []
    for item in curve if isinstance(curve, list) else ():
        if isinstance(item, dict):
            t, m = number(item.get("threshold")), number(item.get("miou"))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            t, m = number(item[0]), number(item[1])
        else:
            continue
        if t is not None and m is not None:
            points.append((t, 100.0 * m))
    return sorted(points)


def threshold_curve(points: list[tuple[float, float]], used: tuple[float, float | None] | None,
                    best: tuple[float, float] | None, title: str) -> str:
    """mIoU (%) against the background threshold, the run's threshold dashed, the maximum dotted.

    ``used``: (threshold, mIoU % or None); ``best``: (threshold, mIoU %), the oracle maximum.
    """
    W, H, left, right, top, bottom = 480, 260, 44, 16, 14, 40
    t0, t1 = min(0.0, points[0][0]), max(1.0, points[-1][0])
    y_top = max(10.0, 10.0 * -(-max(m for _, m in points) // 10))  # the next multiple of 10 above the maximum

    def x(t: float) -> float:
        return left + (W - left - right) * (t - t0) / (t1 - t0)

    def y(m: float) -> float:
        return H - bottom - (H - top - bottom) * m / y_top

    parts = [
        f'<svg class="curve" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-labelledby="curve-title">',
        f'<title id="curve-title">{_esc(title)}</title>',
        f'<path class="axis" d="M{left} {top} V{H - bottom} H{W - right}"/>',
    ]
    for i in range(6):
        t = t0 + (t1 - t0) * i / 5
        parts.append(f'<text x="{x(t):.1f}" y="{H - bottom + 14}" text-anchor="middle">{t:.1f}</text>')
    step = 2 if y_top <= 10 else 10 if y_top <= 50 else 20
    for m in range(0, int(y_top) + 1, step):
        parts.append(f'<text x="{left - 6}" y="{y(m) + 4:.1f}" text-anchor="end">{m}</text>')
    parts.append(f'<text x="{(left + W - right) / 2:.0f}" y="{H - 6}" text-anchor="middle">background threshold</text>')
    parts.append(f'<text x="12" y="{(top + H - bottom) / 2:.0f}" text-anchor="middle" transform="rotate(-90 12 {(top + H - bottom) / 2:.0f})">mIoU %</text>')
    line = " ".join(f"{x(t):.1f},{y(m):.1f}" for t, m in points)
    parts.append(f'<polyline class="line" points="{line}"/>')
    if used is not None:
        ut, um = used
        parts.append(f'<line class="used" x1="{x(ut):.1f}" y1="{top}" x2="{x(ut):.1f}" y2="{H - bottom}"/>')
        label = f"used {ut:g}" + (f": {um:.1f}" if um is not None else "")
        parts.append(f'<text x="{x(ut) + 4:.1f}" y="{H - bottom - 6}">{_esc(label)}</text>')
    if best is not None:
        bt, bm = best
        parts.append(f'<circle cx="{x(bt):.1f}" cy="{y(bm):.1f}" r="4" fill="currentColor"/>')
        right = x(bt) > W / 2  # the label goes on the side with room
        parts.append(f'<text x="{x(bt) + (-6 if right else 6):.1f}" y="{y(bm) - 6:.1f}" text-anchor="{"end" if right else "start"}">'
                     f"max {bm:.1f} (oracle)</text>")
    parts.append("</svg>")
    return "".join(parts)
