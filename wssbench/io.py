"""Atomic writes and label-mask PNGs (VOC palette)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from .errors import DataError


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
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
