"""One seed run: dataset -> classifier -> class maps + saliency maps -> fusion -> refiners -> mIoU.

Per image, fusion and refiners exchange probabilities (K+1, H, W) whose row 0 is background;
they run in a process pool (:mod:`wssbench.runtime.workers`) while the network computes the next
batch (:mod:`wssbench.seed.maps`).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from wssbench.classifier.model import Classifier
from wssbench.classifier.training import mean_average_precision
from wssbench.data.checks import verify_files
from wssbench.errors import DataError
from wssbench.host.registry import Registry
from wssbench.results.counts import COUNTS_FILE, CountsAccumulator
from wssbench.results.curve import CurveAccumulator
from wssbench.results.metrics import ConfusionMatrix
from wssbench.results.uncertainty import run_samples
from wssbench.runtime import distributed
from wssbench.runtime.distributed import World
from wssbench.runtime.timer import Timer
from wssbench.runtime.workers import PredictPool, merge_stats
from wssbench.seed.classifier import load_or_train
from wssbench.seed.components import Components, resolve
from wssbench.seed.config import RunConfig
from wssbench.seed.maps import Prediction, compute_maps, map_caches, prediction_cache, scores_cache
from wssbench.seed.record import build_record
from wssbench.storage.cache import fingerprint
from wssbench.storage.io import atomic_dir, run_dir, write_json, write_mask
from wssbench.storage.mapcache import MapCache
from wssbench.storage.predcache import PredictionCache

SEGMENT_WALL = "segment_wall"  # timer stage: the whole loop over the split


def check_split(config: RunConfig, dataset: Any, needs_training: bool = True, training: Any = None) -> list[str]:
    """The ids to segment, with a cheap check that their files exist (before any training);
    with ``needs_training``, the training split (of ``training``, default ``dataset``) must hold images too."""
    training = dataset if training is None else training
    for split, data in ((config.split, dataset), (config.train_split, training)):
        check = getattr(data, "check_split", None)
        if callable(check):
            check(split)  # an unknown split is a usage error, before any training
    ids = dataset.ids(config.split)[: config.limit]
    if not ids:
        raise DataError(f"split '{config.split}' of dataset '{config.dataset}' is empty")
    if needs_training and not training.ids(config.train_split):
        raise DataError(f"training split '{config.train_split}' of dataset '{config.train_dataset or config.dataset}' is empty: "
                        f"nothing to train the classifier on")
    check = getattr(dataset, "check_files", None)
    if callable(check):
        check(ids)
    return ids


def prepare_run(config: RunConfig, parts: Components, timer: Timer, progress: Any = None, world: World = World()) -> tuple[Classifier, dict, list[str]]:
    """Make the data ready and the classifier trained; returns it, its info and this rank's ids."""
    with timer("data"), world.main_first():
        parts.dataset.prepare()
        if parts.training is not parts.dataset:
            parts.training.prepare()
    needs_training = not getattr(parts.model, "trained", False)
    ids = check_split(config, parts.dataset, needs_training=needs_training, training=parts.training)
    if not config.skip_checks:  # every file the run will read, before the long part
        with timer("checks"), world.main_first():
            if world.is_main:
                wanted = ids + (parts.dataset.ids(config.train_split) if needs_training and parts.training is parts.dataset else [])
                verify_files(parts.dataset, wanted, progress=fit_progress(progress, "checking the images and masks"))
                if needs_training and parts.training is not parts.dataset:
                    verify_files(parts.training, parts.training.ids(config.train_split),
                                 progress=fit_progress(progress, "checking the training images and masks"))
    with timer("classifier"), world.main_first():
        model, info = load_or_train(config, parts, torch.device(config.device), progress)
    if getattr(parts.classmap, "needs_fit", False):
        with timer("classmap_fit"), world.main_first():
            report = fit_progress(progress, "fitting the class maps") if takes(parts.classmap.fit, "progress") else None
            extra = {"progress": report} if report is not None else {}
            parts.classmap.fit(model, parts.training, config.train_split, Path(info["checkpoint"]).stem, **extra)
    return model, info, world.shard(ids)


def takes(fn: Callable, name: str) -> bool:
    """Whether ``fn`` accepts keyword ``name`` (an optional capability of a plugin method)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def fit_progress(progress: Any, description: str) -> Callable[[int, int], None] | None:
    """A ``progress(done, total)`` callback that drives a task of the run's progress display."""
    if progress is None:
        return None
    task = progress.add_task(description, total=None)

    def report(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)
        if done >= total:
            progress.remove_task(task)

    return report


def predictions(config: RunConfig, parts: Components, model: Classifier, ids: list[str], timer: Timer,
                caches: dict[str, MapCache] | None = None, pool: PredictPool | None = None,
                predicted: PredictionCache | None = None, scores: MapCache | None = None) -> Iterator[Prediction]:
    """Every image's prediction, in order of completion: the network stages in this process,
    fusion and refinement in ``pool`` (inline when None) while the next batch is computed. An
    image whose label map ``predicted`` holds (a run killed part-way and started again) skips
    fusion and refinement; the others' are stored there as they finish."""
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(PredictPool(parts.fusion, parts.refiners, 1))

        def finished(results: Iterator) -> Iterator[Prediction]:
            for maps, pred, seconds, curve in results:
                for stage, s in seconds.items():
                    timer.seconds[stage] += s
                if predicted is not None:
                    with timer("prediction:store"):
                        predicted.put(maps.image_id, maps.labels, pred, curve)
                yield Prediction(maps.image_id, pred, maps, curve)

        with timer(SEGMENT_WALL):  # all stages together, overlapping: the split's wall time
            for maps in compute_maps(config, parts, model, ids, timer, caches, scores):
                if predicted is not None:
                    with timer("prediction:cached"):
                        hit = predicted.get(maps.image_id, maps.labels)
                    if hit is not None:
                        yield Prediction(maps.image_id, hit[0], maps, hit[1])
                        continue
                pool.submit(maps)
                yield from finished(pool.results())
            yield from finished(pool.results(finish=True))


def run(config: RunConfig, registry: Registry, out: Path | None = None, progress: Any = None,
        parts: Components | None = None, annotations: dict | None = None,
        on_prediction: Callable[[Prediction], None] | None = None) -> dict | None:
    """Run the whole pipeline and return its record; with ``out``, write it (record + masks)
    there atomically.

    ``config`` and ``parts`` are what ``resolve`` returned; without ``parts`` it is called here.
    ``annotations`` are added to the record (a bench row's label, tuning, published number).
    Under torchrun every rank takes part and rank 0 alone writes and returns the record.
    """
    torch.manual_seed(config.seed)
    started = time.time()
    world, config = distributed.init(config)
    if parts is None:
        config, parts = resolve(config, registry)
    timer = Timer()
    model, classifier_info, ids = prepare_run(config, parts, timer, progress, world)
    num_classes = parts.dataset.num_classes
    cm = ConfusionMatrix(num_classes)
    counts = CountsAccumulator(num_classes)
    curve = curve_of(parts.fusion, num_classes)
    all_scores, all_labels = [], []
    task = progress.add_task(f"segmenting {config.split}", total=len(ids)) if progress else None
    main = world.is_main
    with contextlib.ExitStack() as stack:
        if out is not None:
            tmp = stack.enter_context(run_dir(out) if main else atomic_dir(rank_dir(out, world)))
        else:
            tmp = None
        masks_dir = (tmp / "masks" if main else tmp) if tmp is not None else None
        if masks_dir is not None:
            masks_dir.mkdir(exist_ok=True)
        pool = stack.enter_context(PredictPool(parts.fusion, parts.refiners, config.workers,
                                               curve=(curve.points, num_classes) if curve else None))
        caches = map_caches(config, registry, Path(classifier_info["checkpoint"]).stem)
        predicted = prediction_cache(config, registry, Path(classifier_info["checkpoint"]).stem, caches,
                                     curve.points if curve is not None else None)
        scores_of = scores_cache(config, Path(classifier_info["checkpoint"]).stem)
        for p in predictions(config, parts, model, ids, timer, caches, pool, predicted, scores_of):
            with timer("evaluate"):
                cm.matrix += counts.update(p.image_id, p.maps.mask, p.label_map)
                if curve is not None:
                    curve = curve.add(p.curve) if p.curve is not None else None  # a fusion with nothing to sweep here
                if masks_dir is not None:
                    write_mask(masks_dir / f"{p.image_id}.png", p.label_map)
            all_scores.append(p.maps.scores)
            all_labels.append(p.maps.image_labels)
            if on_prediction is not None:
                on_prediction(p)
            if progress:
                progress.advance(task)
        if progress:
            progress.remove_task(task)
        cm.matrix = world.sum(cm.matrix)
        for rank, other in enumerate(world.gather(counts)):  # every rank's images, in each rank's accumulator
            if rank != world.rank:
                counts.merge(other)
        curves = world.gather(curve)
        curve = None if any(c is None for c in curves) else curves[0].merged(curves[1:])
        scores = [s for part in world.gather(all_scores) for s in part]
        labels = [label for part in world.gather(all_labels) for label in part]
        stats = merge_stats(world.gather(pool.stats()))
        reused = sum(world.gather(predicted.hits if predicted is not None else 0))
        if not main:
            stack.close()  # commit this rank's masks before rank 0 collects them
            world.barrier()
            return None
        if out is not None:
            world.barrier()  # the other ranks have committed their masks
            for rank in range(1, world.size):
                other = rank_dir(out, World(rank, world.size))
                for path in other.iterdir():
                    os.replace(path, masks_dir / path.name)
                other.rmdir()
        classifier_info["map"] = mean_average_precision(np.stack(scores), np.stack(labels))
        classifier_info["map_split"] = config.split
        all_ids = parts.dataset.ids(config.split)[: config.limit]
        with timer("record"):
            image_counts = counts.result(all_ids)
            samples = run_samples(image_counts)
            record = build_record(
                config, parts, registry, cm, all_ids, classifier_info, timer.seconds, started, stats,
                world_size=world.size, map_cache={stage: str(cache.dir) for stage, cache in caches.items()},
                prediction_cache={"dir": str(predicted.dir), "reused": reused} if predicted is not None else None,
                annotations=annotations, counts=image_counts, samples=samples, curve=curve,
                counts_file=COUNTS_FILE if tmp is not None else None,
            )
            if tmp is not None:
                image_counts.save(tmp / COUNTS_FILE, samples)
                write_json(tmp / "result.json", record)
    return record


def default_out(config: RunConfig) -> Path:
    """Where a run writes when no ``--out`` is given: ``wssbench-runs/<dataset>-<split>-<methods>-<hash>``."""
    parts = [config.dataset, config.split, config.classmap or "nocm", config.saliency or "nosal", config.fusion, *config.refine]
    return Path("wssbench-runs") / ("-".join(parts) + "-" + fingerprint(config.to_dict(), 8))


def curve_of(fusion: Any, num_classes: int) -> CurveAccumulator | None:
    """The threshold curve a run records: for a fusion that sweeps a background threshold
    (``labels_at`` and its ``curve`` grid set), at the grid and at the run's own threshold."""
    grid = getattr(fusion, "curve", None)
    if not grid or not callable(getattr(fusion, "labels_at", None)):
        return None
    return CurveAccumulator(tuple(grid), num_classes, used=getattr(fusion, fusion.threshold_option))


def rank_dir(out: Path, world: World) -> Path:
    """Where a rank's masks go until rank 0 assembles the output folder."""
    return out.parent / f".{out.name}.masks-{world.rank}-of-{world.size}"
