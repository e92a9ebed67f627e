"""Pseudo-mask methods ``psa`` and ``irn``: a random walk over learned affinities turns a training
split's seeds (CAMs of each image's own classes) into the masks a segmentation network trains on.

Each option's default is its authors' released recipe (:mod:`wssbench_plugins._psa`,
:mod:`wssbench_plugins._irn` cite file and line); ``wssbench pseudo-mask`` records every option set
otherwise as a deviation. Both learn from the whole split (``fit``), then walk each image.

An image without classes (possible on the synthetic data, never on VOC's or COCO's WSSS lists)
is confident background in training and all background in its pseudo-mask: neither author's
code meets one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np

import wssbench
from wssbench.errors import DataError, UsageError

if TYPE_CHECKING:  # torch and the methods' steps are imported where they run, so listing the plugins stays fast
    import torch

IRN_STRIDE = 4  # the boundary map's stride (wssbench_plugins.IRN_STRIDE)


def _normalised(image: np.ndarray, norm: dict, device: torch.device) -> torch.Tensor:
    """uint8 (H, W, 3) -> (1, 3, H, W) float, normalised with the backbone's mean and std."""
    import torch

    mean = torch.tensor(norm["mean"], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(norm["std"], dtype=torch.float32).view(3, 1, 1)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    return ((x - mean) / std)[None].to(device)


def _as_labels(scores: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    """The argmax of walked scores (K + 1, H, W), background first, as label values (H, W) uint8."""
    ids = np.concatenate([[0], np.asarray(labels, dtype=np.int64)])
    return ids[scores.argmax(dim=0).cpu().numpy()].astype(np.uint8)


def _check_crop(crop_size: int, stride: int, radius: int, option: str = "radius") -> None:
    """A training crop's feature grid must hold the pairs of ``radius`` (the authors' 'crop' border)."""
    side = math.ceil(crop_size / stride)
    if side <= 2 * (radius - 1):
        raise UsageError(f"-O pseudomask.crop_size={crop_size}: its {side} x {side} grid at stride {stride} is too small for "
                         f"-O pseudomask.{option}={radius}; use a crop above {2 * (radius - 1) * stride} px or a smaller radius")


def _losses(losses: list[float], steps_per_epoch: int) -> dict:
    """The training's losses for the record: every step's and each epoch's mean."""
    epochs = [float(np.mean(losses[i: i + steps_per_epoch])) for i in range(0, len(losses), steps_per_epoch)]
    return {"steps": len(losses), "loss_history": epochs, "step_losses": [float(v) for v in losses]}


@dataclass(frozen=True)
class _Walk:
    """What both methods keep between ``fit`` and the walks: the trained network, its device and
    normalisation (set once by ``fit``; a frozen dataclass keeps its options immutable)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_state", {})

    def _trained(self) -> tuple[Any, dict, torch.device]:
        if "net" not in self._state:
            raise RuntimeError(f"{type(self).__name__}: call fit(seeds, backbone, norm) before walking")
        return self._state["net"], self._state["norm"], self._state["device"]


@dataclass(frozen=True)
class PSA(_Walk):
    """AffinityNet and its random walk (PSA: Ahn & Kwak, CVPR 2018; jiwoon-ahn/psa), no CRF after the walk as the released code."""

    name = "psa"
    output_stride: ClassVar[int] = 8  # ResNet-38's conv4-6 are all at stride 8
    code_over_paper: ClassVar[tuple[str, ...]] = (
        "no dense CRF after the walk (infer_aff.py; the paper's CAM+RW+dCRF row has one, psa issue #10)",
        "PolyOptimizer passes the weight decay in SGD's momentum slot (tool/torchutils.py): momentum 5e-4, in effect none",
    )
    epochs: int = 8  # train_aff.py --max_epoches
    batch_size: int = 8  # train_aff.py --batch_size
    crop_size: int = 448  # train_aff.py --crop_size
    lr: float = 0.1  # train_aff.py --lr
    weight_decay: float = 5e-4  # train_aff.py --wt_dec
    low_alpha: float = 4.0  # background power of the CRF whose background is amplified (infer_cls.py)
    high_alpha: float = 32.0  # and of the one whose background is suppressed
    radius: int = 5  # pairs within this radius, in training and in the walk
    walk_alpha: float = 16.0  # background power before the walk (infer_aff.py --alpha)
    beta: float = 8.0  # affinity power (infer_aff.py --beta)
    log_t: int = 8  # the transition matrix is raised to 2 ** log_t (infer_aff.py --logt)
    freeze: str = "stem"  # backbone parts not trained: "stem" (the authors' conv1a and b2), "all" or "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_crop(self.crop_size, self.output_stride, self.radius)

    def fit(self, seeds: list[Any], backbone: torch.nn.Module, norm: dict, device: str = "cpu", seed: int = 0,
            progress: Callable[[int, int], None] | None = None) -> dict:
        import torch

        from wssbench_plugins import _psa

        samples = []
        for s in seeds:
            if len(s.labels):
                la, ha = (_psa.crf_with_alpha(s.image, s.class_maps, a) for a in (self.low_alpha, self.high_alpha))
            else:  # no class: certain background (a one-label CRF is the identity)
                la = ha = np.ones((1, *s.image.shape[:2]), np.float32)
            samples.append(_psa.Sample(s.image, la, ha))
        net = _psa.AffinityNet(backbone, freeze=self.freeze)
        config = _psa.Training(lr=self.lr, batch_size=self.batch_size, epochs=self.epochs, crop_size=self.crop_size,
                               weight_decay=self.weight_decay, radius=self.radius)
        losses = _psa.train(net, samples, config, norm["mean"], norm["std"], device=device, seed=seed, on_step=progress)
        self._state.update(net=net, norm=norm, device=torch.device(device))
        return _losses(losses, len(samples) // self.batch_size)

    def __call__(self, seed: Any) -> np.ndarray:
        import torch

        from wssbench_plugins import _psa

        net, norm, device = self._trained()
        if not len(seed.labels):
            return np.zeros(seed.image.shape[:2], np.uint8)
        grid = [math.ceil(side / net.stride) for side in seed.image.shape[:2]]
        if grid[0] <= self.radius - 1 or grid[1] <= 2 * (self.radius - 1):
            raise DataError(f"image {seed.image_id}: its {grid[0]} x {grid[1]} grid at stride {net.stride} is too small for PSA's "
                            f"walk at -O pseudomask.radius={self.radius} (the authors' pairs leave out a border of radius - 1)")
        cams = torch.from_numpy(np.ascontiguousarray(seed.class_maps, dtype=np.float32)).to(device)  # (K, H, W)
        scores = _psa.walk(net, _normalised(seed.image, norm, device), cams, self.walk_alpha, self.beta, self.log_t, self.radius)
        return _as_labels(scores, seed.labels)


@dataclass(frozen=True)
class IRN(_Walk):
    """IRN's class boundaries and random walk (Ahn, Cho & Kwak, CVPR 2019; jiwoon-ahn/irn), the semantic part without the instance branch."""

    name = "irn"
    output_stride: ClassVar[int] = 16  # torchvision's ResNet-50 with strides (2, 2, 2, 1): the last stage at 16
    code_over_paper: ClassVar[tuple[str, ...]] = (
        "PolyOptimizer passes the weight decay in SGD's momentum slot (misc/torchutils.py): momentum 1e-4, in effect none",
    )
    epochs: int = 3  # run_sample.py --irn_num_epoches
    batch_size: int = 32  # run_sample.py --irn_batch_size
    crop_size: int = 512  # run_sample.py --irn_crop_size
    lr: float = 0.1  # run_sample.py --irn_learning_rate
    weight_decay: float = 1e-4  # run_sample.py --irn_weight_decay
    fg_threshold: float = 0.30  # --conf_fg_thres: constant background below confident foreground
    bg_threshold: float = 0.05  # --conf_bg_thres: constant background below confident background
    train_radius: int = 10  # pairs within this radius in training (train_irn.py)
    walk_radius: int = 5  # and in the walk (make_sem_seg_labels.py)
    beta: float = 10.0  # --beta
    exp_times: int = 8  # the transition matrix is raised to 2 ** exp_times (--exp_times)
    sem_seg_bg: float = 0.25  # --sem_seg_bg_thres: constant background score after the walk

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.crop_size % IRN_STRIDE:
            raise UsageError(f"-O pseudomask.crop_size={self.crop_size}: expected a multiple of {IRN_STRIDE}")
        _check_crop(self.crop_size, IRN_STRIDE, self.train_radius, "train_radius")

    def fit(self, seeds: list[Any], backbone: torch.nn.Module, norm: dict, device: str = "cpu", seed: int = 0,
            progress: Callable[[int, int], None] | None = None) -> dict:
        import torch

        from wssbench_plugins import _irn

        samples = []
        for s in seeds:
            if len(s.labels):
                keys = np.asarray(s.labels, dtype=np.int64) - 1  # IRN's keys: class indices without background
                conf = _irn.confident_labels(s.image, s.class_maps, keys, self.fg_threshold, self.bg_threshold)
            else:
                conf = np.zeros(s.image.shape[:2], np.uint8)
            samples.append((s.image, conf))
        net = _irn.BoundaryNet(backbone)
        config = _irn.Training(lr=self.lr, batch_size=self.batch_size, epochs=self.epochs, crop_size=self.crop_size,
                               weight_decay=self.weight_decay, radius=self.train_radius)
        losses = _irn.train(net, samples, config, norm["mean"], norm["std"], device=device, seed=seed, on_step=progress)
        self._state.update(net=net, norm=norm, device=torch.device(device))
        return _losses(losses, len(samples) // self.batch_size)

    def __call__(self, seed: Any) -> np.ndarray:
        """The walk on IRN's stride-4 CAMs: here the full-size class maps resized (bilinear) to
        (ceil(H / 4), ceil(W / 4)) and divided again by each class's maximum + 1e-5, where IRN
        computes them at stride 4 from the network's outputs (make_cam.py ``strided_cam``)."""
        import torch
        import torch.nn.functional as F

        from wssbench_plugins import _irn

        net, norm, device = self._trained()
        if not len(seed.labels):
            return np.zeros(seed.image.shape[:2], np.uint8)
        h, w = seed.image.shape[:2]
        boundary = _irn.boundary_map(net, _normalised(seed.image, norm, device))
        cams = torch.from_numpy(np.ascontiguousarray(seed.class_maps, dtype=np.float32)).to(device)[None]
        strided = F.interpolate(cams, size=(math.ceil(h / IRN_STRIDE), math.ceil(w / IRN_STRIDE)), mode="bilinear",
                                align_corners=False)[0]
        strided = strided / (strided.amax(dim=(1, 2), keepdim=True) + 1e-5)
        scores = _irn.walk(strided, boundary, (h, w), self.beta, self.exp_times, self.walk_radius, self.sem_seg_bg)
        return _as_labels(scores, seed.labels)


@wssbench.hookimpl
def register_pseudomasks(register):
    register(PSA)
    register(IRN)
