"""``wssbench explain``: one image's saliency and class maps, per class, as one PNG panel.

The panel is a grid with one row per class: the image (first row only), then the class's
saliency map and its class map, each drawn as a heatmap (jet colours, each map divided by its
own maximum for display) blended half and half over the image, under a caption. Small
images are enlarged so that each tile is at least ``MIN_TILE`` pixels on its short side.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..classifier import POOLINGS, Classifier
from ..config import RunConfig, parse_option_strings
from ..errors import DataError, UsageError
from ..io import atomic_path, read_image
from ..pipeline import Components, Timer, prepare_run, resolve, select_classes
from ..registry import default_registry
from ..training import TrainRecipe, load_checkpoint
from . import traceback_option
from .params import ComponentName
from ..config import resolve_device

MIN_TILE = 256  # pixels, short side of a tile
CAPTION = 20  # pixels above each tile
PAD = 8  # pixels around and between tiles
DEFAULTS = {"dataset": RunConfig.dataset, "backbone": RunConfig.backbone, "pooling": RunConfig.pooling}


# --------------------------------------------------------------------------------------
# The panel
# --------------------------------------------------------------------------------------


def jet(values: np.ndarray) -> np.ndarray:
    """The jet colour map: values in [0, 1] (H, W) -> uint8 RGB (H, W, 3)."""
    v = np.clip(values, 0.0, 1.0)[..., None]  # (H, W, 1)
    centres = np.array([3.0, 2.0, 1.0])  # red, green, blue peak at 3/4, 1/2, 1/4
    return (np.clip(1.5 - np.abs(4.0 * v - centres), 0.0, 1.0) * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """A map (H, W), divided by its maximum, in jet colours blended half and half over ``image``."""
    peak = float(heat.max())
    colours = jet(heat / peak if peak > 0 else np.zeros_like(heat))  # (H, W, 3)
    return ((image.astype(np.float32) + colours) / 2).round().astype(np.uint8)


def compose_panel(image: np.ndarray, rows: list[list[tuple[str, np.ndarray]]]) -> Image.Image:
    """A grid of captioned tiles; ``rows[r]`` lists (caption, (H, W, 3) uint8) tiles, row 0 first."""
    height, width = image.shape[:2]
    scale = max(1, math.ceil(MIN_TILE / min(height, width)))
    th, tw = height * scale, width * scale
    cols = max(len(row) for row in rows)
    panel = Image.new("RGB", (cols * tw + (cols + 1) * PAD, len(rows) * (th + CAPTION) + (len(rows) + 1) * PAD), "white")
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default()
    for r, row in enumerate(rows):
        y = PAD + r * (th + CAPTION + PAD)
        for c, (caption, tile) in enumerate(row):
            x = PAD + c * (tw + PAD)
            draw.text((x, y + 3), caption, fill="black", font=font)
            panel.paste(Image.fromarray(tile).resize((tw, th), Image.Resampling.BILINEAR), (x, y + CAPTION))
    return panel


# --------------------------------------------------------------------------------------
# The classifier: from a checkpoint, or the cached (or newly trained) one of a run config
# --------------------------------------------------------------------------------------


def _checkpoint_config(config: RunConfig, checkpoint: Path) -> RunConfig:
    """``config`` with the dataset, backbone and pooling the checkpoint's classifier was trained with."""
    try:
        blob = torch.load(checkpoint, map_location="cpu", weights_only=True)
        key = blob["meta"]["key"]
        backbone_options = tuple(("backbone", k, v) for k, v in key.get("backbone_options", {}).items())
        return dataclasses.replace(
            config, dataset=key["dataset"], backbone=key["backbone"], pooling=key["pooling"],
            options=tuple(o for o in config.options if o[0] != "backbone") + backbone_options,
        )
    except FileNotFoundError:
        raise DataError(f"{checkpoint}: checkpoint not found") from None
    except Exception as e:
        raise DataError(f"{checkpoint}: not a wssbench classifier checkpoint ({type(e).__name__}: {e})") from None


def _load_checkpoint(checkpoint: Path, parts: Components, config: RunConfig, device: str) -> Classifier:
    model = parts.model
    try:
        load_checkpoint(checkpoint, model)
    except RuntimeError as e:
        raise DataError(f"{checkpoint}: does not fit backbone '{config.backbone}' ({str(e).splitlines()[0]})") from None
    model.to(device).eval()
    if getattr(parts.classmap, "needs_fit", False):
        parts.dataset.prepare()
        parts.classmap.fit(model, parts.dataset, config.train_split, checkpoint.stem)
    return model


def _class_indices(names: str, dataset) -> torch.Tensor:
    """Comma-separated foreground class names -> model output indices (1, K)."""
    foreground = list(dataset.classes[1:])
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in foreground]
    if unknown or not wanted:
        raise UsageError(f"--classes: unknown class '{unknown[0] if unknown else names}'; available: {', '.join(foreground)}")
    return torch.tensor([[foreground.index(n) for n in wanted]])


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


@click.command("explain")
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), help="A classifier written by wssbench (its dataset, backbone and pooling are read from it).")
@click.option("--dataset", type=ComponentName("dataset"), help="Dataset the classifier is trained on (class names).  [default: synthetic]")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder (default: the dataset's own).")
@click.option("--backbone", help="[PROVIDER:]MODEL, as for 'wssbench run'.  [default: resnet10t]")
@click.option("--pooling", type=click.Choice(list(POOLINGS)), help="Global pooling of the head.  [default: gap]")
@click.option("--epochs", type=click.IntRange(min=1), default=TrainRecipe.epochs, show_default=True, help="Classifier training epochs; with the other defaults of 'wssbench run' this finds its cached classifier (else use --checkpoint).")
@click.option("--saliency", type=ComponentName("saliency"), default="gbp", show_default=True, help="Saliency method.")
@click.option("--classmap", type=ComponentName("classmap", optional=True), default="fcn", show_default=True, help="Class-map producer, or none.")
@click.option("--classes", "class_names", metavar="NAME,...", help="Classes to explain (default: the detected ones).")
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="Sigmoid score for a class to count as detected.")
@click.option("--max-classes", type=click.IntRange(min=1), default=3, show_default=True, help="At most this many detected classes.")
@click.option("-O", "--option", "options", multiple=True, metavar="STAGE.KEY=VALUE", help="A component option, e.g. -O saliency.distinct=true or -O dataset.preset=tiny.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="PNG to write (default: <image>-<saliency>.png here).")
@click.option("--json", "as_json", is_flag=True, help="Print the classes, scores and output path as JSON on stdout.")
@traceback_option
def explain_command(image: Path, checkpoint: Path | None, **kw) -> None:
    """Draw IMAGE's saliency and class maps per class into one PNG panel."""
    given = [f"--{k}" for k in ("dataset", "backbone", "pooling") if kw[k] is not None]
    if checkpoint is not None and given:
        raise UsageError(f"{', '.join(given)}: the checkpoint decides these; drop them or --checkpoint")
    pixels = read_image(image)  # (H, W, 3) uint8
    config = RunConfig(
        **{k: kw[k] or DEFAULTS[k] for k in DEFAULTS}, data_root=kw["data_root"],
        recipe=TrainRecipe(epochs=kw["epochs"]), saliency=kw["saliency"], classmap=kw["classmap"], refine=(),
        options=parse_option_strings(kw["options"]), score_threshold=kw["score_threshold"],
        max_classes=kw["max_classes"], device=resolve_device(kw["device"]),
    )
    if checkpoint is not None:
        config = _checkpoint_config(config, checkpoint)
    config, parts = resolve(config, default_registry())
    classes = _class_indices(kw["class_names"], parts.dataset) if kw["class_names"] else None
    err = Console(stderr=True)
    if checkpoint is not None:
        model = _load_checkpoint(checkpoint, parts, config, config.device)
    else:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=err, transient=True) as progress:
            model, info, _ = prepare_run(config, parts, Timer(), progress)
        checkpoint = Path(info["checkpoint"])

    x = model.preprocess([pixels])  # (1, 3, H, W)
    with torch.no_grad():
        logits = model(x)  # (1, C)
    if classes is None:
        classes = select_classes(logits, None, config)  # (1, K)
    classes = classes.to(x.device)
    scores = torch.sigmoid(logits)[0].cpu()  # (C,)
    saliency = parts.saliency(model, x, classes)[0].cpu().numpy()  # (K, H, W)
    class_maps = parts.classmap(model, x, classes)[0].cpu().numpy() if parts.classmap else None  # (K, H, W)

    names = parts.dataset.classes[1:]
    rows, listed = [], []
    for k, c in enumerate(classes[0].tolist()):
        label = f"{names[c]} ({scores[c]:.2f})"
        row = [("image" if k == 0 else "", pixels if k == 0 else np.full_like(pixels, 255))]
        row.append((f"{label} {config.saliency}", overlay(pixels, saliency[k])))
        if class_maps is not None:
            row.append((f"{label} {config.classmap}", overlay(pixels, class_maps[k])))
        rows.append(row)
        listed.append({"class": names[c], "index": c, "score": float(scores[c])})
    out = kw["out"] or Path(f"{image.stem}-{config.saliency}.png")
    with atomic_path(out) as tmp:
        compose_panel(pixels, rows).save(tmp, format="PNG")
    if kw["as_json"]:
        record = {"image": str(image), "out": str(out), "checkpoint": str(checkpoint), "saliency": config.saliency,
                  "classmap": config.classmap, "options": config.to_dict()["options"], "classes": listed}
        click.echo(json.dumps(record, indent=2))
    else:
        click.echo(str(out))
    err.print(f"wrote {out}: " + ", ".join(f"{d['class']} {d['score']:.2f}" for d in listed))
