"""PSA / AffinityNet (Ahn & Kwak, CVPR 2018), as the authors' code jiwoon-ahn/psa computes it.

Three steps from the max-normalised CAMs of an image's own classes (K, H, W):

1. confident regions (infer_cls.py lines 90-110): a dense CRF (``PSA_CRF``) on
   [(1 - max_k cam_k) ** alpha, cams] for alpha 4 (``la``: background amplified) and 32
   (``ha``: background suppressed); :func:`crf_with_alpha`, :func:`confident_labels`;
2. AffinityNet (network/resnet38_aff.py, train_aff.py): three backbone levels -> 1x1 convs
   (64, 128, 256) + ELU -> concat (448) -> 1x1 conv + ELU; affinity ``exp(-mean_c |f_i - f_j|)``
   for the pairs within radius 5 at the feature stride, trained with bg/4 + fg/4 + neg/2;
3. the random walk (infer_aff.py): background (1 - max) ** 16, CAMs average-pooled to the
   feature grid, walked with beta 8 and T ** 256 (:mod:`wssbench.methods.random_walk`), bilinear
   upsampling, argmax.

The released code applies no CRF to the walked labels (the paper's "+dCRF" row does; psa issue
#10); this follows the code. Departures, all forced by wssbench's backbones: the backbone is a
timm model instead of ResNet-38/VGG-16, its three last feature levels stand for conv4/5/6, and
levels of a backbone that cannot keep stride 8 (no dilation) are bilinearly upsampled to the
finest one; ``nn.Upsample(mode='bilinear')`` is read as ``align_corners=False`` (PyTorch >= 0.4.1;
the README names 0.4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wssbench.methods.affinity import IGNORE, BackboneLevels, batches, pair_labels, poly_sgd, random_crop, sgd_step, steps_per_epoch
from wssbench.methods.crf import PSA_CRF, CRFParams, crf_from_scores
from wssbench.methods.random_walk import PairAffinity, pair_indices, random_walk

# infer_cls.py lines 25-26; infer_aff.py lines 59-62; resnet38_aff.py line 29 (radius 5)
LOW_ALPHA, HIGH_ALPHA = 4, 32
RW_ALPHA, BETA, LOG_T = 16, 8, 8
RADIUS = 5
NO_SCORE = 1e-5  # voc12/data.py line 222: pooled score stacks below this are outside the image


def background(cams: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - max_k cams_k) ** alpha -> (1, H, W); cams (K, H, W) in [0, 1]."""
    return np.power(1 - cams.max(axis=0, keepdims=True), alpha)


def crf_with_alpha(image: np.ndarray, cams: np.ndarray, alpha: float, params: CRFParams = PSA_CRF) -> np.ndarray:
    """PSA's ``_crf_with_alpha`` (infer_cls.py lines 90-102): CRF marginals (K + 1, H, W) of
    [background(cams, alpha), cams]; ``image`` uint8 (H, W, 3), ``cams`` (K, H, W) >= 1 class."""
    scores = np.concatenate([background(cams, alpha), cams]).astype(np.float32)  # (K+1, H, W)
    return crf_from_scores(image, scores, params)


def pool_scores(scores: np.ndarray, stride: int) -> np.ndarray:
    """Block means over ``stride`` x ``stride`` cells, zero-padded at the end (train_aff.py
    ``imutils.AvgPool2d(8)`` = ``skimage.measure.block_reduce(..., np.mean)``): (C, H, W) ->
    (C, ceil(H / stride), ceil(W / stride))."""
    from skimage.measure import block_reduce

    return block_reduce(scores, (1, stride, stride), np.mean)


def confident_labels(la: np.ndarray, ha: np.ndarray) -> np.ndarray:
    """The label map (h, w) of voc12/data.py lines 222-229 from the low- and high-alpha CRF stacks
    (K + 1, h, w) (already cropped and pooled, as the authors do): ``argmax(la)`` for confident
    classes 1 .. K; 0 where even ``ha`` (background suppressed) says background; 255 where
    ``la`` (background amplified) says background but ``ha`` does not, and where neither stack
    has any score (outside the image)."""
    arg_la, arg_ha = la.argmax(axis=0), ha.argmax(axis=0)
    labels = arg_la.astype(np.int64)
    labels[arg_la == 0] = IGNORE
    labels[arg_ha == 0] = 0
    labels[np.maximum(la.max(axis=0), ha.max(axis=0)) < NO_SCORE] = IGNORE
    return labels  # (h, w)


class AffinityNet(nn.Module):
    """AffinityNet on a timm backbone (resnet38_aff.py lines 10-58): ``features(x)`` (B, 448, h, w)
    at stride ``self.stride``; ``pair_affinity(features, src, dst)`` (B, M) = exp(-mean |f_i - f_j|).

    ``backbone``: a timm model with ``feature_info`` (e.g. ``resnet50`` with output_stride 8,
    as ResNet-38's conv4/5/6 all are at stride 8); its last three levels feed the head. The
    head's convolutions have no bias and start as the authors': Kaiming-normal for the three
    reductions, Xavier-uniform with gain 4 for the last.
    """

    widths = (64, 128, 256)

    def __init__(self, backbone: nn.Module, freeze: str = "stem"):
        super().__init__()
        self.levels = BackboneLevels(backbone, [-3, -2, -1], freeze=freeze)
        self.reduce = nn.ModuleList(nn.Conv2d(c, w, 1, bias=False) for c, w in zip(self.levels.channels, self.widths))
        self.merge = nn.Conv2d(sum(self.widths), sum(self.widths), 1, bias=False)
        for conv in self.reduce:
            nn.init.kaiming_normal_(conv.weight)
        nn.init.xavier_uniform_(self.merge.weight, gain=4)
        self.stride = min(self.levels.reductions)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.levels(x)
        size = max((f.shape[-2:] for f in levels), key=lambda s: s[0] * s[1])
        parts = [F.elu(conv(f)) for conv, f in zip(self.reduce, levels)]
        parts = [p if p.shape[-2:] == size else F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in parts]
        return F.elu(self.merge(torch.cat(parts, dim=1)))  # (B, 448, h, w)

    @staticmethod
    def pair_affinity(features: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        flat = features.flatten(2)  # (B, C, N)
        return torch.exp(-(flat[:, :, src] - flat[:, :, dst]).abs().mean(dim=1))  # (B, M)

    def parameter_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """train_aff.py lines 69-74: backbone weights lr x1, backbone biases x2 without decay, new
        weights x10, new biases x20 without decay (the head has none)."""
        weights, biases = self.levels.parameter_groups()
        new = [*self.reduce.parameters(), *self.merge.parameters()]
        return [
            {"params": weights, "lr": lr, "weight_decay": weight_decay},
            {"params": biases, "lr": 2 * lr, "weight_decay": 0.0},
            {"params": [p for p in new if p.dim() > 1], "lr": 10 * lr, "weight_decay": weight_decay},
            {"params": [p for p in new if p.dim() == 1], "lr": 20 * lr, "weight_decay": 0.0},
        ]


def affinity_loss(aff: torch.Tensor, bg_pos: torch.Tensor, fg_pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """train_aff.py lines 105-113: each term the mean over its pairs (count + 1e-5) of
    -log(aff + 1e-5) (bg-pos, fg-pos) or -log(1 + 1e-5 - aff) (neg); loss bg/4 + fg/4 + neg/2."""
    bg = (-bg_pos * torch.log(aff + 1e-5)).sum() / (bg_pos.sum() + 1e-5)
    fg = (-fg_pos * torch.log(aff + 1e-5)).sum() / (fg_pos.sum() + 1e-5)
    ng = (-neg * torch.log(1.0 + 1e-5 - aff)).sum() / (neg.sum() + 1e-5)
    return bg / 4 + fg / 4 + ng / 2, {"bg": bg.item(), "fg": fg.item(), "neg": ng.item()}


@dataclass(frozen=True)
class Training:
    """train_aff.py lines 18-31 and the README command: lr 0.1, batch 8, 8 epochs, crop 448,
    weight decay 5e-4; augmentation ColorJitter(0.3, 0.3, 0.3, 0.1), random crop, flip."""

    lr: float = 0.1
    batch_size: int = 8
    epochs: int = 8
    crop_size: int = 448
    weight_decay: float = 5e-4
    radius: int = RADIUS
    jitter: tuple[float, float, float, float] = (0.3, 0.3, 0.3, 0.1)


@dataclass(frozen=True)
class Sample:
    """One training image: uint8 (H, W, 3) and its CRF stacks ``la``/``ha`` (K + 1, H, W)."""

    image: np.ndarray
    la: np.ndarray
    ha: np.ndarray


def _augment(sample: Sample, config: Training, stride: int, mean: np.ndarray, std: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """train_aff.py lines 44-63 and voc12/data.py lines 196-229: jitter, crop (the image padded with
    black: PSA crops before it normalises, unlike IRN), normalise, flip, then the stacks pooled to
    the feature stride and turned into labels."""
    from torchvision.transforms import ColorJitter

    image = torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1)  # (3, H, W) uint8
    image = ColorJitter(*config.jitter)(image).permute(1, 2, 0).numpy().astype(np.float32)  # (H, W, 3)
    stacks = np.concatenate([sample.la, sample.ha]).transpose(1, 2, 0).astype(np.float32)  # (H, W, 2K+2)
    image, stacks = random_crop([image, stacks], config.crop_size, [0.0, 0.0], rng)
    image = (image / 255.0 - mean) / std
    if rng.integers(2):
        image, stacks = image[:, ::-1], stacks[:, ::-1]
    pooled = pool_scores(np.ascontiguousarray(stacks.transpose(2, 0, 1)), stride)  # (2K+2, h, w)
    la, ha = np.split(pooled, 2)
    return np.ascontiguousarray(image.transpose(2, 0, 1)), confident_labels(la, ha)


def train(net: AffinityNet, samples: Sequence[Sample], config: Training, mean: Sequence[float], std: Sequence[float],
          device: torch.device | str = "cpu", seed: int = 0, on_step: Callable[[int, int], None] | None = None) -> list[float]:
    """Train ``net`` in place as train_aff.py does (poly SGD with the authors' momentum quirk,
    :func:`wssbench.methods.affinity.poly_sgd`; last incomplete batch dropped); returns the loss of
    every step. ``on_step(done, total)`` is called after each step."""
    rng = np.random.default_rng(seed)
    mean_a, std_a = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    side = math.ceil(config.crop_size / net.stride)
    src, dst = (torch.from_numpy(a).to(device) for a in pair_indices(side, side, config.radius, border="crop"))
    steps = steps_per_epoch(len(samples), config.batch_size)
    optimizer, schedule = poly_sgd(net.parameter_groups(config.lr, config.weight_decay), config.lr,
                                   config.weight_decay, steps * config.epochs)
    net.to(device).train()
    losses = []
    augment = partial(_augment, config=config, stride=net.stride, mean=mean_a, std=std_a, rng=rng)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # ColorJitter draws from torch's generator
        for images, labels in batches(samples, augment, config.batch_size, config.epochs, rng, device):  # labels (B, h, w)
            bg_pos, fg_pos, neg = (t.to(device) for t in pair_labels(labels, src.cpu(), dst.cpu()))  # (B, M)
            features = net.features(images)
            if features.shape[-2:] != labels.shape[-2:]:
                raise ValueError(f"features {tuple(features.shape[-2:])} and pooled labels {tuple(labels.shape[-2:])} differ")
            loss, _ = affinity_loss(net.pair_affinity(features, src, dst), bg_pos, fg_pos, neg)
            losses.append(sgd_step(optimizer, schedule, loss))
            if on_step is not None:
                on_step(len(losses), steps * config.epochs)
    net.eval()
    return losses


@torch.no_grad()
def walk(net: AffinityNet, image: torch.Tensor, cams: torch.Tensor, alpha: float = RW_ALPHA, beta: float = BETA,
         log_t: int = LOG_T, radius: int = RADIUS, method: str = "sparse") -> torch.Tensor:
    """infer_aff.py lines 84-120: the walked scores (K + 1, H, W), background first; their argmax is
    PSA's pseudo-mask (0 background, k the k-th of the image's classes).

    ``image``: normalised (1, 3, H, W); ``cams``: (K, H, W) in [0, 1], the image's own classes.
    The image is zero-padded at the bottom and right to a multiple of the stride, the background
    (1 - max) ** alpha is computed at full size, the stack zero-padded and average-pooled by the
    stride, walked on the pairs of the feature grid (``border="crop"``, PSA's index set) and
    bilinearly upsampled.
    """
    net.eval()
    s = net.stride
    h, w = cams.shape[-2:]
    ph, pw = math.ceil(h / s) * s, math.ceil(w / s) * s
    features = net.features(F.pad(image, (0, pw - w, 0, ph - h)))  # (1, 448, ph/s, pw/s)
    grid = features.shape[-2:]
    if tuple(grid) != (ph // s, pw // s):
        raise ValueError(f"the backbone's {tuple(grid)} grid is not the image's {ph // s} x {pw // s} at stride {s}")
    scores = torch.cat([(1 - cams.amax(dim=0, keepdim=True)) ** alpha, cams])  # (K+1, H, W)
    pooled = F.avg_pool2d(F.pad(scores, (0, pw - w, 0, ph - h))[None], s, s)[0]  # (K+1, ph/s, pw/s)
    src, dst = (torch.from_numpy(a).to(features.device) for a in pair_indices(*grid, radius, border="crop"))
    values = net.pair_affinity(features, src, dst)[0].float()  # (M,)
    walked = random_walk(pooled.to(values), PairAffinity(src, dst, values, tuple(grid)), beta, log_t, method)
    up = F.interpolate(walked[None], size=(ph, pw), mode="bilinear", align_corners=False)[0]
    return up[:, :h, :w]  # (K+1, H, W)
