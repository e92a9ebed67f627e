"""Helpers every class-map producer shares: picking the requested classes, max-normalising."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used, so listing the plugins stays fast
    import torch  # plugins import this module when they register: no torch until maps are made


def select(maps: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Pick the requested classes: (B, C, h, w), (B, K) -> (B, K, h, w), zeros for padding."""
    import torch  # plugins import this module when they register: no torch until maps are made

    b, _, h, w = maps.shape
    picked = torch.gather(maps, 1, classes.clamp(min=0)[:, :, None, None].expand(-1, -1, h, w))
    return picked * (classes >= 0)[:, :, None, None]


def max_normalise(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Clip negatives and divide each (B, K) map by its maximum: values in [0, 1].

    In float32 whatever came in: in fp16 ``eps`` rounds to 0 and an all-negative map would
    become 0/0.
    """
    maps = maps.float().clamp(min=0)
    return maps / (maps.amax(dim=(2, 3), keepdim=True) + eps)
