"""``wssbench run``: one pipeline on one split, scored, written, printed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..cache import fingerprint
from ..classifier import POOLINGS
from ..config import RunConfig, parse_option_strings
from ..errors import UsageError
from ..loading import default_loader_workers
from ..pipeline import resolve, run
from ..precision import PRECISIONS
from ..presets import PRESETS
from ..registry import default_registry
from ..training import TrainRecipe
from . import traceback_option
from .params import ComponentName
from .tables import config_panel, result_table


def default_out(config: RunConfig) -> Path:
    parts = [config.dataset, config.split, config.classmap or "nocm", config.saliency or "nosal", config.fusion, *config.refine]
    return Path("wssbench-runs") / ("-".join(parts) + "-" + fingerprint(config.to_dict(), 8))


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device: '{name}' is not a torch device (cpu, cuda, cuda:1, auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine")
    return name


def resolve_loader_workers(value: str | int, device: str) -> int:
    if value == "auto":
        return default_loader_workers(device)
    try:
        workers = int(value)
    except ValueError:
        workers = -1
    if workers < 0:
        raise UsageError(f"--loader-workers: expected 'auto' or a count of 0 or more, got '{value}'")
    return workers


@click.command("run")
@click.option("--preset", type=click.Choice(list(PRESETS)), help="A named method (its options; those given here win). See README.")
@click.option("--dataset", type=ComponentName("dataset"), default="synthetic", show_default=True, help="Dataset.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder (default: the dataset's own).")
@click.option("--split", default="val", show_default=True, help="Split to segment and score.")
@click.option("--train-split", default="train", show_default=True, help="Split the classifier is trained on.")
@click.option("--backbone", default="resnet10t", show_default=True, help="[PROVIDER:]MODEL, e.g. resnet50 or timm:vgg16.")
@click.option("--pooling", type=click.Choice(list(POOLINGS)), default="gap", show_default=True, help="Global pooling of the head.")
@click.option("--pretrained", is_flag=True, help="Start from the backbone's pretrained weights (downloads them).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Local pretrained backbone weights (offline use).")
@click.option("--epochs", type=click.IntRange(min=1), default=TrainRecipe.epochs, show_default=True, help="Classifier training epochs.")
@click.option("--crop", type=click.IntRange(min=16), default=TrainRecipe.crop, show_default=True, help="Training crop size (e.g. 448 for VOC).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=TrainRecipe.lr, show_default=True, help="Classifier learning rate.")
@click.option("--saliency", type=ComponentName("saliency", optional=True), default="gbp", show_default=True, help="Saliency method, or none.")
@click.option("--classmap", type=ComponentName("classmap", optional=True), default="fcn", show_default=True, help="Class-map producer, or none.")
@click.option("--fusion", type=ComponentName("fusion"), default="threshold", show_default=True, help="Fusion method.")
@click.option("--refine", type=ComponentName("refiner"), multiple=True, help="Refiner (repeatable, applied in order). [default: densecrf]")
@click.option("-O", "--option", "options", multiple=True, metavar="STAGE.KEY=VALUE", help="A component option, e.g. -O fusion.bg_threshold=0.3 or -O densecrf.iterations=5.")
@click.option("--classes-from", type=click.Choice(["predicted", "labels"]), default="predicted", show_default=True, help="Classes to segment: the classifier's (segmentation) or the ground-truth image labels (seed quality).")
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="Sigmoid score for a class to count as detected.")
@click.option("--max-classes", type=click.IntRange(min=1), default=3, show_default=True, help="At most this many classes per image.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Images per forward/backward batch.")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default="fp32", show_default=True, help="Numerical precision of the network stages (autocast; fp16 needs CUDA).")
@click.option("--loader-workers", default="auto", show_default=True, help="Processes reading images ahead of the network (auto: 0 on the CPU, up to 8 on a GPU).")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="the core count", help="Processes for fusion and refinement (CPU work per image).")
@click.option("--cache-maps/--no-cache-maps", default=True, show_default=True, help="Reuse class and saliency maps computed by an earlier run.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images of the split.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of training and of the run.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: wssbench-runs/<config>-<hash>).")
@click.option("--json", "as_json", is_flag=True, help="Print the result record as JSON on stdout.")
@traceback_option
@click.pass_context
def run_command(ctx: click.Context, **kw) -> None:
    """Segment a split with one combination of components and score it (mIoU)."""
    explicit = {k for k in kw if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    config = config_from_options(kw, explicit)
    registry = default_registry()
    config, parts = resolve(config, registry)
    out = Path(kw["out"]) if kw["out"] else default_out(config)
    err = Console(stderr=True, quiet=os.environ.get("RANK", "0") != "0")  # torchrun: rank 0 speaks
    err.print(config_panel(config, out))
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True) as progress:
        record = run(config, registry, out, progress, parts)
    if record is None:  # another torchrun rank; rank 0 reports
        return
    if kw["as_json"]:
        click.echo(json.dumps(record, indent=2))
    else:
        Console().print(result_table(record))
    err.print(f"wrote {out / 'result.json'} and {record['n_images']} masks under {out / 'masks'}")


def config_from_options(kw: dict, explicit: set[str]) -> RunConfig:
    """A RunConfig from ``run`` option values; a preset fills the options not in ``explicit``."""
    kw = dict(kw)
    if kw.get("preset"):
        for key, value in PRESETS[kw["preset"]].options.items():
            if key == "options":  # component options merge; the command line's come last and win
                kw["options"] = tuple(value) + tuple(kw["options"])
            elif key not in explicit:
                kw[key] = None if value == "none" else value
    device = resolve_device(kw["device"])
    return RunConfig(
        preset=kw["preset"], dataset=kw["dataset"], data_root=kw["data_root"], split=kw["split"],
        train_split=kw["train_split"], backbone=kw["backbone"], pooling=kw["pooling"],
        pretrained=kw["pretrained"], weights=kw["weights"],
        recipe=TrainRecipe(epochs=kw["epochs"], lr=kw["lr"], crop=kw["crop"], seed=kw["seed"]),
        saliency=kw["saliency"], classmap=kw["classmap"], fusion=kw["fusion"],
        refine=tuple(kw["refine"]) or ("densecrf",), options=parse_option_strings(tuple(kw["options"])),
        classes_from=kw["classes_from"], score_threshold=kw["score_threshold"], max_classes=kw["max_classes"],
        batch_size=kw["batch_size"], workers=kw["workers"], cache_maps=kw["cache_maps"], limit=kw["limit"],
        device=device, seed=kw["seed"], precision=kw["precision"],
        loader_workers=resolve_loader_workers(kw["loader_workers"], device),
    )


def run_defaults() -> dict:
    """The default value of every ``run`` option, by parameter name."""
    return dict(run_command.make_context("run", [], resilient_parsing=True).params)
