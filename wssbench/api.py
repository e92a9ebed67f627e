"""The Python API: a run as a library, without the command line.

    import wssbench

    pipe = wssbench.Pipeline(saliency="gbp", classmap="fcn", options={"dataset.preset": "tiny"})
    record = pipe.run()                       # the result record (mIoU, ...); no files written
    record = pipe.run(out="runs/fcn-gbp")     # the same, with result.json and masks/ written
    for p in pipe.predictions(limit=4):       # per image: id, label map (H, W), maps
        print(p.image_id, p.label_map.shape, p.maps.labels)

    model = wssbench.create_classifier("resnet18", num_classes=20, pooling="gmp")

``Pipeline`` takes the keyword arguments of :func:`wssbench.seed.config.build_config` (the names of
``wssbench run``'s options), or a ready :class:`~wssbench.seed.config.RunConfig`, or
``Pipeline.from_record("result.json")``. The command line, ``bench`` and the benchmark scripts
call this same path.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterator

from wssbench.host.registry import default_registry
from wssbench.runtime.timer import Timer
from wssbench.seed.classifier import create_classifier as create
from wssbench.seed.components import resolve
from wssbench.seed.config import RunConfig, build_config, config_from_record
from wssbench.seed.maps import map_caches
from wssbench.seed.run import check_split, predictions, prepare_run
from wssbench.seed.run import run as run_seed
from wssbench.segmentation.describe import build_segment_config, is_segment_preset
from wssbench.segmentation.run import segment


def create_classifier(backbone: str, num_classes: int, pooling: str = "gap", pretrained: bool = False,
                      weights: str | None = None, seed: int = 0, registry: Any = None, **backbone_options: Any):
    """The classifier the pipeline uses: a ``[PROVIDER:]MODEL`` backbone, a 1x1 class head of
    ``num_classes`` outputs and global ``pooling`` (``gap``, ``gmp``, ``lse``), timm-style.

    ``model(images) -> scores (B, C)``, ``model.score_maps(images) -> (B, C, h, w)``; the
    random initialisation is drawn from ``seed``.
    """
    registry = registry or default_registry()
    provider_name, _, model_name = backbone.rpartition(":")
    provider = registry.create("backbone", provider_name or "timm", **backbone_options)
    return create(provider, model_name, num_classes, pooling, pretrained, weights, seed)


class Pipeline:
    """One run: its checked config, its components, its trained classifier; run or iterate."""

    def __init__(self, config: RunConfig | None = None, *, registry: Any = None, **description: Any):

        if config is not None and description:
            raise TypeError("Pipeline: pass a RunConfig or keyword arguments, not both")
        self.registry = registry or default_registry()
        self.config, self.components = resolve(config or build_config(description), self.registry)
        self._prepared: tuple | None = None

    @classmethod
    def from_record(cls, path: str | os.PathLike, registry: Any = None, **overrides: Any) -> "Pipeline":
        """The pipeline of a run recorded in ``result.json`` (``overrides`` win)."""
        return cls(config_from_record(path, **overrides), registry=registry)

    @property
    def model(self):
        """The trained classifier (trained, or read from the cache, on first use)."""
        return self.prepare()[0]

    def prepare(self, progress: Any = None) -> tuple:
        """Make the data ready, train (or load) the classifier and fit what needs fitting."""
        if self._prepared is None:
            self._prepared = prepare_run(self.config, self.components, Timer(), progress)
        return self._prepared

    def run(self, out: str | os.PathLike | None = None, progress: Any = None, annotations: dict | None = None) -> dict:
        """Segment and score the split; the result record. With ``out``, also write it there."""
        return run_seed(self.config, self.registry, Path(out) if out is not None else None, progress,
                   self.components, annotations)

    def predictions(self, split: str | None = None, limit: int | None = None) -> Iterator[Any]:
        """Each image's :class:`~wssbench.seed.maps.Prediction` (image id, label map, maps), in the
        order they finish; nothing is written."""

        model, info, _ = self.prepare()
        config = dataclasses.replace(self.config, split=split or self.config.split, limit=limit or self.config.limit)
        ids = check_split(config, self.components.dataset)
        caches = map_caches(config, self.registry, Path(info["checkpoint"]).stem)
        yield from predictions(config, self.components, model, ids, Timer(), caches)


def run(description: dict | None = None, *, out: str | os.PathLike | None = None, registry: Any = None,
        progress: Any = None, **kwargs: Any) -> dict:
    """Run one method described as ``wssbench run`` takes it and return its record; with
    ``out``, also write it (record, counts, masks). The stage follows the description: a
    segmentation preset (``em-adapt``, ``ccnn``, ``stc``) or segmentation-network keys
    (``segnet``, ``objective``, ``schedule``, ``masks``) train and score a segmentation network
    (stage 2); anything else is a seed run (stage 1, :class:`Pipeline`)."""
    given = {**(description or {}), **kwargs}
    registry = registry or default_registry()
    out = Path(out) if out is not None else None
    if is_segment_preset(given.get("preset")) or any(k in given for k in SEGMENT_KEYS):
        return segment(build_segment_config(given), registry, out, progress)
    return Pipeline(**given, registry=registry).run(out, progress)


SEGMENT_KEYS = ("segnet", "objective", "schedule", "masks")  # description keys only stage 2 has
