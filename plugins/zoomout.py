"""Class map ``zoomout``: zoom-out superpixel features (Mostajabi et al. 2015) scored by one mi-SVM per class.

Per image, SLIC superpixels; per superpixel, a feature made of zoom levels, each L2-normalised
and all concatenated (S, D):

* one level per chosen layer of the backbone: the mean of the layer's feature maps over the
  superpixel. Each pixel takes the feature of the layer cell its centre falls in (nearest
  neighbour), so a superpixel's feature is the coverage-weighted mean of the cells it overlaps:
  one ``bincount`` per layer gives the (S, h*w) weights. This is much cheaper than upsampling
  every channel to the image (960 channels x H x W for ResNet-18) and differs from it only in
  how a cell is spread over its neighbours;
* optionally (``global_level=true``) Mostajabi's "global" level: the mean of the last feature
  maps over the whole image. Off by default: under multiple-instance learning this level is the
  same for every instance of a bag, so it separates positive from negative bags on its own and
  the mi-SVM stops at "every superpixel of a positive image is positive" (background included).

Default layers: the modules in the backbone's timm ``feature_info`` at stride 4 or more (the
end of each stage: ``layer1``..``layer4`` for ResNets), else the top-level children of
``model.features``; option ``layers`` takes comma-separated module names.

``fit`` trains one mi-SVM (Andrews et al. 2002, :mod:`wssbench.misvm`) per foreground class on
up to ``max_images`` training images spread evenly over the split: bags are images labelled by
the image labels, instances their superpixels. A class without both a positive and a negative
training image gets no SVM and zero maps. The fitted SVMs are cached per classifier and options
(a checksum detects a damaged entry; a lock makes a second run wait for the first one's fit).

Maps: the SVM decision value of each superpixel painted onto its pixels; like CAM's class
scores, negative values (the SVM's "absent" side) are clipped and each map is divided by its
maximum, so a class that scores negative on every superpixel gets a zero map.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

import wssbench
from wssbench.cache import cache_dir, cannot_write, damaged, fingerprint, seal, unseal
from wssbench.errors import UsageError
from wssbench.io import atomic_path
from wssbench.locks import entry_lock
from wssbench.superpixels import slic_segments
from wssbench.maps import max_normalise

if TYPE_CHECKING:  # torch and scikit-learn are imported where they are used, so listing the plugins stays fast
    import torch
    from torch import nn

    from wssbench.misvm import MISVM

FIT_VERSION = 2  # bump when a change alters the fitted SVMs or their file (2: sealed with a checksum)


def default_layers(features: nn.Module) -> list[str]:
    """The ends of the stages at stride >= 4 per timm's ``feature_info``, else the top-level children."""
    info = getattr(features, "feature_info", None) or []
    names = [f["module"] for f in info if f.get("reduction", 1) >= 4]
    return names or [name for name, _ in features.named_children()]


def resolve_layers(features: nn.Module, layers: str) -> list[str]:
    names = [s.strip() for s in layers.split(",") if s.strip()] or default_layers(features)
    modules = dict(features.named_modules())
    for name in names:
        if name not in modules:
            raise UsageError(f"zoomout: no module '{name}' in the backbone; see model.features.named_modules()")
    return names


def layer_maps(model, images: torch.Tensor, names: list[str]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The outputs [(B, F_l, h_l, w_l)] of the named modules and the last feature maps (B, F, h, w), one forward pass."""
    import torch

    modules = dict(model.features.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str):
        return lambda module, inputs, output: captured.__setitem__(name, output)

    handles = [modules[name].register_forward_hook(keep(name)) for name in names]
    try:
        with torch.no_grad():
            last = model.features(images)  # (B, F, h, w)
    finally:
        for handle in handles:
            handle.remove()
    for name in names:
        if not isinstance(captured.get(name), torch.Tensor) or captured[name].ndim != 4:
            raise UsageError(f"zoomout: module '{name}' does not output feature maps (B, F, h, w)")
    return [captured[name] for name in names], last


def coverage(segments: np.ndarray, h: int, w: int) -> np.ndarray:
    """Fraction of each superpixel's pixels whose centre lies in each cell of an h x w grid -> (S, h*w)."""
    height, width = segments.shape
    rows = (2 * np.arange(height) + 1) * h // (2 * height)  # (H,) cell row of each pixel centre
    cols = (2 * np.arange(width) + 1) * w // (2 * width)  # (W,)
    cells = rows[:, None] * w + cols[None, :]  # (H, W)
    n = int(segments.max()) + 1
    counts = np.bincount((segments * (h * w) + cells).ravel(), minlength=n * h * w).reshape(n, h * w)
    return counts / counts.sum(axis=1, keepdims=True)


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + eps)


def to_uint8(model, images: torch.Tensor) -> np.ndarray:
    """Undo ``model.preprocess``: (B, 3, H, W) normalised -> uint8 (B, H, W, 3)."""
    import torch

    pixels = (images * model.std + model.mean) * 255.0
    return pixels.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@dataclass(frozen=True)
class ZoomOut:
    """Zoom-out superpixel features scored by one mi-SVM per class, fitted on the train split (Mostajabi et al. 2015)."""

    name = "zoomout"
    needs_fit = True
    n_segments: int = 100  # SLIC superpixels per image (approximate)
    compactness: float = 10.0  # SLIC compactness
    layers: str = ""  # comma-separated backbone modules, one zoom level each; "" = the end of each stage
    max_images: int = 200  # training images used by fit
    svm_c: float = 1.0  # the SVM's C
    max_iter: int = 10  # mi-SVM relabelling rounds
    global_level: bool = False  # add the whole-image level (see the module docstring)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_svms", [])  # what fit() learns: state beside the (frozen) options
        for option in ("n_segments", "max_images", "max_iter"):
            if getattr(self, option) < 1:
                raise ValueError(f"{option} must be at least 1, got {getattr(self, option)}")
        if self.compactness <= 0 or self.svm_c <= 0:
            raise ValueError("compactness and svm_c must be positive")

    def superpixel_features(self, model, images: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """SLIC segments [(H, W)] and zoom-out features [(S, D) float32] of each image of the batch."""
        segments = [slic_segments(image, self.n_segments, self.compactness) for image in to_uint8(model, images)]
        maps, last = layer_maps(model, images, resolve_layers(model.features, self.layers))
        features = []
        for b, seg in enumerate(segments):
            levels = [coverage(seg, *m.shape[-2:]) @ m[b].flatten(1).T.double().cpu().numpy() for m in maps]  # [(S, F_l)]
            if self.global_level:
                levels.append(np.repeat(last[b].mean(dim=(1, 2)).double().cpu().numpy()[None], len(levels[0]), axis=0))  # (S, F)
            features.append(np.concatenate([l2_normalise(level) for level in levels], axis=1).astype(np.float32))  # (S, D)
        return segments, features

    @property
    def svms(self) -> list[MISVM | None]:
        """The fitted mi-SVM of each foreground class (``None``: not trainable); empty before ``fit``."""
        return list(self._svms)

    def fit(self, model, dataset, split: str, key: str, progress: Callable[[int, int], None] | None = None) -> None:
        """Fit the mi-SVMs, or load them from the cache; ``progress(done, total)`` is called
        after each training image's features (the slow part) when they are computed.

        The cache entry is sealed with a checksum (a damaged one is warned about and refitted)
        and locked while fitting (a second run waits and loads it); where the cache cannot be
        written the SVMs are kept in memory, said once.
        """
        import sklearn

        fitted_by = [FIT_VERSION, sklearn.__version__, key, split, dataclasses.asdict(self)]  # pickles are version-bound
        path = cache_dir("classmaps", f"zoomout-{fingerprint(fitted_by)}.pkl")
        svms = self._load(path)
        if svms is None:
            with entry_lock(path):
                svms = self._load(path)  # another run may have fitted them meanwhile
                if svms is None:
                    svms = self._train(model, dataset, split, progress)
                    try:
                        with atomic_path(path) as tmp:
                            tmp.write_bytes(seal(pickle.dumps(svms)))
                        with atomic_path(path.with_suffix(".json")) as tmp:  # what the entry is, for 'wssbench cache show'
                            tmp.write_text(json.dumps({"classmap": self.name, "classifier": key, "split": split,
                                                       "options": dataclasses.asdict(self)}, indent=2) + "\n")
                    except OSError as e:
                        cannot_write(path, e)
        self._svms[:] = svms

    @staticmethod
    def _load(path) -> list[MISVM | None] | None:
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        payload = unseal(blob)
        if payload is None:
            damaged(path, f"checksum mismatch, {len(blob)} bytes")
            return None
        return pickle.loads(payload)

    def _train(self, model, dataset, split: str, progress: Callable[[int, int], None] | None = None) -> list[MISVM | None]:
        from wssbench.misvm import MISVM

        ids = dataset.ids(split)
        picked = sorted(set(np.linspace(0, len(ids) - 1, min(self.max_images, len(ids))).round().astype(int)))
        bags, labels = [], []
        for done, i in enumerate(picked, 1):
            _, (instances,) = self.superpixel_features(model, model.preprocess([dataset.load_image(ids[i])]))
            bags.append(instances)  # (S, D)
            labels.append(dataset.image_labels(ids[i]))
            if progress:
                progress(done, len(picked))
        labels = np.stack(labels)  # (N, C)
        svms: list[MISVM | None] = []
        for c in range(labels.shape[1]):
            if labels[:, c].all() or not labels[:, c].any():
                warnings.warn(f"zoomout: class {c} is in all or none of the {len(bags)} training images; its maps will be zero")
                svms.append(None)
            else:
                svms.append(MISVM(C=self.svm_c, max_iter=self.max_iter).fit(bags, labels[:, c]))
        return svms

    def __call__(self, model, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        if not self._svms:
            raise UsageError("zoomout: fit(model, dataset, split, key) must be called before asking for maps")
        import torch

        segments, features = self.superpixel_features(model, images)
        maps = np.zeros((*classes.shape, *images.shape[-2:]), dtype=np.float32)  # (B, K, H, W)
        wanted = torch.as_tensor(classes).cpu().numpy()  # (B, K), read once
        for b, k in zip(*np.nonzero(wanted >= 0)):
            svm = self._svms[int(wanted[b, k])]
            if svm is not None:
                maps[b, k] = svm.decision_function(features[b])[segments[b]]  # (H, W)
        return max_normalise(torch.from_numpy(maps).to(images.device))


@wssbench.hookimpl
def register_classmaps(register):
    register(ZoomOut)
