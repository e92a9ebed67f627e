"""The ``wssbench`` command line. Errors become one-line messages here and only here.

Commands are imported only when invoked (``COMMANDS``), so ``wssbench --help``, ``list`` and
``plugins`` never import torch, timm or scikit-learn.

An exception that is not a :class:`~wssbench.errors.WssbenchError` is a bug. When a
third-party plugin's code is on its traceback (:meth:`wssbench.host.registry.Registry.blame`), it
is reported as that plugin's failure, naming the plugin and its distribution; otherwise
(wssbench or a built-in plugin) as an internal error of wssbench.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings

import click

from wssbench.errors import WssbenchError

TRACEBACK_KEY = "wssbench.traceback"

# name -> (module, attribute, one-line help). The help is shown by ``wssbench --help`` without
# importing the module; tests check that it is the first line of the command's own help.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("wssbench.cli.run", "run_command", "Segment a split with one combination of components and score it (mIoU)."),
    "eval": ("wssbench.cli.evaluate", "eval_command", "Score PRED_DIR (palette or index PNGs named <id>.png) as the VOC devkit does."),
    "bench": ("wssbench.cli.bench", "bench_command", "Run every row of a bench FILE (TOML), resuming finished rows, and print the table."),
    "leaderboard": ("wssbench.cli.leaderboard", "leaderboard_command", "Rank every run (result.json) under DIR: one table per dataset, split, protocol and precision."),
    "pseudo-mask": ("wssbench.cli.pseudomask", "pseudo_mask_command", "Make pseudo-masks of a split with a learned affinity and a random walk (PSA, IRN) and score them (mIoU)."),
    "segment": ("wssbench.cli.segment", "segment_command", "Train a segmentation network on pseudo-masks or image labels and score it (mIoU)."),
    "explain": ("wssbench.cli.explain", "explain_command", "Draw IMAGE's saliency and class maps per class into one PNG panel."),
    "saliency-eval": ("wssbench.cli.saliency_eval", "saliency_eval_command", "Evaluate saliency maps: pointing game, energy, deletion/insertion AUC, sanity check."),
    "show": ("wssbench.cli.show", "show_command", "Write a gallery of a run's images: image, truth, class map, saliency map, prediction."),
    "presets": ("wssbench.cli.presets", "presets_command", "List the presets (the published methods), or show one's recipe exactly as a run uses it."),
    "plugins": ("wssbench.cli.plugins", "plugins_command", "List every registered component by kind, with the plugin that registered it."),
    "list": ("wssbench.cli.plugins", "list_command", "List the names of one KIND of component, with a one-line description each."),
    "data": ("wssbench.cli.data", "data", "Download and inspect datasets."),
    "cache": ("wssbench.cli.cache", "cache", "Show and prune wssbench's cache ($WSSBENCH_HOME, default ~/.cache/wssbench)."),
}


def _set_traceback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[TRACEBACK_KEY] = True


traceback_option = click.option(
    "--traceback", is_flag=True, expose_value=False, is_eager=True, callback=_set_traceback,
    help="Show the full traceback of an error.",
)


class WssbenchGroup(click.Group):
    """Loads its commands lazily from ``lazy`` (name -> (module, attribute, help)) and turns
    errors into ``error: ...`` on stderr and the error's exit code."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in self.lazy:
            module, attribute, _ = self.lazy[name]
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return self.commands.get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table's one-line helps: nothing is imported to print it."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy:
                rows.append((name, self.lazy[name][2]))
            elif not self.commands[name].hidden:
                rows.append((name, self.commands[name].get_short_help_str(limit=200)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except WssbenchError as e:
            if ctx.meta.get(TRACEBACK_KEY):
                raise
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: no result was written", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # the reader of stdout went away (``| head``): stop quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
            ctx.exit(141)
        except Exception as e:  # a bug: say whose in one line unless asked for more
            if ctx.meta.get(TRACEBACK_KEY):
                raise
            click.echo(f"error: {describe_failure(e)} (rerun with --traceback)", err=True)
            ctx.exit(1)


def describe_failure(error: BaseException) -> str:
    """``plugin P (distribution D V) failed: ...`` when a third-party plugin's code raised it,
    else ``internal error: ...`` (wssbench or a built-in plugin)."""
    from wssbench.host.registry import loaded_registry  # only when a command failed: start-up stays light

    registry = loaded_registry()
    culprit = registry.blame(error) if registry is not None else None
    what = f"{type(error).__name__}: {error}"
    if culprit is None:
        return f"internal error: {what}"
    return f"{culprit.describe()} failed: {what}"


@click.group(cls=WssbenchGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@traceback_option
@click.version_option(package_name="wssbench")
def cli() -> None:
    """Benchmark weakly-supervised semantic segmentation methods as plugins."""
    warnings.formatwarning = _one_line_warning
    _say_library_messages()


def _say_library_messages() -> None:
    """The library's own messages (``logging.getLogger("wssbench")``: waiting for another run's
    lock, ...) as ``info: ...`` lines on stderr."""
    log = logging.getLogger("wssbench")
    if not any(getattr(h, "_wssbench", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("info: %(message)s"))
        handler._wssbench = True  # type: ignore[attr-defined]
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main() -> None:
    cli(prog_name="wssbench")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
