"""Reading result records: a ``result.json`` checked for what readers (the leaderboard, stage 2's
pseudo-mask runs) need, with a one-line error naming the file when it is not one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wssbench.errors import DataError

REQUIRED = {"dataset": str, "split": str, "protocol": str, "n_images": int, "config": dict}


def read_record(path: Path) -> dict:
    """One result record, checked for what the leaderboard needs; DataError naming the file if not."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: not a JSON object")
    for key, kind in REQUIRED.items():
        if not isinstance(record.get(key), kind):
            raise DataError(f"{path}: '{key}' missing or not a {kind.__name__}")
    if "miou" not in record:
        raise DataError(f"{path}: 'miou' missing")
    for key in ("miou", "pixel_accuracy"):
        if not is_score(record.get(key)):
            raise DataError(f"{path}: '{key}' is not a number")
    return record


def is_score(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


# Recipe fields added after rows were first finished, with the default that keeps the old behaviour:
# left out at that default of a bench row's key (finished rows stay finished) and of the
# leaderboard's experiment key (a seed run before the field existed joins its row's other seeds).
LATER_RECIPE_DEFAULTS = {"head_init": "random"}


def without_later_defaults(described: Any) -> Any:
    """``described`` with every ``recipe`` mapping in it (a seed run's, a pseudo-mask row's seeds')
    stripped of ``LATER_RECIPE_DEFAULTS`` at their defaults."""
    if not isinstance(described, dict):
        return described
    out = {k: without_later_defaults(v) for k, v in described.items()}
    recipe = out.get("recipe")
    if isinstance(recipe, dict):
        out["recipe"] = {k: v for k, v in recipe.items() if LATER_RECIPE_DEFAULTS.get(k, object()) != v}
    return out
