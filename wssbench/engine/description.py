"""Describing a run, for both stages: the value converter that turns command-line and file text
into the types a config declares, component options in every spelling, merging descriptions,
and the device. :mod:`wssbench.seed.config` and :mod:`wssbench.segmentation.describe` build
their configs with these, so a value means the same in a flag, a bench row, a record and the
Python API."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from wssbench.errors import UsageError
from wssbench.host.options import parse_option_strings


def split_target(target: str, text: str) -> tuple[str, str]:
    stage, dot, key = str(target).partition(".")
    if not (dot and stage and key):
        raise UsageError(f"-O {text}: expected STAGE.KEY=VALUE, e.g. -O fusion.bg_threshold=0.3")
    return stage, key


def option_triples(options: Any) -> tuple[tuple[str, str, Any], ...]:
    """Component options in any of the description's spellings -> ``((stage, key, value), ...)``."""
    if options is None:
        return ()
    if isinstance(options, str):
        options = [options]
    if isinstance(options, Mapping):
        out = []
        for target, value in options.items():
            if isinstance(value, Mapping):  # {"stage": {"key": value}} (records)
                out += [(target, key, v) for key, v in value.items()]
            else:  # {"stage.key": value} (bench files)
                out.append((*split_target(target, f"{target}={value}"), value))
        return tuple(out)
    if all(isinstance(o, (tuple, list)) and len(o) == 3 for o in options):
        return tuple(tuple(o) for o in options)  # type: ignore[misc]
    return parse_option_strings(list(options))


def merge(*descriptions: Mapping[str, Any]) -> dict[str, Any]:
    """Later descriptions win key by key; component ``options`` merge per STAGE.KEY."""
    out: dict[str, Any] = {}
    options: dict[tuple[str, str], Any] = {}
    for description in descriptions:
        for key, value in description.items():
            if key == "options":
                options.update({(s, k): v for s, k, v in option_triples(value)})
            else:
                out[key] = value
    if options:
        out["options"] = tuple((s, k, v) for (s, k), v in options.items())
    return out


def coerce(name: str, value: Any, where: str, *owners: type) -> Any:
    """``value`` as the type the first of ``owners`` (dataclasses) that has field ``name``
    declares for it (strings from the command line or a bench file converted, types checked);
    a one-line ``UsageError`` prefixed with ``where`` when it does not fit."""
    hint = next((typing.get_type_hints(o)[name] for o in owners if name in typing.get_type_hints(o)), Any)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    if value is None or (optional and value in ("none", "None", "")):
        if optional:
            return None
        raise UsageError(f"{where}{name}: a value is required")
    target = args[0] if optional and args else hint
    origin = typing.get_origin(target)
    try:
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            inner = typing.get_args(target)[0]
            return tuple(coerce_scalar(inner, v) for v in items if str(v).strip())
        return coerce_scalar(target, value)
    except (TypeError, ValueError):
        kind = getattr(target, "__name__", str(target))
        raise UsageError(f"{where}{name}: expected {kind}, got {value!r}") from None


def coerce_scalar(kind: Any, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        low = str(value).lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(value)
        return str(value)
    return value


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else is checked."""
    import torch  # here: describing a run must not import torch before a run is really described

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device: '{name}' is not a torch device (cpu, cuda, cuda:1, auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine")
    return name
