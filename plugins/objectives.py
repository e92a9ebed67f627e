"""Training objectives of segmentation networks: ``pseudo-masks``, ``em-adapt``, ``ccnn``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import wssbench

if TYPE_CHECKING:  # torch is imported where it is used: listing plugins stays fast
    import torch

    from wssbench.segmentation.batch import SegBatch


@dataclass(frozen=True)
class PseudoMasks:
    """Cross-entropy on given pseudo-masks (255 ignored), logits upsampled to the mask size."""

    name = "pseudo-masks"
    needs_masks = True

    def __call__(self, logits: torch.Tensor, batch: SegBatch) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        from wssbench.segmentation.batch import IGNORE, per_image_mean

        size = batch.masks.shape[-2:]
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # (B, N, H, W)
        target = torch.where(batch.valid, batch.masks, torch.full_like(batch.masks, IGNORE))  # (B, H, W)
        ce = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")  # (B, H, W)
        return per_image_mean(ce, (target != IGNORE).float())


@dataclass(frozen=True)
class EMAdapt:
    """EM-Adapt (Papandreou et al. 2015): hard EM, adaptive biases give bg/fg their share of each image.

    E-step on the network's own scores (``wssbench_plugins._em_adapt``): background wins at
    least ``bg_fraction`` and each present foreground class at least ``fg_fraction`` of the
    image, absent classes never win; M-step: cross-entropy on that segmentation, at the
    network's output resolution. The E-step runs on the fly at every SGD step on the current
    scores, as the authors' layer does (it sits in the training net, on fc8). The visiting
    order of foreground classes is drawn from this objective's own generator, so under
    torchrun it differs per rank (images with one foreground class are unaffected).
    """

    name = "em-adapt"
    needs_masks = False
    fg_fraction: float = 0.2
    bg_fraction: float = 0.4
    passes: int = 1  # the authors' num_iter
    seed: int = 0  # order in which foreground classes are visited

    def __post_init__(self) -> None:
        if not (0.0 <= self.fg_fraction <= 1.0 and 0.0 <= self.bg_fraction <= 1.0):
            raise ValueError("fg_fraction and bg_fraction must lie in [0, 1]")
        if self.passes < 1:
            raise ValueError(f"passes must be at least 1, got {self.passes}")
        import torch

        object.__setattr__(self, "_generator", torch.Generator().manual_seed(self.seed))

    def __call__(self, logits: torch.Tensor, batch: SegBatch) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        from wssbench.segmentation.batch import IGNORE, per_image_mean
        from wssbench_plugins._em_adapt import em_adapt_labels

        valid = batch.valid_at(tuple(logits.shape[-2:]))  # (B, h, w)
        with torch.no_grad():
            target = em_adapt_labels(logits.float(), batch.present(), valid, self.fg_fraction,
                                     self.bg_fraction, self.passes, self._generator)  # (B, h, w)
        ce = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
        return per_image_mean(ce, (target != IGNORE).float())


@dataclass(frozen=True)
class CCNN:
    """CCNN (Pathak et al. 2015): KL to the closest label distribution under size constraints.

    Per image, the latent distribution P closest in KL to the network's softmax with absent
    classes at 0, each present foreground class >= ``fg_lower`` (soft, ``fg_slack``) and
    ``bg_lower`` <= background <= ``bg_upper``, solved in the dual
    (``wssbench_plugins._ccnn``); the loss is KL(P || softmax), per pixel, at the
    network's output resolution. Defaults: the authors' image-label setting.
    """

    name = "ccnn"
    needs_masks = False
    fg_lower: float = 0.05
    fg_slack: float = 2.0
    bg_lower: float = 0.3
    bg_upper: float = 0.7

    def __post_init__(self) -> None:
        if not 0.0 <= self.bg_lower <= self.bg_upper <= 1.0:
            raise ValueError("need 0 <= bg_lower <= bg_upper <= 1")

    def __call__(self, logits: torch.Tensor, batch: SegBatch) -> torch.Tensor:
        import numpy as np
        import torch
        import torch.nn.functional as F

        from wssbench.segmentation.batch import per_image_mean
        from wssbench_plugins._ccnn import latent_distribution

        b, n, h, w = logits.shape
        valid = batch.valid_at((h, w))  # (B, h, w)
        present = batch.present().cpu().numpy()  # (B, N)
        f = logits.detach().float().permute(0, 2, 3, 1).cpu().numpy()  # (B, h, w, N)
        target = np.zeros_like(f)
        keep = valid.cpu().numpy()
        for i in range(b):
            target[i][keep[i]] = latent_distribution(
                f[i][keep[i]], present[i], fg_lower=self.fg_lower, fg_slack=self.fg_slack,
                bg_lower=self.bg_lower, bg_upper=self.bg_upper,
            )
        p = torch.from_numpy(target).to(logits.device).permute(0, 3, 1, 2)  # (B, N, h, w)
        kl = (torch.xlogy(p, p) - p * F.log_softmax(logits.float(), dim=1)).sum(1)  # (B, h, w)
        return per_image_mean(kl, valid.float())


@wssbench.hookimpl
def register_objectives(register):
    register(PseudoMasks)
    register(EMAdapt)
    register(CCNN)
