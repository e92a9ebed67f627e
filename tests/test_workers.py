"""The fusion/refinement pool hands back each image as soon as it is done."""

import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from wssbench.runtime.workers import PredictPool


@dataclass(frozen=True)
class SleepFusion:
    """Background everywhere, after sleeping ``image[0, 0, 0]`` tenths of a second."""

    def __call__(self, image, labels, class_maps, saliency_maps):
        time.sleep(image[0, 0, 0] / 10)
        probs = np.zeros((len(labels) + 1, *image.shape[:2]), np.float32)  # (K+1, H, W)
        probs[0] = 1
        return probs


def maps(image_id: str, tenths: int) -> SimpleNamespace:
    image = np.full((4, 4, 3), tenths, np.uint8)
    return SimpleNamespace(image_id=image_id, image=image, labels=np.array([1]), class_maps=None, saliency_maps=None,
                           scores=np.zeros(1))


@pytest.mark.slow
def test_finish_yields_each_result_when_it_is_done_not_after_the_last():
    with PredictPool(SleepFusion(), [], workers=2) as pool:
        pool.submit(maps("fast", 0))
        pool.submit(maps("slow", 30))
        results = pool.results(finish=True)
        first_id, first_at = next(results)[0].image_id, time.monotonic()
        rest = [m.image_id for m, _, _, _ in results]
        last_at = time.monotonic()
    assert (first_id, rest) == ("fast", ["slow"])
    assert last_at - first_at > 1.5  # the fast one came while the slow one (3 s) was still running


def test_inline_pool_gives_the_same_label_maps():
    with PredictPool(SleepFusion(), [], workers=1) as pool:
        pool.submit(maps("a", 0))
        (m, pred, seconds, curve), = pool.results(finish=True)
    assert m.image_id == "a" and pred.shape == (4, 4) and not pred.any() and "fusion" in seconds and curve is None
