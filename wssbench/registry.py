"""The plugin host: one pluggy manager, one ``register`` callback, one place that lists names."""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import pluggy

from . import hookspecs
from .errors import PluginError, UsageError
from .options import parse_option

ENTRY_POINT_GROUP = "wssbench"

# kind -> hook name; the order is the order of the pipeline.
KINDS = {
    "dataset": "register_datasets",
    "backbone": "register_backbones",
    "saliency": "register_saliency",
    "classmap": "register_classmaps",
    "fusion": "register_fusion",
    "refiner": "register_refiners",
    "segnet": "register_segnets",
    "objective": "register_objectives",
}


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str  # the distribution (or plugin name) that registered it


@dataclass(frozen=True)
class LoadFailure:
    plugin: str
    error: str


def _describe(factory: Callable) -> str:
    doc = inspect.getdoc(factory) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """Everything the plugins registered, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, dists: dict[str, str], failures: Iterable[LoadFailure] = ()):
        self.pm = pm
        self.failures = list(failures)
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        trace = os.environ.get("WSSBENCH_TRACE_PLUGINS") == "1"
        for kind, hook_name in KINDS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                plugin = dists.get(impl.plugin_name, impl.plugin_name)
                if trace:
                    print(f"wssbench: {hook_name} -> {impl.plugin_name} ({plugin})", file=sys.stderr)
                impl.function(register=self._register_callback(kind, plugin))

    def _register_callback(self, kind: str, plugin: str) -> Callable[..., None]:
        def register(factory: Callable, name: str | None = None, description: str | None = None) -> None:
            name = name or getattr(factory, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {plugin} registered a {kind} without a name")
            previous = self._entries[kind].get(name)
            if previous is not None:
                raise PluginError(
                    f"duplicate {kind} name '{name}': registered by {previous.plugin} and by {plugin}"
                )
            desc = description if description is not None else _describe(factory)
            self._entries[kind][name] = Entry(kind, name, factory, desc, plugin)

        return register

    def names(self, kind: str) -> list[str]:
        return sorted(self._kind(kind))

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = [kind] if kind else list(KINDS)
        return [e for k in kinds for _, e in sorted(self._kind(k).items())]

    def get(self, kind: str, name: str) -> Entry:
        entries = self._kind(kind)
        if name not in entries:
            available = ", ".join(sorted(entries)) or "none"
            raise UsageError(f"unknown {kind} '{name}'; available: {available}")
        return entries[name]

    def parse_options(self, kind: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """Validate option names and convert string values to the types the factory declares."""
        factory = self.get(kind, name).factory
        return {k: parse_option(factory, k, v, f"{kind} '{name}'") for k, v in options.items()}

    def create(self, kind: str, name: str, **options: Any) -> Any:
        factory = self.get(kind, name).factory
        options = self.parse_options(kind, name, options)
        try:
            return factory(**options)
        except (ValueError, TypeError) as e:
            raise UsageError(f"{kind} '{name}': {e}") from e

    def _kind(self, kind: str) -> dict[str, Entry]:
        if kind not in self._entries:
            raise UsageError(f"unknown component kind '{kind}'; available: {', '.join(KINDS)}")
        return self._entries[kind]


def build_registry(plugins: Iterable[Any] = (), entry_points: bool = True) -> Registry:
    """A fresh plugin manager with the entry-point plugins (and ``plugins``) registered.

    A third-party plugin that fails to import is reported with a warning naming its
    distribution and skipped; a misspelled hook fails here (``check_pending``).
    """
    pm = pluggy.PluginManager("wssbench")
    pm.add_hookspecs(hookspecs)
    dists: dict[str, str] = {}
    failures: list[LoadFailure] = []
    if entry_points:
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else ep.name
            plugin_name = f"{dist}:{ep.name}"
            if pm.get_plugin(plugin_name) is not None:
                continue
            try:
                module = ep.load()
            except Exception as e:  # a broken plugin must not take the CLI down
                failures.append(LoadFailure(dist, f"{type(e).__name__}: {e}"))
                warnings.warn(f"plugin {dist} ({ep.value}) failed to load and is skipped: {e}", stacklevel=2)
                continue
            pm.register(module, name=plugin_name)
            dists[plugin_name] = dist
    for i, plugin in enumerate(plugins):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{i}"
        pm.register(plugin, name=name)
    pm.check_pending()
    return Registry(pm, dists, failures)


_default: Registry | None = None


def default_registry() -> Registry:
    """The registry of the installed plugins, built once per process."""
    global _default
    if _default is None:
        _default = build_registry()
    return _default


def create(kind: str, name: str, **options: Any) -> Any:
    """Create a registered component, like ``timm.create_model``."""
    return default_registry().create(kind, name, **options)


def names(kind: str) -> list[str]:
    """The registered names of one kind, like ``timm.list_models``."""
    return default_registry().names(kind)
