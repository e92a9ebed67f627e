"""The CLI's cheap commands: lazy command loading, no torch for --help/list/plugins, option listing."""

import importlib
import inspect
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import wssbench
from wssbench.cli import COMMANDS, cli
from wssbench.host.registry import build_registry

HEAVY = ("torch", "timm", "sklearn")


def heavy_imports(*args: str) -> list[str]:
    """The heavy libraries a fresh interpreter has imported after running ``wssbench ARGS``."""
    code = (
        "import sys\n"
        "from wssbench.cli import cli\n"
        f"cli.main({list(args)!r}, prog_name='wssbench', standalone_mode=False)\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return eval(out.rsplit("HEAVY ", 1)[1])  # a printed list of names


def imports_torch(module: str) -> bool:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"


def test_help_imports_no_command_and_no_heavy_library():
    assert heavy_imports("--help") == []


@pytest.mark.parametrize("args", [("list", "saliency"), ("list", "fusion", "--options"), ("plugins",)])
def test_list_and_plugins_import_no_heavy_library(args):
    assert heavy_imports(*args) == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_table_is_each_commands_own_first_line(name):
    module, attribute, short = COMMANDS[name]
    command = getattr(importlib.import_module(module), attribute)
    assert command.name == name
    assert short == inspect.cleandoc(command.help).splitlines()[0]


def test_help_lists_every_command_with_its_line():
    out = CliRunner().invoke(cli, ["--help"], terminal_width=200)
    assert out.exit_code == 0
    for name, (_, _, short) in COMMANDS.items():
        assert f"  {name} " in out.output and short in " ".join(out.output.split())


def test_unknown_command_is_a_usage_error():
    out = CliRunner().invoke(cli, ["nosuch"])
    assert out.exit_code == 2 and "No such command 'nosuch'" in out.output


def test_list_options_shows_types_and_defaults():
    out = CliRunner().invoke(cli, ["list", "refiner", "--options"])
    assert out.exit_code == 0, out.output
    assert "    -O densecrf.iterations: int = 10\n" in out.output
    assert "    -O sppxl-crf.srgb: float = 20.0  # colour scale of the pairwise weight, levels of 0..255\n" in out.output
    out = CliRunner().invoke(cli, ["list", "classmap", "--options", "--json"])
    gradcam = {o["name"]: o for o in json.loads(out.output)["gradcam"]["options"]}
    assert gradcam["layer"] == {"name": "layer", "type": "str", "required": False, "default": "", "help": gradcam["layer"]["help"]}
    assert gradcam["flip"]["type"] == "bool" and gradcam["flip"]["default"] is False


def test_every_listed_option_is_accepted_by_the_registry():
    """What ``list --options`` shows is what ``-O`` takes: each default, written as text, parses back."""
    from wssbench.cli.plugins import _show
    from wssbench.host.options import REQUIRED, describe_options

    registry = build_registry()
    for entry in registry.entries():
        for option in describe_options(entry.factory):
            if option.default is REQUIRED or option.default is None:
                continue
            text = _show(option.default).strip('"')
            if text == "":
                continue
            parsed = registry.parse_options(entry.kind, entry.name, {option.name: text})[option.name]
            assert parsed == option.default or (isinstance(parsed, tuple) and list(parsed) == list(option.default)), (
                entry.name, option.name, text, parsed,
            )


class Broken:
    @wssbench.hookimpl
    def register_refiners(self, register):
        raise RuntimeError("cannot register")


def test_plugins_table_shows_failed_plugins(use_registry):

    with pytest.warns(UserWarning, match="Broken-0 failed"):
        registry = build_registry(plugins=[Broken()], entry_points=False)
    use_registry(registry)
    out = CliRunner().invoke(cli, ["plugins"], terminal_width=200)
    assert out.exit_code == 0
    failed_row = [line for line in out.output.splitlines() if "Broken-0" in line]
    assert len(failed_row) == 1 and failed_row[0].split("│")[1].strip() == "failed"
    assert "failed in register_refiners, skipped:" in out.output and "RuntimeError: cannot register" in out.output
    out = CliRunner().invoke(cli, ["plugins", "--json"])
    assert json.loads(out.output)["failed"] == [
        {"plugin": "Broken-0", "stage": "register_refiners", "error": "RuntimeError: cannot register"}
    ]


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "--seed: expected 0 or more, got -1"),
    (["--epochs", "0"], "'--epochs': 0 is not in the range x>=1"),
    (["--lr", "-1"], "'--lr': -1.0 is not in the range x>0"),
])
def test_out_of_range_recipe_values_are_one_line_usage_errors(args, message, tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["run", "-O", "dataset.preset=tiny", *args])
    assert result.exit_code == 2 and message in result.output and "internal error" not in result.output


def test_range_checks_hold_for_the_api_records_and_bench_rows(tmp_path):
    import json

    import wssbench
    from wssbench.errors import UsageError
    from wssbench.seed.config import config_from_record

    with pytest.raises(UsageError, match="--epochs: expected at least 1, got 0"):
        wssbench.build_config(epochs=0)
    record = tmp_path / "result.json"
    record.write_text(json.dumps({"config": {"recipe": {"epochs": -5}}}))
    with pytest.raises(UsageError, match=r"result.json: --epochs: expected at least 1, got -5"):
        config_from_record(record)
    bench = tmp_path / "b.toml"
    bench.write_text('[[rows]]\nlabel = "x"\nlr = -1\n')
    result = CliRunner().invoke(cli, ["bench", str(bench)])
    assert result.exit_code == 2 and "row 'x': --lr: expected a positive number" in result.output


def test_none_on_the_command_line_turns_a_stage_off(tmp_path, monkeypatch):
    """--saliency none and --classmap none reach the config (they once read as 'not given')."""
    from wssbench.cli.run import description_from_flags, run_command

    ctx = run_command.make_context("run", ["--saliency", "none", "--classmap", "fcn", "--refine", "none"])
    given = description_from_flags(dict(ctx.params))
    assert given["saliency"] == "none" and given["refine"] == "none"
    from wssbench.seed.config import build_config

    config = build_config({k: v for k, v in given.items() if k not in ("out", "from_record", "as_json")}, device="cpu")
    assert config.saliency is None and config.classmap == "fcn" and config.refine == ()


def test_a_reader_that_stops_early_gets_no_error():
    """``wssbench list classmap --options | head``: the pipe may close before wssbench writes (here
    always: ``true`` reads nothing and exits first); wssbench stops quietly, exit 141 as Unix tools do."""
    done = subprocess.run(f"'{sys.executable}' -m wssbench list classmap --options | true; echo ${{PIPESTATUS[0]}}", shell=True,
                          executable="/bin/bash", capture_output=True, text=True, check=True)
    assert done.stderr == "" and done.stdout.strip() == "141"
