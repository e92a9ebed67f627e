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
