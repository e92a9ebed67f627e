"""``wssbench show RUN_DIR``: a gallery of a run — image, truth, class map, saliency, prediction.

The maps come from the map cache the run filled (so nothing is recomputed); a run made with
``--no-cache-maps``, or whose cache was pruned, shows its masks without the map columns. A map
tile is the maximum over the image's detected classes of the cached maps, divided by its own
largest value and drawn in jet colours blended half and half over the image; truth and
prediction are drawn in the dataset's palette. A legend under the grid gives both scales.

The gallery goes into its own folder beside the run (``RUN_DIR-gallery/`` unless ``--out``):
``wssbench run`` replaces its output folder whole, and a rerun must not delete the gallery.
"""

from __future__ import annotations

import html
import json
import random
from pathlib import Path

import click
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from wssbench.cli import traceback_option
from wssbench.cli.explain import compose_panel, jet, overlay
from wssbench.errors import DataError
from wssbench.host.registry import default_registry
from wssbench.results.plots import threshold_curve_png
from wssbench.storage.io import PALETTE, atomic_path, default_gallery_dir, read_mask

IGNORE = 255
SWATCH = 14  # pixels, side of a legend colour swatch
BAR = 256  # pixels, length of the map colour bar


def cached_maps(record: dict, stage: str, image_id: str) -> np.ndarray | None:
    """The (H, W) maximum over classes of the (K, H, W) maps a run cached for ``image_id``."""
    folder = record.get("map_cache", {}).get(stage)
    if not folder or not Path(folder).is_dir():
        return None  # the stage was off, the run did not cache maps, or the cache was pruned
    found = sorted(Path(folder).glob(f"{image_id}~*.npy"))
    return np.load(found[0]).max(axis=0) if found else None  # (H, W)


def legend(classes: tuple[str, ...], labels: set[int], width: int) -> Image.Image:
    """Palette swatches of ``labels`` (named by ``classes``, 255 = ignore) and the map colour bar."""
    font = ImageFont.load_default()
    items = [(PALETTE[v], classes[v] if v < len(classes) else "ignore") for v in sorted(labels)]
    entries = []  # (x, y) of each swatch, laid out in lines no wider than ``width``
    x, y, line = 8, 8, SWATCH + 8
    for _, name in items:
        w = SWATCH + 6 + int(font.getlength(name)) + 16
        if x + w > width and x > 8:
            x, y = 8, y + line
        entries.append((x, y))
        x += w
    bar_y = y + line + 6
    img = Image.new("RGB", (width, bar_y + SWATCH + 8), "white")
    draw = ImageDraw.Draw(img)
    for (colour, name), (x, y) in zip(items, entries):
        draw.rectangle((x, y, x + SWATCH, y + SWATCH), fill=tuple(int(c) for c in colour), outline="black")
        draw.text((x + SWATCH + 6, y + 1), name, fill="black", font=font)
    label = "maps: 0"
    x0 = 8 + int(font.getlength(label)) + 6
    img.paste(Image.fromarray(jet(np.tile(np.linspace(0, 1, BAR), (SWATCH, 1)))), (x0, bar_y))
    draw.text((8, bar_y + 1), label, fill="black", font=font)
    draw.text((x0 + BAR + 6, bar_y + 1), "the map's maximum (blended over the image)", fill="black", font=font)
    return img


def _legend_html(classes: tuple[str, ...], labels: set[int]) -> str:

    swatches = "".join(
        f"<span style='display:inline-block;margin-right:1em'><span style='display:inline-block;width:1em;height:1em;"
        f"border:1px solid #000;vertical-align:middle;background:rgb{tuple(int(c) for c in PALETTE[v])}'></span> "
        f"{html.escape(classes[v] if v < len(classes) else 'ignore')}</span>"
        for v in sorted(labels)
    )
    stops = ", ".join(f"rgb{tuple(int(c) for c in jet(np.array([[t]]))[0, 0])}" for t in np.linspace(0, 1, 9))
    bar = (
        f"<p>maps: 0 <span style='display:inline-block;width:16em;height:1em;vertical-align:middle;"
        f"background:linear-gradient(to right, {stops})'></span> the map's maximum</p>"
    )
    return f"<p>truth and prediction: {swatches}</p>{bar}"


@click.command("show")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "count", type=click.IntRange(min=1), default=8, show_default=True, help="Number of images.")
@click.option("--ids", help="Comma-separated image ids (default: a random choice).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random choice.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Gallery folder (default: RUN_DIR-gallery beside the run).")
@traceback_option
def show_command(run_dir: Path, count: int, ids: str | None, seed: int, out: Path | None) -> None:
    """Write a gallery of a run's images: image, truth, class map, saliency map, prediction.

    Writes gallery.png, curve.png (the threshold curve, when the run recorded one) and
    gallery.html into RUN_DIR-gallery/ (beside the run, so that a rerun
    of the same run keeps it) or --out, and prints the page's path.
    """
    path = run_dir / "result.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; RUN_DIR must be a folder written by 'wssbench run'")
    record = json.loads(path.read_text())
    config = record["config"]
    dataset = default_registry().create("dataset", config["dataset"], root=config["data_root"], **config["options"].get("dataset", {}))
    masks = sorted(p.stem for p in (run_dir / "masks").glob("*.png"))
    chosen = ids.split(",") if ids else sorted(random.Random(seed).sample(masks, min(count, len(masks))))
    rows, labels = [], set()
    for image_id in chosen:
        if image_id not in masks:
            raise DataError(f"{run_dir / 'masks' / image_id}.png: no prediction for '{image_id}' in this run")
        image, truth = dataset.load_pair(image_id)
        prediction = read_mask(run_dir / "masks" / f"{image_id}.png")
        labels |= {int(v) for v in np.unique(truth)} | {int(v) for v in np.unique(prediction)}
        row = [(image_id, image), ("truth", PALETTE[truth])]
        for stage in ("classmap", "saliency"):
            maps = cached_maps(record, stage, image_id)
            if maps is not None:
                row.append((f"{stage}: {record['components'][stage]['name']}", overlay(image, maps)))
        row.append(("prediction", PALETTE[prediction]))
        rows.append(row)
    grid = compose_panel(rows[0][0][1], rows)
    key = legend(tuple(dataset.classes), labels, grid.width)
    panel = Image.new("RGB", (grid.width, grid.height + key.height), "white")
    panel.paste(grid, (0, 0))
    panel.paste(key, (0, grid.height))
    out = out or default_gallery_dir(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "gallery.png") as tmp:
        panel.save(tmp, format="PNG")
    title = html.escape(f"{record['dataset']} {record['split']}: mIoU {100 * record['miou']:.1f} %")
    components = {k: config.get(k) for k in ("classmap", "saliency", "fusion", "refine")}
    page = (
        f"<!doctype html><meta charset='utf-8'><title>{title}</title><h1>{title}</h1>"
        f"<p>run: {html.escape(str(run_dir.resolve()))}</p>"
        f"<p>{html.escape(json.dumps(components))}</p>"
        "<p>columns: image, ground truth, class map, saliency map, prediction. A map tile is the maximum "
        "over the image's detected classes of the maps the run cached, divided by its own largest value "
        "and blended half and half over the image.</p>"
        f"{_legend_html(tuple(dataset.classes), labels)}<img src='gallery.png' alt='gallery'>"
    )
    if record.get("threshold_curve"):  # the threshold curve, where the run recorded one
        with atomic_path(out / "curve.png") as tmp:
            threshold_curve_png(record, tmp)
        page += "<h2>threshold curve</h2><img src='curve.png' alt='mIoU against the background threshold'>"
    with atomic_path(out / "gallery.html") as tmp:
        tmp.write_text(page)
    click.echo(out / "gallery.html")
