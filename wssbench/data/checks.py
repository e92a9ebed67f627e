"""Every file a run will read, checked before the long part (training the classifier: hours on VOC).

For each image of the scored split and of the training split: the image decodes whole (a
truncated JPEG fails here, not after training), its mask decodes, has the image's size and
holds only labels ``0 .. C-1`` and 255. The images are checked in a thread pool (decoding
releases the GIL); a file that passed is remembered by its content (a BLAKE2b digest of its
bytes, read once: seconds for VOC's 12,000 images) in ``$WSSBENCH_HOME/checks/``, so a second run
on the same files decodes nothing. ``--skip-checks`` turns the whole check off.

A dataset takes part through its ``image_path(id)`` and ``mask_path(id)`` (the VOCdevkit
layout's); one without them (a plugin) is checked by its own ``check_files`` only.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from wssbench.errors import DataError
from wssbench.storage.cache import cache_dir, cannot_write
from wssbench.storage.io import atomic_path

CHECKS_VERSION = 1


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_pair(image_path: Path, mask_path: Path, num_classes: int) -> str | None:
    """None when the image decodes and its mask fits it; else what is wrong, naming the file."""
    try:
        with Image.open(image_path) as img:
            img.load()  # decodes everything: a truncated file fails here
            size = img.size
    except FileNotFoundError:
        return f"{image_path}: image not found"
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds for a damaged file
        return f"{image_path}: unreadable image ({e})"
    try:
        with Image.open(mask_path) as img:
            mask = np.asarray(img)
    except FileNotFoundError:
        return f"{mask_path}: mask not found"
    except Exception as e:  # noqa: BLE001
        return f"{mask_path}: unreadable mask ({e})"
    if mask.shape[:2] != (size[1], size[0]):
        return f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image size {size[0]}x{size[1]}"
    bad = (mask >= num_classes) & (mask != 255)
    if bad.any():
        return f"{mask_path}: label {int(mask[bad][0])} out of range; expected 0..{num_classes - 1} or 255"
    return None


def verify_files(dataset: Any, ids: list[str], workers: int | None = None, progress: Callable[[int, int], None] | None = None) -> None:
    """Check every id's image and mask (module docstring); DataError naming the first bad file
    and how many are bad. Files that passed before (same bytes) are not decoded again."""
    if not (callable(getattr(dataset, "image_path", None)) and callable(getattr(dataset, "mask_path", None))):
        return
    ids = list(dict.fromkeys(ids))
    ledger_path = cache_dir("checks", f"{type(dataset).__name__}-v{CHECKS_VERSION}-{dataset.num_classes}.json")
    try:
        passed: set[str] = set(json.loads(ledger_path.read_text()))
    except (OSError, ValueError, TypeError):
        passed = set()
    pairs = [(Path(dataset.image_path(i)), Path(dataset.mask_path(i))) for i in ids]

    def check(pair: tuple[Path, Path]) -> tuple[str | None, str | None]:
        try:
            key = f"{_digest(pair[0])}:{_digest(pair[1])}"
        except OSError:
            key = None
        if key is not None and key in passed:
            return None, key
        return check_pair(*pair, dataset.num_classes), key

    problems, new = [], set()
    with ThreadPoolExecutor(workers or min(8, (os.cpu_count() or 1) + 1)) as pool:
        for done, (problem, key) in enumerate(pool.map(check, pairs), 1):
            if problem:
                problems.append(problem)
            elif key is not None:
                new.add(key)
            if progress:
                progress(done, len(pairs))
    if new - passed:
        try:
            with atomic_path(ledger_path) as tmp:
                tmp.write_text(json.dumps(sorted(passed | new)))
        except OSError as e:
            cannot_write(ledger_path, e)
    if problems:
        more = f" (and {len(problems) - 1} more bad files; --skip-checks skips this check)" if len(problems) > 1 else \
            " (--skip-checks skips this check)"
        raise DataError(problems[0] + more)
