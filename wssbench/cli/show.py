"""``wssbench show RUN_DIR``: a gallery of a run — image, truth, class map, saliency, prediction.

The maps come from the map cache the run filled (so nothing is recomputed); a run made with
``--no-cache-maps``, or whose cache was pruned, shows its masks without the map columns.
"""

from __future__ import annotations

import html
import json
import random
from pathlib import Path

import click
import numpy as np

from ..errors import DataError
from ..io import PALETTE, atomic_path, read_mask
from ..registry import default_registry
from . import traceback_option
from .explain import compose_panel, overlay


def cached_maps(record: dict, stage: str, image_id: str) -> np.ndarray | None:
    """The (K, H, W) maps a run cached for ``image_id``, their maximum over classes for display."""
    folder = record.get("map_cache", {}).get(stage)
    if not folder or not Path(folder).is_dir():
        return None  # the stage was off, the run did not cache maps, or the cache was pruned
    found = sorted(Path(folder).glob(f"{image_id}~*.npy"))
    return np.load(found[0]).max(axis=0) if found else None  # (H, W)


@click.command("show")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "count", type=click.IntRange(min=1), default=8, show_default=True, help="Number of images.")
@click.option("--ids", help="Comma-separated image ids (default: a random choice).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random choice.")
@traceback_option
def show_command(run_dir: Path, count: int, ids: str | None, seed: int) -> None:
    """Write RUN_DIR/gallery.png and RUN_DIR/gallery.html for chosen or random images."""
    path = run_dir / "result.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; RUN_DIR must be a folder written by 'wssbench run'")
    record = json.loads(path.read_text())
    config = record["config"]
    dataset = default_registry().create("dataset", config["dataset"], root=config["data_root"], **config["options"].get("dataset", {}))
    masks = sorted(p.stem for p in (run_dir / "masks").glob("*.png"))
    chosen = ids.split(",") if ids else sorted(random.Random(seed).sample(masks, min(count, len(masks))))
    rows = []
    for image_id in chosen:
        if image_id not in masks:
            raise DataError(f"{run_dir / 'masks' / image_id}.png: no prediction for '{image_id}' in this run")
        image, truth = dataset.load_pair(image_id)
        row = [(image_id, image), ("truth", PALETTE[truth])]
        for stage in ("classmap", "saliency"):
            maps = cached_maps(record, stage, image_id)
            if maps is not None:
                row.append((f"{stage}: {record['components'][stage]['name']}", overlay(image, maps)))
        row.append(("prediction", PALETTE[read_mask(run_dir / "masks" / f"{image_id}.png")]))
        rows.append(row)
    panel = compose_panel(rows[0][0][1], rows)
    with atomic_path(run_dir / "gallery.png") as tmp:
        panel.save(tmp, format="PNG")
    title = html.escape(f"{record['dataset']} {record['split']}: mIoU {100 * record['miou']:.1f} %")
    page = (
        f"<!doctype html><meta charset='utf-8'><title>{title}</title><h1>{title}</h1>"
        f"<p>{html.escape(json.dumps({k: config[k] for k in ('classmap', 'saliency', 'fusion', 'refine')}))}</p>"
        f"<p>columns: image, ground truth, class map, saliency map (summed over the detected classes, "
        f"each scaled to its maximum), prediction</p><img src='gallery.png' alt='gallery'>"
    )
    with atomic_path(run_dir / "gallery.html") as tmp:
        tmp.write_text(page)
    click.echo(f"{run_dir / 'gallery.html'}")
