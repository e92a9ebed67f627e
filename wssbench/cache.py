"""Where wssbench keeps generated data, trained classifiers and downloads."""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def cache_dir(*parts: str) -> Path:
    """``$WSSBENCH_HOME`` (default ``~/.cache/wssbench``) joined with ``parts``."""
    home = os.environ.get("WSSBENCH_HOME")
    base = Path(home) if home else Path.home() / ".cache" / "wssbench"
    return base.joinpath(*parts)


def fingerprint(data: Any, length: int = 16) -> str:
    """A stable hex digest of JSON-serialisable ``data``."""
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def file_digest(path: str | os.PathLike, length: int | None = 16, algorithm: str = "sha256") -> str:
    """Hex digest of a file's content, read in 1 MiB chunks; ``length=None`` keeps it whole."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return None
