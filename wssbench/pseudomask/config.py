"""The frozen description of a pseudo-mask run: the seeds (a seed run's config on the training
split with ground-truth image labels), the method that walks them, and the affinity network's
backbone; and the run's departures from its method's published recipe."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from wssbench.errors import UsageError
from wssbench.host.options import defaults
from wssbench.host.registry import Registry
from wssbench.seed.components import check as check_seeds
from wssbench.seed.config import RunConfig

STAGE = "pseudo-mask"

# What both authors compute their seeds with (modern-methods.md sections 1-2): CAMs of the image's
# own classes at scales 1.0, 0.5, 1.5 and 2.0 with their flips, summed and max-normalised per class.
PUBLISHED_SEEDS = {"classmap": "cam", "scales": "1.0,0.5,1.5,2.0", "flip": True}
PUBLISHED_BACKBONE = {"psa": "ResNet-38 (ImageNet)", "irn": "ResNet-50 (ImageNet)"}
# The timm model that is the published backbone (ResNet-38 has none): with ImageNet weights it is no
# deviation. Which ImageNet weights (torchvision's, as IRN's) is not checked.
PUBLISHED_MODEL = {"irn": "resnet50"}


@dataclass(frozen=True)
class PseudoMaskConfig:
    seeds: RunConfig  # the seed run on the training split (classes from the ground-truth labels)
    method: str = "psa"
    options: tuple[tuple[str, Any], ...] = ()  # (key, value) of the method, sorted
    backbone: str | None = None  # the affinity network's timm model; None: the classifier's
    weights: str | None = None  # its ImageNet checkpoint; None: the classifier's
    pretrained: bool | None = None  # download its ImageNet weights; None: as the classifier
    fit_split: str | None = None  # the split whose seeds the method learns from; None: the split it walks

    def __post_init__(self) -> None:
        if self.seeds.classes_from != "labels":
            raise UsageError("pseudo-masks start from the seeds of the ground-truth image labels (--classes-from labels)")
        if self.seeds.classmap is None:
            raise UsageError("--seeds: pseudo-masks walk class maps; choose one (e.g. --classmap cam)")
        if self.seeds.saliency is not None:
            raise UsageError(f"--seeds: the walk reads the class maps only; add --saliency none (got '{self.seeds.saliency}')")
        object.__setattr__(self, "options", tuple(sorted(self.options)))

    @property
    def affinity_backbone(self) -> tuple[str, str | None, bool]:
        """(timm model, weights file, pretrained) of the affinity network: the user's, else the classifier's."""
        _, model = self.seeds.backbone_provider
        weights = self.weights if self.weights is not None else (self.seeds.weights if self.backbone is None else None)
        pretrained = self.pretrained if self.pretrained is not None else (self.seeds.pretrained and self.backbone is None)
        return self.backbone or model, weights, bool(pretrained)

    def to_dict(self) -> dict[str, Any]:
        model, weights, pretrained = self.affinity_backbone
        return {"method": self.method, "options": dict(self.options), "backbone": model, "weights": weights,
                "pretrained": pretrained, "fit_split": self.learns_from, "seeds": self.seeds.to_dict()}

    @property
    def learns_from(self) -> str:
        """The split whose seeds train the affinity network."""
        return self.fit_split or self.seeds.split


def check(config: PseudoMaskConfig, registry: Registry) -> PseudoMaskConfig:
    """The method's name and options checked against the registry, values converted to their types."""
    converted = registry.parse_options("pseudomask", config.method, dict(config.options))
    return dataclasses.replace(config, options=tuple(converted.items()))


def check_all(config: PseudoMaskConfig, registry: Registry) -> PseudoMaskConfig:
    """The seeds and the method checked against the registry (nothing built, nothing trained), the
    method created once so that its own checks (a crop too small for its radius) fail here."""
    config = check(dataclasses.replace(config, seeds=check_seeds(config.seeds, registry)), registry)
    registry.create("pseudomask", config.method, **dict(config.options))
    return config


def deviations(config: PseudoMaskConfig, registry: Registry) -> list[dict]:
    """Where the run departs from its method's released recipe: every option set to another value
    than its default (the authors'), the backbone, and seeds other than multi-scale CAMs."""
    out = []
    published = defaults(registry.get("pseudomask", config.method).factory)
    for key, value in config.options:
        if key in published and value != published[key]:
            out.append({"option": f"pseudomask.{key}", "published": published[key], "used": value})
    model, weights, pretrained = config.affinity_backbone
    initial = "ImageNet" if weights or pretrained else "random"
    if config.method in PUBLISHED_BACKBONE and (model, initial) != (PUBLISHED_MODEL.get(config.method), "ImageNet"):
        out.append({"option": "backbone", "published": PUBLISHED_BACKBONE[config.method], "used": f"{model} ({initial})"})
    classmap = config.seeds.options_for("classmap")  # checked: values of their declared types
    used = {"classmap": config.seeds.classmap, "scales": _scales(classmap.get("scales", "1.0")),
            "flip": bool(classmap.get("flip", False))}
    for key, value in PUBLISHED_SEEDS.items():
        if used[key] != (_scales(value) if key == "scales" else value):
            out.append({"option": f"seeds.{key}", "published": value, "used": used[key]})
    return out


def _scales(text: Any) -> str:
    """A scales option as one canonical text: sorted floats, e.g. ``"0.5,1.0,1.5,2.0"``."""
    return ",".join(str(s) for s in sorted(float(v) for v in str(text).split(",")))
