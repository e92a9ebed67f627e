"""One pseudo-mask run: the seeds of the training split (a seed run's class maps of each image's
own classes) -> the method learns from them all -> each image walked -> masks scored and written.

The output folder is what ``wssbench segment --masks`` reads: ``masks/<id>.png`` (label values),
``result.json`` (stage ``pseudo-mask``) and ``counts.npz`` (per-image counts for the intervals).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wssbench.classifier.training import mean_average_precision
from wssbench.errors import DataError
from wssbench.host.registry import Registry
from wssbench.pseudomask.config import PseudoMaskConfig, check
from wssbench.pseudomask.record import build_record
from wssbench.results.counts import COUNTS_FILE, CountsAccumulator
from wssbench.results.metrics import ConfusionMatrix
from wssbench.results.uncertainty import run_samples
from wssbench.runtime.timer import Timer
from wssbench.seed.components import resolve as resolve_seeds
from wssbench.seed.maps import ImageMaps, compute_maps, map_caches
from wssbench.seed.run import fit_progress, prepare_run, takes
from wssbench.storage.cache import fingerprint
from wssbench.storage.io import check_run_dir, run_dir, write_json, write_mask


def default_out(config: PseudoMaskConfig) -> Path:
    seeds = config.seeds
    name = "-".join(["pseudo-mask", seeds.dataset, seeds.split, config.method, seeds.classmap or "nocm"])
    return Path("wssbench-runs") / f"{name}-{fingerprint(config.to_dict(), 8)}"


def resolve(config: PseudoMaskConfig, registry: Registry) -> tuple[PseudoMaskConfig, Any, Any]:
    """Every name and option checked and the components created, before any work: returns the
    checked config, the seed run's components and the method."""
    seeds, parts = resolve_seeds(config.seeds, registry)
    config = check(dataclasses.replace(config, seeds=seeds), registry)
    method = registry.create("pseudomask", config.method, **dict(config.options))
    return config, parts, method


def affinity_backbone(config: PseudoMaskConfig, method: Any, registry: Registry) -> tuple[torch.nn.Module, dict]:
    """The affinity network's backbone: a timm model at the method's output stride, initialised
    as the user asked (by default as the classifier was)."""
    model, weights, pretrained = config.affinity_backbone
    provider = registry.create("backbone", "timm", output_stride=getattr(method, "output_stride", 16))
    torch.manual_seed(config.seeds.seed)
    return provider.build(model, pretrained=pretrained, weights=weights)


def run(config: PseudoMaskConfig, registry: Registry, out: Path | None = None, progress: Any = None,
        annotations: dict | None = None) -> dict:
    """Seeds, training, walks and scores; with ``out``, the folder written atomically. Returns the
    record; ``annotations`` (a bench row's label and key) are added to it as they are."""
    started = time.time()
    if out is not None:
        check_run_dir(out)  # a folder that is not a run's is refused before any work
    config, parts, method = resolve(config, registry)
    seeds_config = config.seeds
    torch.manual_seed(seeds_config.seed)
    timer = Timer()
    backbone, norm = affinity_backbone(config, method, registry)  # a bad model name or weights file fails before training
    check_split = getattr(parts.dataset, "check_split", None)
    if callable(check_split):
        with timer("data"):
            parts.dataset.prepare()
        check_split(config.learns_from)  # an unknown split is a usage error, before the classifier trains
    model, classifier_info, ids = prepare_run(seeds_config, parts, timer, progress)
    caches = map_caches(seeds_config, registry, Path(classifier_info["checkpoint"]).stem)
    same = config.learns_from == seeds_config.split
    fit_ids = ids if same else parts.dataset.ids(config.learns_from)
    if not fit_ids:
        raise DataError(f"split '{config.learns_from}' of dataset '{seeds_config.dataset}' is empty: no seeds to learn from")
    fit_seeds = collect_seeds(seeds_config, parts, model, fit_ids, timer, caches, progress, f"seeds of {config.learns_from}")
    if fit_seeds:
        classifier_info["map"] = mean_average_precision(np.stack([s.scores for s in fit_seeds]),
                                                        np.stack([s.image_labels for s in fit_seeds]))
        classifier_info["map_split"] = config.learns_from
    with timer("fit"):
        extra = {"progress": fit_progress(progress, f"training {config.method}")} if progress and takes(method.fit, "progress") else {}
        training = method.fit(fit_seeds, backbone, norm, device=seeds_config.device, seed=seeds_config.seed, **extra)
    training["split"], training["n_images"] = config.learns_from, len(fit_seeds)
    seeds = fit_seeds if same else collect_seeds(seeds_config, parts, model, ids, timer, caches, progress, f"seeds of {seeds_config.split}")
    task = progress.add_task(f"walking {seeds_config.split}", total=len(seeds)) if progress else None
    num_classes = parts.dataset.num_classes
    cm, counts = ConfusionMatrix(num_classes), CountsAccumulator(num_classes)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(run_dir(out)) if out is not None else None
        if tmp is not None:
            (tmp / "masks").mkdir()
        for s in seeds:
            with timer("walk"):
                labels = method(s)
            cm.matrix += counts.update(s.image_id, s.mask, labels)
            if tmp is not None:
                write_mask(tmp / "masks" / f"{s.image_id}.png", labels)
            if progress:
                progress.advance(task)
        image_counts = counts.result([s.image_id for s in seeds])
        samples = run_samples(image_counts)
        record = build_record(config, parts, registry, cm, len(seeds), classifier_info, training, timer.seconds, started,
                              image_counts, samples, COUNTS_FILE if tmp is not None else None, mask_stats(seeds))
        record.update(annotations or {})
        if tmp is not None:
            image_counts.save(tmp / COUNTS_FILE, samples)
            write_json(tmp / "result.json", record)
    return record


def collect_seeds(config: Any, parts: Any, model: Any, ids: list[str], timer: Timer, caches: dict, progress: Any,
                  description: str) -> list[ImageMaps]:
    """The class maps of ``ids`` (each image's own classes), kept for the method (saliency maps dropped)."""
    out = []
    task = progress.add_task(description, total=len(ids)) if progress else None
    for maps in compute_maps(config, parts, model, ids, timer, caches):
        maps.saliency_maps = None
        out.append(maps)
        if progress:
            progress.advance(task)
    if progress:
        progress.remove_task(task)
    return out


def mask_stats(seeds: list[ImageMaps]) -> dict:
    """How many classes the seeds had per image (the walk segments only those)."""
    per_image = np.array([len(s.labels) for s in seeds])
    return {"images": len(seeds), "classes_per_image": float(per_image.mean()) if len(seeds) else 0.0,
            "images_without_class": int((per_image == 0).sum())}
