"""Saliency evaluation over a dataset split: every metric for one method, as one record.

Per image, the classes evaluated are its ground-truth image labels (the pointing game's
protocol: the category is the cue), each with the method's map at the input resolution.
A class whose every pixel is "ignore" (no region) is skipped by the region metrics.

* ``pointing``, ``pointing_difficult``: mean over classes of the per-class hit rate
  (:mod:`.localisation`).
* ``energy``: mean over (image, class) pairs of the map's share inside the class region.
* ``deletion``, ``insertion``: mean over (image, class) pairs of the AUC of the sigmoid
  probability curve (:mod:`.causal`; RISE reports the mean over its images).
* ``sanity``: cascading randomisation on the first ``sanity_images`` images with a class (:mod:`.sanity`):
  the mean rank correlation per cascade step and the summary ``rho_mean`` / ``rho_final``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from wssbench.errors import UsageError
from wssbench.evaluation.causal import STEPS, deletion, insertion
from wssbench.evaluation.localisation import TOLERANCE, PointingGame, bounding_box, energy_inside
from wssbench.evaluation.sanity import SanityResult, sanity_check

METRICS = ("pointing", "energy", "deletion", "insertion", "sanity")


@dataclass(frozen=True)
class EvalOptions:
    """What to measure and how; saved in the record."""

    metrics: tuple[str, ...] = METRICS
    tolerance: float = TOLERANCE  # pointing game, pixels
    energy_box: bool = False  # energy inside the class's bounding box (Score-CAM) instead of its mask
    steps: int = STEPS  # deletion / insertion steps
    deletion_baseline: str = "zero"
    insertion_baseline: str = "blur"
    batch_size: int = 32  # images per forward pass of deletion / insertion
    sanity_images: int = 8  # the sanity check runs on the first N images (it recomputes the maps per layer)
    seed: int = 0  # randomisation of the sanity check

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise UsageError(f"--metrics: unknown metric '{unknown[0] if unknown else ''}'; available: {', '.join(METRICS)}")


def evaluate_saliency(model: Any, method: Callable, dataset: Any, ids: list[str], options: EvalOptions = EvalOptions(),
                      on_image: Callable[[], None] | None = None) -> dict:
    """Every metric in ``options.metrics`` for ``method`` over the images ``ids``; a JSON-able dict."""
    wanted = set(options.metrics)
    game = PointingGame(model.num_classes, options.tolerance)
    energy, deleted, inserted, sanity = [], [], [], []
    for image_id in ids:
        image, mask = dataset.load_pair(image_id)  # (H, W, 3) uint8, (H, W) uint8
        classes = np.flatnonzero(dataset.image_labels(image_id))  # (K,)
        if len(classes):
            x = model.preprocess([image])  # (1, 3, H, W)
            cls = torch.from_numpy(classes)[None].to(x.device)  # (1, K)
            maps = method(model, x, cls).detach().float().cpu().numpy()[0]  # (K, H, W)
            for saliency, c in zip(maps, classes.tolist()):
                region = mask == c + 1  # (H, W)
                if region.any() and "pointing" in wanted:
                    game.update(saliency, mask, c)
                if region.any() and "energy" in wanted:
                    energy.append(energy_inside(saliency, bounding_box(region) if options.energy_box else region))
                if "deletion" in wanted:
                    deleted.append(deletion(model, x[0], saliency, c, options.steps, options.deletion_baseline, options.batch_size)[0])
                if "insertion" in wanted:
                    inserted.append(insertion(model, x[0], saliency, c, options.steps, options.insertion_baseline, options.batch_size)[0])
            if "sanity" in wanted and len(sanity) < options.sanity_images:
                sanity.append(sanity_check(model, method, x, cls, seed=options.seed))
        if on_image:
            on_image()
    metrics: dict[str, Any] = {}
    if "pointing" in wanted:
        metrics["pointing"] = _finite(game.accuracy())
        metrics["pointing_difficult"] = _finite(game.accuracy(difficult=True))
        metrics["pointing_tested"] = int((game.hits + game.misses).sum())
        metrics["pointing_difficult_tested"] = int((game.difficult_hits + game.difficult_misses).sum())
        metrics["pointing_per_class"] = dict(zip(dataset.classes[1:], game.class_accuracies()))
    for name, values in (("energy", energy), ("deletion", deleted), ("insertion", inserted)):
        if name in wanted:
            metrics[name] = _finite(float(np.mean(values))) if values else None
    if "sanity" in wanted and sanity:
        result = SanityResult.concatenate(sanity)
        metrics["sanity"] = {**result.summary(), "maps": result.rank_abs.shape[1], "layers": result.table()}
    return {"metrics": metrics, "options": asdict(options) | {"metrics": list(options.metrics)}}


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def leaderboard_columns(record: dict) -> dict[str, dict[str, float | str | None]]:
    """A saliency-eval record (``wssbench saliency-eval --json``) -> per method label, its
    leaderboard columns: ``pointing``, ``pointing_difficult``, ``energy``, ``deletion``,
    ``insertion`` (fractions in [0, 1]), ``sanity_rho`` (mean rank correlation over the
    cascade; high = the maps ignore the weights) and ``sanity`` ("fail" when ``sanity_rho``
    is at least ``SANITY_FAIL_RHO``, else "pass"). Metrics not measured are left out."""
    out = {}
    for label, entry in record["methods"].items():
        m = entry["metrics"]
        columns = {k: m[k] for k in ("pointing", "pointing_difficult", "energy", "deletion", "insertion") if k in m}
        if "sanity" in m:
            rho = m["sanity"]["rho_mean"]
            columns["sanity_rho"] = rho
            columns["sanity"] = "fail" if rho >= SANITY_FAIL_RHO else "pass"
        out[label] = columns
    return out


# Where the mean rank correlation over the cascade says "the maps do not depend on the
# weights". Adebayo et al. give no threshold; 0.5 sits between what they show for gradients
# (falling towards 0 within a few layers) and guided back-propagation (staying high).
SANITY_FAIL_RHO = 0.5


def columns_for_run(saliency_record: dict, run_record: dict) -> dict[str, float | str | None] | None:
    """The leaderboard columns of ``saliency_record`` that belong to the row of ``run_record``
    (a ``wssbench run`` result), or None: the same trained classifier (checkpoint file name,
    a hash of everything that determines its weights) and the same saliency method with the
    same options (the run's ``components.saliency`` against the evaluated method's)."""
    checkpoint = (run_record.get("classifier") or {}).get("checkpoint")
    saliency = (run_record.get("components") or {}).get("saliency")
    if not checkpoint or not saliency or Path(checkpoint).name != Path(saliency_record["classifier"]["checkpoint"]).name:
        return None
    columns = leaderboard_columns(saliency_record)
    for label, entry in saliency_record["methods"].items():
        if entry["kind"] == "saliency" and entry["name"] == saliency["name"] and _same(entry["options"], saliency["options"]):
            return columns[label]
    return None


def _same(a: dict, b: dict) -> bool:
    return json.loads(json.dumps(a, sort_keys=True)) == json.loads(json.dumps(b, sort_keys=True))
