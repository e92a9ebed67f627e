"""Figures of a run record: the threshold curve (``wssbench show``)."""

from __future__ import annotations

from pathlib import Path


def threshold_curve_png(record: dict, path: Path) -> bool:
    """Draw the record's ``threshold_curve`` (mIoU against the background threshold, before
    refiners) into ``path``: the run's own threshold marked, the oracle maximum labelled as
    such, the area (mean over the grid) in the title. False when the record has no curve."""
    curve = record.get("threshold_curve")
    if not curve:
        return False
    import matplotlib  # heavy, and only 'show' draws

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt  # after choosing the file-only backend

    xs = [p["threshold"] for p in curve]
    ys = [100 * p["miou"] if p["miou"] is not None else float("nan") for p in curve]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(xs, ys, marker="o", markersize=3, label="mIoU (fusion, before refiners)")
    used, best = record.get("threshold_used"), record.get("threshold_max")
    if used:
        ax.axvline(used["threshold"], color="grey", linestyle="--", label=f"the run's threshold {used['threshold']:g}")
    if best:
        ax.plot([best["threshold"]], [100 * best["miou"]], "r*", markersize=10,
                label=f"max {100 * best['miou']:.1f} at {best['threshold']:g} (oracle: chosen on the scored split)")
    auc = record.get("threshold_auc")
    ax.set_title(f"{record.get('dataset')} {record.get('split')}: threshold AUC "
                 f"{100 * auc:.1f}" if auc is not None else "threshold curve", fontsize=9)
    ax.set_xlabel("background threshold")
    ax.set_ylabel("mIoU %")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return True
