"""``wssbench explain``: one image's saliency and class maps, per class, as one PNG panel.

The panel is a grid with one row per class: the image (first row only), then the class's
map from each saliency method and class-map producer asked for (``--saliency`` and
``--classmap`` repeat), each drawn as a heatmap (jet colours, each map divided by its own
maximum for display) blended half and half over the image, under a caption. Small images
are enlarged so that each tile is at least ``MIN_TILE`` pixels on its short side.

The classifier: a wssbench checkpoint, the cached (or newly trained) one of a run config,
or a network with its own head and class names (``--weights`` without ``--dataset``: the
ImageNet head; a backbone provider with ``provides_classifier``, such as ``imagenet:MODEL``),
used as it is. ``--save-maps`` writes the maps too, at the image's own size."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wssbench.classifier.imagenet import ImageNetClassifier, imagenet_index
from wssbench.classifier.model import POOLINGS, Classifier
from wssbench.classifier.training import TrainRecipe, load_checkpoint
from wssbench.classifier.weights import load_error
from wssbench.cli import traceback_option
from wssbench.cli.params import ComponentName
from wssbench.errors import DataError, UsageError
from wssbench.host.registry import Registry, default_registry
from wssbench.runtime.timer import Timer
from wssbench.seed.components import check, resolve
from wssbench.seed.config import RunConfig, build_config
from wssbench.seed.run import prepare_run
from wssbench.storage.io import atomic_path, read_image

MIN_TILE = 256  # pixels, short side of a tile
MAX_TILE = 768  # pixels, long side of a tile: a large photo's panel stays small (--save-maps keeps full size)
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


def tile_size(height: int, width: int) -> tuple[int, int]:
    """A tile's (height, width): small images scaled up to ``MIN_TILE`` on their short side, large
    ones down to ``MAX_TILE`` on their long side, aspect ratio kept."""
    scale = max(1, math.ceil(MIN_TILE / min(height, width)))
    if max(height, width) * scale > MAX_TILE:
        shrink = MAX_TILE / max(height, width)
        return max(1, round(height * shrink)), max(1, round(width * shrink))
    return height * scale, width * scale


def shrunk(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An image (H, W, 3) uint8 or a map (H, W) float at most ``size`` (h, w) for drawing; as is when not larger."""
    if array.shape[0] <= size[0]:
        return array
    if array.ndim == 3:
        return np.asarray(Image.fromarray(array).resize(size[::-1], Image.Resampling.BILINEAR))
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize(size[::-1], Image.Resampling.BILINEAR))


def compose_panel(image: np.ndarray, rows: list[list[tuple[str, np.ndarray]]]) -> Image.Image:
    """A grid of captioned tiles; ``rows[r]`` lists (caption, (H, W, 3) uint8) tiles, row 0 first."""
    th, tw = tile_size(*image.shape[:2])
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
    except (KeyError, TypeError) as e:
        raise DataError(f"{checkpoint}: not a wssbench classifier checkpoint (no {e} in its meta)") from None
    except Exception as e:  # torch.load's refusals: a pickle of objects, a damaged or foreign file
        raise DataError(f"{checkpoint}: {load_error(e)}") from None


def _load_checkpoint(checkpoint: Path, model: Classifier, config: RunConfig) -> Classifier:
    try:
        load_checkpoint(checkpoint, model)
    except RuntimeError as e:
        raise DataError(f"{checkpoint}: does not fit backbone '{config.backbone}' ({str(e).splitlines()[0]})") from None
    return model.to(config.device).eval()


def _fit_class_maps(producers: dict[str, Any], model: Classifier, dataset: Any, config: RunConfig, tag: str) -> None:
    """Fit the class-map producers that learn from the training split (zoomout's mi-SVMs)."""
    for name, producer in producers.items():
        if getattr(producer, "needs_fit", False):
            if dataset is None:
                raise UsageError(f"--classmap {name}: fits on a dataset's training split; give --dataset and a checkpoint")
            dataset.prepare()
            producer.fit(model, dataset, config.train_split, tag)


def _own_head(config: RunConfig, registry: Registry, given: list[str]) -> Any | None:
    """The backbone provider that brings its own classifier, or None (train one on the dataset).

    A provider with ``provides_classifier`` (``imagenet:MODEL``); or, when ``--weights`` is
    given with neither a dataset nor a checkpoint, the ``imagenet`` provider with the
    network's own ImageNet head.
    """
    provider_name, _ = config.backbone_provider
    provider = registry.create("backbone", provider_name, **config.options_for("backbone"))
    if getattr(provider, "provides_classifier", False):
        return provider
    if config.weights is not None and "--dataset" not in given and "imagenet" in registry.names("backbone"):
        return registry.create("backbone", "imagenet", head="imagenet")
    return None


def _class_indices(names: str, class_names: tuple[str, ...], lookup: Callable[[str], int] | None = None) -> torch.Tensor:
    """Comma-separated class names -> model output indices (1, K); ``lookup`` resolves a name
    the list does not hold (ImageNet synonyms and indices)."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    indices = []
    for n in wanted:
        if n in class_names:
            indices.append(class_names.index(n))
        elif lookup is not None:
            indices.append(lookup(n))
        else:
            raise UsageError(f"--classes: unknown class '{n}'; available: {', '.join(class_names)}")
    if not indices:
        raise UsageError(f"--classes: no class in '{names}'; available: {', '.join(class_names)}")
    return torch.tensor([indices])


def _detected(probabilities: torch.Tensor, threshold: float, most: int) -> torch.Tensor:
    """(1, C) probabilities -> (1, K) classes above ``threshold``, at least the top one, at most ``most``."""
    present = probabilities[0] > threshold
    present[probabilities[0].argmax()] = True
    k = min(most, int(present.sum()))
    return torch.where(present, probabilities[0], torch.full_like(probabilities[0], -1.0)).topk(k).indices[None]


def _components(kind: str, names: tuple[str | None, ...], config: RunConfig, registry: Registry) -> dict[str, Any]:
    """Each named method of ``kind`` (the "none" choice dropped), with the stage's -O options."""
    return {n: registry.create(kind, n, **config.options_for(kind)) for n in dict.fromkeys(names) if n not in (None, "none")}


def save_maps(path: Path, maps: dict[str, np.ndarray]) -> None:
    """Write ``{"METHOD/CLASS": (H, W) float32}`` as one .npz, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **maps)


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


@click.command("explain")
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), help="A classifier written by wssbench (its dataset, backbone and pooling are read from it).")
@click.option("--dataset", type=ComponentName("dataset"), help="Dataset the classifier is trained on (class names).  [default: synthetic]")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder (default: the dataset's own).")
@click.option("--backbone", help="[PROVIDER:]MODEL, as for 'wssbench run'.  [default: resnet10t]")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), help="Local checkpoint of the backbone (.pth, .pt, .safetensors; any key layout). Without --dataset: explain with the network's own ImageNet head and class names, no training.")
@click.option("--pooling", type=click.Choice(list(POOLINGS)), help="Global pooling of the head.  [default: gap]")
@click.option("--epochs", type=click.IntRange(min=1), default=TrainRecipe.epochs, show_default=True, help="Classifier training epochs; with the other defaults of 'wssbench run' this finds its cached classifier (else use --checkpoint).")
@click.option("--saliency", "saliency_names", type=ComponentName("saliency"), multiple=True, help="Saliency method; repeat for several.  [default: gbp]")
@click.option("--classmap", "classmap_names", type=ComponentName("classmap", optional=True), multiple=True, help="Class-map producer, or none; repeat for several.  [default: fcn]")
@click.option("--classes", "class_names", metavar="NAME,...", help="Classes to explain (default: the detected ones); ImageNet classes by any synonym or index.")
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="Probability for a class to count as detected (sigmoid; softmax for an ImageNet head).")
@click.option("--max-classes", type=click.IntRange(min=1), default=3, show_default=True, help="At most this many detected classes.")
@click.option("-O", "--option", "options", multiple=True, metavar="STAGE.KEY=VALUE", help="A component option, e.g. -O saliency.signal=map or -O dataset.preset=tiny (saliency and classmap options go to every method of the stage).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="PNG to write (default: <image>-<saliency>.png here).")
@click.option("--save-maps", type=click.Path(dir_okay=False, path_type=Path), help="Also write the maps at the image's own size to this .npz, one (H, W) float32 array per METHOD/CLASS (saliency raw, class maps in [0, 1]).")
@click.option("--json", "as_json", is_flag=True, help="Print the classes, scores and output path as JSON on stdout.")
@traceback_option
def explain_command(image: Path, checkpoint: Path | None, **kw) -> None:
    """Draw IMAGE's saliency and class maps per class into one PNG panel."""
    given = [f"--{k}" for k in ("dataset", "backbone", "pooling") if kw[k] is not None]
    if checkpoint is not None and given:
        raise UsageError(f"{', '.join(given)}: the checkpoint decides these; drop them or --checkpoint")
    saliency_names = kw["saliency_names"] or ("gbp",)
    classmap_names = kw["classmap_names"] or ("fcn",)
    pixels = read_image(image)  # (H, W, 3) uint8
    config = build_config(  # the one assembly path; defaults from RunConfig
        {k: kw[k] for k in DEFAULTS if kw[k]}, data_root=kw["data_root"],
        weights=str(kw["weights"]) if kw["weights"] else None,
        epochs=kw["epochs"], saliency=saliency_names[0], classmap=classmap_names[0] or "none", refine="none",
        options=list(kw["options"]), score_threshold=kw["score_threshold"],
        max_classes=kw["max_classes"], device=kw["device"], workers=1,
    )
    registry = default_registry()
    if checkpoint is not None:
        config = _checkpoint_config(config, checkpoint)
    config = check(config, registry)
    saliency = _components("saliency", saliency_names, config, registry)
    class_maps = _components("classmap", classmap_names, config, registry)
    own = None if checkpoint is not None else _own_head(config, registry, given)
    err = Console(stderr=True)
    dataset, source = None, {}
    if own is not None:
        _, model_name = config.backbone_provider
        model = own.classifier(model_name, pretrained=config.pretrained, weights=config.weights).to(config.device).eval()
        if "--dataset" in given:
            dataset = registry.create("dataset", config.dataset, root=config.data_root, **config.options_for("dataset"))
        source = {"weights": config.weights}
    else:
        config, parts = resolve(config, registry)
        dataset = parts.dataset
        if checkpoint is not None:
            model = _load_checkpoint(checkpoint, parts.model, config)
        else:
            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
            with Progress(*columns, console=err, transient=True) as progress:
                # the class maps drawn are this command's own instances, fitted below
                model, info, _ = prepare_run(config, dataclasses.replace(parts, classmap=None), Timer(), progress)
            checkpoint = Path(info["checkpoint"])
        source = {"checkpoint": str(checkpoint)}
    _fit_class_maps(class_maps, model, dataset, config, checkpoint.stem if checkpoint else "")
    names = tuple(getattr(model, "class_names", None) or dataset.classes[1:])
    probabilities = getattr(model, "probabilities", torch.sigmoid)
    lookup = imagenet_index if isinstance(model, ImageNetClassifier) else None
    classes = _class_indices(kw["class_names"], names, lookup) if kw["class_names"] else None

    x = model.preprocess([pixels])  # (1, 3, H, W)
    with torch.no_grad():
        scores = probabilities(model(x)).cpu()  # (1, C)
    if classes is None:
        classes = _detected(scores, config.score_threshold, config.max_classes)  # (1, K)
    classes = classes.to(x.device)
    maps = {name: method(model, x, classes)[0].float().cpu().numpy() for name, method in (saliency | class_maps).items()}  # (K, H, W) each

    rows, listed, arrays = [], [], {}
    size = tile_size(*pixels.shape[:2])
    small = shrunk(pixels, size)  # tiles are drawn at most MAX_TILE on the long side, whatever the photo's size
    for k, c in enumerate(classes[0].tolist()):
        label = f"{names[c]} ({scores[0, c]:.2f})"
        row = [("image" if k == 0 else "", small if k == 0 else np.full_like(small, 255))]
        for method, values in maps.items():
            row.append((f"{label} {method}", overlay(small, shrunk(values[k], size))))
            arrays[f"{method}/{names[c]}"] = values[k].astype(np.float32)  # (H, W)
        rows.append(row)
        listed.append({"class": names[c], "index": c, "score": float(scores[0, c])})
    out = kw["out"] or Path(f"{image.stem}-{'+'.join(saliency) or next(iter(class_maps))}.png")
    with atomic_path(out) as tmp:
        compose_panel(small, rows).save(tmp, format="PNG")
    if kw["save_maps"]:
        save_maps(kw["save_maps"], arrays)
    if kw["as_json"]:
        record = {"image": str(image), "out": str(out), **source, "saliency": next(iter(saliency), None),
                  "classmap": next(iter(class_maps), None), "methods": list(maps), "maps": str(kw["save_maps"]) if kw["save_maps"] else None,
                  "options": config.to_dict()["options"], "classes": listed}
        click.echo(json.dumps(record, indent=2))
    else:
        click.echo(str(out))
    err.print(f"wrote {out}: " + ", ".join(f"{d['class']} {d['score']:.2f}" for d in listed))
