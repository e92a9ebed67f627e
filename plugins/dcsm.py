"""The ``dcsm`` saliency method: DCSM (Shimoda & Yanai, ECCV 2016) as the authors' ``dcsm.m``
computes it, over the core's machinery (:mod:`wssbench_plugins._dcsm`, where every step and
every choice is documented).

It runs its own forward passes (the image on a canvas at several scales), so it does not share
the pipeline's forward pass: ``shares_forward = False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import wssbench


@dataclass(frozen=True, kw_only=True)
class DCSM:
    """DCSM (Shimoda & Yanai 2016): distinct multi-layer guided-BP maps on a canvas at 3 scales.

    Options: ``scales`` canvas scales (0.8, 1.0, 1.2); ``canvas`` side of the black canvas the
    image is centred on (500); ``layers`` tapped layer inputs (default: conv3_1 ... conv5_3 on
    VGG-16, as ``multilayer`` elsewhere); ``contrast`` number of classes the maps are
    contrasted against (4); ``threshold`` detection threshold on ``sigmoid(max score map)``
    (0.5; a requested class detected at no scale gets an all-zero map); ``signal`` ``map``
    (default, the authors') or ``pooled``. Maps lie in [0, tanh(3)].
    """

    name: ClassVar[str] = "dcsm"
    shares_forward: ClassVar[bool] = False

    scales: tuple[float, ...] = (0.8, 1.0, 1.2)
    canvas: int = 500
    layers: tuple[str, ...] = ()
    contrast: int = 4
    threshold: float = 0.5
    signal: str = "map"

    def __post_init__(self) -> None:
        from wssbench.methods.saliency import SIGNALS

        scales = tuple(float(s) for s in self.scales)
        if not scales or any(not s > 0 for s in scales):
            raise ValueError(f"scales must be one or more positive factors, got {self.scales!r}")
        if int(self.canvas) < 1 or int(self.contrast) < 1:
            raise ValueError(f"canvas and contrast must be positive, got {self.canvas!r}, {self.contrast!r}")
        if not 0 <= float(self.threshold) < 1:
            raise ValueError(f"threshold must lie in [0, 1) (a sigmoid), got {self.threshold!r}")
        if self.signal not in SIGNALS:
            raise ValueError(f"signal must be one of {', '.join(SIGNALS)}, got {self.signal!r}")
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "canvas", int(self.canvas))
        object.__setattr__(self, "contrast", int(self.contrast))
        object.__setattr__(self, "threshold", float(self.threshold))

    def detect(self, model: Any, images: Any) -> tuple[Any, Any]:
        """The classes ``dcsm.m`` segments with these options' scales, canvas and threshold:
        ``(present (B, C) bool, evidence (B, C))`` (:func:`wssbench_plugins._dcsm.detect`)."""
        from wssbench_plugins._dcsm import detect

        return detect(model, images, self.scales, self.canvas, self.threshold)

    def __call__(self, model: Any, images: Any, classes: Any) -> Any:
        from wssbench_plugins._dcsm import dcsm_maps

        return dcsm_maps(
            model, images, classes, scales=self.scales, canvas=self.canvas, layers=self.layers,
            contrast=self.contrast, threshold=self.threshold, signal=self.signal,
        )


@wssbench.hookimpl
def register_saliency(register):
    register(DCSM)
