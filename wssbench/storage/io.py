"""Atomic writes, output folders, and label-mask PNGs (VOC palette).

Temporary files and folders are made beside their target and named
``.NAME.<pid>-<host>-<random>.tmp`` (``.old`` for a folder being replaced), so that a later
process can tell those of a process that died (``kill -9``, a power cut) from those of one
still at work, and remove them (``sweep_stale``). They are created with the user's umask, as
any file the user makes, not ``tempfile``'s private 0600/0700.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from wssbench.errors import DataError, UsageError


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: (n, 3) uint8, label 255 is (224, 224, 192)."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for label in range(n):
        c, r, g, b = label, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[label] = (r, g, b)
    return palette


PALETTE = voc_palette()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    The file gets the permissions the user's umask gives a new file (``tempfile`` would make
    it 0600). Its name says which process owns it, so that ``sweep_stale`` can remove it if
    that process is killed before it finishes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temp(path, "tmp", is_dir=False)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a label map (H, W) uint8 as a VOC palette PNG, atomically."""
    img = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    img.putpalette(PALETTE.reshape(-1).tolist())
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a label map from a palette PNG (indices) or a single-channel index PNG."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.mode in ("P", "L", "I", "I;16"):
                return np.array(img, dtype=np.uint8)
            raise DataError(f"{path}: expected a palette or single-channel label PNG, got mode {img.mode}")
    except FileNotFoundError:
        raise DataError(f"{path}: mask not found") from None
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: unreadable mask ({e})") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an RGB image as uint8 (H, W, 3)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except Exception as e:
        raise DataError(f"{path}: unreadable image ({e})") from None


# --- temporary names that say who owns them ------------------------------------------------

HOST = hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-[0-9a-f]{8}\.(?:tmp|old)$")


def _new_temp(path: Path, suffix: str, is_dir: bool) -> Path:
    """Create (exclusively) and return a hidden temporary file or folder beside ``path``."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}-{HOST}-{secrets.token_hex(4)}.{suffix}"
        try:
            if is_dir:
                os.mkdir(tmp, 0o777)  # the umask applies, as for any folder the user makes
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """The temporary files and folders in ``folder`` left by processes of this host that have
    died (only those made for target ``name``, when given)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    stale = []
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if not m or (name is not None and m["name"] != name):
            continue
        if m["host"] == HOST and int(m["pid"]) != os.getpid() and not pid_alive(int(m["pid"])):
            stale.append(Path(entry.path))
    return sorted(stale)


def sweep_stale(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove what ``stale_temps(folder, name)`` finds; returns what was removed.

    Only names of the form this module makes, of a dead process on this host, are touched; a
    folder on a shared file system is swept by each host for its own processes only. Nothing
    that cannot be removed (a read-only folder) is an error.
    """
    removed = []
    for path in stale_temps(folder, name):
        try:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def _make_parents(folder: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it created, deepest first."""
    missing = []
    for parent in (folder, *folder.parents):
        if parent.exists():
            break
        missing.append(parent)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except BaseException:
        _remove_empty(missing)
        raise
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            break


@contextmanager
def atomic_dir(path: str | os.PathLike, before_commit: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole.

    ``before_commit(tmp)`` runs after the body, just before the rename (a last check, or a
    marker file). The folder at ``path`` is renamed away, the new one renamed into place, and
    only then the old one removed; if the second rename fails the old folder is put back. On
    any failure nothing is left behind: not the temporary folder, not the parent folders this
    call created. Temporary folders for ``path`` of processes that died (``kill -9``) are
    removed first.
    """
    path = Path(path)
    created = _make_parents(path.parent)
    sweep_stale(path.parent, path.name)
    try:
        tmp = _new_temp(path, "tmp", is_dir=True)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield tmp
        if before_commit is not None:
            before_commit(tmp)
        if path.exists() or path.is_symlink():
            old = _new_temp(path, "old", is_dir=True)
            old.rmdir()  # only the unique name is wanted; a rename onto a folder needs it gone
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise


# --- run output folders -------------------------------------------------------------------

RUN_MARKER = ".wssbench-run"  # written into every run folder: JSON with every file the run wrote
LATER_FILES = frozenset({"gallery.png", "gallery.html"})  # what ``wssbench show`` once added to a run folder
LEGACY_RUN_FILES = frozenset({"result.json", "masks", "counts.npz"}) | LATER_FILES  # what runs write at the top


def _listing(names: list[str], most: int = 3) -> str:
    shown = ", ".join(sorted(names)[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _tree(path: Path) -> list[str]:
    """Every file and folder under ``path``, as relative POSIX paths (the marker left out)."""
    out = []
    for root, dirs, files in os.walk(path):
        rel = Path(root).relative_to(path)
        out += [(rel / d).as_posix() for d in dirs] + [(rel / f).as_posix() for f in files if (rel / f).as_posix() != RUN_MARKER]
    return sorted(out)


def _is_record(path: Path) -> bool:
    """Whether ``path`` is a result record wssbench wrote (not another tool's ``result.json``)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "record_version" in record and isinstance(record.get("config"), dict)


def _legacy_written(path: Path, tree: list[str]) -> set[str]:
    """What a run folder from before the full manifest may hold: its top-level files and the
    masks it wrote (PNGs directly in ``masks/``)."""
    return {t for t in tree if t in LEGACY_RUN_FILES or (t.startswith("masks/") and t.count("/") == 1 and t.endswith(".png"))}


def check_run_dir(path: str | os.PathLike) -> bool:
    """Whether output folder ``path`` may be written: False when it is new (or an empty
    folder), True when it holds an earlier run that a new run will replace.

    A run folder is one with the ``RUN_MARKER`` a run writes, which lists every file and folder
    the run wrote; a folder from before that list is accepted only when its ``result.json`` is a
    wssbench record and it holds nothing but what a run writes (``result.json``, ``counts.npz``,
    the PNGs of ``masks/``). Raises ``UsageError`` naming the folder when it is something else,
    when anywhere inside it lies a file the run did not write (a user's notes in ``masks/`` are
    never deleted), or when it cannot be written.
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UsageError(f"--out {path}: exists and is not a folder")
    if not path.exists():
        ancestor = next(p for p in (path.parent, *path.parent.parents) if p.exists())
        if not ancestor.is_dir():
            raise UsageError(f"--out {path}: {ancestor} is not a folder")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise UsageError(f"--out {path}: cannot write in {ancestor}")
        return False
    names = os.listdir(path)
    if not names:
        return False
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {path}: cannot replace it, {path.parent} is not writable")
    tree = _tree(path)
    marker = path / RUN_MARKER
    written = None
    if marker.is_file():
        try:
            listed = json.loads(marker.read_text())
            written = set(listed["tree"]) if "tree" in listed else _legacy_written(path, tree) | set(listed["files"])
        except (OSError, ValueError, KeyError, TypeError):
            written = None
    if written is None:
        if not _is_record(path / "result.json"):
            raise UsageError(
                f"--out {path}: exists and is not a wssbench run folder (it holds {_listing(names)}); "
                f"choose another folder, nothing in it was touched"
            )
        written = _legacy_written(path, tree)
    foreign = [t for t in tree if t not in written and t not in LATER_FILES]
    if foreign:
        raise UsageError(
            f"--out {path}: an earlier run's folder that also holds {_listing(foreign)}, which the run "
            f"did not write; move them out or choose another folder"
        )
    return True


def _mark_run(tmp: Path, final: Path) -> None:
    check_run_dir(final)  # again: the folder may have changed while the run worked
    (tmp / RUN_MARKER).write_text(json.dumps({"files": sorted(os.listdir(tmp)), "tree": _tree(tmp)}) + "\n")


@contextmanager
def run_dir(path: str | os.PathLike) -> Iterator[Path]:
    """``atomic_dir`` for a run's output folder: yield a temporary folder that replaces ``path``
    when the body succeeds, marked as a run folder (``RUN_MARKER``).

    Checks ``path`` first with ``check_run_dir`` (call it yourself earlier to fail before any
    work, and to learn whether an earlier run will be replaced) and once more before the
    rename. A folder that cannot be created raises ``UsageError``; on failure nothing is left behind.
    """
    path = Path(path)
    check_run_dir(path)
    entered = False
    try:
        with atomic_dir(path, before_commit=lambda tmp: _mark_run(tmp, path)) as tmp:
            entered = True
            yield tmp
    except OSError as e:
        if entered:
            raise
        raise UsageError(f"--out {path}: cannot create it ({e.strerror or e})") from None


def default_gallery_dir(run_dir: Path) -> Path:
    """``RUN_DIR-gallery`` beside the run: out of the folder that a rerun replaces."""
    run_dir = Path(run_dir)
    return run_dir.parent / f"{run_dir.resolve().name}-gallery"
