"""Training samples: random rescale, crop (padded where the image is smaller) and flip.

Each sample's randomness is drawn from its own generator, seeded by (seed, epoch, position
in the epoch), so a sample is augmented the same way whichever rank or worker reads it:
two torchrun ranks see exactly the crops one process would.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from wssbench.errors import DataError
from wssbench.runtime.loading import load_all
from wssbench.segmentation.batch import IGNORE
from wssbench.segmentation.config import SegRecipe
from wssbench.storage.io import read_mask


def augment(image: np.ndarray, mask: np.ndarray | None, recipe: SegRecipe, rng: np.random.Generator,
            fill: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """uint8 image (H, W, 3) and mask (H, W) -> crop (S, S, 3), mask (S, S) or None, valid (S, S) bool
    (with ``recipe.crop`` None: the whole rescaled, flipped image).

    Padding is ``fill`` (the normalisation mean, so it reads as 0 to the network) in the image,
    255 in the mask and False in ``valid``.
    """
    h, w = image.shape[:2]
    s = rng.uniform(*recipe.scale)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    t = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=size, mode="bilinear",
                      align_corners=False)[0]  # (3, h', w')
    m = None if mask is None else F.interpolate(torch.from_numpy(mask)[None, None].float(), size=size, mode="nearest")[0, 0]
    flip = recipe.flip and rng.random() < 0.5
    if recipe.crop is None:  # whole images (batches of one): nothing padded, nothing cut
        canvas, valid = t, torch.ones(size, dtype=torch.bool)
        labels = m
    else:
        canvas, labels, valid = _crop(t, m, size, recipe.crop, rng, fill)
    if flip:
        canvas, valid = canvas.flip(-1), valid.flip(-1)
        labels = None if labels is None else labels.flip(-1)
    image_out = canvas.permute(1, 2, 0).clamp(0, 255).round().byte().numpy()
    return image_out, None if labels is None else labels.byte().numpy(), valid.numpy()


def _crop(t: torch.Tensor, m: torch.Tensor | None, size: tuple[int, int], c: int, rng: np.random.Generator,
          fill: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """A random ``c`` x ``c`` crop of the rescaled image (3, h', w') and mask, padded with ``fill``
    (image), 255 (mask) and False (``valid``) where the image is smaller."""
    ph, pw = max(size[0], c), max(size[1], c)
    oy, ox = rng.integers(0, ph - size[0] + 1), rng.integers(0, pw - size[1] + 1)
    y, x = rng.integers(0, ph - c + 1), rng.integers(0, pw - c + 1)
    canvas = torch.tensor(fill, dtype=torch.float32).view(3, 1, 1).repeat(1, ph, pw)
    canvas[:, oy : oy + size[0], ox : ox + size[1]] = t
    valid = torch.zeros(ph, pw, dtype=torch.bool)
    valid[oy : oy + size[0], ox : ox + size[1]] = True
    labels = None
    if m is not None:
        labels = torch.full((ph, pw), float(IGNORE))
        labels[oy : oy + size[0], ox : ox + size[1]] = m
    crop = (slice(y, y + c), slice(x, x + c))
    return canvas[:, crop[0], crop[1]], None if labels is None else labels[crop], valid[crop]


def sample_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, position])


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The epoch's permutation of the training images (the same on every rank)."""
    return np.random.default_rng([seed, epoch, 2**31 - 1]).permutation(n)


class TrainSamples:
    """Images, image labels and (optionally) pseudo-masks of the training split."""

    def __init__(self, dataset: Any, ids: list[str], mask_path: Callable[[str], Any] | None):
        self.dataset, self.ids, self.mask_path = dataset, ids, mask_path
        self.labels = np.stack([dataset.image_labels(i) for i in ids]).astype(np.float32)  # (n, C)

    def load(self, image_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        image = self.dataset.load_image(image_id)
        if self.mask_path is None:
            return image, None
        mask = read_mask(self.mask_path(image_id))
        if mask.shape != image.shape[:2]:
            raise DataError(f"pseudo-mask of '{image_id}' is {mask.shape[1]}x{mask.shape[0]}, its image {image.shape[1]}x{image.shape[0]}")
        return image, mask

    def stream(self, positions: list[int], order: np.ndarray, workers: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """The (image, mask) of each epoch position, in order, read ahead by ``workers`` processes."""
        return load_all(self.load, [self.ids[order[p]] for p in positions], workers)
