"""One lock per cache entry, so that runs sharing a cache compute each entry once.

The lock is a hidden ``.NAME.lock`` file beside the entry, held with ``filelock`` (``fcntl``
locks on Unix): the kernel releases it when its holder dies, even by ``kill -9``, so a crashed
run never blocks the next one. The pattern is check, lock, check again, compute, write: the
second run waits for the first and then finds the entry written.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

log = logging.getLogger("wssbench")


def lock_path(entry: Path) -> Path:
    return entry.parent / f".{entry.name}.lock"


@contextmanager
def entry_lock(entry: str | Path, on_wait: Callable[[str], None] | None = None) -> Iterator[bool]:
    """Hold the lock of cache entry ``entry`` for the body; yields whether a lock is held.

    When another process holds it, ``on_wait(message)`` is called (default: log at INFO) and
    this one waits, without a time limit: the holder is computing the entry, and the kernel
    frees the lock if it dies. Where no lock file can be made (a read-only cache) nothing can
    be written by anyone, so the body runs unlocked and the entry is computed in memory.
    """
    entry = Path(entry)
    lock = FileLock(lock_path(entry))
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            (on_wait or log.info)(f"waiting for another process computing {entry} (lock {lock_path(entry)})")
            lock.acquire()
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def sweep_locks(folder: Path, keep: Callable[[Path], bool] = lambda entry: entry.exists()) -> int:
    """Remove the lock files in ``folder`` whose entry is gone (``keep(entry)`` false) and that
    no process holds; returns how many. Locks are zero-byte files a finished run leaves behind."""
    removed = 0
    for lock in Path(folder).glob(".*.lock"):
        entry = lock.with_name(lock.name[1: -len(".lock")])
        if keep(entry):
            continue
        held = FileLock(lock)
        try:
            held.acquire(timeout=0)
        except Timeout:
            continue  # in use: another run is computing that entry
        try:
            lock.unlink(missing_ok=True)
            removed += 1
        finally:
            held.release()
    return removed
