"""Class maps ``clip-es``: CLIP-ES's training-free maps (Lin et al., CVPR 2023) from a frozen CLIP ViT
read from a local checkpoint (``-O classmap.weights=FILE``; ``pip install -e '.[clip]'``).

The steps are :mod:`wssbench_plugins._clip_es` (each cited to the authors' code and tested). The
classifier of the run is not used by the maps: it only picks the classes when they are predicted
(``--classes-from predicted``); with ``--classes-from labels`` (how CLIP-ES is scored) it decides
nothing. The images reach a class-map producer normalised for the classifier; they are turned
back into the uint8 photo (exact up to rounding) before CLIP's own preprocessing. Each refined map
is divided by its maximum after the authors' resize to the image (a min-max map resized bilinearly
can peak a little below 1; every class map of wssbench peaks at 1 or is zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

import wssbench
from wssbench.data.voc2012 import CLASSES as VOC
from wssbench.errors import DataError, UsageError

if TYPE_CHECKING:  # torch is imported where maps are made, so listing the plugins stays fast
    import torch

NAMES = ("auto", "voc", "dataset")
BACKGROUNDS = ("voc", "coco")


@dataclass(frozen=True)
class ClipES:
    """CLIP-ES (Lin et al., CVPR 2023; linyq2117/CLIP-ES): a frozen CLIP ViT's softmax Grad-CAM refined by class-aware attention, no training."""

    name = "clip-es"
    needs_fit: ClassVar[bool] = True  # fit() loads CLIP and embeds the dataset's class names
    weights: str = ""  # a local CLIP ViT checkpoint, e.g. OpenAI's ViT-B-16.pt (the authors'); nothing is downloaded
    box_threshold: float = 0.4  # the Grad-CAM boxes masking the affinity, at this fraction of its maximum (0.7 on COCO)
    names: str = "auto"  # prompt class names: "voc" (CLIP-ES's VOC names and synonyms), "dataset" (its own), "auto"
    background: str = "voc"  # background words: "voc" (the 25 of generate_cams_voc12.py) or "coco" (its 23)

    def __post_init__(self) -> None:
        if self.names not in NAMES:
            raise UsageError(f"-O classmap.names={self.names}: expected one of {', '.join(NAMES)}")
        if self.background not in BACKGROUNDS:
            raise UsageError(f"-O classmap.background={self.background}: expected one of {', '.join(BACKGROUNDS)}")
        if not self.weights:
            raise UsageError("clip-es reads a local CLIP ViT checkpoint: -O classmap.weights=FILE (e.g. OpenAI's ViT-B-16.pt)")
        if not Path(self.weights).is_file():
            raise DataError(f"{self.weights}: CLIP weights file not found (clip-es reads a local ViT-B-16.pt; it never downloads)")
        if not 0.0 < self.box_threshold < 1.0:
            raise UsageError(f"-O classmap.box_threshold={self.box_threshold}: expected a value in (0, 1)")
        object.__setattr__(self, "_state", {})

    def fit(self, model: Any, dataset: Any, split: str, key: str, progress: Any = None) -> None:
        from wssbench_plugins import _clip_es  # torch and open_clip: only when maps are made

        device = model.mean.device
        clip = _clip_es.load_clip(self.weights, device)
        text = _clip_es.text_features(clip, self.class_names(dataset.classes[1:]))
        words = _clip_es.BACKGROUND if self.background == "voc" else _clip_es.BACKGROUND_COCO
        self._state.update(clip=clip, text=text, background=_clip_es.text_features(clip, words))

    def class_names(self, classes: list[str]) -> list[str]:
        """The names in the prompts: CLIP-ES's VOC names (with its synonyms) for VOC's 20 classes
        ("auto" when the dataset's classes are VOC's), else the dataset's, underscores as spaces."""
        from wssbench_plugins import _clip_es  # the names sit beside the steps that use them

        voc = list(classes) == list(VOC[1:])
        if self.names == "voc" or (self.names == "auto" and voc):
            if len(classes) != len(_clip_es.VOC_NAMES):
                raise UsageError(f"-O classmap.names=voc: the dataset has {len(classes)} classes, not VOC's 20")
            return list(_clip_es.VOC_NAMES)
        return [c.replace("_", " ") for c in classes]

    def __call__(self, model: Any, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        import torch

        from wssbench_plugins import _clip_es

        if "clip" not in self._state:
            raise RuntimeError("clip-es: call fit(model, dataset, split, key) before making maps")
        photos = (images.detach() * model.std + model.mean).mul(255).round().clamp(0, 255).byte()
        photos = photos.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3) uint8
        out = torch.zeros(*classes.shape, *images.shape[-2:], dtype=torch.float32)
        for b, (photo, wanted) in enumerate(zip(photos, classes.cpu().numpy())):
            keep = np.flatnonzero(wanted >= 0)
            if len(keep) == 0:
                continue
            with torch.enable_grad():
                refined, _ = _clip_es.clip_es_maps(self._state["clip"], photo, wanted[keep].tolist(), self._state["text"],
                                                   self._state["background"], self.box_threshold)
            refined = refined.float().cpu()
            peaks = refined.amax(dim=(1, 2), keepdim=True)
            out[b, keep] = torch.where(peaks > 0, refined / peaks.clamp_min(1e-12), refined)  # (K_b, H, W)
        return out.to(images.device)  # (B, K, H, W)


@wssbench.hookimpl
def register_classmaps(register):
    register(ClipES)
