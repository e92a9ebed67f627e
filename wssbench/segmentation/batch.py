"""What a training objective sees: one batch of augmented crops and their weak labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = 255


@dataclass
class SegBatch:
    images: torch.Tensor  # (B, 3, H, W) normalised
    image_labels: torch.Tensor  # (B, N-1) float in {0, 1}: foreground classes present
    valid: torch.Tensor  # (B, H, W) bool: a real pixel, not crop padding
    masks: torch.Tensor | None = None  # (B, H, W) int64 labels, 255 = ignore

    def present(self) -> torch.Tensor:
        """(B, N) bool: background (always) and the foreground classes of each image's labels."""
        fg = self.image_labels > 0.5
        return torch.cat([torch.ones_like(fg[:, :1]), fg], dim=1)

    def valid_at(self, size: tuple[int, int]) -> torch.Tensor:
        """(B, h, w) bool: ``valid`` at the logits' resolution (nearest neighbour)."""
        if tuple(self.valid.shape[-2:]) == tuple(size):
            return self.valid
        return F.interpolate(self.valid[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5


def per_image_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over images of each image's weighted mean: ``values``, ``weights`` (B, h, w) -> scalar.

    An image without any weight contributes 0 (and still counts in the mean over images), so
    that the loss of a batch split across ranks averages to the loss of the whole batch.
    """
    num = (values * weights).flatten(1).sum(1)  # (B,)
    den = weights.flatten(1).sum(1).clamp(min=1.0)  # (B,)
    return (num / den).mean()
