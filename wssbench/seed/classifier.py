"""The classifier of a seed run: built from its backbone provider, keyed by everything that
determines its weights, trained once and cached (``load_or_train``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from wssbench.classifier.imagenet import VOC_CLASSES, imagenet_classifier, voc_groups
from wssbench.classifier.model import Classifier, downsample_factor
from wssbench.classifier.training import checkpoint_path, load_cached_checkpoint, recipe_dict, save_checkpoint, train
from wssbench.errors import UsageError
from wssbench.seed.config import RunConfig
from wssbench.storage.cache import file_digest
from wssbench.storage.datakey import training_data_key
from wssbench.storage.locks import entry_lock, log

if TYPE_CHECKING:
    from wssbench.seed.components import Components


NEEDS_IMAGENET = ("head_init = imagenet starts the head from the backbone's ImageNet classifier: "
                  "pass --weights FILE (or --pretrained), or give the recipe head_init = \"random\"")
CLASSIFIER_VERSION = 2  # 2: the initialisation is seeded (1 drew it from an unseeded generator)


def create_classifier(provider: Any, model_name: str, num_classes: int, pooling: str = "gap", pretrained: bool = False,
                      weights: str | None = None, seed: int = 0, background: bool = False, bias: bool = False) -> Classifier:
    """A classifier (backbone + 1x1 head + global pooling) over a backbone provider's model;
    ``background`` adds a background output to the head, ``bias`` a bias (see ``Classifier``).

    Its random initialisation (the head, and the backbone when not pretrained) is drawn from
    ``seed``, so that training from scratch gives the same weights in every process.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        features, preprocess = provider.build(model_name, pretrained=pretrained, weights=weights)
        features.eval()
        with torch.no_grad():
            out = features(torch.zeros(1, 3, 64, 64))
        if out.ndim != 4:
            raise UsageError(f"backbone '{model_name}' does not produce feature maps (output shape {tuple(out.shape)})")
        return Classifier(features, out.shape[1], num_classes, pooling, bias=bias, background=background, **preprocess)


def build_classifier(config: RunConfig, dataset: Any, provider: Any) -> Classifier:
    """The classifier of a run: untrained (seeded from its recipe), or, from a provider that
    ``provides_classifier`` (an ImageNet network with its own head), trained already."""
    _, model_name = config.backbone_provider
    if getattr(provider, "provides_classifier", False):  # its own head: nothing to train
        model = provider.classifier(model_name, pretrained=config.pretrained, weights=config.weights)
        if model.num_classes != dataset.num_classes - 1:
            raise UsageError(f"backbone '{config.backbone}' scores {model.num_classes} classes; dataset '{config.dataset}' "
                             f"has {dataset.num_classes - 1}")
        return model
    model = create_classifier(provider, model_name, dataset.num_classes - 1, config.pooling, config.pretrained,
                              config.weights, config.recipe.seed, config.background, config.head_bias)
    if config.recipe.head_init == "imagenet" and config.weights is None and not config.pretrained:
        raise UsageError(NEEDS_IMAGENET)  # said before any work; the rows are set when training starts (load_or_train)
    return model


def imagenet_head_init(model: Classifier, model_name: str, weights: str | None, pretrained: bool,
                       classes: tuple[str, ...]) -> list[str]:
    """Start the head's row of every class named as a VOC class (``classes`` with background
    first) from the mean of its WordNet members' rows of the backbone's own ImageNet classifier
    (``wssbench.classifier.imagenet.voc_groups``: the 118 dog breeds for ``dog``, ...); the other
    rows keep their seeded random values, and a bias, where the head has one, stays. Returns the
    classes so started.

    Why: fine-tuning on a few photos per class (coco-mini's train2017 has 1 to 3 for most VOC
    classes) cannot teach a fresh head to name them, and the network's ImageNet classifier already
    scores most of them. On coco-mini val2017 the plain run rose from 5.1 to 11.1 mIoU (three
    seeds; paired bootstrap +6.0 [+1.1, +8.4]) at about the same classifier mAP (44.3 against
    41.0 % on average): ``benchmarks/README.md``, "Real photos". The mean is a linear stand-in for the class's softmax
    share (log-sum-exp over its members), which a 1x1 head cannot express; it is a starting point,
    and the rows are trained with the rest of the head.
    """
    if weights is None and not pretrained:
        raise UsageError(NEEDS_IMAGENET)
    imagenet = imagenet_classifier(model_name, weights, head="imagenet", pretrained=pretrained)
    rows = imagenet.head.weight.detach()[:, :, 0, 0]  # (1000, F)
    if rows.shape[1] != model.head.weight.shape[1]:
        raise UsageError(f"head_init = imagenet: '{model_name}''s ImageNet classifier reads {rows.shape[1]} features, "
                         f"its head {model.head.weight.shape[1]}")
    groups = dict(zip(VOC_CLASSES, voc_groups()))
    first = int(bool(getattr(model, "background", False)))  # a background output is the head's row 0
    started = []
    with torch.no_grad():
        for c, name in enumerate(classes[1:]):
            if groups.get(name):
                model.head.weight[first + c, :, 0, 0] = rows[groups[name]].mean(0)
                started.append(name)
    return started


def classifier_key(config: RunConfig, dataset: Any) -> dict:
    """Everything that determines the trained classifier's weights: the training data by its
    content (``datakey.training_data_key``), never its path, so a moved cache is reused."""
    return {
        "version": CLASSIFIER_VERSION,
        "dataset": config.train_dataset or config.dataset,
        "data": training_data_key(dataset, config.train_split),
        "split": config.train_split,
        "backbone": config.backbone,
        "backbone_options": config.options_for("backbone"),
        "pooling": config.pooling,
        "pretrained": config.pretrained,
        "weights": file_digest(config.weights) if config.weights else None,
        "recipe": recipe_dict(config.recipe),
        # the head's shape, only when not the default, so that earlier keys stay as they were
        **({"background": True} if config.background else {}),
        **({"head_bias": True} if config.head_bias else {}),
        **compute_key(config),
    }


def compute_key(config: RunConfig) -> dict:
    """What of the numerics enters cache keys beyond the components: precision and, off the
    CPU, the device type (CUDA convolutions use TF32 and other algorithms). Empty for fp32 on
    the CPU, so that those keys stay as they were."""
    key = {}
    if config.precision != "fp32":
        key["precision"] = config.precision
    if torch.device(config.device).type != "cpu":
        key["device"] = torch.device(config.device).type
    return key


def load_or_train(config: RunConfig, parts: Components, device: torch.device, progress: Any = None) -> tuple[Classifier, dict]:
    """The cached classifier for this config, training (and caching) it on the first run.

    A damaged checkpoint is warned about and retrained. Training holds the entry's lock
    (``locks.entry_lock``): a second run on the same cold cache waits and loads the first's
    result. Where the cache cannot be written the trained model is used in memory (said once).
    """
    model = parts.model
    key = classifier_key(config, parts.training)
    path = checkpoint_path(key)
    if getattr(model, "trained", False):  # it came trained (an ImageNet head): nothing to train or cache
        model.to(device).eval()
        return model, {"key": key, "cached": True, "trained_by": "provider", "checkpoint": str(path),
                       "output_stride": downsample_factor(model)}
    meta = load_cached_checkpoint(path, model)
    waiting = None

    def on_wait(message: str) -> None:
        nonlocal waiting
        if progress:
            waiting = progress.add_task("waiting for another run training this classifier", total=None)
        else:
            log.info(message)

    if meta is None:
        with entry_lock(path, on_wait):
            if waiting is not None:
                progress.remove_task(waiting)
            meta = load_cached_checkpoint(path, model)  # another run may have trained it meanwhile
            if meta is None:
                if config.recipe.head_init == "imagenet":  # only a model about to be trained needs its starting rows
                    imagenet_head_init(model, config.backbone_provider[1], config.weights, config.pretrained,
                                       getattr(parts.dataset, "classes", ()))
                task = progress.add_task("training classifier", total=None) if progress else None

                def on_step(step: int, total: int, loss: float) -> None:
                    if progress:
                        progress.update(task, completed=step, total=total, description=f"training classifier (loss {loss:.3f})")

                start = time.perf_counter()
                history = train(
                    model, parts.training, config.train_split, config.recipe, device, on_step,
                    precision=config.precision, loader_workers=config.loader_workers,
                )
                meta = {"key": key, "loss_history": history, "train_seconds": time.perf_counter() - start}
                save_checkpoint(path, model.cpu(), meta)  # a read-only cache: said once, kept in memory
                meta = {**meta, "cached": False}
                if progress:
                    progress.remove_task(task)
    model.to(device).eval()
    return model, {"cached": True, **meta, "checkpoint": str(path), "output_stride": downsample_factor(model)}
