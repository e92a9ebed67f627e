"""Descriptions -> :class:`SegmentConfig`: the one way a segmentation run is assembled.

``wssbench segment`` flags, ``wssbench run --preset em-adapt`` (a preset that trains a network
from image labels), and a bench row naming such a preset all give a flat mapping of option
names, as :func:`wssbench.seed.config.build_config` takes for the seed pipeline; this module turns it
into the frozen config, the preset filling what the description leaves unset. Keys:

* the ``SegmentConfig`` fields (``dataset``, ``split``, ``segnet``, ``objective``, ``schedule``, ``masks``,
  ``scales``, ``flip``, ``crf``, ``precision``, ``device``, ``seed``, ...);
* the training recipe's (``epochs``, ``lr``, ``crop``, ``bn``; ``batch_size`` is the training
  batch, as on ``wssbench run``), and ``recipe``, a mapping of any of its fields (the solver of a
  released config: ``iterations``, ``lr_policy``, ``bias_lr_mult``, ...), under the flat keys;
* ``backbone`` (the network's encoder, ``segnet.encoder``) and ``pretrained``
  (``segnet.pretrained``), spelled as for the classifier;
* ``multiscale`` (the scales of :data:`MULTI_SCALES`) and ``options`` (``KIND.KEY=VALUE`` for
  dataset, segnet, objective, crf, schedule).

A ``wssbench run`` option that has no meaning for a network trained from labels (saliency,
fusion, pooling, ...) is refused by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from wssbench.engine.description import coerce, merge, option_triples, resolve_device
from wssbench.errors import UsageError
from wssbench.segmentation.config import MULTI_SCALES, SegmentConfig, SegRecipe
from wssbench.segmentation.presets import SEGMENT_PRESETS

RECIPE_KEYS = ("epochs", "lr", "crop", "bn", "batch_size")
CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(SegmentConfig) if f.name not in ("recipe", "batch_size"))
KEYS = frozenset(CONFIG_KEYS + RECIPE_KEYS + ("backbone", "pretrained", "multiscale", "recipe"))
RECIPE_FIELDS = frozenset(f.name for f in dataclasses.fields(SegRecipe))


def is_segment_preset(name: Any) -> bool:

    return isinstance(name, str) and name in SEGMENT_PRESETS


class _ExtraKeys:  # the types of the description keys that are no field of the config
    pretrained: bool
    multiscale: bool


def build_segment_config(description: Mapping[str, Any], *, where: str = "") -> SegmentConfig:
    """A checked, frozen :class:`SegmentConfig` from a flat description (module docstring).

    Component names and options are checked against the registry later, by
    :func:`wssbench.segmentation.run.resolve`."""
    given = {k: v for k, v in dict(description).items() if v is not None}
    preset = given.get("preset")
    if preset:
        if preset not in SEGMENT_PRESETS:
            raise UsageError(f"{where}unknown segmentation preset '{preset}'; available: {', '.join(SEGMENT_PRESETS)}")
        published = dict(SEGMENT_PRESETS[preset].options)
        if "epochs" in given and "iterations" in published.get("recipe", {}):  # the user's epochs replace the iterations
            published["recipe"] = {k: v for k, v in published["recipe"].items() if k != "iterations"}
        replaced = {stage for stage in ("segnet", "objective", "schedule") if stage in given and given[stage] != published.get(stage)}
        if replaced:  # the preset's options of a component the user replaced do not apply to the new one
            published["options"] = tuple(o for o in option_triples(published.get("options")) if o[0] not in replaced)
        given = merge(published, given)
    unknown = sorted(set(given) - KEYS - {"options"})
    if unknown:
        what = f"preset '{preset}' trains a segmentation network" if preset else "a segmentation run"
        raise UsageError(f"{where}'{unknown[0]}' is not an option of {what}; its options: {', '.join(sorted(KEYS))}")
    options = list(option_triples(given.get("options")))
    if given.get("backbone"):
        options.append(("segnet", "encoder", str(given["backbone"])))
    if "pretrained" in given:
        options.append(("segnet", "pretrained", coerce("pretrained", given["pretrained"], where, _ExtraKeys)))
    whole = dict(given.get("recipe") or {})  # the solver given whole (presets, records)
    unknown = sorted(set(whole) - RECIPE_FIELDS)
    if unknown:
        raise UsageError(f"{where}recipe: unknown field '{unknown[0]}'; fields: {', '.join(sorted(RECIPE_FIELDS))}")
    recipe = {k: coerce(k, v, where, SegRecipe) for k, v in whole.items()}
    recipe.update({k: coerce(k, given[k], where, SegRecipe) for k in RECIPE_KEYS if k in given})
    values = {k: coerce(k, given[k], where, SegmentConfig) for k in CONFIG_KEYS
              if k in given and k not in ("options", "device", "loader_workers")}
    seed = values.get("seed", 0)
    values["device"] = device = resolve_device(str(values.get("device", "auto")))
    workers = given.get("loader_workers", "auto")
    if workers == "auto":
        from wssbench.runtime.loading import default_loader_workers  # torch: only when a run is really described

        values["loader_workers"] = default_loader_workers(device)
    else:
        values["loader_workers"] = coerce("loader_workers", workers, where, SegmentConfig)
    if "scales" not in values and "multiscale" in given and coerce("multiscale", given["multiscale"], where, _ExtraKeys):
        values["scales"] = MULTI_SCALES
    return SegmentConfig(**values, options=tuple(merge({"options": tuple(options)}).get("options", ())),
                         recipe=SegRecipe(**{"seed": seed, **recipe}))
