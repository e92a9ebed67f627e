"""The ``wssbench`` command line. Errors become one-line messages here and only here."""

from __future__ import annotations

import sys
import warnings

import click

from ..errors import WssbenchError

TRACEBACK_KEY = "wssbench.traceback"


def _set_traceback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[TRACEBACK_KEY] = True


traceback_option = click.option(
    "--traceback", is_flag=True, expose_value=False, is_eager=True, callback=_set_traceback,
    help="Show the full traceback of an error.",
)


class WssbenchGroup(click.Group):
    """Turns wssbench errors into ``error: ...`` on stderr and the error's exit code."""

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
        except Exception as e:  # a bug: say so in one line unless asked for more
            if ctx.meta.get(TRACEBACK_KEY):
                raise
            click.echo(f"error: internal error: {type(e).__name__}: {e} (rerun with --traceback)", err=True)
            ctx.exit(1)


@click.group(cls=WssbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@traceback_option
@click.version_option(package_name="wssbench")
def cli() -> None:
    """Benchmark weakly-supervised semantic segmentation methods as plugins."""
    warnings.formatwarning = _one_line_warning


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def _register_commands() -> None:
    from .bench import bench_command
    from .cache import cache
    from .data import data
    from .evaluate import eval_command
    from .explain import explain_command
    from .leaderboard import leaderboard_command
    from .plugins import list_command, plugins_command
    from .run import run_command
    from .show import show_command

    cli.add_command(run_command)
    cli.add_command(eval_command)
    cli.add_command(plugins_command)
    cli.add_command(list_command)
    cli.add_command(leaderboard_command)
    cli.add_command(bench_command)
    cli.add_command(explain_command)
    cli.add_command(show_command)
    cli.add_command(data)
    cli.add_command(cache)
    cli.add_command(__import__("wssbench.cli.segment", fromlist=["segment_command"]).segment_command)


_register_commands()


def main() -> None:
    cli(prog_name="wssbench")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
