"""The plugin host: registration, names, duplicates, broken plugins, options."""

import importlib.util
import json
import sys
from dataclasses import dataclass

import pytest

import wssbench
from wssbench.errors import PluginError, UsageError
from wssbench.host.registry import KINDS, build_registry


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


def test_a_duplicate_name_is_unusable_but_listing_still_works(use_registry):
    from click.testing import CliRunner

    from wssbench.cli import cli

    class Again:
        @wssbench.hookimpl
        def register_refiners(self, register):
            register(FakeRefiner)

    registry = build_registry(plugins=[FakePlugin(), Again()])
    with pytest.raises(PluginError, match="duplicate refiner name 'fake': registered by FakePlugin-0 and by Again-1"):
        registry.get("refiner", "fake")
    assert "densecrf" in registry.names("refiner") and "fake" not in registry.names("refiner")
    use_registry(registry)
    shown = CliRunner().invoke(cli, ["plugins", "--json"])
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["clashes"] == [{"kind": "refiner", "name": "fake", "plugins": ["FakePlugin-0", "Again-1"],
                                                    "descriptions": [FakeRefiner.__doc__.strip(), FakeRefiner.__doc__.strip()]}]
    listed = CliRunner().invoke(cli, ["list", "refiner"])
    assert listed.exit_code == 0 and "clash: registered by FakePlugin-0 and Again-1" in listed.stdout
    used = CliRunner().invoke(cli, ["run", "--refine", "fake"])
    assert used.exit_code != 0 and "duplicate refiner name 'fake'" in used.output


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


class FakeEntryPoint:
    """An entry point of a fake distribution: ``load()`` returns ``target`` or raises it."""

    group = "wssbench"

    def __init__(self, name, target, dist="wssbench-fake", version="1.2"):
        self.name, self.value, self.target = name, f"{dist.replace('-', '_')}.{name}", target
        self.dist = type("Dist", (), {"name": dist, "version": version})()

    def load(self):
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


def test_broken_entry_point_is_reported_and_skipped():
    broken = FakeEntryPoint("broken", ImportError("No module named 'wssbench_broken'"), dist="wssbench-broken")
    with pytest.warns(UserWarning, match="wssbench-broken"):
        registry = build_registry(plugins=[FakePlugin()], entry_points=[broken])
    assert [(f.plugin, f.stage) for f in registry.failures] == [("wssbench-broken", "import")]
    assert registry.names("refiner") == ["fake"]


class Raising:
    """Registers a refiner, then breaks in its saliency hook: none of its components may stay."""

    @wssbench.hookimpl
    def register_refiners(self, register):
        register(FakeRefiner, name="half-registered")

    @wssbench.hookimpl
    def register_saliency(self, register):
        raise RuntimeError("boom")


class NotCallable:
    @wssbench.hookimpl
    def register_fusion(self, register):
        register(42, name="answer")


class Nameless:
    @wssbench.hookimpl
    def register_fusion(self, register):
        register(lambda image, labels, c, s: None)


@pytest.mark.parametrize(
    "plugin, stage, message",
    [
        (Raising(), "register_saliency", "RuntimeError: boom"),
        (NotCallable(), "register_fusion", "registered a fusion that is not callable: 42"),
        (Nameless(), "register_fusion", "registered a fusion without a name"),
    ],
)
def test_plugin_that_breaks_while_registering_is_reported_and_skipped(plugin, stage, message):
    with pytest.warns(UserWarning, match=f"plugin {type(plugin).__name__}-1 failed in {stage} and is skipped"):
        registry = build_registry(plugins=[FakePlugin(), plugin], entry_points=False)
    [failure] = registry.failures
    assert (failure.plugin, failure.stage) == (f"{type(plugin).__name__}-1", stage)
    assert message in failure.error
    assert registry.names("refiner") == ["fake"]  # the other plugin is untouched
    assert registry.names("fusion") == [] and registry.names("saliency") == []


PLUGIN_SOURCE = '''
from dataclasses import dataclass
import wssbench

@dataclass(frozen=True)
class Exploding:
    """A fusion with a bug."""
    name = "exploding"

    def __call__(self, image, labels, class_maps, saliency_maps):
        return 1 / 0

@wssbench.hookimpl
def register_fusion(register):
    register(Exploding)
'''


@pytest.fixture
def third_party(tmp_path):
    """A third-party plugin module in its own file, loaded as distribution ``wssbench-exploding 0.3``."""
    path = tmp_path / "wssbench_exploding_plugin.py"
    path.write_text(PLUGIN_SOURCE)
    spec = importlib.util.spec_from_file_location("wssbench_exploding_plugin", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield FakeEntryPoint("exploding", module, dist="wssbench-exploding", version="0.3")
    del sys.modules[spec.name]


def builtin_entry_points():
    import importlib.metadata as md

    return [ep for ep in md.entry_points(group="wssbench") if ep.dist.name == "wssbench"]


def raised(call):
    """The exception ``call()`` raises (any kind: the tests inspect its traceback)."""
    try:
        call()
    except Exception as e:  # noqa: BLE001
        return e
    raise AssertionError("nothing was raised")


def reraise(error):
    raise RuntimeError("a batch failed") from error


def test_exception_in_third_party_code_is_blamed_on_its_plugin(third_party):
    registry = build_registry(entry_points=[third_party])
    fuse = registry.create("fusion", "exploding")
    error = raised(lambda: fuse(None, [], None, None))
    assert isinstance(error, ZeroDivisionError)
    culprit = registry.blame(error)
    assert culprit.describe() == "plugin wssbench-exploding:exploding (distribution wssbench-exploding 0.3)"
    assert registry.blame(raised(lambda: reraise(error))) == culprit  # the core re-raised it: the cause counts


def test_exception_from_a_worker_process_is_blamed_by_its_remote_traceback(third_party):
    from concurrent.futures.process import _RemoteTraceback

    registry = build_registry(entry_points=[third_party])
    error = ZeroDivisionError("division by zero")
    error.__cause__ = _RemoteTraceback(
        f'Traceback (most recent call last):\n  File "{third_party.target.__file__}", line 11, in __call__\n'
        "ZeroDivisionError: division by zero"
    )
    assert registry.blame(error).distribution == "wssbench-exploding"


def test_builtin_and_core_exceptions_are_not_blamed(third_party):
    registry = build_registry(entry_points=[third_party, *builtin_entry_points()])
    fuse = registry.create("fusion", "threshold")
    assert registry.blame(raised(lambda: fuse(None, [1], None, None))) is None  # a bug inside a built-in
    assert registry.blame(raised(lambda: registry.get("fusion", "nosuch"))) is None


def test_cli_names_the_failing_plugin(third_party, use_registry):
    import click
    from click.testing import CliRunner

    from wssbench.cli import WssbenchGroup

    registry = build_registry(entry_points=[third_party, *builtin_entry_points()])
    use_registry(registry)  # the CLI's registry is the process's

    @click.command("fuse")
    @click.argument("name")
    def fuse(name):
        registry.create("fusion", name)(None, [1], None, None)

    group = WssbenchGroup(commands={"fuse": fuse})
    out = CliRunner().invoke(group, ["fuse", "exploding"])
    assert out.exit_code == 1
    assert out.output == (
        "error: plugin wssbench-exploding:exploding (distribution wssbench-exploding 0.3) failed: "
        "ZeroDivisionError: division by zero (rerun with --traceback)\n"
    )
    out = CliRunner().invoke(group, ["fuse", "threshold"])
    assert out.exit_code == 1 and out.output.startswith("error: internal error: AttributeError")


def test_distributions_of_components(third_party):
    registry = build_registry(plugins=[FakePlugin()], entry_points=[third_party, *builtin_entry_points()])
    versions = registry.distributions_of([("fusion", "exploding"), ("fusion", "threshold"), ("refiner", "fake")])
    assert versions == {"wssbench": wssbench.__version__, "wssbench-exploding": "0.3"}  # FakePlugin: no distribution


def test_python_api():
    assert "gbp" in wssbench.names("saliency")
    method = wssbench.create("fusion", "threshold", bg_threshold=0.4)
    assert method.bg_threshold == 0.4


@dataclass(frozen=True)
class _BaseOptions:
    size: int = 3  # the base's help
    mode: str = "a"  # the base's mode


@dataclass(frozen=True)
class _Inheriting(_BaseOptions):
    mode: str = "b"  # the subclass's own mode
    extra: bool = False  # only here


def test_option_help_is_inherited_and_a_subclass_wins():
    from wssbench.host.options import describe_options

    described = {o.name: (o.default, o.help) for o in describe_options(_Inheriting)}
    assert described == {"size": (3, "the base's help"), "mode": ("b", "the subclass's own mode"), "extra": (False, "only here")}
    grad = {o.name: o.help for o in describe_options(build_registry().get("classmap", "gradcampp").factory)}
    assert set(grad) == {"layer", "scales", "flip"} and all(grad.values())  # Grad-CAM++'s options, written once in their base
