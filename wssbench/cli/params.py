"""Click parameter types whose choices come from the plugin registry, looked up lazily."""

from __future__ import annotations

import click

from wssbench.errors import WssbenchError
from wssbench.host.registry import default_registry


class ComponentName(click.ParamType):
    """A registered component name of one kind (``none`` allowed where the stage is optional)."""

    def __init__(self, kind: str, optional: bool = False):
        self.kind = kind
        self.optional = optional
        self.name = kind

    def choices(self) -> list[str]:
        return default_registry().names(self.kind) + (["none"] if self.optional else [])

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        try:
            return "[" + "|".join(self.choices()) + "]"
        except WssbenchError:
            return self.kind.upper()

    def convert(self, value, param, ctx):
        if value is None or value == "":
            return value
        if self.optional and value == "none":
            return "none"  # kept as text: None would read as 'not given' and the default stage would run
        choices = self.choices()
        if value not in choices and (self.kind, value) in default_registry().clashes:
            default_registry().get(self.kind, value)  # raises the clash, naming both plugins
        if value not in choices:
            self.fail(f"unknown {self.kind} '{value}'; available: {', '.join(choices)}", param, ctx)
        return value
