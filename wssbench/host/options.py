"""Component options: validated against the factory's signature, converted from strings."""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

from wssbench.errors import UsageError


def option_fields(factory: Callable) -> dict[str, inspect.Parameter]:
    """The options a factory takes, by name (keyword parameters of the class or function)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {
        name: p
        for name, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _hints(target: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(target)
    except Exception:
        return {}


def _annotation(factory: Callable, name: str) -> Any:
    """The declared type of option ``name``: the parameter's annotation, else the class field's."""
    if inspect.isclass(factory):
        hints = {**_hints(factory), **_hints(factory.__init__)}
    else:
        hints = _hints(factory)
    return hints.get(name, Any)


def _convert(value: str, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value.lower() in ("none", "null") and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg)
            except (ValueError, TypeError):
                continue
        raise ValueError(value)
    if origin in (tuple, list):
        inner = args[0] if args else str
        items = [v for v in value.split(",") if v.strip()]
        return tuple(_convert(v.strip(), inner) for v in items)
    if annotation is bool:
        low = value.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if annotation in (int, float, str):
        return annotation(value)
    return value


def parse_option(factory: Callable, key: str, value: Any, where: str) -> Any:
    """Check that ``factory`` takes option ``key`` and convert a string ``value`` to its type."""
    fields = option_fields(factory)
    if key not in fields:
        known = ", ".join(sorted(fields)) or "none"
        raise UsageError(f"unknown option '{key}' for {where}; options: {known}")
    if not isinstance(value, str):
        return value
    annotation = _annotation(factory, key)
    try:
        return _convert(value, annotation)
    except (ValueError, TypeError):
        kind = getattr(annotation, "__name__", str(annotation))
        raise UsageError(f"bad value {value!r} for option '{key}' of {where}: expected {kind}") from None


def defaults(factory: Callable) -> dict[str, Any]:
    """The default option values of a factory (those that have one)."""
    out = {}
    for name, p in option_fields(factory).items():
        if p.default is not p.empty:
            out[name] = p.default
    if dataclasses.is_dataclass(factory):
        for f in dataclasses.fields(factory):
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


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


@dataclass(frozen=True)
class OptionInfo:
    """One option of a component, for ``wssbench list KIND --options``."""

    name: str
    type: str  # e.g. "float", "str | None", "tuple[float, ...]"
    default: Any  # ``REQUIRED`` when the option has no default
    help: str = ""  # the comment after the field in the factory's source, if any


REQUIRED = "(required)"
_FIELD_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+?)\s*$")


def describe_options(factory: Callable) -> list[OptionInfo]:
    """Every option of ``factory`` with its type, default and help, in declaration order.

    The help is the comment written after a dataclass field (``scales: str = "1.0"  # ...``),
    the convention of the built-in components.
    """
    values = defaults(factory)
    comments = _field_comments(factory)
    return [
        OptionInfo(name, type_text(_annotation(factory, name)), values.get(name, REQUIRED), comments.get(name, ""))
        for name in option_fields(factory)
    ]


def type_text(annotation: Any) -> str:
    """``int``, ``str | None``, ``tuple[float, ...]``: an annotation as a user reads it."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return "any"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    if annotation is None or annotation is type(None):
        return "None"
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def _field_comments(factory: Callable) -> dict[str, str]:
    """Field name -> the comment after it, for dataclasses (their fields are their options): from
    the class and every dataclass it inherits fields from, a subclass's comment winning."""
    if not dataclasses.is_dataclass(factory) or not isinstance(factory, type):
        return {}
    comments: dict[str, str] = {}
    for klass in reversed(factory.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        comments.update({m.group(1): m.group(2) for line in lines if (m := _FIELD_COMMENT.match(line))})
    return comments
