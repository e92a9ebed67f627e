"""The frozen description of one segmentation-network run: printed at start, saved in its record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from wssbench.errors import UsageError
from wssbench.runtime.optim import Solver
from wssbench.runtime.precision import check_precision

BN_MODES = ("train", "frozen", "sync")
MULTI_SCALES = (0.5, 1.0, 1.5, 2.0)  # --multiscale: the scales of IRN/SEAM-style inference
# how the network is trained: one network on the given supervision, or STC's three steps
# (wssbench.segmentation.stc; its options are ``-O schedule.KEY=VALUE``)
SCHEDULES = ("single", "stc")
OPTION_KINDS = ("dataset", "segnet", "objective", "crf", "schedule")


@dataclass(frozen=True)
class SegRecipe(Solver):
    """How the network is trained: SGD with momentum (the solver of :mod:`wssbench.runtime.optim`:
    poly decay by default, Caffe's step policy, iterations, gradient accumulation and bias
    multipliers where a released solver says so), random rescale + crop + flip.

    Defaults follow DeepLab (v2): momentum 0.9, weight decay 5e-4, the new layers at 10x the
    learning rate, poly power 0.9, random scale 0.5-1.5; ``crop`` None trains on whole images
    (batches of one; CCNN); ``bn`` says what batch-norm layers do: ``train`` (batch
    statistics), ``frozen`` (ImageNet statistics and affine kept, as DeepLab v2 with small
    batches) or ``sync`` (statistics over all torchrun ranks; CUDA).
    """

    epochs: int = 30
    batch_size: int = 8
    lr: float = 0.01
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    crop: int | None = 128
    scale: tuple[float, float] = (0.5, 1.5)
    flip: bool = True
    bn: str = "train"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.bn not in BN_MODES:
            raise UsageError(f"--bn: expected one of {', '.join(BN_MODES)}, got '{self.bn}'")
        if self.epochs < 1 or self.batch_size < 1 or (self.crop is not None and self.crop < 16):
            raise UsageError("epochs and batch size must be at least 1, crop at least 16 (or none: whole images)")
        if self.crop is None and self.batch_size != 1:
            raise UsageError(f"crop none (whole images) needs batches of 1 image (accumulate with iter_size), got {self.batch_size}")
        self.check_solver()


@dataclass(frozen=True)
class SegmentConfig:
    preset: str | None = None
    dataset: str = "synthetic"
    data_root: str | None = None
    split: str = "val"  # scored
    train_split: str = "train"
    segnet: str = "deeplabv3plus"
    objective: str = "pseudo-masks"
    schedule: str = "single"
    masks: str | None = None  # a ``wssbench run`` folder whose masks/ are the pseudo-masks
    weights: str | None = None  # local ImageNet weights of the encoder
    recipe: SegRecipe = field(default_factory=SegRecipe)
    # (kind, key, value) for kind in OPTION_KINDS; sorted
    options: tuple[tuple[str, str, Any], ...] = ()
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    crf: bool = False
    batch_size: int = 8  # inference
    precision: str = "fp32"
    loader_workers: int = 0
    limit: int | None = None
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        check_precision(self.precision, self.device)
        if not self.scales or min(self.scales) <= 0:
            raise UsageError("--scales: expected positive scales")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule '{self.schedule}'; available: {', '.join(SCHEDULES)}")
        for kind, key, _ in self.options:
            if kind not in OPTION_KINDS:
                raise UsageError(f"-O {kind}.{key}: '{kind}' is not one of {', '.join(OPTION_KINDS)}")
        object.__setattr__(self, "options", tuple(sorted(self.options, key=lambda o: (o[0], o[1]))))

    def options_for(self, kind: str) -> dict[str, Any]:
        return {key: value for k, key, value in self.options if k == kind}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        options: dict[str, dict[str, Any]] = {}
        for kind, key, value in self.options:
            options.setdefault(kind, {})[key] = value
        data["options"] = options
        data["scales"] = list(self.scales)
        return data
