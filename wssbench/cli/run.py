"""``wssbench run``: one pipeline on one split, scored, written, printed.

The command only parses flags: the flags a user gave (and only those) form a description of
the run that :func:`wssbench.seed.config.build_config` turns into the config, so that defaults live
in one place (``RunConfig``) and a preset fills exactly what the command line leaves unset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from rich.console import Console

from wssbench.api import Pipeline
from wssbench.classifier.model import POOLINGS
from wssbench.classifier.training import TrainRecipe
from wssbench.cli import traceback_option
from wssbench.cli.params import ComponentName
from wssbench.cli.progress import progress_display
from wssbench.cli.stage2 import run_segmentation
from wssbench.cli.tables import config_panel, result_table
from wssbench.errors import UsageError
from wssbench.runtime.precision import PRECISIONS
from wssbench.seed.config import RunConfig, build_config, config_from_record
from wssbench.seed.presets import PRESETS, deviations
from wssbench.seed.run import default_out
from wssbench.segmentation.describe import build_segment_config
from wssbench.segmentation.presets import SEGMENT_PRESETS
from wssbench.storage.io import check_run_dir

D = RunConfig()  # the defaults shown in --help (build_config applies them)


@click.command("run")
@click.option("--preset", type=click.Choice([*PRESETS, *SEGMENT_PRESETS]), help="A named method (its options; those given here win). See README.")
@click.option("--from", "from_record", type=click.Path(dir_okay=False), help="Re-run the run recorded in this result.json (flags given here win).")
@click.option("--dataset", type=ComponentName("dataset"), help=f"Dataset.  [default: {D.dataset}]")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder (default: the dataset's own).")
@click.option("--split", help=f"Split to segment and score.  [default: {D.split}]")
@click.option("--train-split", help=f"Split the classifier is trained on.  [default: {D.train_split}]")
@click.option("--train-dataset", type=ComponentName("dataset"), help="Dataset the classifier is trained on (default: --dataset; its options: -O train_dataset.KEY=VALUE).")
@click.option("--train-data-root", type=click.Path(file_okay=False), help="Its folder (default: its own).")
@click.option("--backbone", help=f"[PROVIDER:]MODEL, e.g. resnet50 or timm:vgg16.  [default: {D.backbone}]")
@click.option("--pooling", type=click.Choice(list(POOLINGS)), help=f"Global pooling of the head.  [default: {D.pooling}]")
@click.option("--background/--no-background", default=None, help="The head has a background output (MIL-FCN, MIL-sppxl).  [default: no]")
@click.option("--head-bias/--no-head-bias", default=None, help="The 1x1 head has a bias (the authors' fc8).  [default: no]")
@click.option("--loss", type=click.Choice(["soft-margin", "mil", "softmax"]), help="Classifier training loss: soft-margin (CAM/IRN), mil (Pathak et al.), softmax (Pinheiro & Collobert).  [default: soft-margin]")
@click.option("--pretrained/--no-pretrained", default=None, help="Start from the backbone's pretrained weights (downloads them).  [default: no]")
@click.option("--weights", type=click.Path(dir_okay=False), help="Local pretrained backbone weights (offline use).")
@click.option("--epochs", type=click.IntRange(min=1), help=f"Classifier training epochs.  [default: {TrainRecipe.epochs}]")
@click.option("--crop", type=click.IntRange(min=16), help=f"Training crop size (e.g. 448 for VOC).  [default: {TrainRecipe.crop}]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help=f"Classifier learning rate.  [default: {TrainRecipe.lr}]")
@click.option("--head-init", type=click.Choice(["random", "imagenet"]), help="The classifier head's start: random, or each VOC-named class from the backbone's own ImageNet classifier (its WordNet members' mean row; needs ImageNet weights).  [default: the backbone's recipe: imagenet for tf_efficientnet_lite*, else random]")
@click.option("--segnet", type=ComponentName("segnet"), help="Segmentation network (--preset em-adapt, ccnn or stc only).  [default: the preset's]")
@click.option("--saliency", type=ComponentName("saliency", optional=True), help=f"Saliency method, or none.  [default: {D.saliency}]")
@click.option("--classmap", type=ComponentName("classmap", optional=True), help=f"Class-map producer, or none.  [default: {D.classmap}]")
@click.option("--fusion", type=ComponentName("fusion"), help=f"Fusion method.  [default: {D.fusion}]")
@click.option("--refine", type=ComponentName("refiner", optional=True), multiple=True, help=f"Refiner (repeatable, applied in order), or none.  [default: {','.join(D.refine)}]")
@click.option("-O", "--option", "options", multiple=True, metavar="STAGE.KEY=VALUE", help="A component option, e.g. -O fusion.bg_threshold=0.3 or -O densecrf.iterations=5 (wssbench list KIND --options).")
@click.option("--classes-from", type=click.Choice(["predicted", "labels", "all"]), help="Classes to segment: the classifier's (segmentation), the ground-truth image labels (seed quality), or all (per-pixel argmax over every class).  [default: predicted]")
@click.option("--score-threshold", type=float, help=f"Sigmoid score for a class to count as detected.  [default: {D.score_threshold}]")
@click.option("--max-classes", help=f"At most this many classes per image, or none (no cap).  [default: {D.max_classes}]")
@click.option("--detect-by", type=click.Choice(["classifier", "saliency"]), help="Who detects the classes: the classifier's scores, or the saliency method's own detection (dcsm: the union over its scales).  [default: classifier]")
@click.option("--top1/--no-top1", default=None, help="The top-scoring class counts as detected even below the threshold (--no-top1: an image with no detection is all background).  [default: yes]")
@click.option("--batch-size", type=click.IntRange(min=1), help=f"Images per forward/backward batch.  [default: {D.batch_size}]")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), help="Numerical precision of the network stages (autocast; fp16 needs CUDA).  [default: fp32]")
@click.option("--loader-workers", help="Processes reading images ahead of the network (auto: 0 on the CPU, up to 8 on a GPU).  [default: auto]")
@click.option("--workers", type=click.IntRange(min=1), help="Processes for fusion and refinement (CPU work per image).  [default: the core count]")
@click.option("--cache-maps/--no-cache-maps", default=None, help="Reuse class and saliency maps computed by an earlier run.  [default: yes]")
@click.option("--skip-checks", is_flag=True, default=None, help="Do not decode every image and mask before training (a bad file then fails when it is reached).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images of the split.")
@click.option("--device", help="cpu, cuda, cuda:N or auto.  [default: auto]")
@click.option("--seed", type=int, help=f"Seed of training and of the run.  [default: {D.seed}]")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: wssbench-runs/<config>-<hash>).")
@click.option("--json", "as_json", is_flag=True, help="Print the result record as JSON on stdout.")
@traceback_option
def run_command(from_record: str | None, out: str | None, as_json: bool, **kw) -> None:
    """Segment a split with one combination of components and score it (mIoU)."""
    given = description_from_flags(kw)
    if given.get("preset") in SEGMENT_PRESETS:  # EM-Adapt, CCNN: a segmentation network from image labels
        if from_record:
            raise UsageError(f"--from: preset '{given['preset']}' trains a segmentation network; rerun it with its options")

        return run_segmentation(build_segment_config(given), out, as_json)
    if "segnet" in given:
        raise UsageError(f"--segnet: only with a preset that trains a segmentation network ({', '.join(SEGMENT_PRESETS)}); "
                         "the seed pipeline has no segmentation network")
    config = config_from_record(from_record, **given) if from_record else build_config(given)
    pipe = Pipeline(config)
    config = pipe.config
    out_dir = Path(out) if out else default_out(config)
    err = Console(stderr=True, quiet=os.environ.get("RANK", "0") != "0")  # torchrun: rank 0 speaks
    replacing = check_run_dir(out_dir)  # refused before any work when it is not a run's folder
    err.print(config_panel(config, out_dir))
    if replacing:
        err.print(f"replacing the earlier run in {out_dir}", soft_wrap=True, highlight=False)

    changed = deviations(config, pipe.registry)
    if changed:
        listed = "; ".join(f"{d['option']}: {d['published']} -> {d['used']}" for d in changed)
        err.print(f"warning: --preset {config.preset}: {len(changed)} deviations from the published recipe (recorded): {listed}",
                  soft_wrap=True, highlight=False, markup=False)
    with progress_display(err) as progress:
        record = pipe.run(out_dir, progress)
    if record is None:  # another torchrun rank; rank 0 reports
        return
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        Console().print(result_table(record))
    err.print(f"wrote {out_dir / 'result.json'} and {record['n_images']} masks under {out_dir / 'masks'}", soft_wrap=True)


def description_from_flags(kw: dict) -> dict:
    """The run options a user gave on the command line (unset flags are None or empty)."""
    given = {k: v for k, v in kw.items() if v is not None and v != ()}
    if "refine" in given:
        given["refine"] = list(given["refine"]) if "none" not in given["refine"] else "none"
    return given
