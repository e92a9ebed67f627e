"""What of a dataset determines a classifier trained on it, without where it lies on disk.

A cache moved or copied elsewhere (another ``WSSBENCH_HOME``, another ``--data-root``) keeps
its classifiers: their key holds the data's content, not its path.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def training_data_key(dataset: Any, split: str) -> dict:
    """A digest of what a classifier trained on ``split`` of ``dataset`` sees.

    - ``ids``: every id of the split, in order (their count too, for people reading the key);
    - ``content``: the dataset's own ``content_key()`` when it has one (the synthetic dataset:
      the spec that generates every byte); otherwise the image labels of the split and the
      size of each image file (``image_path``, read by ``stat``, not by opening the file).

    Choice: sizes rather than a digest of every image, because the key is computed on every
    run and VOC's train_aug is 10,582 JPEGs (hashing them took seconds); an image edited to
    the very same byte count is the one change this misses.
    """
    ids = list(dataset.ids(split))
    content_key = getattr(dataset, "content_key", None)
    if callable(content_key):
        content = content_key()
    else:
        h = hashlib.sha256()
        labels = np.stack([np.asarray(dataset.image_labels(i), dtype=bool) for i in ids]) if ids else np.zeros(0)
        h.update(np.packbits(labels, axis=-1).tobytes() + str(labels.shape).encode())
        image_path = getattr(dataset, "image_path", None)
        if callable(image_path):
            h.update(np.array([image_path(i).stat().st_size for i in ids], dtype=np.int64).tobytes())
        content = h.hexdigest()[:16]
    return {
        "n_ids": len(ids),
        "ids": hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16],
        "content": content,
    }
