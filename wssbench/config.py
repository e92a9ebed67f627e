"""The frozen description of one run: printed at start, saved in the result record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError
from .precision import check_precision
from .references import SEED_QUALITY, SEGMENTATION
from .training import TrainRecipe

# Stages whose component options can be set with ``-O STAGE.KEY=VALUE``.
STAGES = ("dataset", "backbone", "saliency", "classmap", "fusion")


@dataclass(frozen=True)
class RunConfig:
    preset: str | None = None  # the named method these options came from, if any
    dataset: str = "synthetic"
    data_root: str | None = None
    split: str = "val"
    train_split: str = "train"
    backbone: str = "resnet10t"  # [PROVIDER:]MODEL, provider "timm" by default
    pooling: str = "gap"
    pretrained: bool = False
    weights: str | None = None
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    saliency: str | None = "gbp"
    classmap: str | None = "fcn"
    fusion: str = "threshold"
    refine: tuple[str, ...] = ("densecrf",)
    # (stage or refiner name, key, value), sorted; see ``options_for``
    options: tuple[tuple[str, str, Any], ...] = ()
    classes_from: str = "predicted"  # "predicted" (segmentation) or "labels" (seed quality)
    score_threshold: float = 0.5  # sigmoid score for a class to count as present
    max_classes: int = 3  # at most this many classes per image (the top-scoring ones)
    batch_size: int = 8
    precision: str = "fp32"  # network stages: fp32, bf16 or fp16 (autocast; see ``precision``)
    loader_workers: int = 0  # DataLoader processes reading images ahead of the network
    cache_maps: bool = True  # read class and saliency maps back from the map cache
    workers: int = 1  # processes for fusion and refinement (1 = in the main process)
    limit: int | None = None  # evaluate only the first N images of the split
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.classes_from not in ("predicted", "labels"):
            raise UsageError(f"--classes-from: expected 'predicted' or 'labels', got '{self.classes_from}'")
        if not 0.0 < self.score_threshold < 1.0:
            raise UsageError(f"--score-threshold: expected a value in (0, 1), got {self.score_threshold}")
        check_precision(self.precision, self.device)
        if self.loader_workers < 0:
            raise UsageError(f"--loader-workers: expected 0 or more, got {self.loader_workers}")
        if self.max_classes < 1:
            raise UsageError(f"--max-classes: expected at least 1, got {self.max_classes}")
        if self.saliency is None and self.classmap is None and self.fusion != "background":
            raise UsageError("--saliency and --classmap cannot both be 'none' (use --fusion background)")
        stages = set(STAGES) | set(self.refine)
        for stage, key, _ in self.options:
            if stage not in stages:
                raise UsageError(
                    f"-O {stage}.{key}: '{stage}' is neither a stage ({', '.join(STAGES)}) nor a chosen refiner"
                    f" ({', '.join(self.refine) or 'none'})"
                )
        object.__setattr__(self, "options", tuple(sorted(self.options, key=lambda o: (o[0], o[1]))))

    @property
    def backbone_provider(self) -> tuple[str, str]:
        provider, _, model = self.backbone.rpartition(":")
        return (provider or "timm"), model

    @property
    def protocol(self) -> str:
        return SEED_QUALITY if self.classes_from == "labels" else SEGMENTATION

    def options_for(self, stage: str) -> dict[str, Any]:
        return {key: value for s, key, value in self.options if s == stage}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        options: dict[str, dict[str, Any]] = {}
        for stage, key, value in self.options:
            options.setdefault(stage, {})[key] = value
        data["options"] = options
        data["refine"] = list(self.refine)
        return data


def parse_option_strings(values: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """``("fusion.bg_threshold=0.3", ...)`` -> ``(("fusion", "bg_threshold", "0.3"), ...)``."""
    out = []
    for text in values:
        target, eq, value = text.partition("=")
        stage, dot, key = target.partition(".")
        if not (eq and dot and stage and key):
            raise UsageError(f"-O {text}: expected STAGE.KEY=VALUE, e.g. -O fusion.bg_threshold=0.3")
        out.append((stage, key, value))
    return tuple(out)
