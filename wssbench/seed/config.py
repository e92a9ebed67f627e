"""The frozen description of one run, and the one function that builds it.

Every way of describing a run ends in :func:`build_config`: command-line flags, a row of a bench
TOML file (merged over its ``[defaults]``), a preset, a ``result.json`` written earlier, or keyword
arguments in Python. Defaults live here and only here: the fields of :class:`RunConfig` and of
:class:`~wssbench.classifier.training.TrainRecipe`.

A description is a flat mapping of run option names (those of ``wssbench run``, with
underscores)::

    {"preset": "dcsm", "dataset": "synthetic", "epochs": 5, "refine": ["densecrf"],
     "options": {"fusion.bg_threshold": 0.3}}

``options`` may be a list of ``"STAGE.KEY=VALUE"`` strings, a mapping ``{"STAGE.KEY": VALUE}``
(bench files) or ``{"STAGE": {"KEY": VALUE}}`` (records); ``recipe`` may be given whole as a
mapping (records). ``none`` (or ``None``) turns an optional stage off: ``saliency``,
``classmap``, and ``refine`` (no refiner at all).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wssbench.classifier.training import TrainRecipe, backbone_recipe
from wssbench.engine.description import coerce, merge, option_triples, resolve_device
from wssbench.errors import DataError, UsageError
from wssbench.results.references import SEED_QUALITY, SEGMENTATION
from wssbench.seed.keys import OPTIONAL_STAGES, RECIPE_KEYS, STAGES, refiners, stage_name
from wssbench.seed.presets import PRESETS


@dataclass(frozen=True)
class RunConfig:
    preset: str | None = None  # the named method these options came from, if any
    dataset: str = "synthetic"
    data_root: str | None = None
    split: str = "val"
    train_split: str = "train"
    train_dataset: str | None = None  # the dataset the classifier trains on (-O train_dataset.KEY=VALUE); None: ``dataset``
    train_data_root: str | None = None  # its folder (default: its own)
    backbone: str = "resnet10t"  # [PROVIDER:]MODEL, provider "timm" by default
    pooling: str = "gap"
    background: bool = False  # the head has a background output (MIL-FCN, MIL-sppxl); see ``Classifier``
    head_bias: bool = False  # the 1x1 head has a bias (the authors' fc8); bias-free as in CAM/IRN by default
    pretrained: bool = False
    weights: str | None = None
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    saliency: str | None = "gbp"
    classmap: str | None = "fcn"
    fusion: str = "threshold"
    refine: tuple[str, ...] = ("densecrf",)  # () = no refinement
    # (stage or refiner name, key, value), sorted; see ``options_for``
    options: tuple[tuple[str, str, Any], ...] = ()
    classes_from: str = "predicted"  # "predicted" (segmentation), "labels" (seed quality) or "all" (every class a candidate)
    score_threshold: float = 0.5  # sigmoid score for a class to count as present
    max_classes: int | None = 3  # at most this many classes per image (the top-scoring ones); None: no cap
    top1: bool = True  # the top-scoring class counts as detected even below the threshold
    detect_by: str = "classifier"  # "classifier" (its scores) or "saliency" (the method's own ``detect``, DCSM's scales)
    batch_size: int = 8
    precision: str = "fp32"  # network stages: fp32, bf16 or fp16 (autocast; see ``precision``)
    loader_workers: int = 0  # DataLoader processes reading images ahead of the network
    cache_maps: bool = True  # read class and saliency maps back from the map cache
    skip_checks: bool = False  # skip decoding every image and mask before training (wssbench.data.checks)
    workers: int = 1  # processes for fusion and refinement (1 = in the main process)
    limit: int | None = None  # evaluate only the first N images of the split
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        from wssbench.runtime.precision import check_precision  # torch: only when a run is really described

        if self.classes_from not in ("predicted", "labels", "all"):
            raise UsageError(f"--classes-from: expected 'predicted', 'labels' or 'all', got '{self.classes_from}'")
        if self.detect_by not in ("classifier", "saliency"):
            raise UsageError(f"--detect-by: expected 'classifier' or 'saliency', got '{self.detect_by}'")
        if not 0.0 < self.score_threshold < 1.0:
            raise UsageError(f"--score-threshold: expected a value in (0, 1), got {self.score_threshold}")
        check_precision(self.precision, self.device)
        for name in ("loader_workers",):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')}: expected 0 or more, got {getattr(self, name)}")
        if self.max_classes is not None and self.max_classes < 1:
            raise UsageError(f"--max-classes: expected at least 1 or none, got {self.max_classes}")
        for name in ("batch_size", "workers"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')}: expected at least 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit: expected at least 1, got {self.limit}")
        if self.seed < 0:
            raise UsageError(f"--seed: expected 0 or more, got {self.seed}")
        if "none" in self.refine:
            raise UsageError("--refine none: means no refinement and cannot be combined with refiners")
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

    def components(self) -> dict[str, tuple[str, str | None]]:
        """Stage -> (kind, name) of every component the config names (name None: stage off)."""
        provider, _ = self.backbone_provider
        return {
            "dataset": ("dataset", self.dataset),
            **({"train_dataset": ("dataset", self.train_dataset)} if self.train_dataset else {}),
            "backbone": ("backbone", provider),
            "saliency": ("saliency", self.saliency),
            "classmap": ("classmap", self.classmap),
            "fusion": ("fusion", self.fusion),
            **{name: ("refiner", name) for name in self.refine},
        }

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        options: dict[str, dict[str, Any]] = {}
        for stage, key, value in self.options:
            options.setdefault(stage, {})[key] = value
        data["options"] = options
        data["refine"] = list(self.refine)
        return data


# --------------------------------------------------------------------------------------
# Descriptions -> RunConfig
# --------------------------------------------------------------------------------------

FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
RECIPE_FIELDS = {f.name: f for f in dataclasses.fields(TrainRecipe)}
KEYS = set(FIELDS) | set(RECIPE_KEYS)
# Values that are resolved when the config is built ("auto" device and loader workers).
AUTO = ("device", "loader_workers", "workers")


def build_config(description: Mapping[str, Any] | None = None, *, where: str = "", **kwargs: Any) -> RunConfig:
    """The one way to turn a description of a run into a checked, frozen :class:`RunConfig`.

    ``description`` (and ``kwargs``, which win) is a flat mapping of run option names (see the
    module docstring). A ``preset`` fills every key the description does not give; component
    options merge, the description's winning per STAGE.KEY. ``device="auto"``,
    ``loader_workers="auto"`` and an unset ``workers`` are resolved here. ``where`` prefixes
    error messages (e.g. ``"bench.toml: row 'FCN': "``). Names of components are checked
    against the registry later, by :func:`wssbench.seed.components.check`.
    """
    given = merge(dict(description or {}), kwargs)
    unknown = sorted(set(given) - KEYS)
    if unknown:
        raise UsageError(f"{where}unknown run option '{unknown[0]}'; known: {', '.join(sorted(KEYS))}")
    preset = given.get("preset")
    if preset:
        if preset not in PRESETS:
            raise UsageError(f"{where}unknown preset '{preset}'; available: {', '.join(PRESETS)}")
        given = merge(PRESETS[preset].options, given)
    values: dict[str, Any] = {}
    for name, value in given.items():
        if name in ("options", "recipe", *RECIPE_KEYS, *AUTO):
            continue
        if name in OPTIONAL_STAGES:
            values[name] = stage_name(value)
        elif name == "refine":
            values[name] = refiners(value)
        else:
            values[name] = coerce(name, value, where, RunConfig, TrainRecipe)
    values["options"] = option_triples(given.get("options"))
    # the training recipe: a whole mapping (records), then the flat keys, then the run's seed
    recipe = dict(given.get("recipe") or {})
    if not preset and "recipe" not in given and (values.get("weights") or values.get("pretrained") is True):
        # the recipe chosen for this pretrained backbone (training.BACKBONE_RECIPES); flat keys win
        recipe = backbone_recipe(str(given.get("backbone", RunConfig.backbone)))
    unknown = sorted(set(recipe) - set(RECIPE_FIELDS))
    if unknown:
        raise UsageError(f"{where}recipe: unknown field '{unknown[0]}'")
    recipe.update({k: given[k] for k in RECIPE_KEYS if k in given})
    if "seed" in values and "seed" not in (given.get("recipe") or {}):
        recipe["seed"] = values["seed"]
    try:
        values["recipe"] = TrainRecipe(**{k: coerce(k, v, where, RunConfig, TrainRecipe) for k, v in recipe.items()})
    except UsageError as e:
        raise UsageError(f"{where}{e}") from None
    device = resolve_device(str(given.get("device", "auto")))
    values["device"] = device
    workers = given.get("loader_workers", "auto")
    if workers == "auto":
        from wssbench.runtime.loading import default_loader_workers  # torch: only when a run is really described

        values["loader_workers"] = default_loader_workers(device)
    else:
        values["loader_workers"] = coerce("loader_workers", workers, where, RunConfig, TrainRecipe)
    values["workers"] = coerce("workers", given["workers"], where, RunConfig, TrainRecipe) if given.get("workers") is not None else (os.cpu_count() or 1)
    try:
        return RunConfig(**values)
    except UsageError as e:
        raise UsageError(f"{where}{e}") from None


def description_of(config: RunConfig) -> dict[str, Any]:
    """The description that :func:`build_config` turns back into ``config`` (what records keep)."""
    data = config.to_dict()
    data["recipe"] = dataclasses.asdict(config.recipe)
    data["refine"] = list(config.refine) or "none"
    data["saliency"] = config.saliency or "none"
    data["classmap"] = config.classmap or "none"
    data.pop("preset")  # the preset's choices are all in the other keys already
    return data


def config_from_record(path: str | os.PathLike, **overrides: Any) -> RunConfig:
    """The config of a run recorded in a ``result.json`` (``overrides`` win)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        recorded = record["config"]
    except FileNotFoundError:
        raise DataError(f"{path}: result file not found") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a wssbench result record ({type(e).__name__}: {e})") from None
    description = {k: v for k, v in recorded.items() if k != "preset"}
    description["refine"] = recorded.get("refine") or "none"
    for stage in OPTIONAL_STAGES:
        description[stage] = recorded.get(stage) or "none"
    config = build_config(merge(description, overrides), where=f"{path}: ")
    return dataclasses.replace(config, preset=recorded.get("preset"))
