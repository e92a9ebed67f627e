"""Fusion and refinement, per image on the CPU, in a process pool.

While the main process computes the next batch's maps (the network stages), worker processes
fuse and refine the previous images. With ``workers <= 1`` the same interface runs inline.
Components that keep counters (``stats()``) report them from each worker; the pool sums them.

Workers end when the process that started them dies, even by ``kill -9`` (which runs no
clean-up): each watches its parent's pid from a thread (``watch_parent``) and exits when it
changes. Chosen over Linux's ``prctl(PR_SET_PDEATHSIG)`` because that fires when the parent
*thread* that forked the worker ends (a pool started from a short-lived thread would lose its
workers under it) and exists on Linux only; the cost is up to ``PARENT_POLL`` seconds of delay.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Iterator

import numpy as np

from wssbench.results.metrics import confusion, confusions_at

_state: dict[str, Any] = {}


Curve = tuple[tuple[float, ...], int]  # the background thresholds to score the fusion at, and the number of labels


def predict_one(maps: Any, fusion: Any, refiners: list[tuple[str, Any]], curve: Curve | None = None
                ) -> tuple[np.ndarray, dict[str, float], np.ndarray | None]:
    """Fuse and refine one image's maps: the label map (H, W) uint8, seconds per stage, and with
    ``curve`` the confusion matrices (T, C, C + 1) of the fusion's label maps (before refiners) at
    each threshold (a fusion with ``labels_at``; None when it has no threshold to sweep)."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    extra = {"scores": maps.scores[maps.labels - 1]} if getattr(fusion, "needs_scores", False) else {}
    if getattr(fusion, "uses_background", False):
        extra.update(background=maps.background, background_score=maps.background_score)
    probs = fusion(maps.image, maps.labels, maps.class_maps, maps.saliency_maps, **extra)  # (K+1, H, W)
    seconds["fusion"] = time.perf_counter() - start
    matrices = None
    if curve is not None:
        start = time.perf_counter()
        points, num_classes = curve
        args = (maps.image, maps.labels, maps.class_maps, maps.saliency_maps)
        if callable(getattr(fusion, "threshold_evidence", None)):  # every threshold in one pass over the pixels
            evidence = fusion.threshold_evidence(*args, **extra)
            if evidence is not None:
                matrices = confusions_at(maps.mask, *evidence, points, num_classes)  # (T, C, C + 1)
        else:
            at = fusion.labels_at(points, *args, **extra)
            if at is not None:
                matrices = np.stack([confusion(maps.mask, pred, num_classes) for pred in at])  # (T, C, C + 1)
        seconds["threshold_curve"] = time.perf_counter() - start
    for name, refiner in refiners:
        start = time.perf_counter()
        probs = refiner(maps.image, probs)  # (K+1, H, W)
        seconds[f"refine:{name}"] = time.perf_counter() - start
    values = np.concatenate([[0], maps.labels]).astype(np.uint8)
    return values[probs.argmax(0)], seconds, matrices


def component_stats(fusion: Any, refiners: list[tuple[str, Any]]) -> dict[str, dict]:
    named = [("fusion", fusion), *refiners]
    return {stage: c.stats() for stage, c in named if callable(getattr(c, "stats", None))}


def merge_stats(parts: list[dict[str, dict]]) -> dict[str, dict]:
    """Counters of several workers (or ranks), summed per stage and key."""
    total: dict[str, dict] = {}
    for stats in parts:
        for stage, counters in stats.items():
            merged = total.setdefault(stage, {})
            for key, value in counters.items():
                merged[key] = merged.get(key, 0) + value
    return total


PARENT_POLL = 0.5  # seconds between a worker's checks that its parent is alive


def watch_parent(parent: int, poll: float = PARENT_POLL) -> threading.Thread:
    """Start a daemon thread that ends this process (``os._exit``) once its parent, pid
    ``parent``, is gone: the process is then adopted by another (its pid changes)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(1)  # no clean-up to run: the parent that wanted the results is dead

    thread = threading.Thread(target=watch, name="wssbench-watch-parent", daemon=True)
    thread.start()
    return thread


def _init(parent: int, fusion: Any, refiners: list[tuple[str, Any]], curve: Curve | None) -> None:
    watch_parent(parent)
    _state["fusion"], _state["refiners"], _state["curve"] = fusion, refiners, curve


def _work(maps: Any) -> tuple[Any, np.ndarray, dict[str, float], Any, int, dict]:
    pred, seconds, curve = predict_one(maps, _state["fusion"], _state["refiners"], _state["curve"])
    return maps, pred, seconds, curve, os.getpid(), component_stats(_state["fusion"], _state["refiners"])


class PredictPool:
    """``submit(maps)`` images, iterate ``results()`` as (maps, label map, seconds per stage,
    threshold-curve confusions or None)."""

    def __init__(self, fusion: Any, refiners: list[tuple[str, Any]], workers: int, max_pending: int = 32,
                 curve: Curve | None = None):
        self.fusion, self.refiners, self.curve = fusion, refiners, curve
        self.workers = workers
        self.max_pending = max_pending
        self._pending: set[Future] = set()
        self._done: list[tuple[Any, np.ndarray, dict[str, float], np.ndarray | None]] = []
        self._stats_by_worker: dict[int, dict] = {}
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> "PredictPool":
        if self.workers > 1:
            # fork is how torch's DataLoader starts workers on Linux; spawn elsewhere
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context(method),
                initializer=_init, initargs=(os.getpid(), self.fusion, self.refiners, self.curve),
            )
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=exc[0] is None, cancel_futures=True)

    def submit(self, maps: Any) -> None:
        if self._executor is None:
            self._done.append((maps, *predict_one(maps, self.fusion, self.refiners, self.curve)))
            return
        if len(self._pending) >= self.max_pending:
            self._collect(block=True)
        self._pending.add(self._executor.submit(_work, maps))

    def results(self, finish: bool = False) -> Iterator[tuple[Any, np.ndarray, dict[str, float], np.ndarray | None]]:
        """What is done so far; with ``finish``, everything submitted, each as soon as it is done
        (so that the caller writes and reports it then, not after the last one)."""
        self._collect(block=False)
        while True:
            done, self._done = self._done, []
            yield from done
            if not (finish and self._pending):
                return
            self._collect(block=True)

    def stats(self) -> dict[str, dict]:
        if self._executor is None:
            return component_stats(self.fusion, self.refiners)
        return merge_stats(list(self._stats_by_worker.values()))

    def _collect(self, block: bool) -> None:
        if not self._pending:
            return
        finished, self._pending = wait(self._pending, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in finished:
            maps, pred, seconds, curve, pid, stats = future.result()
            self._stats_by_worker[pid] = stats
            self._done.append((maps, pred, seconds, curve))
