"""``wssbench saliency-eval``: pointing game, energy, deletion / insertion and the sanity check
of saliency methods (and class maps) over a dataset split, as one JSON record.

Every method is called as ``method(model, images, classes) -> maps (B, K, H, W)`` with the
image's ground-truth classes; ``--saliency`` and ``--classmap`` name registered methods
(repeatable; class-map producers share the contract, so Grad-CAM and CAM can be compared
with the gradient maps). See :mod:`wssbench.evaluation` for the definitions.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wssbench.classifier.model import POOLINGS, Classifier
from wssbench.classifier.training import TrainRecipe
from wssbench.cli import traceback_option
from wssbench.cli.params import ComponentName
from wssbench.errors import UsageError
from wssbench.evaluation import METRICS, EvalOptions, evaluate_saliency
from wssbench.evaluation.causal import BASELINES
from wssbench.host.options import parse_option_strings
from wssbench.host.registry import Registry, default_registry
from wssbench.runtime.timer import Timer
from wssbench.seed.components import resolve
from wssbench.seed.config import RunConfig, build_config
from wssbench.seed.record import versions
from wssbench.seed.run import prepare_run
from wssbench.storage.io import write_json

RECORD_KIND = "saliency-eval"
METHOD_STAGES = ("saliency", "classmap")


def trained_classifier(config: RunConfig, registry: Registry, progress: Any) -> tuple[Any, Classifier, dict, list[str]]:
    """The dataset, the cached (or newly trained) classifier of ``config``, its info and the split's ids.

    The one place this command uses the pipeline (``resolve`` + ``prepare_run``).
    """
    config, parts = resolve(config, registry)
    model, info, ids = prepare_run(config, parts, Timer(), progress)
    return parts.dataset, model.eval(), info, ids


def _split_options(options: tuple[str, ...]) -> tuple[tuple, dict[str, dict[str, str]]]:
    """-O values -> (those of the dataset and backbone, for the run config; those per method stage)."""
    run, methods = [], {stage: {} for stage in METHOD_STAGES}
    for stage, key, value in parse_option_strings(options):
        if stage in methods:
            methods[stage][key] = value
        elif stage in ("dataset", "backbone"):
            run.append((stage, key, value))
        else:
            raise UsageError(f"-O {stage}.{key}: saliency-eval takes options of dataset, backbone, saliency and classmap")
    return tuple(run), methods


def _metrics(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


@click.command("saliency-eval")
@click.option("--saliency", "saliency", multiple=True, type=ComponentName("saliency"), help="Saliency method to evaluate (repeatable).  [default: gbp, when no --classmap]")
@click.option("--classmap", "classmap", multiple=True, type=ComponentName("classmap"), help="Class-map producer to evaluate as a saliency method (repeatable), e.g. gradcam.")
@click.option("--metrics", default=",".join(METRICS), show_default=True, help="Comma-separated metrics.")
@click.option("--dataset", type=ComponentName("dataset"), default=RunConfig.dataset, show_default=True, help="Dataset.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder (default: the dataset's own).")
@click.option("--split", default="val", show_default=True, help="Split to evaluate on.")
@click.option("--train-split", default="train", show_default=True, help="Split the classifier is trained on.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images of the split.")
@click.option("--backbone", default=RunConfig.backbone, show_default=True, help="[PROVIDER:]MODEL, as for 'wssbench run'.")
@click.option("--pooling", type=click.Choice(list(POOLINGS)), default="gap", show_default=True, help="Global pooling of the head.")
@click.option("--pretrained", is_flag=True, help="Start from the backbone's pretrained weights (downloads them).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Local pretrained backbone weights (offline use).")
@click.option("--epochs", type=click.IntRange(min=1), default=TrainRecipe.epochs, show_default=True, help="Classifier training epochs (with the defaults of 'wssbench run' its cached classifier is reused).")
@click.option("-O", "--option", "options", multiple=True, metavar="STAGE.KEY=VALUE", help="A dataset, backbone, saliency or classmap option, e.g. -O dataset.preset=tiny.")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=EvalOptions.tolerance, show_default=True, help="Pointing game tolerance in pixels.")
@click.option("--energy-box", is_flag=True, help="Energy inside the class's bounding box (as Score-CAM) instead of its mask.")
@click.option("--steps", type=click.IntRange(min=1), default=EvalOptions.steps, show_default=True, help="Deletion / insertion steps.")
@click.option("--deletion-baseline", type=click.Choice(list(BASELINES)), default=EvalOptions.deletion_baseline, show_default=True, help="What deleted pixels become.")
@click.option("--insertion-baseline", type=click.Choice(list(BASELINES)), default=EvalOptions.insertion_baseline, show_default=True, help="What insertion starts from.")
@click.option("--batch-size", type=click.IntRange(min=1), default=EvalOptions.batch_size, show_default=True, help="Images per forward pass of deletion / insertion.")
@click.option("--sanity-images", type=click.IntRange(min=1), default=EvalOptions.sanity_images, show_default=True, help="Images the sanity check runs on (the first N).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sanity check's randomisation.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the record to this JSON file.")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON on stdout.")
@traceback_option
def saliency_eval_command(**kw) -> None:
    """Evaluate saliency maps: pointing game, energy, deletion/insertion AUC, sanity check."""
    options = EvalOptions(
        metrics=_metrics(kw["metrics"]), tolerance=kw["tolerance"], energy_box=kw["energy_box"], steps=kw["steps"],
        deletion_baseline=kw["deletion_baseline"], insertion_baseline=kw["insertion_baseline"],
        batch_size=kw["batch_size"], sanity_images=kw["sanity_images"], seed=kw["seed"],
    )
    run_options, method_options = _split_options(kw["options"])
    chosen = [("saliency", n) for n in kw["saliency"]] + [("classmap", n) for n in kw["classmap"]] or [("saliency", "gbp")]
    config = build_config(  # the one assembly path; defaults from RunConfig
        dataset=kw["dataset"], data_root=kw["data_root"], split=kw["split"], train_split=kw["train_split"],
        backbone=kw["backbone"], pooling=kw["pooling"], pretrained=kw["pretrained"], weights=kw["weights"],
        epochs=kw["epochs"], saliency="none", classmap="none", fusion="background", refine="none",
        options=run_options, limit=kw["limit"], device=kw["device"], workers=1,
    )
    registry = default_registry()
    methods = [(stage, name, registry.create(stage, name, **method_options[stage])) for stage, name in chosen]
    err = Console(stderr=True)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True) as progress:
        dataset, model, info, ids = trained_classifier(config, registry, progress)
        results = {}
        for stage, name, method in methods:
            if getattr(method, "needs_fit", False):
                method.fit(model, dataset, config.train_split, Path(info["checkpoint"]).stem)
            task = progress.add_task(f"{name}: {', '.join(options.metrics)}", total=len(ids))
            started = time.perf_counter()
            result = evaluate_saliency(model, method, dataset, ids, options, on_image=lambda: progress.advance(task))
            progress.remove_task(task)
            label = name + "".join(f",{k}={v}" for k, v in method_options[stage].items())
            results[label] = {"kind": stage, "name": name, "options": _jsonable(method),
                              "metrics": result["metrics"], "seconds": time.perf_counter() - started}
    record = {
        "kind": RECORD_KIND, "dataset": config.dataset, "split": config.split, "n_images": len(ids),
        "classifier": {"backbone": config.backbone, "pooling": config.pooling, "checkpoint": info["checkpoint"]},
        "config": config.to_dict(), "eval_options": dataclasses.asdict(options) | {"metrics": list(options.metrics)},
        "methods": results, "versions": versions(),
    }
    if kw["out"]:
        write_json(kw["out"], record)
        err.print(f"wrote {kw['out']}")
    if kw["as_json"]:
        click.echo(json.dumps(record, indent=2))
    else:
        Console().print(summary_table(record))
        for label, entry in results.items():
            if "sanity" in entry["metrics"]:
                Console().print(sanity_table(label, entry["metrics"]["sanity"]))


def _jsonable(method: Any) -> dict:
    if not dataclasses.is_dataclass(method):
        return {}
    return {f.name: getattr(method, f.name) for f in dataclasses.fields(method)}


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def summary_table(record: dict) -> Table:
    """One row per method, one column per metric."""
    caption = (f"{record['dataset']} {record['split']} ({record['n_images']} images), ground-truth classes; "
               f"pointing (and on its difficult subset): mean class hit rate, tolerance {record['eval_options']['tolerance']:g} px; "
               "deletion: lower is better; sanity rho: mean rank correlation over the cascade, lower is better")
    table = Table(title="saliency evaluation", caption=caption)
    table.add_column("method")
    names = ("pointing", "pointing_difficult", "energy", "deletion", "insertion")
    for header in ("pointing", "difficult", "energy", "deletion", "insertion", "sanity rho"):
        table.add_column(header, justify="right")
    for label, entry in record["methods"].items():
        m = entry["metrics"]
        sanity = m.get("sanity", {}).get("rho_mean")
        table.add_row(label, *(_num(m.get(n)) for n in names), _num(sanity))
    return table


def sanity_table(label: str, sanity: dict) -> Table:
    """Mean Spearman rank correlation with the original maps after each cascade step."""
    table = Table(title=f"{label}: cascading randomisation ({sanity['maps']} maps)")
    table.add_column("randomised down to")
    table.add_column("rank |map|", justify="right")
    table.add_column("rank map", justify="right")
    for row in sanity["layers"]:
        table.add_row(row["layer"], _num(row["rank_abs"]), _num(row["rank"]))
    return table
