"""The network stages of a seed run, per batch: one forward pass, the classes to segment, and the
class and saliency maps (from the shared forward where a component can use it, or the map cache).

Data contracts (see ``hookspecs``): images (B, 3, H, W) normalised; classes (B, K) model output
indices with -1 padding; maps (B, K, H, W). One forward pass per batch: the classifier runs once
(:func:`forward_batch`), and its scores, score maps and features feed class selection and every
stage that declares it can use them (``from_forward``); a saliency method that declares
``shares_forward`` has that same forward recorded under its backward rule and back-propagates
from it. See ``hookspecs`` for the capability attributes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from wssbench.classifier.model import Classifier, pixel_probabilities
from wssbench.host.options import defaults
from wssbench.host.registry import Registry
from wssbench.methods.forward import plain_forward
from wssbench.methods.saliency.backprop import record
from wssbench.runtime.loading import load_all
from wssbench.runtime.precision import autocast
from wssbench.runtime.timer import Timer
from wssbench.seed.classifier import compute_key
from wssbench.seed.components import NETWORK_STAGES, Components
from wssbench.seed.config import RunConfig
from wssbench.storage.cache import fingerprint, package_version
from wssbench.storage.mapcache import NO_CLASSES, MapCache, code_digests
from wssbench.storage.predcache import PredictionCache


def detect(config: RunConfig, parts: Components, model: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """With ``detect_by="saliency"``, the saliency method's own detection (present (B, C) bool,
    evidence (B, C)); else None (the classifier's scores decide)."""
    if not detect_needed(config):
        return None
    present, evidence = parts.saliency.detect(model, x)
    return present.to(x.device), evidence.to(x.device).float()


def select_classes(scores: torch.Tensor, gt: torch.Tensor | None, config: RunConfig,
                   detected: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """(B, C) scores -> (B, K) class indices, -1 padded: ground-truth labels or the detected ones.

    ``classes_from="all"``: every class, in index order (MIL-FCN's and MIL-sppxl's inference:
    the per-pixel argmax over all outputs). Detected: those whose sigmoid passes ``score_threshold``, at least the top one (unless
    ``top1`` is off: an image with no detection is then all background), at most
    ``max_classes`` (no cap when None), in decreasing score order. ``detected`` (present,
    evidence), when given, replaces the threshold on the scores (a saliency method's own
    detection, e.g. DCSM's union over scales) and orders the classes by its evidence.
    """
    if config.classes_from == "all":
        return torch.arange(scores.shape[1], device=scores.device).expand(len(scores), -1).clone()  # (B, C)
    if config.classes_from == "labels":
        present = gt.to(scores.device).bool()
    elif detected is not None:
        present, scores = detected[0].clone(), detected[1]
        if config.top1:
            present[torch.arange(len(scores)), scores.argmax(1)] = True
    else:
        present = torch.sigmoid(scores) > config.score_threshold
        if config.top1:
            present[torch.arange(len(scores)), scores.argmax(1)] = True
    ranked = torch.where(present, scores, torch.full_like(scores, -torch.inf))
    most = int(present.sum(1).max()) if len(scores) else 0
    k = most if config.max_classes is None else min(config.max_classes, most)
    top = ranked.topk(k, dim=1)
    return torch.where(torch.isfinite(top.values), top.indices, torch.full_like(top.indices, -1))  # (B, K)


def batches(dataset: Any, ids: list[str], size: int, workers: int = 0) -> Iterator[tuple[list[str], list[np.ndarray], list[np.ndarray]]]:
    """Consecutive images of equal size, at most ``size`` at a time, with their masks.

    With ``workers > 0``, DataLoader worker processes read and decode the next images while
    the network works on this batch.
    """
    group: list[tuple[str, np.ndarray, np.ndarray]] = []
    for image_id, (image, mask) in zip(ids, load_all(dataset.load_pair, ids, workers)):
        if group and (len(group) == size or group[0][1].shape != image.shape):
            yield [g[0] for g in group], [g[1] for g in group], [g[2] for g in group]
            group = []
        group.append((image_id, image, mask))
    if group:
        yield [g[0] for g in group], [g[1] for g in group], [g[2] for g in group]


@dataclass
class ImageMaps:
    """What the network stages produce for one image; fusion and refinement start from here."""

    image_id: str
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8 ground truth
    labels: np.ndarray  # (K,) detected (or ground-truth) foreground labels, 1-based
    class_maps: np.ndarray | None  # (K, H, W) in [0, 1]
    saliency_maps: np.ndarray | None  # (K, H, W) raw
    scores: np.ndarray  # (C,) classifier scores
    image_labels: np.ndarray  # (C,) ground-truth image labels
    background: np.ndarray | None = None  # (H, W) the classifier's background probability, when it has that output
    background_score: float | None = None  # its pooled background score


@dataclass
class Prediction:
    """One image's result: its label map (H, W) uint8 (0 background, c + 1 class c) and its maps."""

    image_id: str
    label_map: np.ndarray
    maps: ImageMaps
    curve: np.ndarray | None = None  # (T, C, C + 1): the fusion's label maps scored at each curve threshold


def _compute(producer: Any, forward: Any, model: Classifier, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """A stage's maps (B, K, H, W) from the shared forward where the producer can use it."""
    if forward is not None and getattr(producer, "shares_forward", False) and getattr(forward, "rule", None) is not None:
        return producer.from_trace(forward, classes)
    if forward is not None and getattr(producer, "uses_forward", False):
        return producer.from_forward(model, forward, classes)
    return producer(model, x, classes)


def cached_maps(stage: str, cache: MapCache | None, kept: list[np.ndarray], batch_ids: list[str],
                timer: Timer) -> list[np.ndarray] | None:
    """One stage's maps for a batch, per image (K_b, H, W), when the cache holds all of them; else None."""
    if cache is None:
        return None
    with timer(f"{stage}:cached"):
        found = [cache.get(i, c) for i, c in zip(batch_ids, kept)]
    return found if all(f is not None for f in found) else None


def stage_maps(stage: str, producer: Any, cache: MapCache | None, model: Classifier, x: torch.Tensor,
               classes: np.ndarray, kept: list[np.ndarray], batch_ids: list[str], timer: Timer,
               precision: str = "fp32", forward: Any = None) -> tuple[list[np.ndarray | None], bool]:
    """One stage's maps for a batch, per image (K_b, H, W), and whether they all came from the
    cache (they do when all are there).

    ``classes`` (B, K) is -1 padded; ``kept`` is each image's real entries (K_b,); ``forward``
    is the batch's shared forward pass (see :func:`forward_batch`), used where the producer
    declares it can.
    """
    if producer is None:
        return [None] * len(batch_ids), False
    if classes.shape[1] == 0:  # no image of the batch has a class: nothing to compute
        return [np.zeros((0, *x.shape[-2:]), np.float32) for _ in batch_ids], False
    found = cached_maps(stage, cache, kept, batch_ids, timer)
    if found is not None:
        return found, True
    with timer(stage), autocast(x.device, precision):
        wanted = torch.from_numpy(classes).to(x.device)
        maps = _compute(producer, forward, model, x, wanted).float().cpu().numpy()  # (B, K, H, W)
    out = [m[c >= 0] for m, c in zip(maps, classes)]  # (K_b, H, W) each
    if cache is not None:
        for image_id, c, m in zip(batch_ids, kept, out):
            cache.put(image_id, c, m)
    return out, False


def forward_batch(model: Classifier, x: torch.Tensor, saliency: Any, record_graph: bool) -> contextlib.AbstractContextManager:
    """The batch's one forward pass, as a context manager yielding it (``.scores``,
    ``.score_maps``, ``.features``, ``.images``).

    With ``record_graph`` and a saliency method that ``shares_forward``, the pass is recorded
    under the method's backward rule (``wssbench.methods.saliency.backprop.record``) so that its maps
    come from this same graph; otherwise it runs without autograd.
    """
    if record_graph and getattr(saliency, "shares_forward", False):
        return record(model, x, **saliency.forward_spec(model))
    return contextlib.nullcontext(plain_forward(model, x))


def compute_maps(config: RunConfig, parts: Components, model: Classifier, ids: list[str], timer: Timer,
                 caches: dict[str, MapCache] | None = None, scores: MapCache | None = None) -> Iterator[ImageMaps]:
    """Classify each image, pick its classes, and compute (or read back) their maps, from one
    forward pass per batch; none for a batch whose scores (``scores``, see :func:`scores_cache`)
    and maps are all cached (:func:`from_caches`)."""
    caches = caches or {}
    saliency_cached = False  # did the last batch read every saliency map from the cache?
    for batch_ids, images, masks in batches(parts.dataset, ids, config.batch_size, config.loader_workers):
        gt_labels = torch.from_numpy(np.stack([parts.dataset.image_labels(i) for i in batch_ids]))  # (B, C)
        hit = from_caches(config, parts, model, batch_ids, gt_labels, images[0].shape[:2], caches, scores, timer)
        if hit is not None:
            cached_scores, kept, maps = hit
            for b, image_id in enumerate(batch_ids):
                yield ImageMaps(image_id, images[b], masks[b], kept[b] + 1, maps["classmap"][b], maps["saliency"][b],
                                cached_scores[b], gt_labels[b].numpy())
            continue
        x = model.preprocess(images)  # (B, 3, H, W)
        # a batch whose saliency maps are likely cached needs no graph: guess from the last one
        record_graph = parts.saliency is not None and not saliency_cached
        with contextlib.ExitStack() as stack:
            with timer("forward"), autocast(x.device, config.precision):
                forward = stack.enter_context(forward_batch(model, x, parts.saliency, record_graph))
                logits = forward.scores.detach().float()  # (B, C)
                classes = select_classes(logits, gt_labels, config, detect(config, parts, model, x)).cpu().numpy()  # (B, K)
                kept = [c[c >= 0] for c in classes]  # (K_b,) each
                background = background_of(model, forward)
                batch_scores = logits.cpu().numpy()  # one device sync per batch
            if scores is not None:
                for image_id, row in zip(batch_ids, batch_scores):
                    scores.put(image_id, NO_CLASSES, row)
            maps = {
                stage: stage_maps(stage, producer, caches.get(stage), model, x, classes, kept, batch_ids, timer,
                                  config.precision, forward)
                for stage, producer in (("classmap", parts.classmap), ("saliency", parts.saliency))
            }
        saliency_cached = maps["saliency"][1]
        for b, image_id in enumerate(batch_ids):
            yield ImageMaps(
                image_id, images[b], masks[b], kept[b] + 1,
                maps["classmap"][0][b], maps["saliency"][0][b], batch_scores[b], gt_labels[b].numpy(),
                *((background[0][b], float(background[1][b])) if background else ()),
            )


def from_caches(config: RunConfig, parts: Components, model: Classifier, batch_ids: list[str], gt_labels: torch.Tensor,
                size: tuple[int, int], caches: dict[str, MapCache], scores: MapCache | None, timer: Timer
                ) -> tuple[np.ndarray, list[np.ndarray], dict[str, list[np.ndarray | None]]] | None:
    """A batch whose classifier scores and maps are all cached needs no forward pass: its scores
    (B, C), each image's classes (K_b,) and each stage's maps per image, read back; None where
    anything is missing or the batch needs the pass anyway (a classifier with a background output,
    whose per-pixel background comes from it, or a saliency method's own detection).

    The classes are chosen from the cached scores exactly as from fresh ones (``select_classes``),
    so a sweep over fusion or refinement settings (a tuning grid) reads everything back: about a
    quarter of a second per photo of a Lite0 forward pass on 2 CPU cores, saved per image and run."""
    if scores is None or getattr(model, "background", False) or detect_needed(config):
        return None
    with timer("forward:cached"):
        found = [scores.get(i, NO_CLASSES) for i in batch_ids]
    if any(f is None for f in found):
        return None
    batch_scores = np.stack(found)  # (B, C)
    classes = select_classes(torch.from_numpy(batch_scores), gt_labels, config).numpy()  # (B, K)
    kept = [c[c >= 0] for c in classes]  # (K_b,) each
    maps: dict[str, list[np.ndarray | None]] = {}
    for stage, producer in (("classmap", parts.classmap), ("saliency", parts.saliency)):
        if producer is None:
            maps[stage] = [None] * len(batch_ids)
        elif classes.shape[1] == 0:  # no image of the batch has a class (as stage_maps)
            maps[stage] = [np.zeros((0, *size), np.float32) for _ in batch_ids]
        else:
            got = cached_maps(stage, caches.get(stage), kept, batch_ids, timer)
            if got is None:
                return None
            maps[stage] = got
    return batch_scores, kept, maps


def detect_needed(config: RunConfig) -> bool:
    """Whether the classes come from the saliency method's own detection (see :func:`detect`)."""
    return config.detect_by == "saliency" and config.classes_from == "predicted"


def scores_cache(config: RunConfig, classifier: str) -> MapCache | None:
    """The cache of each image's classifier scores (C,) float32, beside the map caches (None where
    maps are not cached): with them and the maps a run over cached maps needs no forward pass."""
    if not config.cache_maps:
        return None
    options = {"dataset": config.dataset, "dataset_options": config.options_for("dataset")}
    return MapCache(classifier, "forward", "scores", "wssbench", options, compute_key(config), code_digests(plain_forward))


def background_of(model: Classifier, forward: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """For a classifier with a background output (``model.background``): its per-pixel
    probability (B, H, W) (``pixel_probabilities``, row 0) and its pooled score (B,), from the
    batch's shared forward pass; else None."""
    if not getattr(model, "background", False):
        return None
    with torch.no_grad():
        features, maps = forward.features.detach(), forward.score_maps.detach()
        probs = pixel_probabilities(model, features, maps, forward.images.shape[-2:])[:, 0]  # (B, H, W)
        pooled = model.pool(model.background_maps(features).float())[:, 0]  # (B,)
    return probs.cpu().numpy(), pooled.cpu().numpy()


def map_caches(config: RunConfig, registry: Registry, classifier: str) -> dict[str, MapCache]:
    """A cache per network stage that is on, unless the config turns caching off."""
    if not config.cache_maps:
        return {}
    caches = {}
    for stage in NETWORK_STAGES:
        kind, name = config.components()[stage]
        if name is not None:
            entry = registry.get(kind, name)
            options = {**defaults(entry.factory), **config.options_for(stage)}
            caches[stage] = MapCache(classifier, stage, name, entry.plugin, options, compute_key(config), code_digests(entry.factory))
    return caches


def prediction_cache(config: RunConfig, registry: Registry, classifier: str, caches: dict[str, MapCache],
                     curve: tuple[float, ...] | None) -> PredictionCache | None:
    """The cache of label maps after fusion and refiners (``wssbench.storage.predcache``), keyed by
    what they depend on beyond the image and its classes; None where maps are not cached either."""
    if not config.cache_maps:
        return None

    def component(kind: str, name: str) -> dict:
        entry = registry.get(kind, name)
        return {"name": name, "plugin": entry.plugin, "plugin_version": package_version(entry.plugin),
                "options": {**defaults(entry.factory), **config.options_for(kind if kind == "fusion" else name)},
                "code": code_digests(entry.factory)}

    return PredictionCache({
        "classifier": classifier,
        "dataset": config.dataset,
        "dataset_options": config.options_for("dataset"),
        "maps": {stage: fingerprint(cache.key) for stage, cache in sorted(caches.items())},
        "fusion": component("fusion", config.fusion),
        "refiners": [component("refiner", name) for name in config.refine],
        "curve": list(curve) if curve else None,
        **compute_key(config),
    })
