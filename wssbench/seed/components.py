"""A seed run's components: every name and option checked against the registry, then created.

Everything a user can get wrong on the command line fails here, before any work starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from wssbench.classifier.model import Classifier
from wssbench.errors import OfflineError, UsageError
from wssbench.host.registry import Registry
from wssbench.seed.classifier import build_classifier
from wssbench.seed.config import RunConfig

NETWORK_STAGES = ("classmap", "saliency")


@dataclass
class Components:
    dataset: Any
    model: Classifier  # untrained until ``load_or_train``
    saliency: Any
    classmap: Any
    fusion: Any
    refiners: list[tuple[str, Any]]
    train_dataset: Any = None  # where the classifier trains when not on ``dataset`` (--train-dataset)

    @property
    def training(self) -> Any:
        """The dataset the classifier (and a class-map producer that fits) learns from."""
        return self.train_dataset if self.train_dataset is not None else self.dataset


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
    train_dataset = make("train_dataset", root=config.train_data_root) if config.train_dataset else None
    if train_dataset is not None and list(train_dataset.classes) != list(dataset.classes):
        raise UsageError(f"--train-dataset {config.train_dataset}: its {len(train_dataset.classes)} classes are not dataset "
                         f"{config.dataset}'s {len(dataset.classes)} ({', '.join(dataset.classes[1:4])}, ...); a classifier scores "
                         f"the classes it learned (e.g. -O train_dataset.classes=voc for coco)")
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
        train_dataset=train_dataset,
    )
    return config, components
