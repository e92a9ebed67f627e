"""The plugin host: one pluggy manager, one ``register`` callback, one place that lists names.

Broken plugins never take the host down: a plugin whose module fails to import, whose hook
raises while registering, or that registers something that is not callable (or has no name)
is recorded in ``Registry.failures`` with a warning naming it, and none of its components
are registered. A name registered by two plugins is a clash (``Registry.clashes``): it names
neither component, and any use of it is an error naming both plugins (a leaderboard row must
mean what its label says), while ``wssbench plugins`` and ``wssbench list``, the commands that
diagnose it, keep working and show both.

Failures later, while a component runs, are attributed by :meth:`Registry.blame`: the
innermost frame of the traceback that lies in a third-party plugin's files names the
plugin. Built-in plugins (distribution ``wssbench``) are never blamed: their exceptions are
wssbench's own bugs.
"""

from __future__ import annotations

import contextvars
import importlib.metadata
import inspect
import os
import pkgutil
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

import pluggy

from wssbench.errors import PluginError, UsageError
from wssbench.host import hookspecs
from wssbench.host.options import parse_option

ENTRY_POINT_GROUP = "wssbench"
BUILTIN_DISTRIBUTION = "wssbench"

# kind -> hook name; the order is the order of the pipeline.
KINDS = {
    "dataset": "register_datasets",
    "backbone": "register_backbones",
    "saliency": "register_saliency",
    "classmap": "register_classmaps",
    "objectness": "register_objectness",
    "fusion": "register_fusion",
    "refiner": "register_refiners",
    "pseudomask": "register_pseudomasks",
    "salient": "register_salient",
    "segnet": "register_segnets",
    "objective": "register_objectives",
}


@dataclass(frozen=True)
class Plugin:
    """Who registered components: an entry point of a distribution, or an object given directly."""

    name: str  # pluggy's name: "DIST:ENTRY_POINT" for entry points
    distribution: str | None = None
    version: str | None = None
    files: tuple[str, ...] = field(default=(), repr=False)  # files and folders whose frames are this plugin's code

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION

    @property
    def label(self) -> str:
        """The distribution's name, else the plugin's (what ``wssbench plugins`` shows)."""
        return self.distribution or self.name

    def describe(self) -> str:
        """``plugin NAME (distribution DIST VERSION)``, for messages."""
        if self.distribution is None:
            return f"plugin {self.name}"
        version = f" {self.version}" if self.version else ""
        return f"plugin {self.name} (distribution {self.distribution}{version})"


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str  # the distribution (or plugin name) that registered it
    source: Plugin | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class LoadFailure:
    """A plugin that was skipped: it failed to import or to register."""

    plugin: str  # the distribution (or plugin name)
    error: str
    stage: str = "import"  # "import" or the hook that failed, e.g. "register_saliency"


def _describe(factory: Callable) -> str:
    doc = inspect.getdoc(factory) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """Everything the plugins registered, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, plugins: dict[str, Plugin], failures: Iterable[LoadFailure] = ()):
        self.pm = pm
        self.failures = list(failures)
        self.clashes: dict[tuple[str, str], list[Entry]] = {}  # (kind, name) registered by two plugins: unusable
        self.plugins: dict[str, Plugin] = {}  # pluggy name -> Plugin, those that registered cleanly
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        trace = os.environ.get("WSSBENCH_TRACE_PLUGINS") == "1"
        hooks: dict[str, list[tuple[str, Any]]] = {}  # plugin name -> [(kind, hookimpl)]
        for kind, hook_name in KINDS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                hooks.setdefault(impl.plugin_name, []).append((kind, impl))
        for name, plugin_object in pm.list_name_plugin():
            plugin = plugins.get(name) or Plugin(name, files=_files_of(plugin_object))
            staged = self._collect(plugin, hooks.get(name, []), trace)
            if staged is None:
                continue
            for entry in staged:
                previous = self._entries[entry.kind].get(entry.name) or next(iter(self.clashes.get((entry.kind, entry.name), ())), None)
                if previous is not None:  # a clash: the name means neither until one plugin goes
                    clash = self.clashes.setdefault((entry.kind, entry.name), [previous])
                    clash.append(entry)
                    self._entries[entry.kind].pop(entry.name, None)
                    continue
                self._entries[entry.kind][entry.name] = entry
            files = {*plugin.files, *(f for e in staged if (f := _file_of(e.factory)))}
            self.plugins[name] = Plugin(plugin.name, plugin.distribution, plugin.version, tuple(sorted(files)))

    def _collect(self, plugin: Plugin, hooks: list[tuple[str, Any]], trace: bool) -> list[Entry] | None:
        """The entries one plugin registers through its hooks; None (and a failure) if any hook breaks."""
        staged: list[Entry] = []
        for kind, impl in hooks:
            if trace:
                print(f"wssbench: {KINDS[kind]} -> {plugin.name} ({plugin.label})", file=sys.stderr)
            try:
                impl.function(register=self._register_callback(kind, plugin, staged))
            except Exception as e:  # a broken plugin must not take the host down
                error = str(e) if isinstance(e, PluginError) else f"{type(e).__name__}: {e}"
                self.failures.append(LoadFailure(plugin.label, error, KINDS[kind]))
                warnings.warn(f"{plugin.describe()} failed in {KINDS[kind]} and is skipped: {error}", stacklevel=3)
                return None
        return staged

    @staticmethod
    def _register_callback(kind: str, plugin: Plugin, staged: list[Entry]) -> Callable[..., None]:
        def register(factory: Callable, name: str | None = None, description: str | None = None) -> None:
            name = name or getattr(factory, "name", None)
            if not callable(factory):
                raise PluginError(f"registered a {kind} that is not callable: {factory!r}")
            if not isinstance(name, str) or not name:
                raise PluginError(f"registered a {kind} without a name: {factory!r}")
            desc = description if description is not None else _describe(factory)
            staged.append(Entry(kind, name, factory, desc, plugin.label, plugin))

        return register

    def names(self, kind: str) -> list[str]:
        return sorted(self._kind(kind))

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = [kind] if kind else list(KINDS)
        return [e for k in kinds for _, e in sorted(self._kind(k).items())]

    def get(self, kind: str, name: str) -> Entry:
        entries = self._kind(kind)
        if (kind, name) in self.clashes:
            who = " and by ".join(e.plugin for e in self.clashes[(kind, name)])
            raise PluginError(f"duplicate {kind} name '{name}': registered by {who}; uninstall one of them "
                              f"(wssbench plugins lists both)")
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
        token = _creating.set(self)
        try:
            return factory(**options)
        except (ValueError, TypeError) as e:
            raise UsageError(f"{kind} '{name}': {e}") from e
        finally:
            _creating.reset(token)

    def distributions_of(self, components: Iterable[tuple[str, str]]) -> dict[str, str | None]:
        """Distribution name -> version of the plugins that registered ``components`` ((kind, name) pairs).

        For the record's ``versions``; a plugin given as an object (not an entry point) has
        no distribution and is left out.
        """
        out: dict[str, str | None] = {}
        for kind, name in components:
            source = self.get(kind, name).source
            if source is not None and source.distribution is not None:
                out[source.distribution] = source.version
        return dict(sorted(out.items()))

    def blame(self, error: BaseException) -> Plugin | None:
        """The third-party plugin whose code raised ``error``, or None (wssbench's or a built-in's).

        The innermost traceback frame in a plugin's files decides, through ``__cause__`` and
        ``__context__`` chains and the text of tracebacks that come back from worker
        processes (``concurrent.futures``' ``_RemoteTraceback``).
        """
        suspects = [p for p in self.plugins.values() if not p.builtin and p.files]
        if not suspects:
            return None
        for filename in _traceback_files(error):
            for plugin in suspects:
                if any(filename == f or filename.startswith(f.rstrip(os.sep) + os.sep) for f in plugin.files):
                    return plugin
        return None

    def _kind(self, kind: str) -> dict[str, Entry]:
        if kind not in self._entries:
            raise UsageError(f"unknown component kind '{kind}'; available: {', '.join(KINDS)}")
        return self._entries[kind]


_REMOTE_FRAME = re.compile(r'File "([^"]+)", line \d+')


def _traceback_files(error: BaseException) -> list[str]:
    """Source files of the frames of ``error`` and of its causes, innermost first."""
    files: list[str] = []
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        frames = []
        tb = e.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame.f_code.co_filename)
            tb = tb.tb_next
        files += reversed(frames)
        if type(e).__name__ == "_RemoteTraceback":
            files += reversed(_REMOTE_FRAME.findall(str(e)))
        e = e.__cause__ or e.__context__
    return [str(Path(f).resolve()) if os.path.isabs(f) else f for f in files]


def _file_of(obj: Any) -> str | None:
    try:
        return str(Path(inspect.getfile(obj)).resolve())
    except (TypeError, OSError):
        return None


def _files_of(plugin_object: Any) -> tuple[str, ...]:
    """The files that are a plugin's code: its top-level package's folders, else its module's file."""
    module = plugin_object if isinstance(plugin_object, ModuleType) else sys.modules.get(type(plugin_object).__module__)
    if module is None:
        return ()
    top = sys.modules.get(module.__name__.partition(".")[0])
    if top is not None and getattr(top, "__path__", None):
        return tuple(str(Path(p).resolve()) for p in top.__path__)
    found = _file_of(module)
    return (found,) if found else ()


def build_registry(plugins: Iterable[Any] = (), entry_points: bool | Iterable[Any] = True) -> Registry:
    """A fresh plugin manager with the entry-point plugins (and ``plugins``) registered.

    ``entry_points``: True for the installed ones (group ``wssbench``), False for none, or the
    entry points to load (``importlib.metadata.EntryPoint``-like: ``name``, ``value``,
    ``dist``, ``load()``). A plugin that fails to import is reported with a warning naming its
    distribution and skipped; a misspelled hook fails here (``check_pending``).
    """
    pm = pluggy.PluginManager("wssbench")
    pm.add_hookspecs(hookspecs)
    known: dict[str, Plugin] = {}
    failures: list[LoadFailure] = []
    if entry_points is True:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    if entry_points:
        for ep in sorted(entry_points, key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else ep.name
            version = getattr(ep.dist, "version", None) if ep.dist is not None else None
            plugin_name = f"{dist}:{ep.name}"
            if pm.get_plugin(plugin_name) is not None:
                continue
            for name, module in _load_entry_point(ep, plugin_name, dist, failures):
                pm.register(module, name=name)
                known[name] = Plugin(name, dist, version, _files_of(module))
    for i, plugin in enumerate(plugins):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{i}"
        pm.register(plugin, name=name)
    pm.check_pending()
    return Registry(pm, known, failures)


def _load_entry_point(ep: Any, plugin_name: str, dist: str, failures: list[LoadFailure]) -> list[tuple[str, Any]]:
    """The plugin objects of one entry point: the object it names, or, when that is a package,
    every module in it (so a new module of a plugin package is picked up without editing a list;
    the built-ins are one such package). A module that fails to import is reported and skipped."""
    try:
        target = ep.load()
    except Exception as e:  # a broken plugin must not take the CLI down
        failures.append(LoadFailure(dist, f"{type(e).__name__}: {e}"))
        warnings.warn(f"plugin {plugin_name} (distribution {dist}) failed to load and is skipped: {e}", stacklevel=2)
        return []
    if not hasattr(target, "__path__"):
        return [(plugin_name, target)]
    loaded = []
    for info in sorted(pkgutil.iter_modules(target.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module_name = f"{target.__name__}.{info.name}"
        try:
            loaded.append((f"{plugin_name}.{info.name}", importlib.import_module(module_name)))
        except Exception as e:
            failures.append(LoadFailure(dist, f"{module_name}: {type(e).__name__}: {e}"))
            warnings.warn(f"plugin {dist} ({module_name}) failed to load and is skipped: {e}", stacklevel=2)
    return loaded


_default: Registry | None = None
_creating: contextvars.ContextVar[Registry | None] = contextvars.ContextVar("wssbench_creating", default=None)


def default_registry() -> Registry:
    """The registry of the installed plugins, built once per process."""
    global _default
    if _default is None:
        _default = build_registry()
    return _default


def creating_registry() -> Registry:
    """The registry whose ``create`` is running now (a component that builds another by name,
    such as an objectness consumer building its proposal method, finds it in the same registry,
    third-party plugins included); the default registry outside ``create``."""
    return _creating.get() or default_registry()


def loaded_registry() -> Registry | None:
    """The default registry if this process built it, else None (then no plugin code ran)."""
    return _default


def create(kind: str, name: str, **options: Any) -> Any:
    """Create a registered component, like ``timm.create_model``."""
    return default_registry().create(kind, name, **options)


def names(kind: str) -> list[str]:
    """The registered names of one kind, like ``timm.list_models``."""
    return default_registry().names(kind)
