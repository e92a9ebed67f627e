"""A seed run's name in tables: its preset, or its components, with the options set beside them."""

from __future__ import annotations

from typing import Any

from wssbench.host.options import parse_option_strings
from wssbench.seed.keys import RECIPE_DEFAULTS, RECIPE_KEYS, recorded_value
from wssbench.seed.presets import PRESETS, TRAIN


def method_label(config: dict) -> str:
    """The preset's name if the run follows it, else e.g. ``fcn+gbp/threshold/densecrf``.

    Component options set with ``-O`` (dataset options aside) follow in brackets, and a run that
    changed a preset's components says which preset it started from.
    """
    preset = config.get("preset")
    follows = bool(preset) and _follows_preset(config, preset)
    if follows:
        label = preset
    else:
        maps = "+".join(name for name in (config.get("classmap"), config.get("saliency")) if name)
        label = f"{maps or '-'}/{config.get('fusion') or '-'}/{'+'.join(config.get('refine') or ['none'])}"
    from_preset = _preset_options(preset) if follows else {}
    options = [
        f"{stage}.{key}={value}"
        for stage, opts in sorted((config.get("options") or {}).items())
        if stage != "dataset"
        for key, value in sorted(opts.items())
        if from_preset.get((stage, key)) != as_text(value)  # the preset's own setting goes without saying
    ]
    if options:
        label += f" [{', '.join(options)}]"
    if preset and not follows:
        label += f" (from {preset})"
    if config.get("train_dataset"):
        label += f" (classifier trained on {config['train_dataset']})"
    return label


def _follows_preset(config: dict, preset: str) -> bool:
    """True when the run's components are the preset's (options given on the command line win)."""
    known = PRESETS.get(preset)
    if known is None:
        return False
    for key, value in known.options.items():
        if key in ("options", "recipe") or key in TRAIN:
            continue  # component options are listed in the label; a changed schedule is a deviation (†)
        used = (config.get("recipe") or {}).get(key, RECIPE_DEFAULTS[key]) if key in RECIPE_KEYS else config.get(key)
        if recorded_value(key, used) != recorded_value(key, value):
            return False
    return True


def _preset_options(preset: str | None) -> dict[tuple[str, str], str]:
    """(stage, key) -> value text of the component options a preset sets."""
    known = PRESETS.get(preset or "")
    texts = tuple(known.options.get("options", ())) if known else ()
    return {(stage, key): value for stage, key, value in parse_option_strings(texts)}


def per_seed_text(values: list[Any]) -> str:
    """A value each seed of a row chose, in seed order: ``0.3`` when they agree, ``0.3/0.3/0.4`` when not."""
    texts = [as_text(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else "/".join(texts)


def as_text(value: Any) -> str:
    """An option value as it is written on the command line (lists comma-separated, booleans lower case)."""
    if isinstance(value, (list, tuple)):
        return ",".join(as_text(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)
