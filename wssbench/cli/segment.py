"""``wssbench segment``: train a segmentation network (stage 2) and score it on val."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from wssbench.cli import traceback_option
from wssbench.cli.params import ComponentName
from wssbench.cli.run import description_from_flags, run_command
from wssbench.cli.stage2 import run_segmentation
from wssbench.errors import UsageError
from wssbench.runtime.precision import PRECISIONS
from wssbench.seed.config import build_config
from wssbench.segmentation.config import BN_MODES, MULTI_SCALES, SCHEDULES, SegmentConfig, SegRecipe
from wssbench.segmentation.describe import build_segment_config
from wssbench.segmentation.masks import make_pseudo_masks
from wssbench.segmentation.presets import SEGMENT_PRESETS


def make_masks(args: str, train_split: str, dataset: str) -> Path:
    """Run ``wssbench run ARGS --split TRAIN`` (ground-truth image labels unless ARGS say
    otherwise) into its default folder, unless that folder holds a result already."""
    ctx = run_command.make_context("run", shlex.split(args), resilient_parsing=False)
    kw = dict(ctx.params)
    out = kw.pop("out")
    for key in ("from_record", "as_json"):
        kw.pop(key, None)
    given = {"classes_from": "labels", **description_from_flags(kw), "split": train_split, "dataset": dataset}
    return make_pseudo_masks(build_config(given), Path(out) if out else None)


def config_from_options(kw: dict, explicit: set[str]) -> SegmentConfig:
    """The flags a user gave (and the preset's choices where none was given) -> the config."""
    given = {k: kw[k] for k in explicit if k not in ("masks_run", "out", "as_json")}
    if "options" in given:
        given["options"] = tuple(kw["options"])
    return build_segment_config(given)


@click.command("segment")
@click.option("--preset", type=click.Choice(list(SEGMENT_PRESETS)), help="A named method (its options; those given here win).")
@click.option("--dataset", type=ComponentName("dataset"), default="synthetic", show_default=True, help="Dataset.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder (default: the dataset's own).")
@click.option("--split", default="val", show_default=True, help="Split the network segments and is scored on.")
@click.option("--train-split", default="train", show_default=True, help="Split the network trains on.")
@click.option("--segnet", type=ComponentName("segnet"), default="deeplabv3plus", show_default=True, help="Segmentation network.")
@click.option("--backbone", help="The network's encoder (a timm model; a VGG for deeplab-largefov).")
@click.option("--pretrained/--no-pretrained", default=None, help="Start the encoder from ImageNet weights (downloads them; presets: yes).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Local ImageNet weights of the encoder (offline use).")
@click.option("--objective", type=ComponentName("objective"), default="pseudo-masks", show_default=True, help="Training objective.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default="single", show_default=True, help="One network, or STC's three (simple to complex; -O schedule.KEY=VALUE).")
@click.option("--masks", type=click.Path(file_okay=False), help="Pseudo-masks: a 'wssbench run --split train' output folder.")
@click.option("--masks-run", metavar="'RUN OPTIONS'", help="Make the pseudo-masks first: 'wssbench run' options, e.g. '--preset dcsm'.")
@click.option("--epochs", type=click.IntRange(min=1), default=SegRecipe.epochs, show_default=True, help="Training epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=SegRecipe.batch_size, show_default=True, help="Training batch (over all ranks).")
@click.option("--crop", type=click.IntRange(min=16), default=SegRecipe.crop, show_default=True, help="Training crop size (321 or 512 on VOC).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=SegRecipe.lr, show_default=True, help="Learning rate (new layers 10x).")
@click.option("--bn", type=click.Choice(BN_MODES), default=SegRecipe.bn, show_default=True, help="Batch norm: batch statistics, frozen, or synchronised across ranks (CUDA).")
@click.option("--multiscale", is_flag=True, help=f"Average over scales {', '.join(map(str, MULTI_SCALES))}.")
@click.option("--scales", type=float, multiple=True, help="Inference scales (repeatable; overrides --multiscale).")
@click.option("--flip", is_flag=True, help="Average with the mirrored image.")
@click.option("--crf", is_flag=True, help="Dense-CRF post-processing (DeepLab's parameters; -O crf.KEY=VALUE).")
@click.option("-O", "--option", "options", multiple=True, metavar="KIND.KEY=VALUE", help="A component option: dataset, segnet, objective, crf or schedule.")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default="fp32", show_default=True, help="Autocast precision (fp16 needs CUDA).")
@click.option("--loader-workers", default="auto", show_default=True, help="Processes reading images ahead (auto: 0 on the CPU, up to 8 on a GPU).")
@click.option("--limit", type=click.IntRange(min=1), help="Score only the first N images of the split.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of training.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: wssbench-runs/segment-<config>-<hash>).")
@click.option("--json", "as_json", is_flag=True, help="Print the result record as JSON on stdout.")
@traceback_option
@click.pass_context
def segment_command(ctx: click.Context, **kw) -> None:
    """Train a segmentation network on pseudo-masks or image labels and score it (mIoU)."""
    explicit = {k for k in kw if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    if kw["masks"] and kw["masks_run"]:
        raise UsageError("give --masks or --masks-run, not both")
    if kw["masks_run"]:
        kw["masks"] = str(make_masks(kw["masks_run"], kw["train_split"], kw["dataset"]))
        explicit.add("masks")
    run_segmentation(config_from_options(kw, explicit), kw["out"], kw["as_json"])
