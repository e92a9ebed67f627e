"""One segmentation-network run: data -> (pseudo-masks) -> trained network (cached) -> val mIoU."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wssbench.errors import DataError, UsageError
from wssbench.host.options import parse_option
from wssbench.host.registry import Registry
from wssbench.results.counts import COUNTS_FILE, CountsAccumulator
from wssbench.results.metrics import ConfusionMatrix
from wssbench.results.uncertainty import run_samples
from wssbench.runtime import distributed
from wssbench.runtime.distributed import World
from wssbench.runtime.timer import Timer
from wssbench.seed.maps import batches
from wssbench.seed.record import uncertainty
from wssbench.seed.run import rank_dir
from wssbench.segmentation.config import SegmentConfig
from wssbench.segmentation.data import TrainSamples
from wssbench.segmentation.infer import segment_images
from wssbench.segmentation.masks import PseudoMaskRun, open_mask_run
from wssbench.segmentation.network import build_model, network_key
from wssbench.segmentation.record import build_record
from wssbench.segmentation.stc import SCHEDULES
from wssbench.segmentation.train import SegModel, load_or_train, train
from wssbench.storage.io import atomic_dir, run_dir, write_json, write_mask

# DeepLab's dense-CRF post-processing (DESIGN.md section 3); ``-O crf.KEY=VALUE`` changes it
CRF_DEFAULTS = {"gaussian_sxy": 1.0, "gaussian_compat": 3.0, "bilateral_sxy": 67.0, "bilateral_srgb": 3.0,
                "bilateral_compat": 4.0, "iterations": 10}


@dataclass
class Parts:
    dataset: Any
    segnet: Any
    objective: Any
    crf: Any
    masks: PseudoMaskRun | None
    schedule: Any = None  # a multi-step trainer (``train(config, parts, world, device, progress)``), or None


def resolve(config: SegmentConfig, registry: Registry) -> tuple[SegmentConfig, Parts]:
    """Check names and options against the registry and create the components; every mistake
    on the command line fails here, before any work."""
    converted = []
    for kind, name in (("dataset", config.dataset), ("segnet", config.segnet), ("objective", config.objective)):
        for key, value in registry.parse_options(kind, name, config.options_for(kind)).items():
            converted.append((kind, key, value))
    schedule, schedule_options = make_schedule(config)
    converted += [("schedule", k, v) for k, v in schedule_options.items()]
    if config.options_for("crf") and not config.crf:
        raise UsageError("-O crf.*: the CRF is off (add --crf)")
    crf_options = {**CRF_DEFAULTS, **registry.parse_options("refiner", "densecrf", config.options_for("crf"))}
    if config.crf:
        converted += [("crf", k, v) for k, v in crf_options.items()]
    config = dataclasses.replace(config, options=tuple(converted))
    objective = registry.create("objective", config.objective, **config.options_for("objective"))
    needs_masks = getattr(objective, "needs_masks", False)
    if schedule is not None and config.masks:
        raise UsageError(f"--masks: schedule '{config.schedule}' makes its own masks")
    if schedule is not None and not needs_masks:
        raise UsageError(f"schedule '{config.schedule}' trains on the masks it makes; objective '{config.objective}' takes none "
                         f"(use pseudo-masks)")
    if needs_masks and not config.masks and schedule is None:
        raise UsageError(f"objective '{config.objective}' trains on pseudo-masks: give --masks RUN_DIR (or --masks-run)")
    if config.masks and not needs_masks:
        raise UsageError(f"--masks: objective '{config.objective}' trains from image labels only")
    parts = Parts(
        dataset=registry.create("dataset", config.dataset, root=config.data_root, **config.options_for("dataset")),
        segnet=registry.create("segnet", config.segnet, **config.options_for("segnet")),
        objective=objective,
        crf=registry.create("refiner", "densecrf", **crf_options) if config.crf else None,
        masks=open_mask_run(config.masks, config.dataset, config.train_split) if config.masks else None,
        schedule=schedule,
    )
    return config, parts


def make_schedule(config: SegmentConfig) -> tuple[Any, dict[str, Any]]:
    """The schedule's trainer (None for a single network) and its parsed ``-O schedule.*`` options."""
    given = config.options_for("schedule")
    factory = SCHEDULES.get(config.schedule)
    if factory is None:
        if given:
            raise UsageError(f"-O schedule.*: schedule '{config.schedule}' has no options")
        return None, {}
    options = {k: parse_option(factory, k, v, f"schedule '{config.schedule}'") for k, v in given.items()}
    try:
        return factory(**options), options
    except (TypeError, ValueError) as e:
        raise UsageError(f"schedule '{config.schedule}': {e}") from e


def training_ids(config: SegmentConfig, parts: Parts) -> list[str]:
    ids = parts.dataset.ids(config.train_split)
    if parts.masks is None:
        return ids
    have = parts.masks.ids()
    kept = [i for i in ids if i in have]
    if not kept:
        raise DataError(f"--masks {parts.masks.folder}: none of the {len(ids)} '{config.train_split}' images has a mask")
    return kept


def train_single(config: SegmentConfig, parts: Parts, world: World, device: str, progress: Any = None) -> tuple[SegModel, dict]:
    """One network on the run's supervision (pseudo-masks or image labels), cached."""
    train_ids = training_ids(config, parts)
    model = build_model(config, parts).to(device)
    samples = TrainSamples(parts.dataset, train_ids, parts.masks.path if parts.masks else None)
    task = progress.add_task("training network", total=None) if progress else None

    def on_step(step: int, total: int, loss: float) -> None:
        if progress:
            progress.update(task, completed=step, total=total, description=f"training {config.segnet} (loss {loss:.3f})")

    def fit() -> list[float]:
        return train(model, samples, parts.objective, config.recipe, torch.device(device), world, on_step,
                     config.precision, config.loader_workers)

    training = load_or_train(model, network_key(config, parts, train_ids, world), fit, world)
    if progress:
        progress.remove_task(task)
    return model, {**training, "n_images": len(train_ids)}


def segment(config: SegmentConfig, registry: Registry, out: Path | None, progress: Any = None, parts: Parts | None = None,
            annotations: dict | None = None) -> dict | None:
    """Train (or read back) the network, segment ``config.split``, and return the record; with
    ``out``, write it there too (record, counts and masks, atomically).

    A schedule (``config.schedule``, e.g. STC's three steps) trains the network in its own way
    and says so in the record's ``training``; otherwise one network is trained (:func:`train_single`).

    ``annotations`` are added to the record (a bench row's identity and published number).

    Under torchrun every rank trains and segments its share; rank 0 writes and returns the record.
    """
    started = time.time()
    world, config = distributed.init(config)
    if parts is None:
        config, parts = resolve(config, registry)
    timer = Timer()
    with timer("data"), world.main_first():
        parts.dataset.prepare()
    trainer = parts.schedule.train if parts.schedule is not None else train_single
    with timer("train"):
        model, training = trainer(config, parts, world, config.device, progress)
    model.to(config.device).eval()
    all_ids = parts.dataset.ids(config.split)[: config.limit]
    if not all_ids:
        raise DataError(f"split '{config.split}' of dataset '{config.dataset}' is empty")
    ids = world.shard(all_ids)
    cm = ConfusionMatrix(parts.dataset.num_classes)
    counts = CountsAccumulator(parts.dataset.num_classes)
    main = world.is_main
    task = progress.add_task(f"segmenting {config.split}", total=len(ids)) if progress else None
    with contextlib.ExitStack() as stack:
        tmp = None
        if out is not None:
            tmp = stack.enter_context(run_dir(out) if main else atomic_dir(rank_dir(out, world)))
        masks_dir = (tmp / "masks" if main else tmp) if tmp is not None else None
        if masks_dir is not None:
            masks_dir.mkdir(exist_ok=True)
        with timer("segment"):
            for image_id, gt, pred in segment_images(model, batches(parts.dataset, ids, config.batch_size, config.loader_workers),
                                                     config.scales, config.flip, parts.crf, config.precision):
                cm.matrix += counts.update(image_id, gt, pred)
                if masks_dir is not None:
                    write_mask(masks_dir / f"{image_id}.png", pred)
                if progress:
                    progress.advance(task)
        cm.matrix = world.sum(cm.matrix)
        for rank, other in enumerate(world.gather(counts)):
            if rank != world.rank:
                counts.merge(other)
        if main:
            world.barrier()  # the other ranks have committed their masks
            if out is not None:
                for rank in range(1, world.size):
                    other = rank_dir(out, World(rank, world.size))
                    for path in other.iterdir():
                        os.replace(path, masks_dir / path.name)
                    other.rmdir()
            backbone = getattr(parts.segnet, "encoder", None)
            record = build_record(config, registry, parts.dataset.classes, cm, len(all_ids), training,
                                  parts.masks.summary() if parts.masks else None, timer.seconds, started, world.size, backbone,
                                  parts.schedule)
            image_counts = counts.result(all_ids)
            samples = run_samples(image_counts)
            record.update(uncertainty(image_counts, samples, COUNTS_FILE if tmp is not None else None, parts.dataset.classes))
            record.update(annotations or {})
            if tmp is not None:
                image_counts.save(tmp / COUNTS_FILE, samples)
                write_json(tmp / "result.json", record)
        elif tmp is not None:
            stack.close()  # commit this rank's masks before rank 0 collects them
    if progress:
        progress.remove_task(task)
    if not main:
        world.barrier()
        return None
    return record
