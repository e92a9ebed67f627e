"""``wssbench pseudo-mask``: a split's seeds -> a learned affinity and random walk -> pseudo-masks."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click
from rich.console import Console

from wssbench.cli import traceback_option
from wssbench.cli.params import ComponentName
from wssbench.cli.progress import progress_display
from wssbench.cli.run import description_from_flags, run_command
from wssbench.errors import UsageError
from wssbench.host.options import parse_option_strings
from wssbench.host.registry import default_registry
from wssbench.pseudomask.config import PseudoMaskConfig, check_all
from wssbench.pseudomask.run import default_out, run
from wssbench.seed.config import build_config
from wssbench.storage.io import check_run_dir

# The authors' seeds (modern-methods.md sections 1-2): CAMs at four scales with their flips
OWN_FLAGS = ("dataset", "data_root", "split", "seed", "device", "classes_from")  # set by pseudo-mask, never by --seeds
AUTHORS_SEEDS = "--classmap cam --saliency none -O classmap.scales=1.0,0.5,1.5,2.0 -O classmap.flip=true"


def seeds_config(args: str, dataset: str, data_root: str | None, split: str, dataset_options: list[str], seed: int,
                 device: str):
    """The seed run of ``--seeds 'RUN OPTIONS'`` on ``split`` with ground-truth image labels; the
    dataset flags and seed given to ``wssbench pseudo-mask`` win over those in ARGS."""
    try:
        ctx = run_command.make_context("run", shlex.split(args), resilient_parsing=False)
    except click.UsageError as e:
        raise UsageError(f"--seeds: {e.format_message()}") from None
    kw = dict(ctx.params)
    for key in ("out", "from_record", "as_json"):
        kw.pop(key, None)
    given = description_from_flags(kw)
    for key in OWN_FLAGS:
        if key in given:
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"--seeds: give {flag} to 'wssbench pseudo-mask' itself, not inside --seeds")
    options = [*given.get("options", ()), *dataset_options]
    given.update({"classes_from": "labels", "split": split, "dataset": dataset, "refine": "none", "seed": seed,
                  "device": device, **({"options": options} if options else {}), **({"data_root": data_root} if data_root else {})})
    return build_config(given)


@click.command("pseudo-mask")
@click.option("--method", type=ComponentName("pseudomask"), default="psa", show_default=True, help="Pseudo-mask method (wssbench list pseudomask).")
@click.option("--seeds", default=AUTHORS_SEEDS, show_default=True, metavar="'RUN OPTIONS'",
              help="The seeds: 'wssbench run' options of the class maps (backbone, weights, recipe, --classmap and its -O).")
@click.option("--dataset", type=ComponentName("dataset"), default="synthetic", show_default=True, help="Dataset.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder (default: the dataset's own).")
@click.option("--split", default="train", show_default=True, help="Split to make pseudo-masks for (and to learn from).")
@click.option("--fit-split", help="Split whose seeds the method learns from (default: --split; the authors: train_aug, then walk train).")
@click.option("--backbone", help="The affinity network's timm model (default: the classifier's).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Its local ImageNet weights (default: the classifier's).")
@click.option("--pretrained/--no-pretrained", default=None, help="Download its ImageNet weights (default: as the classifier).")
@click.option("-O", "--option", "options", multiple=True, metavar="KIND.KEY=VALUE", help="An option of the method (pseudomask.KEY=VALUE) or the dataset.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the classifier's and the affinity network's training.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: wssbench-runs/pseudo-mask-<config>-<hash>).")
@click.option("--json", "as_json", is_flag=True, help="Print the result record as JSON on stdout.")
@traceback_option
def pseudo_mask_command(method, seeds, dataset, data_root, split, fit_split, backbone, weights, pretrained, options, device, seed, out, as_json):
    """Make pseudo-masks of a split with a learned affinity and a random walk (PSA, IRN) and score them (mIoU)."""
    method_options, dataset_options = [], []
    for text, (kind, key, value) in zip(options, parse_option_strings(tuple(options))):
        if kind == "pseudomask":
            method_options.append((key, value))
        elif kind == "dataset":
            dataset_options.append(text)
        else:
            raise UsageError(f"-O {text}: expected pseudomask.KEY=VALUE or dataset.KEY=VALUE (class-map options go in --seeds)")
    config = PseudoMaskConfig(seeds_config(seeds, dataset, data_root, split, dataset_options, seed, device), method,
                              tuple(method_options), backbone, weights, pretrained, fit_split)
    registry = default_registry()
    config = check_all(config, registry)  # every name and option checked (nothing built: run() builds it once)
    folder = Path(out) if out else default_out(config)
    replacing = check_run_dir(folder)
    err = Console(stderr=True)
    if replacing:
        err.print(f"replacing the earlier run in {folder}", soft_wrap=True, highlight=False)
    with progress_display(err) as progress:  # bars on a terminal, one line per task and per 10 % elsewhere
        record = run(config, registry, folder, progress)
    if record["deviations"]:
        listed = "; ".join(f"{d['option']}: {d['published']} -> {d['used']}" for d in record["deviations"])
        err.print(f"{len(record['deviations'])} deviations from the published recipe (recorded): {listed}",
                  soft_wrap=True, highlight=False, markup=False)
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        low, high = record.get("ci95") or (None, None)
        interval = f" [{100 * low:.1f}, {100 * high:.1f}]" if low is not None else ""
        click.echo(f"{record['method']}: {record['split']} mIoU {100 * record['miou']:.1f}{interval} (stage pseudo-mask)")
    err.print(f"wrote {folder / 'result.json'} and {record['n_images']} masks under {folder / 'masks'}")
