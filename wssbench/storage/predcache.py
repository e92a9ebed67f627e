"""Cache of each image's prediction: its label map after fusion and refiners, and, where the run
records a threshold curve, the image's confusion counts at each curve threshold.

A run killed part-way (SIGKILL, a machine taken back) and started again reads these back and runs
fusion and refiners only for the images it had not finished: on VOC-sized images the dense CRF
and the threshold curve are most of a run's CPU time (``benchmarks/README.md``, ``scale.py``).
The key (``wssbench.seed.maps.prediction_cache``) holds everything a label map depends on beyond
the image and its classes: the classifier, the maps' cache keys, the fusion and every refiner
with their options and code digests, the curve's thresholds, the precision and device. Entries
are compressed ``.npz`` files sealed like the maps (``cache.seal``): a damaged one is warned about
and recomputed. Scoring is never cached: it is recomputed from each label map and the ground truth.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np

from wssbench.storage.cache import damaged
from wssbench.storage.mapcache import EntryFolder

PREDICTIONS_VERSION = 1


class PredictionCache(EntryFolder):
    """Label maps (and curve counts) of one run configuration: ``get``/``put`` per image and classes;
    ``hits`` counts the images read back."""

    suffix = ".npz"

    def __init__(self, key: dict[str, Any]):
        super().__init__("predictions", "labels", {"version": PREDICTIONS_VERSION, **key})
        self.hits = 0

    def get(self, image_id: str, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(label map, curve counts or None), or None when absent or damaged."""
        payload, path = self.read(image_id, classes)
        if payload is None:
            return None
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as entry:
                label_map = entry["label_map"]
                curve = entry["curve"] if "curve" in entry.files else None
        except (ValueError, EOFError, OSError, KeyError, zipfile.BadZipFile) as e:
            damaged(path, str(e))
            return None
        self.hits += 1
        return label_map, curve

    def put(self, image_id: str, classes: np.ndarray, label_map: np.ndarray, curve: np.ndarray | None) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, label_map=label_map, **({"curve": curve} if curve is not None else {}))
        self.write(image_id, classes, buffer.getvalue())
