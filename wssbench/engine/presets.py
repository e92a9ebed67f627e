"""A named method as published: its recipe as run options, what could not be checked, and what
wssbench does differently. The seed presets (:mod:`wssbench.seed.presets`) and the segmentation
presets (:mod:`wssbench.segmentation.presets`) are tables of these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    description: str
    options: dict[str, Any] = field(default_factory=dict)  # the published recipe, as run options
    published: str = ""
    unverified: tuple[str, ...] = ()  # recipe options chosen where the source could not be checked
    departures: tuple[dict[str, str], ...] = ()  # what wssbench's implementation does differently
    why: dict[str, str] = field(default_factory=dict)  # option -> why it is unverified (else the table's general reason)

    def reasons(self, general: dict[str, str]) -> dict[str, str]:
        """Each unverified option with why it is a choice: this preset's reason, else ``general``'s."""
        return {o: self.why.get(o) or general.get(o) or "not checked against the paper or the authors' code" for o in self.unverified}

    def deviations(self, changed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A run's ``changed`` options (``{"option", "published", "used"}``), each flagged
        ``"unverified": True`` where this preset's value was a choice, then the departures."""
        flagged = [{**d, "unverified": True} if d["option"] in self.unverified else d for d in changed]
        return flagged + [dict(d) for d in self.departures]


def text(value: Any) -> str:
    """A value as the command line writes it, for comparing a recipe's strings with typed options."""
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(text(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
