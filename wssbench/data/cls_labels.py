"""Reading ``cls_labels.npy``, the image-label file of psa and irn, without running its pickle.

The file is ``np.save`` of a dict ``{image id: float32 (20,) multi-hot}``: an ``.npy`` whose
object array is stored as a pickle. ``np.load(..., allow_pickle=True)`` would run whatever the
pickle asks for (a file that came with a dataset root could run a shell command), so the pickle
is read here by an unpickler that admits only what such a file is made of: NumPy's array and
dtype reconstruction (the object array, the float arrays inside), and plain containers and
strings. Anything else (a class, a function, ``os.system``) is refused before it is built,
and the structure is checked: one dict of string ids to numeric 1-D arrays.

Files that hold no pickle (a plain numeric ``.npy``) are not image-label tables and are refused
too. Errors are :class:`DataError` naming the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from wssbench.errors import DataError

# (module, name) pairs an object array of arrays pickles to, across NumPy 1.x and 2.x
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("codecs", "encode"),  # protocol 2's spelling of bytes
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load '{module}.{name}': not part of an image-label table")


def read_cls_labels(path: Path) -> dict[str, np.ndarray]:
    """The table ``{image id: labels (C,)}`` of a psa/irn ``cls_labels.npy``; DataError when the
    file is not one (or asks to run anything)."""
    try:
        with open(path, "rb") as f:
            version = npy_format.read_magic(f)
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            if not dtype.hasobject or shape != ():
                raise DataError(f"{path}: not an image-label table (expected np.save of a dict, found a {dtype} array of shape {shape})")
            table = _ArraysOnly(f).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, ValueError, EOFError, OSError, AttributeError, TypeError, IndexError) as e:
        raise DataError(f"{path}: unreadable image labels ({type(e).__name__}: {e})") from None
    if isinstance(table, np.ndarray) and table.dtype == object and table.shape == ():
        table = table.item()
    if not isinstance(table, dict):
        raise DataError(f"{path}: not an image-label table (a {type(table).__name__}, expected a dict of id -> labels)")
    out = {}
    for key, value in table.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in "biuf":
            raise DataError(f"{path}: entry {key!r} is not a string id with a numeric 1-D label array")
        out[key] = value
    return out
