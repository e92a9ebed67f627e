"""The result record of a segmentation-network run: ``stage`` "segmentation", with the
pseudo-masks' own score (stage "pseudo-mask") beside it when the network was trained on them."""

from __future__ import annotations

import time
from typing import Any

from wssbench.host.options import defaults
from wssbench.results.metrics import ConfusionMatrix
from wssbench.results.references import SEGMENTATION
from wssbench.seed.presets import unverified
from wssbench.seed.record import RECORD_VERSION, versions
from wssbench.segmentation.presets import SEGMENT_PRESETS, segment_deviations
from wssbench.segmentation.stc import SCHEDULES
from wssbench.storage.cache import package_version

STAGE = "segmentation"


def _nan_to_none(x: float) -> float | None:
    return None if x != x else float(x)


def describe(config: Any, registry: Any) -> dict:
    """Each component (dataset, segnet, objective, crf, and a schedule other than ``single``)
    with its plugin and full options."""
    chosen = [("dataset", "dataset", config.dataset), ("segnet", "segnet", config.segnet),
              ("objective", "objective", config.objective)]
    if config.crf:
        chosen.append(("crf", "refiner", "densecrf"))
    out = {}
    for stage, kind, name in chosen:
        entry = registry.get(kind, name)
        options = {**defaults(entry.factory), **config.options_for(stage)}
        out[stage] = {"kind": kind, "name": name, "plugin": entry.plugin, "options": options}
    if config.schedule != "single":

        options = {**defaults(SCHEDULES[config.schedule]), **config.options_for("schedule")}
        out["schedule"] = {"kind": "schedule", "name": config.schedule, "plugin": "wssbench", "options": options}
    return out


def method(config: Any, pseudo: dict | None) -> str:
    """The row label: the preset, else ``segnet/objective[/schedule]``, and the pseudo-masks' method."""
    schedule = "" if config.schedule == "single" else f"/{config.schedule}"
    label = config.preset or f"{config.segnet}/{config.objective}{schedule}"
    return f"{label} on {pseudo['method']}" if pseudo else label


def priors(config: Any, schedule: Any = None) -> list[dict]:
    """What entered the run besides image labels (the leaderboard's badges): the encoder's
    ImageNet weights, and what the schedule declares (STC's salient-object detector)."""
    out = []
    if config.options_for("segnet").get("pretrained") or config.weights:
        out.append({"mark": "I", "what": f"ImageNet weights of {config.options_for('segnet').get('encoder', 'the encoder')}"})
    out += [dict(p) for p in getattr(schedule, "priors", ())]
    return out


def build_record(config: Any, registry: Any, names: list[str], cm: ConfusionMatrix, n_images: int, training: dict,
                 pseudo: dict | None, timings: dict, started: float, world_size: int, backbone: str | None,
                 schedule: Any = None) -> dict:
    result = cm.compute()
    return {
        "record_version": RECORD_VERSION,
        "stage": STAGE,
        "method": method(config, pseudo),
        "backbone": backbone,
        "dataset": config.dataset,
        "split": config.split,
        "protocol": SEGMENTATION,
        "n_images": n_images,
        "miou": _nan_to_none(result.miou),
        "per_class_iou": {name: _nan_to_none(v) for name, v in zip(names, result.iou)},
        "pixel_accuracy": _nan_to_none(result.pixel_accuracy),
        "confusion_matrix": cm.matrix.tolist(),
        "inference": {"scales": list(config.scales), "multiscale": len(config.scales) > 1, "flip": config.flip, "crf": config.crf},
        "pseudo_masks": pseudo,
        "deviations": segment_deviations(config, registry),
        "priors": priors(config, schedule),
        "unverified": unverified(config, SEGMENT_PRESETS),  # the preset's options chosen where the source could not be checked
        "config": config.to_dict(),
        "components": describe(config, registry),
        "training": training,
        "timings": {"total_seconds": time.time() - started, "stages_seconds": dict(timings),
                    "per_image_ms": {"segment": 1000.0 * timings.get("segment", 0.0) / max(1, n_images)}},
        "world_size": world_size,
        "versions": {**versions(), "segmentation-models-pytorch": _smp_version()},
        "seed": config.seed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _smp_version() -> str | None:

    return package_version("segmentation-models-pytorch")
