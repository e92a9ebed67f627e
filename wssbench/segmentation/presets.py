"""The methods of the poster's table that train segmentation networks from image labels only.

Each preset sets segmentation-run options (``wssbench run --preset em-adapt`` or
``wssbench segment --preset em-adapt``; keys as :mod:`wssbench.segmentation.describe` takes
them). As for the seed presets (:mod:`wssbench.seed.presets`), those options ARE the published
recipe: DeepLab-LargeFOV on an ImageNet-initialised VGG-16, DeepLab's SGD (momentum 0.9,
weight decay 5e-4, lr 1e-3 with the classifier at 10x, poly decay) and DeepLab's dense-CRF
post-processing on val, as both papers report. Options given by the user win, and each one
that differs is a *deviation* listed in the record (:func:`segment_deviations`); what
wssbench does differently from the papers is listed as ``departures`` in every run.
"""

from __future__ import annotations

from typing import Any

from wssbench.engine.description import option_triples
from wssbench.engine.presets import Preset, text
from wssbench.host.options import defaults
from wssbench.host.registry import default_registry

# DeepLab-LargeFOV's training as both papers inherit it: crops of 321, batches of 20, 6000
# iterations (about 12 epochs of VOC's 10,582 train_aug images), lr 1e-3 (classifier 10x)
DEEPLAB = {"crop": 321, "batch_size": 20, "epochs": 12, "lr": 0.001}
SOLVER = {
    "option": "lr schedule", "published": "DeepLab-LargeFOV's Caffe solver (step decay)",
    "used": "poly decay (power 0.9), as DeepLab v2 and later WSSS work train",
}
VGG16_WEIGHTS = {
    "option": "VGG-16 weights",
    "published": "the Caffe VGG-16 (BGR, mean subtraction)",
    "used": "timm's vgg16 (torchvision's ImageNet weights, RGB 0..1 normalised); ceil-mode pooling as padding 1",
}

SEGMENT_PRESETS: dict[str, Preset] = {
    "em-adapt": Preset(
        "EM-Adapt (Papandreou et al., ICCV 2015): DeepLab-LargeFOV (VGG-16) trained by EM with adaptive "
        "fg/bg biases from image labels",
        {"segnet": "deeplab-largefov", "backbone": "vgg16", "pretrained": True, "objective": "em-adapt",
         **DEEPLAB, "crf": True},
        "38.2 val / 39.6 test",
        unverified=("batch_size", "epochs"),  # DeepLab-LargeFOV's, not checked in the EM-Adapt release
        departures=(VGG16_WEIGHTS, SOLVER),
    ),
    "ccnn": Preset(
        "CCNN (Pathak, Kraehenbuehl & Darrell, ICCV 2015): FCN-8s-atrous VGG-16 trained towards the KL "
        "projection on image-label constraints",
        {
            "segnet": "deeplab-largefov", "backbone": "vgg16", "pretrained": True, "objective": "ccnn",
            **DEEPLAB, "crf": True,
            # the authors' models/fcn_8s/train_8s.prototxt: fc6 4x4, hole 4, 4096 channels
            "options": ("segnet.fc6_kernel=4", "segnet.fc6_dilation=4", "segnet.channels=4096"),
        },
        "34.5 val / 35.5 test",
        unverified=("batch_size", "epochs"),
        departures=(
            VGG16_WEIGHTS,
            {"option": "solver", "published": "batch 1, lr 1e-6, momentum 0.99, 35k iterations, step decay (pathak22/ccnn src/train.py)",
             "used": "DeepLab's SGD recipe of the EM-Adapt row, so that the two rows differ by objective and network only"},
        ),
    ),
    "stc": Preset(
        "STC (Wei et al., TPAMI 2016): simple to complex; an Initial-DCNN on saliency maps of simple images, an "
        "Enhanced-DCNN on its label-constrained masks of them, a Powerful-DCNN on the Enhanced-DCNN's masks of the "
        "complex images",
        {
            "segnet": "deeplab-largefov", "backbone": "vgg16", "pretrained": True, "objective": "pseudo-masks",
            "schedule": "stc", **DEEPLAB, "crf": True,
            "options": ("schedule.saliency=frequency-tuned", "schedule.step3_simple=true"),
        },
        "49.8 val / 51.2 test",
        # DeepLab-LargeFOV's recipe for every step, CRF on val, the Powerful-DCNN also on the simple
        # images, and each step from ImageNet weights: the paper's text could not be checked here
        unverified=("batch_size", "epochs", "lr", "crf", "schedule.step3_simple"),
        departures=(
            VGG16_WEIGHTS, SOLVER,
            {"option": "simple images", "published": "40K Flickr images of the 20 VOC classes (one class, clean background)",
             "used": "the single-label images of the training split; the complex ones are its other images"},
            {"option": "saliency detector", "published": "DRFI (Jiang et al., CVPR 2013; MATLAB, trained on MSRA-B)",
             "used": "a bottom-up detector implemented in wssbench (schedule.saliency: frequency-tuned, Achanta et al. CVPR 2009)"},
        ),
    ),
}

# recipe keys of a preset that are options of the segnet component
SEGNET_KEYS = {"backbone": "encoder", "pretrained": "pretrained"}


def segment_deviations(config: Any, registry: Any = None) -> list[dict[str, Any]]:
    """How a segmentation run departs from its preset's recipe (``{"option", "published", "used"}``
    for each changed option), then the preset's departures; [] without a segmentation preset.

    An option set on the preset's network or objective beyond the preset's own is a deviation
    from the component's default (read from ``registry``, the default one when not given)."""
    preset = SEGMENT_PRESETS.get(config.preset or "")
    if preset is None:
        return []
    out: list[dict[str, Any]] = []
    pinned = {(s, k): v for s, k, v in option_triples(preset.options.get("options"))}
    pinned.update({("segnet", SEGNET_KEYS[k]): v for k, v in preset.options.items() if k in SEGNET_KEYS})
    for (stage, name), value in pinned.items():
        used = config.options_for(stage).get(name)
        if name == "pretrained":  # a local --weights file of the same network is the published start
            used = bool(used) or config.weights is not None
        if used is None or text(used) != text(value):
            out.append({"option": f"{stage}.{name}", "published": value, "used": used})
    for stage in ("segnet", "objective"):
        name = getattr(config, stage)
        if name != preset.options.get(stage):
            continue  # a component the preset does not name: the top-level deviation says so
        if registry is None:

            registry = default_registry()

        default = defaults(registry.get(stage, name).factory)
        for key, used in config.options_for(stage).items():
            if (stage, key) not in pinned and text(default.get(key)) != text(used):
                out.append({"option": f"{stage}.{key}", "published": default.get(key), "used": used})
    for key, value in preset.options.items():
        if key in SEGNET_KEYS or key == "options":
            continue
        used = getattr(config.recipe, key) if hasattr(config.recipe, key) and key != "seed" else getattr(config, key)
        if text(used) != text(value):
            out.append({"option": key, "published": value, "used": used})
    return preset.deviations(out)
