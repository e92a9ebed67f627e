"""IRN (Ahn, Cho & Kwak, CVPR 2019), the semantic part, as the authors' code jiwoon-ahn/irn computes it.

1. confident regions (step/cam_to_ir_label.py): the image's CAMs padded with a constant
   background of 0.30 and of 0.05, each argmax through a label CRF (``IRN_CRF``, gt_prob 0.7);
   confident foreground from the 0.30 map, confident background where both say background, the
   rest 255 (:func:`confident_labels`);
2. the class-boundary branch of IRNet (net/resnet50_irn.py): every backbone level -> 1x1 conv
   to 32 + GroupNorm(4) (+ upsampling to stride 4) + ReLU -> concat -> 1x1 conv -> boundary
   logit at stride 4; the affinity of a pair is 1 - the largest boundary probability on the
   pixels of the line between them (``PathIndex``, misc/indexing.py), within radius 10 in
   training; loss ((bg_pos/2 + fg_pos/2) + neg) / 2 (step/train_irn.py lines 55-69);
3. the random walk (step/make_sem_seg_labels.py, ``propagate_to_edge``): stride-4 CAMs times
   (1 - boundary), radius 5, beta 10, T ** 256; bilinear x4, divided by the global maximum,
   constant background 0.25, argmax.

IRN also trains a displacement-field branch, used only for instance masks. It is left out: the
backbone features both branches read are detached (resnet50_irn.py lines 111-115, backbone in
eval mode), the branches share no parameter, and the total loss is a sum, so the displacement
terms give the boundary branch no gradient and SGD updates each parameter from its own
gradient alone; the boundary map, the only input of the semantic walk, is the same with or
without it. The loss kept is the boundary half of the authors' total, ``(pos + neg) / 2``, so the
gradient scale is theirs.

Departures, forced by wssbench's backbones: a timm backbone instead of torchvision's ResNet-50
with strides (2, 2, 2, 1) (timm's output_stride=16 dilates the last stage where IRN leaves it
undilated); a level at stride 2 is max-pooled (3, stride 2, padding 1) to stride 4, which for a
timm ResNet is the network's own max-pool, so the level is IRN's stage-1 output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from wssbench.methods.affinity import IGNORE, BackboneLevels, batches, pair_labels, poly_sgd, random_crop, sgd_step, steps_per_epoch
from wssbench.methods.crf import IRN_CRF, IRN_GT_PROB, CRFParams, crf_from_labels
from wssbench.methods.random_walk import PairAffinity, pair_indices, random_walk, source_boxes

# run_sample.py lines 35-36, 39-44, 47-52; train_irn.py line 12 (radius 10); make_sem_seg_labels.py (radius 5)
FG_THRESHOLD, BG_THRESHOLD = 0.30, 0.05
TRAIN_RADIUS, WALK_RADIUS = 10, 5
BETA, EXP_TIMES = 10, 8
SEM_SEG_BG = 0.25
STRIDE = 4


def confident_labels(image: np.ndarray, cams: np.ndarray, keys: Sequence[int], fg_threshold: float = FG_THRESHOLD,
                     bg_threshold: float = BG_THRESHOLD, params: CRFParams = IRN_CRF, gt_prob: float = IRN_GT_PROB) -> np.ndarray:
    """cam_to_ir_label.py lines 25-40: (H, W) uint8 with 0 confident background, ``keys[k] + 1`` the
    confident class of map k, 255 neither. ``image`` uint8 (H, W, 3); ``cams`` (K, H, W) the
    image's own classes at full size (IRN's ``high_res``), max-normalised; ``keys`` their class
    indices (0-based, without background)."""
    ids = np.concatenate([[0], np.asarray(keys, dtype=np.int64) + 1])  # (K+1,)

    def through_crf(threshold: float) -> np.ndarray:
        padded = np.concatenate([np.full((1, *cams.shape[1:]), threshold, dtype=np.float32), cams])  # (K+1, H, W)
        return ids[crf_from_labels(image, padded.argmax(axis=0), len(ids), params, gt_prob).argmax(axis=0)]

    fg, bg = through_crf(fg_threshold), through_crf(bg_threshold)
    conf = fg.copy()
    conf[fg == 0] = IGNORE
    conf[(bg + fg) == 0] = 0
    return conf.astype(np.uint8)


def rescale_nearest(label: np.ndarray, scale: float) -> np.ndarray:
    """voc12/dataloader.py line 269 (``imutils.pil_rescale(label, 0.25, 0)``): PIL nearest resize to
    round(side * scale)."""
    h, w = label.shape
    size = (int(np.round(w * scale)), int(np.round(h * scale)))
    return np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))


def _path(dy: int, dx: int) -> list[tuple[int, int]]:
    """indexing.py ``get_search_paths_dst``: the grid points (y, x) in the box from (0, 0) to
    (dy, dx) closer than 1 to the line through both (both ends included)."""
    length_sq = dy * dy + dx * dx
    return [(y, x) for y in range(min(0, dy), max(0, dy) + 1) for x in range(min(0, dx), max(0, dx) + 1)
            if (dy * x - dx * y) ** 2 / length_sq < 1]


def path_affinity(boundary: torch.Tensor, radius: int, border: str = "crop") -> torch.Tensor:
    """``1 - max`` of the boundary probability on each pair's path (indexing.py ``edge_to_affinity``)
    -> (B, M) for the pairs of :func:`wssbench.methods.random_walk.pair_indices` (same order).
    ``boundary``: (B, h, w) in [0, 1]. ``border="all"`` gives IRN's inference set (the boundary
    padded with 1 and the dense matrix cropped back, indexing.py ``propagate_to_edge``)."""
    _, h, w = boundary.shape
    out = []
    for (dy, dx), (y0, y1, x0, x1) in source_boxes(h, w, radius, border):
        on_path = torch.stack([boundary[:, y0 + py: y1 + py, x0 + px: x1 + px] for py, px in _path(dy, dx)])  # (L, B, ...)
        out.append(1 - on_path.amax(dim=0).flatten(1))
    return torch.cat(out, dim=1)  # (B, M)


class BoundaryNet(nn.Module):
    """IRNet's class-boundary branch on a frozen timm backbone (resnet50_irn.py lines 22-54, 106-122):
    ``net(x)`` -> boundary logits (B, 1, h, w) at stride 4."""

    width = 32

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.levels = BackboneLevels(backbone, list(range(len(backbone.feature_info))), freeze="all")
        if min(self.levels.reductions) < 2 or not any(r == STRIDE for r in self.levels.reductions):
            raise ValueError(f"IRN needs a backbone level at stride 4; this one has strides {self.levels.reductions}")
        branches = []
        for channels, reduction in zip(self.levels.channels, self.levels.reductions):
            layers: list[nn.Module] = [nn.MaxPool2d(3, 2, 1)] if reduction < STRIDE else []
            layers += [nn.Conv2d(channels, self.width, 1, bias=False), nn.GroupNorm(4, self.width)]
            if reduction > STRIDE:
                layers.append(nn.Upsample(scale_factor=reduction // STRIDE, mode="bilinear", align_corners=False))
            layers.append(nn.ReLU(inplace=True))
            branches.append(nn.Sequential(*layers))
        self.branches = nn.ModuleList(branches)
        self.out = nn.Conv2d(self.width * len(branches), 1, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.levels(x)
        size = next(f.shape[-2:] for f, r in zip(levels, self.levels.reductions) if r == STRIDE)
        parts = [branch(f)[..., : size[0], : size[1]] for branch, f in zip(self.branches, levels)]
        return self.out(torch.cat(parts, dim=1))  # (B, 1, h, w)


def boundary_loss(aff: torch.Tensor, bg_pos: torch.Tensor, fg_pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """train_irn.py lines 55-69 without the displacement terms: ``(pos + neg) / 2`` with ``pos =
    bg/2 + fg/2``, each term -log(aff + 1e-5) or -log(1 + 1e-5 - aff) averaged over its pairs
    (count + 1e-5)."""
    pos_loss, neg_loss = -torch.log(aff + 1e-5), -torch.log(1.0 + 1e-5 - aff)
    bg = (bg_pos * pos_loss).sum() / (bg_pos.sum() + 1e-5)
    fg = (fg_pos * pos_loss).sum() / (fg_pos.sum() + 1e-5)
    ng = (neg * neg_loss).sum() / (neg.sum() + 1e-5)
    return (bg / 2 + fg / 2 + ng) / 2, {"bg": bg.item(), "fg": fg.item(), "neg": ng.item()}


@dataclass(frozen=True)
class Training:
    """run_sample.py lines 39-44 and train_irn.py: lr 0.1, batch 32, 3 epochs, crop 512, weight decay
    1e-4; augmentation random scale 0.5-1.5, flip, random crop."""

    lr: float = 0.1
    batch_size: int = 32
    epochs: int = 3
    crop_size: int = 512
    weight_decay: float = 1e-4
    radius: int = TRAIN_RADIUS
    rescale: tuple[float, float] = (0.5, 1.5)


def _augment(image: np.ndarray, label: np.ndarray, config: Training, mean: np.ndarray, std: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """voc12/dataloader.py lines 237-246 and 269-271: rescale (bicubic / nearest), normalise, flip,
    crop (fills 0 / 255), the label reduced x0.25 (nearest)."""
    scale = config.rescale[0] + rng.random() * (config.rescale[1] - config.rescale[0])
    h, w = label.shape
    size = (int(np.round(w * scale)), int(np.round(h * scale)))
    image = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
    label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
    image = (image.astype(np.float32) / 255.0 - mean) / std
    if rng.integers(2):
        image, label = image[:, ::-1], label[:, ::-1]
    image, label = random_crop([image, np.ascontiguousarray(label)], config.crop_size, [0.0, IGNORE], rng)
    return np.ascontiguousarray(image.transpose(2, 0, 1)), rescale_nearest(label, 1 / STRIDE)


def train(net: BoundaryNet, samples: Sequence[tuple[np.ndarray, np.ndarray]], config: Training, mean: Sequence[float],
          std: Sequence[float], device: torch.device | str = "cpu", seed: int = 0,
          on_step: Callable[[int, int], None] | None = None) -> list[float]:
    """Train the boundary branch in place as train_irn.py does (poly SGD with the authors' momentum
    quirk, lr x1 with weight decay; last incomplete batch dropped). ``samples``: (uint8 image (H, W,
    3), confident labels (H, W) from :func:`confident_labels`). Returns every step's loss."""
    if config.crop_size % STRIDE:
        raise ValueError(f"crop_size must be a multiple of {STRIDE}, got {config.crop_size}")
    rng = np.random.default_rng(seed)
    mean_a, std_a = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    side = config.crop_size // STRIDE
    src, dst = (torch.from_numpy(a) for a in pair_indices(side, side, config.radius, border="crop"))
    steps = steps_per_epoch(len(samples), config.batch_size)
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer, schedule = poly_sgd([{"params": trainable, "lr": config.lr, "weight_decay": config.weight_decay}],
                                   config.lr, config.weight_decay, steps * config.epochs)
    net.to(device).train()
    losses = []

    def augment(sample: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return _augment(*sample, config, mean_a, std_a, rng)

    for images, labels in batches(samples, augment, config.batch_size, config.epochs, rng, device):  # labels (B, S/4, S/4)
        bg_pos, fg_pos, neg = (t.to(device) for t in pair_labels(labels, src, dst))  # (B, M)
        boundary = torch.sigmoid(net(images))[:, 0]  # (B, S/4, S/4)
        loss, _ = boundary_loss(path_affinity(boundary, config.radius, "crop"), bg_pos, fg_pos, neg)
        losses.append(sgd_step(optimizer, schedule, loss))
        if on_step is not None:
            on_step(len(losses), steps * config.epochs)
    net.eval()
    return losses


@torch.no_grad()
def boundary_map(net: BoundaryNet, image: torch.Tensor, pad_to: int | None = 512) -> torch.Tensor:
    """resnet50_irn.py ``EdgeDisplacement`` (lines 216-234): the image and its flip, zero-padded at the
    bottom and right to ``pad_to`` (the authors' 512; None or a smaller size: to a multiple of 32),
    ``sigmoid(logit / 2 + flipped logit flipped back / 2)`` cropped to (ceil(H / 4), ceil(W / 4)).
    ``image``: normalised (1, 3, H, W)."""
    net.eval()
    h, w = image.shape[-2:]
    ph = pad_to if pad_to is not None and pad_to >= max(h, w) else math.ceil(h / 32) * 32
    pw = pad_to if pad_to is not None and pad_to >= max(h, w) else math.ceil(w / 32) * 32
    both = F.pad(torch.cat([image, image.flip(-1)]), (0, pw - w, 0, ph - h))  # (2, 3, ph, pw)
    logits = net(both)[:, 0, : math.ceil(h / STRIDE), : math.ceil(w / STRIDE)]  # (2, h4, w4)
    return torch.sigmoid(logits[0] / 2 + logits[1].flip(-1) / 2)  # (h4, w4)


@torch.no_grad()
def walk(cams: torch.Tensor, boundary: torch.Tensor, size: tuple[int, int], beta: float = BETA, exp_times: int = EXP_TIMES,
         radius: int = WALK_RADIUS, bg_threshold: float = SEM_SEG_BG, method: str = "sparse") -> torch.Tensor:
    """make_sem_seg_labels.py lines 37-50 and ``propagate_to_edge``: the scores (K + 1, H, W),
    background first; their argmax is IRN's pseudo-mask (0 background, k the k-th class).

    ``cams``: (K, h4, w4) the image's own classes at stride 4 (IRN's ``cam``), max-normalised;
    ``boundary``: (h4, w4) from :func:`boundary_map`; ``size``: the image's (H, W). The walk runs
    on every pair within ``radius``; the walked maps are upsampled x4 (bilinear), cropped to
    ``size`` and divided by their global maximum (all classes together), then a constant
    background ``bg_threshold`` is put in front.
    """
    h4, w4 = boundary.shape
    src, dst = (torch.from_numpy(a).to(boundary.device) for a in pair_indices(h4, w4, radius, border="all"))
    values = path_affinity(boundary[None].float(), radius, "all")[0]  # (M,)
    x = cams.float() * (1 - boundary.float())  # (K, h4, w4)
    walked = random_walk(x, PairAffinity(src, dst, values, (h4, w4)), beta, exp_times, method)
    up = F.interpolate(walked[None], scale_factor=STRIDE, mode="bilinear", align_corners=False)[0, :, : size[0], : size[1]]
    top = up.max()
    up = up / top if top > 0 else up  # all-zero maps (no CAM left): every pixel background, not 0/0
    return torch.cat([torch.full_like(up[:1], bg_threshold), up])  # (K+1, H, W)
