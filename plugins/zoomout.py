"""Class map ``zoomout``: zoom-out superpixel features (Mostajabi et al. 2015) scored by one mi-SVM per class.

Per image, SLIC superpixels (``n_segments`` 500 as the paper, "about 500 per image"); per
superpixel, a feature made of zoom-out levels, each L2-normalised and all concatenated (S, D),
in this order:

* local and proximal levels, one block per chosen layer: the mean of the layer's feature maps
  over the superpixel. Each pixel takes the feature of the layer cell its centre falls in
  (nearest neighbour), so a superpixel's feature is the coverage-weighted mean of the cells it
  overlaps: a sparse (S, h*w) weight matrix per layer. Default layers: on a VGG-style backbone
  (a plain ``features`` sequence of convolutions, VGG-16 in the presets) the output (after
  its ReLU) of every convolution, the paper's 13 layers of VGG-16 (4,224 dimensions: shallow
  layers see the superpixel itself, "local"; deeper ones its surroundings, "proximal");
  elsewhere the end of each stage at stride 4 or more in timm's ``feature_info``
  (``layer1``..``layer4`` for ResNets). Option ``layers`` takes comma-separated module names.
* ``distant`` (on by default): the paper's "subscene" level, the mean of the backbone's last
  feature maps (fc7 on timm's VGG-16, whose ``pre_logits`` are fc6/fc7 as convolutions) over
  the superpixel's bounding box grown ``distant_scale`` times about its centre. The paper runs
  the network again on that window; here it is pooled from the one whole-image pass (cheaper;
  the box size is a choice, not verified).
* ``global_level`` (on by default, the paper's "global" level): the mean of the last feature
  maps over the whole image (the paper: fc7 of the whole image). Caveat under
  multiple-instance learning: this level is the same for every instance of a bag, so it
  separates positive from negative bags on its own, and the mi-SVM tends to "every superpixel
  of a positive image is positive" (background included); ``-O classmap.global_level=false``
  turns it off.

Which of the paper's layers form "local" and which "proximal", and the subscene window, are
read from the paper's description as recalled (12,416 dimensions = 4,224 from the 13
convolutional layers + 4,096 subscene + 4,096 global), not checked against the authors' code.

``fit`` trains one mi-SVM (Andrews et al. 2002, :mod:`wssbench_plugins._misvm`, standard hinge loss)
per foreground class on the whole training split by default (``max_images`` caps it, spread
evenly over the split, for CPU runs): bags are images labelled by the image labels, instances
their superpixels. A class without both a positive and a negative training image gets no SVM
and zero maps. The fitted SVMs are cached per classifier and options (a checksum detects a
damaged entry; a lock makes a second run wait for the first one's fit).

Maps: the SVM decision value of each superpixel painted onto its pixels; like CAM's class
scores, negative values (the SVM's "absent" side) are clipped and each map is divided by its
maximum, so a class that scores negative on every superpixel gets a zero map.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

import wssbench
from wssbench.errors import UsageError
from wssbench.methods.maps import max_normalise
from wssbench.methods.superpixels import slic_segments
from wssbench.storage.arrays import pack_arrays, unpack_arrays
from wssbench.storage.cache import cache_dir, cannot_write, damaged, fingerprint, seal, unseal
from wssbench.storage.io import atomic_path
from wssbench.storage.locks import entry_lock

if TYPE_CHECKING:  # torch and scikit-learn are imported where they are used, so listing the plugins stays fast
    import torch
    from torch import nn

    from wssbench_plugins._misvm import MISVM

FIT_VERSION = 4  # bump when a change alters the fitted SVMs or their file (2: sealed with a checksum; 3: hinge loss, levels; 4: arrays, no pickle)


@dataclass(frozen=True, eq=False)
class LinearScorer:
    """A fitted mi-SVM's hyperplane: ``decision_function(x (n, D)) = x @ coef + intercept`` (n,),
    what the maps need, as arrays the cache stores (a fresh fit and a cached one score alike)."""

    coef: np.ndarray  # (D,) float64
    intercept: float
    n_iter_: int  # SVMs the mi-SVM loop trained

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.coef + self.intercept

    @staticmethod
    def of(svm: MISVM) -> "LinearScorer":
        """A fitted :class:`~wssbench_plugins._misvm.MISVM`'s hyperplane (its LinearSVC's)."""
        return LinearScorer(svm.svm_.coef_[0].astype(np.float64).copy(), float(svm.svm_.intercept_[0]), svm.n_iter_)

    @staticmethod
    def pack(scorers: list["LinearScorer | None"]) -> dict[str, np.ndarray]:
        """Per class: ``trained`` (C,), ``coef`` (C, D) (zeros where untrained), ``intercept``, ``n_iter``."""
        dim = next((len(s.coef) for s in scorers if s is not None), 0)
        return {
            "trained": np.array([s is not None for s in scorers]),
            "coef": np.stack([s.coef if s is not None else np.zeros(dim) for s in scorers]).reshape(len(scorers), dim),
            "intercept": np.array([s.intercept if s is not None else 0.0 for s in scorers]),
            "n_iter": np.array([s.n_iter_ if s is not None else 0 for s in scorers]),
        }

    @staticmethod
    def unpack(arrays: dict[str, np.ndarray]) -> list["LinearScorer | None"]:
        return [
            LinearScorer(arrays["coef"][c].astype(np.float64), float(arrays["intercept"][c]), int(arrays["n_iter"][c])) if trained else None
            for c, trained in enumerate(arrays["trained"])
        ]


def _fit_class(bags: list[np.ndarray], positive: np.ndarray, svm_c: float, max_iter: int) -> tuple[MISVM, bool]:
    """One class's mi-SVM, and whether one of its liblinear fits stopped unconverged."""
    from sklearn.exceptions import ConvergenceWarning

    from wssbench_plugins._misvm import MISVM

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        svm = MISVM(C=svm_c, max_iter=max_iter).fit(bags, positive)
    return svm, any(issubclass(w.category, ConvergenceWarning) for w in caught)


def fit_per_class(bags: list[np.ndarray], labels: np.ndarray, svm_c: float, max_iter: int, jobs: int | None = None,
                  on_class: Callable[[int], None] | None = None) -> list[tuple[MISVM, bool] | None]:
    """The mi-SVM of each class (column of ``labels`` (N, C) bool), with whether it converged
    ``(svm, unconverged)``; None, with a warning, for a class in all or none of the bags.

    The classes are independent (one-vs-rest), so they are fitted in ``jobs`` processes at once
    (joblib; default one per CPU core, at most one per class): liblinear runs on one core, and
    the fits took 221 of the 261 s of fitting 80 COCO photos on 2 cores. Each fit is the same
    computation in whatever process (liblinear's ``random_state`` is fixed), so the hyperplanes
    equal a one-process fit's (tested). ``on_class(c + 1)`` is called once class ``c`` is done
    (fitted, or skipped), in class order."""
    from joblib import Parallel, delayed  # imported here: listing the plugins stays fast

    trainable = [c for c in range(labels.shape[1]) if labels[:, c].any() and not labels[:, c].all()]
    for c in sorted(set(range(labels.shape[1])) - set(trainable)):
        warnings.warn(f"zoomout: class {c} is in all or none of the {len(bags)} training images; its maps will be zero")
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(trainable)))
    fits: list[tuple[MISVM, bool] | None] = [None] * labels.shape[1]
    results = iter(Parallel(n_jobs=jobs, return_as="generator")(
        delayed(_fit_class)(bags, labels[:, c], svm_c, max_iter) for c in trainable))
    for c in range(labels.shape[1]):
        if c in trainable:
            fits[c] = next(results)
        if on_class:
            on_class(c + 1)
    return fits


def default_layers(features: nn.Module) -> list[str]:
    """On a VGG-style backbone (a plain ``features`` sequence of convolutions) the module after
    each convolution (its ReLU), the paper's layers; else the ends of the stages at stride >= 4
    per timm's ``feature_info``, else the top-level children."""
    from torch import nn

    trunk = getattr(features, "features", None)
    if isinstance(trunk, nn.Sequential):
        children = list(trunk.named_children())
        convs = [children[i + 1][0] if i + 1 < len(children) else name
                 for i, (name, module) in enumerate(children) if isinstance(module, nn.Conv2d)]
        if convs:
            return [f"features.{name}" for name in convs]
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


def sparse_coverage(segments: np.ndarray, h: int, w: int):
    """Fraction of each superpixel's pixels whose centre lies in each cell of an h x w grid, as a
    sparse (S, h*w) matrix (a full-resolution layer has as many cells as the image has pixels)."""
    from scipy.sparse import coo_matrix

    height, width = segments.shape
    rows = (2 * np.arange(height) + 1) * h // (2 * height)  # (H,) cell row of each pixel centre
    cols = (2 * np.arange(width) + 1) * w // (2 * width)  # (W,)
    cells = rows[:, None] * w + cols[None, :]  # (H, W)
    n = int(segments.max()) + 1
    counts = coo_matrix((np.ones(segments.size), (segments.ravel(), cells.ravel())), shape=(n, h * w)).tocsr()  # duplicates summed
    sizes = np.asarray(counts.sum(axis=1)).ravel()  # (S,)
    return counts.multiply(1.0 / sizes[:, None]).tocsr()


def coverage(segments: np.ndarray, h: int, w: int) -> np.ndarray:
    """``sparse_coverage`` as a dense (S, h*w) array."""
    return sparse_coverage(segments, h, w).toarray()


def box_means(segments: np.ndarray, maps: np.ndarray, scale: float) -> np.ndarray:
    """Mean of ``maps`` (F, h, w) over each superpixel's bounding box grown ``scale`` times about
    its centre (clipped to the image), over the cells whose centres fall in the box (at least
    the cell of the box's centre) -> (S, F)."""
    from scipy.ndimage import find_objects

    height, width = segments.shape
    f, h, w = maps.shape
    integral = np.zeros((f, h + 1, w + 1))
    integral[:, 1:, 1:] = maps.cumsum(1).cumsum(2)  # (F, h+1, w+1)
    out = np.zeros((int(segments.max()) + 1, f))
    for s, box in enumerate(find_objects(segments + 1)):
        if box is None:
            continue
        cy, cx = (box[0].start + box[0].stop) / 2, (box[1].start + box[1].stop) / 2
        hy, hx = scale * (box[0].stop - box[0].start) / 2, scale * (box[1].stop - box[1].start) / 2
        y0, y1 = max(0.0, cy - hy), min(height, cy + hy)
        x0, x1 = max(0.0, cx - hx), min(width, cx + hx)
        # cells whose centre (i + 0.5) * height / h lies in [y0, y1)
        r0, r1 = int(np.ceil(y0 * h / height - 0.5)), int(np.ceil(y1 * h / height - 0.5))
        c0, c1 = int(np.ceil(x0 * w / width - 0.5)), int(np.ceil(x1 * w / width - 0.5))
        if r1 <= r0:
            r0 = min(h - 1, int(cy * h / height)); r1 = r0 + 1
        if c1 <= c0:
            c0 = min(w - 1, int(cx * w / width)); c1 = c0 + 1
        total = integral[:, r1, c1] - integral[:, r0, c1] - integral[:, r1, c0] + integral[:, r0, c0]  # (F,)
        out[s] = total / ((r1 - r0) * (c1 - c0))
    return out


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
    n_segments: int = 500  # SLIC superpixels per image (approximate; the paper's ~500)
    compactness: float = 10.0  # SLIC compactness
    layers: str = ""  # comma-separated backbone modules, one zoom level each; "" = the paper's (see the module docstring)
    max_images: int | None = None  # training images used by fit: None = the whole split; a cap for CPU runs
    svm_c: float = 1.0  # the SVM's C
    max_iter: int = 10  # mi-SVM relabelling rounds
    distant: bool = True  # the subscene level (see the module docstring)
    distant_scale: float = 2.0  # the subscene box: the superpixel's bounding box grown this many times
    global_level: bool = True  # the whole-image level (see the module docstring)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_svms", [])  # what fit() learns: state beside the (frozen) options
        for option in ("n_segments", "max_images", "max_iter"):
            if getattr(self, option) is not None and getattr(self, option) < 1:
                raise ValueError(f"{option} must be at least 1, got {getattr(self, option)}")
        if self.compactness <= 0 or self.svm_c <= 0:
            raise ValueError("compactness and svm_c must be positive")
        if self.distant_scale < 1:
            raise ValueError(f"distant_scale must be at least 1, got {self.distant_scale}")

    def superpixel_features(self, model, images: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """SLIC segments [(H, W)] and zoom-out features [(S, D) float32] of each image of the batch."""
        segments = [slic_segments(image, self.n_segments, self.compactness) for image in to_uint8(model, images)]
        maps, last = layer_maps(model, images, resolve_layers(model.features, self.layers))
        features = []
        for b, seg in enumerate(segments):
            levels = [sparse_coverage(seg, *m.shape[-2:]) @ m[b].flatten(1).T.double().cpu().numpy() for m in maps]  # [(S, F_l)]
            top = last[b].double().cpu().numpy()  # (F, h, w)
            if self.distant:
                levels.append(box_means(seg, top, self.distant_scale))  # (S, F)
            if self.global_level:
                levels.append(np.repeat(top.mean(axis=(1, 2))[None], len(levels[0]), axis=0))  # (S, F)
            features.append(np.concatenate([l2_normalise(level) for level in levels], axis=1).astype(np.float32))  # (S, D)
        return segments, features

    @property
    def svms(self) -> list[LinearScorer | None]:
        """The fitted mi-SVM of each foreground class as its linear scorer (``None``: not
        trainable); empty before ``fit``."""
        return list(self._svms)

    def fit(self, model, dataset, split: str, key: str, progress: Callable[[int, int], None] | None = None) -> None:
        """Fit the mi-SVMs, or load them from the cache; ``progress(done, total)`` is called
        after each training image's features (the slow part) when they are computed.

        The cache entry is sealed with a checksum (a damaged one is warned about and refitted)
        and locked while fitting (a second run waits and loads it); where the cache cannot be
        written the SVMs are kept in memory, said once.
        """
        import sklearn

        fitted_by = [FIT_VERSION, sklearn.__version__, key, split, dataclasses.asdict(self)]
        path = cache_dir("classmaps", f"zoomout-{fingerprint(fitted_by)}.npz")
        svms = self._load(path)
        if svms is None:
            with entry_lock(path):
                svms = self._load(path)  # another run may have fitted them meanwhile
                if svms is None:
                    svms = [None if svm is None else LinearScorer.of(svm) for svm in self._train(model, dataset, split, progress)]
                    try:
                        with atomic_path(path) as tmp:
                            tmp.write_bytes(seal(pack_arrays(LinearScorer.pack(svms))))
                        with atomic_path(path.with_suffix(".json")) as tmp:  # what the entry is, for 'wssbench cache show'
                            tmp.write_text(json.dumps({"classmap": self.name, "classifier": key, "split": split,
                                                       "options": dataclasses.asdict(self)}, indent=2) + "\n")
                    except OSError as e:
                        cannot_write(path, e)
        self._svms[:] = svms

    @staticmethod
    def _load(path) -> list[LinearScorer | None] | None:
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        payload = unseal(blob)
        arrays = unpack_arrays(payload) if payload is not None else None
        if arrays is None:
            damaged(path, f"checksum mismatch or not an array archive, {len(blob)} bytes")
            return None
        return LinearScorer.unpack(arrays)

    def _train(self, model, dataset, split: str, progress: Callable[[int, int], None] | None = None) -> list[MISVM | None]:
        ids = dataset.ids(split)
        wanted = len(ids) if self.max_images is None else min(self.max_images, len(ids))
        picked = sorted(set(np.linspace(0, len(ids) - 1, wanted).round().astype(int)))  # the whole split by default
        bags, labels = [], []
        n_classes = len(dataset.image_labels(ids[picked[0]]))
        total = len(picked) + n_classes  # the features of each image, then one mi-SVM per class
        for done, i in enumerate(picked, 1):
            _, (instances,) = self.superpixel_features(model, model.preprocess([dataset.load_image(ids[i])]))
            bags.append(instances)  # (S, D)
            labels.append(dataset.image_labels(ids[i]))
            if progress:
                progress(done, total)
        labels = np.stack(labels)  # (N, C)
        report = (lambda done: progress(len(picked) + done, total)) if progress else None
        fits = fit_per_class(bags, labels, self.svm_c, self.max_iter, on_class=report)
        svms: list[MISVM | None] = [fit[0] if fit else None for fit in fits]
        unconverged = sum(bool(fit and fit[1]) for fit in fits)
        if unconverged:  # once, not once per liblinear fit
            warnings.warn(f"zoomout: liblinear did not converge (10,000 iterations) in the mi-SVM of {unconverged} of "
                          f"{labels.shape[1]} classes; their hyperplanes are approximate (a smaller svm_c converges sooner)")
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
