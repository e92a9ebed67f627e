"""Content-addressed cache of class maps and saliency maps.

Maps depend on the trained classifier, the component, its options, its code (a digest of the
source of the package that defines it, and of wssbench's: an edited method, even in an
editable install with an unchanged version number, gets new maps), the numerical precision
and the classes asked for; they do not depend on fusion or refinement.
So a sweep over fusion or refinement settings reads them back instead of running
back-propagation again. One folder
per (classifier, component, options, versions) under ``cache_dir("maps")``, one ``.npy`` per
(image, classes), each written atomically and sealed with a checksum (``cache.seal``): a
truncated or altered entry is reported as a warning naming its file and recomputed. Where the
cache cannot be written (a read-only ``WSSBENCH_HOME``) maps are computed and used in memory,
said once.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from wssbench.storage.cache import cache_dir, cannot_write, damaged, fingerprint, package_version, seal, unseal
from wssbench.storage.io import atomic_path, sweep_stale

MAPS_VERSION = 2  # 2: entries carry a checksum trailer


@functools.lru_cache(maxsize=None)
def source_digest(module_name: str) -> str:
    """Digest of the source of the top-level package of ``module_name``: every ``.py`` file
    under it (path and content), or the module's own file when it is not a package. Code with no
    file (``python -c``, a notebook's ``__main__``) has no digest: "no-source"."""
    top = importlib.import_module(module_name.partition(".")[0])
    if not getattr(top, "__file__", None):
        return "no-source"
    path = Path(top.__file__)
    files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
    h = hashlib.sha256()
    for file in files:
        h.update(str(file.relative_to(path.parent)).encode() + b"\0" + file.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def code_digests(factory: Any) -> dict[str, str]:
    """The source digests a component's maps depend on: its own package's and wssbench's."""
    modules = {factory.__module__.partition(".")[0], "wssbench"}
    return {name: source_digest(name) for name in sorted(modules)}


NO_CLASSES = np.zeros(0, np.int64)  # the class list of an entry that is per image only (scores, superpixels)


class EntryFolder:
    """One cache folder of sealed per-image entries, named ``<name>-<fingerprint(key)>`` under
    ``cache_dir(section)``, its key written beside them as ``key.json``: the reading and writing
    that map and prediction caches share. Entries are bytes; subclasses give them a format."""

    suffix = ".npy"

    def __init__(self, section: str, name: str, key: dict[str, Any]):
        self.key = key
        self.dir = cache_dir(section, f"{name}-{fingerprint(self.key)}")
        self._writable: bool | None = None  # unknown until the first write

    def path(self, image_id: str, classes: np.ndarray) -> Path:
        return self.dir / f"{image_id}~{'-'.join(str(int(c)) for c in classes)}{self.suffix}"

    def read(self, image_id: str, classes: np.ndarray) -> tuple[bytes | None, Path]:
        """An entry's payload (None when absent or damaged: warned, then recomputed) and its path."""
        path = self.path(image_id, classes)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None, path
        except OSError as e:
            damaged(path, e.strerror or str(e))
            return None, path
        payload = unseal(blob)
        if payload is None:
            damaged(path, f"checksum mismatch, {len(blob)} bytes")
        return payload, path

    def write(self, image_id: str, classes: np.ndarray, payload: bytes) -> None:
        """Store an entry atomically; where the cache cannot be written, say so once and go on."""
        if self._writable is False:
            return
        try:
            if self._writable is None:
                self.dir.mkdir(parents=True, exist_ok=True)
                sweep_stale(self.dir)  # partial entries of runs that were killed
                if not (self.dir / "key.json").is_file():
                    with atomic_path(self.dir / "key.json") as tmp:
                        tmp.write_text(json.dumps(self.key, indent=2, default=str) + "\n")
            with atomic_path(self.path(image_id, classes)) as tmp:
                tmp.write_bytes(seal(payload))
            self._writable = True
        except OSError as e:
            self._writable = False
            cannot_write(self.dir, e)


class MapCache(EntryFolder):
    """Maps of one component for one classifier: ``get``/``put`` per image and class list."""

    def __init__(self, classifier: str, kind: str, name: str, plugin: str, options: dict[str, Any],
                 compute: dict[str, str] | None = None, code: dict[str, str] | None = None):
        key = {
            "version": MAPS_VERSION,
            "classifier": classifier,
            "kind": kind,
            "name": name,
            "plugin": plugin,
            "plugin_version": package_version(plugin),
            "wssbench_version": package_version("wssbench"),
            "options": options,
        }
        if code:
            key["code"] = code
        key.update(compute or {})  # precision / device when not fp32 on the CPU (``wssbench.seed.classifier.compute_key``)
        super().__init__("maps", f"{kind}-{name}", key)

    def get(self, image_id: str, classes: np.ndarray) -> np.ndarray | None:
        """The cached maps, or None when absent or damaged (warned, then recomputed)."""
        payload, path = self.read(image_id, classes)
        if payload is None:
            return None
        try:
            return np.load(io.BytesIO(payload), allow_pickle=False)
        except (ValueError, EOFError, OSError) as e:
            damaged(path, str(e))
            return None

    def put(self, image_id: str, classes: np.ndarray, maps: np.ndarray) -> None:
        """Store ``maps``; where the cache cannot be written, say so once and go on."""
        buffer = io.BytesIO()
        np.save(buffer, maps, allow_pickle=False)
        self.write(image_id, classes, buffer.getvalue())
