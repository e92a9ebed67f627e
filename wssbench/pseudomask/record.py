"""The result record of a pseudo-mask run: stage ``pseudo-mask``, scored on the split it made
masks for (the training split, with ground-truth image labels), so that the leaderboard keeps
it apart from seeds and from segmentation networks."""

from __future__ import annotations

import time
from typing import Any

from wssbench.host.options import defaults
from wssbench.pseudomask.config import STAGE, PseudoMaskConfig, deviations
from wssbench.results.counts import ImageCounts
from wssbench.results.metrics import ConfusionMatrix
from wssbench.seed.labels import as_text
from wssbench.seed.record import RECORD_VERSION, describe_components, uncertainty, versions


def _nan_to_none(x: float) -> float | None:
    return None if x != x else float(x)


SEED_STAGES = ("dataset", "backbone", "classmap")  # what of the seed run the walk reads


def method(config: PseudoMaskConfig) -> str:
    """The row label: the method and the seeds' class maps, each with the options set, e.g.
    ``psa [epochs=2] on cam [scales=1.0,0.5,1.5,2.0, flip=true]``."""

    def named(name: str, options: dict) -> str:
        listed = ", ".join(f"{k}={as_text(v)}" for k, v in options.items())
        return f"{name} [{listed}]" if listed else name

    return f"{named(config.method, dict(config.options))} on {named(str(config.seeds.classmap), config.seeds.options_for('classmap'))}"


def priors(config: PseudoMaskConfig) -> list[dict]:
    """ImageNet weights of the classifier and of the affinity network, where they were used."""
    out = []
    seeds = config.seeds
    if seeds.pretrained or seeds.weights:
        out.append({"mark": "I", "what": f"ImageNet weights of {seeds.backbone}"})
    model, weights, pretrained = config.affinity_backbone
    if (weights or pretrained) and model != seeds.backbone_provider[1]:
        out.append({"mark": "I", "what": f"ImageNet weights of {model} (affinity network)"})
    return out


def build_record(config: PseudoMaskConfig, parts: Any, registry: Any, cm: ConfusionMatrix, n_images: int, classifier: dict,
                 training: dict, timings: dict, started: float, counts: ImageCounts, samples: Any, counts_file: str | None,
                 seeds: dict) -> dict:
    result = cm.compute()
    names = parts.dataset.classes
    entry = registry.get("pseudomask", config.method)
    model, _, _ = config.affinity_backbone
    return {
        "record_version": RECORD_VERSION,
        "stage": STAGE,
        "method": method(config),
        "backbone": model,
        "dataset": config.seeds.dataset,
        "split": config.seeds.split,
        "protocol": config.seeds.protocol,
        "n_images": n_images,
        "miou": _nan_to_none(result.miou),
        "per_class_iou": {name: _nan_to_none(v) for name, v in zip(names, result.iou)},
        "pixel_accuracy": _nan_to_none(result.pixel_accuracy),
        "confusion_matrix": cm.matrix.tolist(),
        # the seed run's description (what the leaderboard groups and labels by), and the walk's
        "config": {**config.seeds.to_dict(), "pseudomask": {k: v for k, v in config.to_dict().items() if k != "seeds"}},
        "deviations": deviations(config, registry),
        "code_over_paper": list(getattr(entry.factory, "code_over_paper", ())),  # the authors' code followed where it departs
        "components": {
            "pseudomask": {"kind": "pseudomask", "name": config.method, "plugin": entry.plugin,
                           "options": {**defaults(entry.factory), **dict(config.options)}},
            **{k: v for k, v in describe_components(config.seeds, registry).items() if k in SEED_STAGES},
        },
        "classifier": classifier,
        "seeds": seeds,
        "training": training,
        "timings": {"total_seconds": time.time() - started, "stages_seconds": dict(timings),
                    "per_image_ms": {k: 1000.0 * v / max(1, n_images) for k, v in timings.items() if k in ("walk", "classmap")}},
        "versions": versions((entry.plugin,)),
        "seed": config.seeds.seed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "world_size": 1,
        "priors": priors(config),
        **uncertainty(counts, samples, counts_file, names),
    }
