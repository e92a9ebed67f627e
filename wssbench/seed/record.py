"""The result record of a run: what was run, what it scored, how long it took, with what."""

from __future__ import annotations

import platform
import time
from typing import Any

from wssbench.host.options import defaults
from wssbench.results.counts import ImageCounts
from wssbench.results.curve import CurveAccumulator
from wssbench.results.diagnostics import diagnostics
from wssbench.results.metrics import ConfusionMatrix
from wssbench.results.uncertainty import percentile_interval
from wssbench.seed.presets import deviations, unverified
from wssbench.storage.cache import fingerprint, package_version

RECORD_VERSION = 1
PACKAGES = ("wssbench", "torch", "timm", "numpy", "scikit-image", "scikit-learn", "pydensecrf2", "pulp", "pluggy")


def versions(plugins: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Python's and the packages' versions, with every plugin distribution named in ``plugins``."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in (*PACKAGES, *sorted(set(plugins) - set(PACKAGES))):
        out[name] = package_version(name)
    return out


def _nan_to_none(x: float) -> float | None:
    return None if x != x else float(x)


def describe_components(config: Any, registry: Any) -> dict[str, Any]:
    """Each chosen component with the plugin that registered it and its full options."""
    out: dict[str, Any] = {}
    for stage, (kind, name) in config.components().items():
        if name is None:
            out[stage] = None
            continue
        entry = registry.get(kind, name)
        opts = {k: v for k, v in defaults(entry.factory).items()}
        opts.update(config.options_for(stage))
        out[stage] = {"kind": kind, "name": name, "plugin": entry.plugin, "options": opts}
    return out


ONCE_PER_RUN = ("data", "checks", "classifier", "classmap_fit")  # timer stages that do not scale with the images


def build_record(config, parts, registry, cm: ConfusionMatrix, ids, classifier, timings, started: float, stats: dict,
                 world_size: int = 1, map_cache: dict | None = None, annotations: dict | None = None,
                 counts: ImageCounts | None = None, samples=None, curve: CurveAccumulator | None = None,
                 counts_file: str | None = None, prediction_cache: dict | None = None) -> dict:
    """The result record of a run, made here and only here. ``annotations`` (a bench row's
    label, tuning and published number) are added as they are; ``counts`` (per image), their
    bootstrap ``samples`` and the threshold ``curve`` add the uncertainty, the diagnostics and the
    threshold-free summary (:mod:`wssbench.results`); ``counts_file`` names the file they are
    written to beside the record."""
    result = cm.compute()
    components = describe_components(config, registry)
    per_image = {k: v for k, v in timings.items() if k not in ONCE_PER_RUN}  # stages that scale with the images
    names = parts.dataset.classes
    n = len(ids)
    return {
        "record_version": RECORD_VERSION,
        "stage": "seed",  # maps of the pipeline; "pseudo-mask" and "segmentation" come from ``wssbench segment``
        "dataset": config.dataset,
        "split": config.split,
        "protocol": config.protocol,
        "n_images": n,
        "miou": _nan_to_none(result.miou),
        "per_class_iou": {name: _nan_to_none(v) for name, v in zip(names, result.iou)},
        "pixel_accuracy": _nan_to_none(result.pixel_accuracy),
        "confusion_matrix": cm.matrix.tolist(),
        "config": config.to_dict(),
        # from the preset's published recipe (empty without a preset); options a bench tuned are its protocol
        "deviations": deviations(config, registry, tuned=((annotations or {}).get("tuning") or {}).get("chosen") or {}),
        "unverified": unverified(config),  # the preset's options chosen where the source could not be checked
        "components": components,
        "classifier": classifier,
        "component_stats": stats,
        "timings": {
            "total_seconds": time.time() - started,
            "stages_seconds": dict(timings),
            "per_image_ms": {k: 1000.0 * v / n for k, v in per_image.items()},
            "maps_from_cache": {s: s + ":cached" in timings and s not in timings for s in ("classmap", "saliency")},
            # throughput: images per second of each stage on its own (pooled stages: per worker),
            # and of the whole loop, where the CPU stages overlap the network's next batch
            "images_per_second": {k: n / v for k, v in per_image.items() if v > 0},
        },
        "versions": versions(tuple(c["plugin"] for c in components.values() if c)),
        "seed": config.seed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "world_size": world_size,
        "map_cache": map_cache or {},  # for 'wssbench show'
        # label maps read back instead of fused and refined again (a resumed run); 'stats' cover the rest
        **({"prediction_cache": prediction_cache} if prediction_cache is not None else {}),
        "priors": priors(config, parts),
        **uncertainty(counts, samples, counts_file, names),
        **(curve.summary() if curve is not None else {}),
        **(annotations or {}),
    }


def uncertainty(counts: ImageCounts | None, samples, counts_file: str | None, classes) -> dict:
    """The record's ``counts`` (where the per-image counts are and on which images), the run's
    own 95 % image-bootstrap interval ``ci95`` and its error ``diagnostics``."""
    if counts is None:
        return {}
    out = {"counts": {"file": counts_file, "ids_digest": fingerprint(sorted(counts.ids)), "n_images": len(counts.ids),
                      "resamples": None if samples is None else len(samples)},
           "diagnostics": diagnostics(counts, list(classes))}
    if samples is not None:
        out["ci95"] = list(percentile_interval(samples))
    return out


def priors(config, parts) -> list[dict]:
    """What entered the run besides the training images' labels (the leaderboard's badges):
    pretrained weights, and what any component declares as its ``priors`` (``{"mark", "what"}``:
    e.g. a detector trained with pixel masks)."""
    out = []
    provider = parts.model if getattr(parts.model, "trained", False) else None
    if config.pretrained or config.weights or provider is not None:
        out.append({"mark": "I", "what": f"ImageNet weights of {config.backbone}"})
    components = [parts.saliency, parts.classmap, parts.fusion, *(r for _, r in parts.refiners)]
    for component in components:
        declared = getattr(component, "priors", None)
        for prior in ([declared] if isinstance(declared, dict) else list(declared or ())):
            if prior not in out:
                out.append(dict(prior))
    return out
