"""The site's folder: written whole, and replaced only where the site wrote everything in it.

A site folder holds ``MANIFEST``: JSON ``{"files": {relative path: sha256}}`` of every file the
build wrote. A later build may replace the folder only when it holds nothing else: no file the
manifest does not name, none changed since (a user's edit of ``index.html`` is theirs). A new
site is built in a temporary folder beside ``--out`` and renamed into place
(``wssbench.storage.io.atomic_dir``), so a failed build leaves the earlier site as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from wssbench.errors import UsageError
from wssbench.storage.io import atomic_dir

MANIFEST = ".wssbench-site"


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of every entry that is not a folder under ``root``, and of
    every link (a link is never followed)."""
    for folder, dirs, files in os.walk(root):
        for name in [*files, *(d for d in dirs if (Path(folder) / d).is_symlink())]:
            path = Path(folder) / name
            yield path.relative_to(root).as_posix(), path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(names: list[str], most: int = 3) -> str:
    names = sorted(names)
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def check_site_dir(path: Path) -> bool:
    """Whether ``--out`` may be written: False when it is new or empty, True when it is an earlier
    site this build replaces; ``UsageError`` naming the folder and what is wrong otherwise."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UsageError(f"--out {path}: exists and is not a folder")
    if not path.exists():
        ancestor = next(p for p in (path.parent, *path.parent.parents) if p.exists())
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            raise UsageError(f"--out {path}: cannot write in {ancestor}")
        return False
    if not any(path.iterdir()):
        return False
    manifest = path / MANIFEST
    if not manifest.is_file() or manifest.is_symlink():
        names = [p.name for p in path.iterdir()]
        raise UsageError(f"--out {path}: exists and is not a site this command wrote (it holds {_listing(names)}); "
                         "choose another folder, nothing in it was touched")
    try:
        written = json.loads(manifest.read_text())["files"]
        if not isinstance(written, dict):
            raise TypeError("files is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--out {path}: its {MANIFEST} is damaged ({e}); choose another folder, nothing in it was touched") from None
    foreign, changed = [], []
    for name, file in _files(path):
        if name == MANIFEST:
            continue
        if name not in written or file.is_symlink():
            foreign.append(name)
        elif _sha256(file) != written[name]:
            changed.append(name)
    if foreign:
        raise UsageError(f"--out {path}: holds {_listing(foreign)}, which the site did not write; "
                         "move them out or choose another folder, nothing in it was touched")
    if changed:
        raise UsageError(f"--out {path}: {_listing(changed)} changed since the site wrote it; "
                         "move it out or choose another folder, nothing in it was touched")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {path}: cannot replace it, {path.parent} is not writable")
    return True


def write_site(path: Path, fill: Callable[[Path], None]) -> bool:
    """``fill(tmp)`` writes the site into a temporary folder that then replaces ``path``, with its
    manifest; True when an earlier site was replaced. Checked before and once more just before
    the rename (the folder may have changed meanwhile)."""
    path = Path(path)
    replacing = check_site_dir(path)

    def commit(tmp: Path) -> None:
        check_site_dir(path)
        files = {name: _sha256(file) for name, file in sorted(_files(tmp))}
        (tmp / MANIFEST).write_text(json.dumps({"files": files}, indent=0) + "\n")

    try:
        with atomic_dir(path, before_commit=commit) as tmp:
            fill(tmp)
    except PermissionError as e:
        raise UsageError(f"--out {path}: cannot write it ({e.strerror or e})") from None
    return replacing
