"""Cache entries as named arrays: the bytes of an ``.npz``, never a pickle.

Anyone who can write to a shared ``WSSBENCH_HOME`` can recompute an entry's checksum
(:func:`wssbench.storage.cache.seal`); an entry that were unpickled could run their code. Entries
that are not plain tensors (mi-SVM fits, object proposals) are therefore stored as numeric and
string arrays and read with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np


def pack_arrays(arrays: dict[str, Any]) -> bytes:
    """Named arrays as the bytes of an ``.npz`` (numeric and string arrays only: an object
    array is refused, as it would be stored as a pickle)."""
    if any(np.asarray(v).dtype.hasobject for v in arrays.values()):
        raise TypeError("pack_arrays: object arrays would be pickled; convert them to numeric or string arrays")
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def unpack_arrays(payload: bytes) -> dict[str, np.ndarray] | None:
    """The arrays of :func:`pack_arrays`' bytes, read with ``allow_pickle=False``; None when the
    bytes are not such an archive (the caller treats the entry as damaged)."""
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return None
