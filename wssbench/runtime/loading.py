"""Reading data ahead of the network: torch ``DataLoader`` worker processes decode images
(and masks) while the main process runs the forward and backward passes.

Order is preserved, so results do not depend on the number of workers. A wssbench error met
in a worker (an unreadable image, a mask of the wrong size) comes back as the same one-line
error in the main process, not as a worker traceback.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from wssbench.errors import WssbenchError


class _Failed:
    """A wssbench error raised in a worker, carried back to be raised again in order."""

    def __init__(self, error: WssbenchError):
        self.error = error


class _Items(Dataset):
    def __init__(self, load: Callable[[str], Any], ids: Sequence[str]):
        self.load, self.ids = load, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.load(self.ids[index])
        except WssbenchError as error:
            return _Failed(error)


def _as_is(item: Any) -> Any:
    return item  # keep numpy arrays as they are (the default collate would make tensors)


def load_all(load: Callable[[str], Any], ids: Sequence[str], workers: int = 0, prefetch: int = 4) -> Iterator[Any]:
    """``load(id)`` for every id, in order; with ``workers > 0`` computed ahead in worker processes."""
    if workers <= 0:
        for image_id in ids:
            yield load(image_id)
        return
    loader = DataLoader(
        _Items(load, ids), batch_size=None, shuffle=False, num_workers=min(workers, len(ids)) or 1,
        collate_fn=_as_is, prefetch_factor=prefetch, persistent_workers=False,
    )
    for item in loader:
        if isinstance(item, _Failed):
            raise item.error
        yield item


def default_loader_workers(device: str) -> int:
    """``--loader-workers auto``: decode ahead on a GPU run (up to 8 processes), inline on the CPU.

    On a CPU run the network stages already use every core; extra decoding processes only
    compete with them.
    """
    if torch.device(device).type == "cpu":
        return 0
    return min(8, os.cpu_count() or 1)
