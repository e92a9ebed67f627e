"""Cache of superpixel labellings, by image content: a SLIC labelling depends on the pixels and the
SLIC options only, so the runs of a tuning grid, and the rows that share a photo (the superpixel
CRF, the integer-LP fusion, zoom-out), compute each photo's superpixels once.

One folder per method and options (and scikit-image's version) under ``cache_dir("superpixels")``;
an entry is named by a digest of the image (its shape, dtype and bytes) and holds the labelling as
a compressed ``.npz`` (uint16 when it fits), sealed with a checksum like the maps
(``cache.seal``): a damaged entry is warned about and recomputed. Where the cache cannot be
written the labelling is computed every time, said once.
"""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np

from wssbench.storage.cache import damaged, package_version
from wssbench.storage.mapcache import NO_CLASSES, EntryFolder

SEGMENTS_VERSION = 1


def image_digest(image: np.ndarray) -> str:
    """A digest of an image's shape, dtype and pixels."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.shape}{image.dtype.str}".encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


class SegmentCache(EntryFolder):
    """Labellings (H, W) of one superpixel method and its options: ``get``/``put`` per image."""

    suffix = ".npz"

    def __init__(self, method: str, options: dict):
        super().__init__("superpixels", method, {"version": SEGMENTS_VERSION, "method": method, "options": options,
                                                 "scikit-image": package_version("scikit-image")})

    def get(self, image: np.ndarray) -> np.ndarray | None:
        """The cached labelling (H, W) intp, or None when absent or damaged (warned)."""
        payload, path = self.read(image_digest(image), NO_CLASSES)
        if payload is None:
            return None
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
                segments = archive["segments"]
        except (ValueError, KeyError, EOFError, OSError, zipfile.BadZipFile) as e:
            damaged(path, str(e))
            return None
        if segments.shape != image.shape[:2]:
            damaged(path, f"a {segments.shape} labelling for a {image.shape[:2]} image")
            return None
        return segments.astype(np.intp)

    def put(self, image: np.ndarray, segments: np.ndarray) -> None:
        buffer = io.BytesIO()
        small = segments.astype(np.uint16) if segments.max(initial=0) < 2**16 else segments.astype(np.int32)
        np.savez_compressed(buffer, segments=small)
        self.write(image_digest(image), NO_CLASSES, buffer.getvalue())
