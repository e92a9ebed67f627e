"""Where wssbench keeps generated data, trained classifiers and downloads."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
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


# --- entries that detect their own damage --------------------------------------------------

SEAL = b"WSSBSEAL"  # then a 16-byte BLAKE2b digest of everything before it


def seal(payload: bytes) -> bytes:
    """``payload`` followed by a checksum trailer; ``unseal`` gives it back or says it is damaged.

    A NumPy ``.npy`` or a pickle keeps loading with its own reader: both stop at their end."""
    return payload + SEAL + hashlib.blake2b(payload, digest_size=16).digest()


def unseal(blob: bytes) -> bytes | None:
    """The payload of a ``seal``-ed blob, or None when it is truncated, altered or not sealed."""
    n = len(SEAL) + 16
    if len(blob) < n or blob[-n:-16] != SEAL:
        return None
    payload = blob[:-n]
    return payload if hashlib.blake2b(payload, digest_size=16).digest() == blob[-16:] else None


def damaged(path: Path, why: str) -> None:
    """Warn that cache entry ``path`` is damaged and will be recomputed, and remove it if we can."""
    warnings.warn(f"{path}: damaged cache entry ({why}); recomputing it", stacklevel=2)
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


_unwritable: set[str] = set()


def cannot_write(path: Path, error: OSError) -> None:
    """Say once per cache folder that it cannot be written, so results stay in memory.

    A read-only ``WSSBENCH_HOME`` (a shared, mounted cache) is read from as usual; what is
    computed is used for this run and not kept.
    """
    root = cache_dir()
    where = root if root in path.parents else path.parent
    if str(where) in _unwritable:
        return
    _unwritable.add(str(where))
    warnings.warn(
        f"cache {where} cannot be written ({error.strerror or error}): what this run computes is "
        f"not kept; point WSSBENCH_HOME at a writable folder to keep it", stacklevel=2,
    )
