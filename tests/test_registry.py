"""The plugin host: registration, names, duplicates, broken plugins, options."""

import inspect
import warnings
from dataclasses import dataclass

import pytest

import wssbench
from wssbench import hookspecs
from wssbench.errors import PluginError, UsageError
from wssbench.registry import KINDS, build_registry


@dataclass(frozen=True)
class FakeRefiner:
    """A refiner that does nothing, for tests."""

    name = "fake"
    strength: float = 1.0
    passes: int = 2
    sharp: bool = False

    def __call__(self, image, probs):
        return probs


class FakePlugin:
    @wssbench.hookimpl
    def register_refiners(self, register):
        register(FakeRefiner)


def test_builtins_register_every_kind():
    registry = build_registry()
    for kind in KINDS:
        assert registry.names(kind), kind
    assert {"bp", "gbp"} <= set(registry.names("saliency"))
    assert all(e.plugin == "wssbench" for e in registry.entries())


def test_third_party_plugin_and_description():
    registry = build_registry(plugins=[FakePlugin()])
    entry = registry.get("refiner", "fake")
    assert entry.description == "A refiner that does nothing, for tests."
    assert entry.plugin == "FakePlugin-0"
    assert registry.create("refiner", "fake", strength="0.5", passes="3", sharp="yes") == FakeRefiner(0.5, 3, True)


def test_duplicate_name_fails_at_start_up():
    class Again:
        @wssbench.hookimpl
        def register_refiners(self, register):
            register(FakeRefiner)

    with pytest.raises(PluginError, match="duplicate refiner name 'fake'"):
        build_registry(plugins=[FakePlugin(), Again()], entry_points=False)


def test_unknown_name_lists_available():
    registry = build_registry()
    with pytest.raises(UsageError, match=r"unknown saliency 'gpb'; available: .*bp.*gbp"):
        registry.get("saliency", "gpb")
    assert UsageError.exit_code == 2


def test_bad_options():
    registry = build_registry(plugins=[FakePlugin()], entry_points=False)
    with pytest.raises(UsageError, match="unknown option 'strenght' for refiner 'fake'; options: passes, sharp, strength"):
        registry.create("refiner", "fake", strenght=1)
    with pytest.raises(UsageError, match="bad value 'lots' for option 'passes'.*expected int"):
        registry.create("refiner", "fake", passes="lots")


def test_misspelled_hook_fails_loudly():
    class Typo:
        @wssbench.hookimpl
        def register_refiner(self, register):  # missing "s"
            pass

    from pluggy import PluginValidationError

    with pytest.raises(PluginValidationError):
        build_registry(plugins=[Typo()], entry_points=False)


def test_broken_entry_point_is_reported_and_skipped(monkeypatch):
    import importlib.metadata as md

    real = md.entry_points

    class BrokenEP:
        name = "broken"
        value = "nonexistent_wssbench_plugin_module"
        group = "wssbench"

        class dist:
            name = "wssbench-broken"

        def load(self):
            raise ImportError("No module named 'nonexistent_wssbench_plugin_module'")

    def fake_entry_points(group=None, **kw):
        return list(real(group=group)) + [BrokenEP()]

    monkeypatch.setattr(md, "entry_points", fake_entry_points)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = build_registry()
    assert [f.plugin for f in registry.failures] == ["wssbench-broken"]
    assert any("wssbench-broken" in str(w.message) for w in caught)
    assert "gbp" in registry.names("saliency")


def test_every_hook_documented_with_its_signature():
    for kind, hook_name in KINDS.items():
        spec = getattr(hookspecs, hook_name)
        assert list(inspect.signature(spec).parameters) == ["register"]
        doc = inspect.getdoc(spec)
        assert doc and kind.split("_")[0][:4] in doc.lower()


def test_python_api():
    assert "gbp" in wssbench.names("saliency")
    method = wssbench.create("fusion", "threshold", bg_threshold=0.4)
    assert method.bg_threshold == 0.4
