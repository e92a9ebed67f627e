"""One run: dataset -> classifier -> class maps + saliency maps -> fusion -> refiners -> mIoU.

Data contracts (see ``hookspecs``): images (B, 3, H, W) normalised; classes (B, K) model output
indices with -1 padding; maps (B, K, H, W); per image, fusion and refiners exchange
probabilities (K+1, H, W) whose row 0 is background.

One forward pass per batch: the classifier runs once (:func:`forward_batch`), and its scores,
score maps and features feed class selection and every stage that declares it can use them
(``from_forward``); a saliency method that declares ``shares_forward`` has that same forward
recorded under its backward rule and back-propagates from it. See ``hookspecs`` for the
capability attributes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from wssbench.classifier.model import Classifier, downsample_factor
from wssbench.classifier.training import checkpoint_path, mean_average_precision, recipe_dict, save_checkpoint, train
from wssbench.errors import DataError, OfflineError, UsageError
from wssbench.host.options import defaults
from wssbench.host.registry import Registry
from wssbench.methods.forward import plain_forward
from wssbench.results.metrics import ConfusionMatrix
from wssbench.runtime import distributed
from wssbench.runtime.distributed import World
from wssbench.runtime.loading import load_all
from wssbench.runtime.precision import autocast
from wssbench.runtime.workers import PredictPool, merge_stats
from wssbench.seed.config import RunConfig
from wssbench.seed.record import build_record
from wssbench.storage.io import atomic_dir, run_dir, write_json, write_mask
from wssbench.storage.mapcache import MapCache, code_digests

CLASSIFIER_VERSION = 2  # 2: the initialisation is seeded (1 drew it from an unseeded generator)
SEGMENT_WALL = "segment_wall"  # timer stage: the whole loop over the split
NETWORK_STAGES = ("classmap", "saliency")


@dataclass
class Components:
    dataset: Any
    model: Classifier  # untrained until ``load_or_train``
    saliency: Any
    classmap: Any
    fusion: Any
    refiners: list[tuple[str, Any]]


def check(config: RunConfig, registry: Registry) -> RunConfig:
    """Check every name and option against the registry, without creating anything.

    Returns the config with option values converted to their declared types. A fusion that
    declares ``needs_maps = False`` (the all-background floor) turns the map stages off, so
    that no map is computed that nothing reads.
    """
    fusion = registry.get("fusion", config.fusion).factory
    if not getattr(fusion, "needs_maps", True):
        config = dataclasses.replace(config, saliency=None, classmap=None,
                                     options=tuple(o for o in config.options if o[0] not in NETWORK_STAGES))
    elif config.saliency is None and config.classmap is None:
        raise UsageError(f"--saliency and --classmap cannot both be 'none': fusion '{config.fusion}' reads maps (use --fusion background)")
    if config.detect_by == "saliency" and config.classes_from == "predicted":
        method = registry.get("saliency", config.saliency).factory if config.saliency else None
        if method is None or not callable(getattr(method, "detect", None)):
            raise UsageError(f"--detect-by saliency: saliency '{config.saliency}' has no detection of its own (dcsm has)")
    converted = []
    for stage, (kind, name) in config.components().items():
        opts = config.options_for(stage)
        if name is None:
            if opts:
                raise UsageError(f"-O {stage}.*: the {stage} stage is off")
            continue
        for key, value in registry.parse_options(kind, name, opts).items():
            converted.append((stage, key, value))
    return dataclasses.replace(config, options=tuple(converted))


def resolve(config: RunConfig, registry: Registry) -> tuple[RunConfig, Components]:
    """Check every name and option against the registry and create the components.

    Returns the config with option values converted to their declared types. Everything a
    user can get wrong on the command line fails here, before any work starts.
    """
    config = check(config, registry)
    chosen = config.components()

    def make(stage: str, **extra: Any) -> Any:
        kind, name = chosen[stage]
        return None if name is None else registry.create(kind, name, **extra, **config.options_for(stage))

    dataset = make("dataset", root=config.data_root)
    try:
        model = build_classifier(config, dataset, make("backbone"))
    except OfflineError as e:
        if not config.preset:
            raise
        raise OfflineError(
            f"--preset {config.preset} starts from ImageNet weights of '{config.backbone}', which cannot be downloaded here: "
            f"pass --weights FILE (a local checkpoint of it), or --backbone MODEL --no-pretrained (recorded as deviations)"
        ) from e
    components = Components(
        dataset=dataset,
        model=model,
        saliency=make("saliency"),
        classmap=make("classmap"),
        fusion=make("fusion"),
        refiners=[(name, make(name)) for name in config.refine],
    )
    return config, components


class Timer:
    """Accumulates wall time per stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start


def create_classifier(provider: Any, model_name: str, num_classes: int, pooling: str = "gap", pretrained: bool = False,
                      weights: str | None = None, seed: int = 0, background: bool = False, bias: bool = False) -> Classifier:
    """A classifier (backbone + 1x1 head + global pooling) over a backbone provider's model;
    ``background`` adds a background output to the head, ``bias`` a bias (see ``Classifier``).

    Its random initialisation (the head, and the backbone when not pretrained) is drawn from
    ``seed``, so that training from scratch gives the same weights in every process.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        features, preprocess = provider.build(model_name, pretrained=pretrained, weights=weights)
        features.eval()
        with torch.no_grad():
            out = features(torch.zeros(1, 3, 64, 64))
        if out.ndim != 4:
            raise UsageError(f"backbone '{model_name}' does not produce feature maps (output shape {tuple(out.shape)})")
        return Classifier(features, out.shape[1], num_classes, pooling, bias=bias, background=background, **preprocess)


def build_classifier(config: RunConfig, dataset: Any, provider: Any) -> Classifier:
    """The classifier of a run: untrained (seeded from its recipe), or, from a provider that
    ``provides_classifier`` (an ImageNet network with its own head), trained already."""
    _, model_name = config.backbone_provider
    if getattr(provider, "provides_classifier", False):  # its own head: nothing to train
        model = provider.classifier(model_name, pretrained=config.pretrained, weights=config.weights)
        if model.num_classes != dataset.num_classes - 1:
            raise UsageError(f"backbone '{config.backbone}' scores {model.num_classes} classes; dataset '{config.dataset}' "
                             f"has {dataset.num_classes - 1}")
        return model
    return create_classifier(provider, model_name, dataset.num_classes - 1, config.pooling, config.pretrained,
                             config.weights, config.recipe.seed, config.background, config.head_bias)


def classifier_key(config: RunConfig, dataset: Any) -> dict:
    """Everything that determines the trained classifier's weights: the training data by its
    content (``datakey.training_data_key``), never its path, so a moved cache is reused."""
    from wssbench.storage.cache import file_digest
    from wssbench.storage.datakey import training_data_key

    return {
        "version": CLASSIFIER_VERSION,
        "dataset": config.dataset,
        "data": training_data_key(dataset, config.train_split),
        "split": config.train_split,
        "backbone": config.backbone,
        "backbone_options": config.options_for("backbone"),
        "pooling": config.pooling,
        "pretrained": config.pretrained,
        "weights": file_digest(config.weights) if config.weights else None,
        "recipe": recipe_dict(config.recipe),
        # the head's shape, only when not the default, so that earlier keys stay as they were
        **({"background": True} if config.background else {}),
        **({"head_bias": True} if config.head_bias else {}),
        **compute_key(config),
    }


def compute_key(config: RunConfig) -> dict:
    """What of the numerics enters cache keys beyond the components: precision and, off the
    CPU, the device type (CUDA convolutions use TF32 and other algorithms). Empty for fp32 on
    the CPU, so that those keys stay as they were."""
    key = {}
    if config.precision != "fp32":
        key["precision"] = config.precision
    if torch.device(config.device).type != "cpu":
        key["device"] = torch.device(config.device).type
    return key


def load_or_train(config: RunConfig, parts: Components, device: torch.device, progress: Any = None) -> tuple[Classifier, dict]:
    """The cached classifier for this config, training (and caching) it on the first run.

    A damaged checkpoint is warned about and retrained. Training holds the entry's lock
    (``locks.entry_lock``): a second run on the same cold cache waits and loads the first's
    result. Where the cache cannot be written the trained model is used in memory (said once).
    """
    from wssbench.classifier.training import load_cached_checkpoint
    from wssbench.storage.locks import entry_lock, log

    model = parts.model
    key = classifier_key(config, parts.dataset)
    path = checkpoint_path(key)
    if getattr(model, "trained", False):  # it came trained (an ImageNet head): nothing to train or cache
        model.to(device).eval()
        return model, {"key": key, "cached": True, "trained_by": "provider", "checkpoint": str(path),
                       "output_stride": downsample_factor(model)}
    meta = load_cached_checkpoint(path, model)
    waiting = None

    def on_wait(message: str) -> None:
        nonlocal waiting
        if progress:
            waiting = progress.add_task("waiting for another run training this classifier", total=None)
        else:
            log.info(message)

    if meta is None:
        with entry_lock(path, on_wait):
            if waiting is not None:
                progress.remove_task(waiting)
            meta = load_cached_checkpoint(path, model)  # another run may have trained it meanwhile
            if meta is None:
                task = progress.add_task("training classifier", total=None) if progress else None

                def on_step(step: int, total: int, loss: float) -> None:
                    if progress:
                        progress.update(task, completed=step, total=total, description=f"training classifier (loss {loss:.3f})")

                start = time.perf_counter()
                history = train(
                    model, parts.dataset, config.train_split, config.recipe, device, on_step,
                    precision=config.precision, loader_workers=config.loader_workers,
                )
                meta = {"key": key, "loss_history": history, "train_seconds": time.perf_counter() - start}
                save_checkpoint(path, model.cpu(), meta)  # a read-only cache: said once, kept in memory
                meta = {**meta, "cached": False}
                if progress:
                    progress.remove_task(task)
    model.to(device).eval()
    return model, {"cached": True, **meta, "checkpoint": str(path), "output_stride": downsample_factor(model)}


def detect(config: RunConfig, parts: Components, model: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """With ``detect_by="saliency"``, the saliency method's own detection (present (B, C) bool,
    evidence (B, C)); else None (the classifier's scores decide)."""
    if config.detect_by != "saliency" or config.classes_from != "predicted":
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


def _compute(producer: Any, forward: Any, model: Classifier, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """A stage's maps (B, K, H, W) from the shared forward where the producer can use it."""
    if forward is not None and getattr(producer, "shares_forward", False) and getattr(forward, "rule", None) is not None:
        return producer.from_trace(forward, classes)
    if forward is not None and getattr(producer, "uses_forward", False):
        return producer.from_forward(model, forward, classes)
    return producer(model, x, classes)


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
    if cache is not None:
        with timer(f"{stage}:cached"):
            found = [cache.get(i, c) for i, c in zip(batch_ids, kept)]
        if all(f is not None for f in found):
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
        from wssbench.methods.saliency.backprop import record

        return record(model, x, **saliency.forward_spec(model))
    return contextlib.nullcontext(plain_forward(model, x))


def compute_maps(config: RunConfig, parts: Components, model: Classifier, ids: list[str], timer: Timer,
                 caches: dict[str, MapCache] | None = None) -> Iterator[ImageMaps]:
    """Classify each image, pick its classes, and compute (or read back) their maps, from one
    forward pass per batch."""
    caches = caches or {}
    saliency_cached = False  # did the last batch read every saliency map from the cache?
    for batch_ids, images, masks in batches(parts.dataset, ids, config.batch_size, config.loader_workers):
        gt_labels = torch.from_numpy(np.stack([parts.dataset.image_labels(i) for i in batch_ids]))  # (B, C)
        x = model.preprocess(images)  # (B, 3, H, W)
        # a batch whose saliency maps are likely cached needs no graph: guess from the last one
        record_graph = parts.saliency is not None and not saliency_cached
        with contextlib.ExitStack() as stack:
            with timer("forward"), autocast(x.device, config.precision):
                forward = stack.enter_context(forward_batch(model, x, parts.saliency, record_graph))
                scores = forward.scores.detach().float()  # (B, C)
                classes = select_classes(scores, gt_labels, config, detect(config, parts, model, x)).cpu().numpy()  # (B, K)
                kept = [c[c >= 0] for c in classes]  # (K_b,) each
                background = background_of(model, forward)
                scores = scores.cpu().numpy()  # one device sync per batch
            maps = {
                stage: stage_maps(stage, producer, caches.get(stage), model, x, classes, kept, batch_ids, timer,
                                  config.precision, forward)
                for stage, producer in (("classmap", parts.classmap), ("saliency", parts.saliency))
            }
        saliency_cached = maps["saliency"][1]
        for b, image_id in enumerate(batch_ids):
            yield ImageMaps(
                image_id, images[b], masks[b], kept[b] + 1,
                maps["classmap"][0][b], maps["saliency"][0][b], scores[b], gt_labels[b].numpy(),
                *((background[0][b], float(background[1][b])) if background else ()),
            )


def background_of(model: Classifier, forward: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """For a classifier with a background output (``model.background``): its per-pixel
    probability (B, H, W) (``pixel_probabilities``, row 0) and its pooled score (B,), from the
    batch's shared forward pass; else None."""
    if not getattr(model, "background", False):
        return None
    from wssbench.classifier.model import pixel_probabilities

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


def check_split(config: RunConfig, dataset: Any) -> list[str]:
    """The ids to segment, with a cheap check that their files exist (before any training)."""
    for split in (config.split, config.train_split):
        check = getattr(dataset, "check_split", None)
        if callable(check):
            check(split)  # an unknown split is a usage error, before any training
    ids = dataset.ids(config.split)[: config.limit]
    if not ids:
        raise DataError(f"split '{config.split}' of dataset '{config.dataset}' is empty")
    check = getattr(dataset, "check_files", None)
    if callable(check):
        check(ids)
    return ids


def prepare_run(config: RunConfig, parts: Components, timer: Timer, progress: Any = None, world: World = World()) -> tuple[Classifier, dict, list[str]]:
    """Make the data ready and the classifier trained; returns it, its info and this rank's ids."""
    with timer("data"), world.main_first():
        parts.dataset.prepare()
    ids = check_split(config, parts.dataset)
    with timer("classifier"), world.main_first():
        model, info = load_or_train(config, parts, torch.device(config.device), progress)
    if getattr(parts.classmap, "needs_fit", False):
        with timer("classmap_fit"), world.main_first():
            fit_progress = _fit_progress(progress, "fitting the class maps") if _takes(parts.classmap.fit, "progress") else None
            extra = {"progress": fit_progress} if fit_progress is not None else {}
            parts.classmap.fit(model, parts.dataset, config.train_split, Path(info["checkpoint"]).stem, **extra)
    return model, info, world.shard(ids)


def _takes(fn: Callable, name: str) -> bool:
    """Whether ``fn`` accepts keyword ``name`` (an optional capability of a plugin method)."""
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _fit_progress(progress: Any, description: str) -> Callable[[int, int], None] | None:
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
                caches: dict[str, MapCache] | None = None, pool: PredictPool | None = None) -> Iterator[Prediction]:
    """Every image's prediction, in order of completion: the network stages in this process,
    fusion and refinement in ``pool`` (inline when None) while the next batch is computed."""
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(PredictPool(parts.fusion, parts.refiners, 1))

        def finished(results: Iterator) -> Iterator[Prediction]:
            for maps, pred, seconds in results:
                for stage, s in seconds.items():
                    timer.seconds[stage] += s
                yield Prediction(maps.image_id, pred, maps)

        with timer(SEGMENT_WALL):  # all stages together, overlapping: the split's wall time
            for maps in compute_maps(config, parts, model, ids, timer, caches):
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
    cm = ConfusionMatrix(parts.dataset.num_classes)
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
        pool = stack.enter_context(PredictPool(parts.fusion, parts.refiners, config.workers))
        caches = map_caches(config, registry, Path(classifier_info["checkpoint"]).stem)
        for p in predictions(config, parts, model, ids, timer, caches, pool):
            with timer("evaluate"):
                cm.update(p.maps.mask, p.label_map)
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
        scores = [s for part in world.gather(all_scores) for s in part]
        labels = [label for part in world.gather(all_labels) for label in part]
        stats = merge_stats(world.gather(pool.stats()))
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
        record = build_record(
            config, parts, registry, cm, all_ids, classifier_info, timer.seconds, started, stats,
            world_size=world.size, map_cache={stage: str(cache.dir) for stage, cache in caches.items()},
            annotations=annotations,
        )
        if tmp is not None:
            write_json(tmp / "result.json", record)
    return record


def rank_dir(out: Path, world: World) -> Path:
    """Where a rank's masks go until rank 0 assembles the output folder."""
    return out.parent / f".{out.name}.masks-{world.rank}-of-{world.size}"
