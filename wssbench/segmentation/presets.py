"""The methods of the poster's table that train segmentation networks from image labels only.

Each preset sets segmentation-run options (``wssbench run --preset em-adapt`` or
``wssbench segment --preset em-adapt``; keys as :mod:`wssbench.segmentation.describe` takes
them, the solver's under ``recipe``). As for the seed presets (:mod:`wssbench.seed.presets`),
those options ARE the published recipe, read in the authors' released configs (each value below
cites its file and line; the notes behind them are summarised in README, "Presets"):

* EM-Adapt: the DeepLab release's ``config/DeepLab-Weak-EM-Adapt/`` (mirrored at
  TheLegendAli/DeepLab-Context, commit 3b516dc; the layer in
  ``src/caffe/layers/adaptive_bias_channel_layer.cpp``): the original DeepLab (fc6 4x4 with hole
  4, 4,096 channels: the small field of view, ``train.prototxt`` 409-414), five adaptive-bias
  passes (``num_iter: 5``, 495), bg / fg fractions 0.4 / 0.2 (493-494), crops of 321 with
  mirroring and no rescaling (37-38), batches of 20 (30), 6,000 iterations at lr 1e-3 divided by
  10 every 2,000 (``solver.prototxt`` 3-9), momentum 0.9, weight decay 5e-4 (10-11), the
  classifier at 10x (its bias 20x: 467-468), biases at 2x without decay (e.g. 62-65).
* CCNN: pathak22/ccnn (commit aa3d3b2): ``src/train.py`` 31-38 and 49-51 (lr 1e-6, fixed in
  effect as its step of 40,000 exceeds the 35,000 iterations, momentum 0.99, weight decay 5e-7),
  ``models/fcn_8s/train_8s.prototxt`` (whole images, batch 1, no mirror: 5-11; fc6 4x4, hole 4,
  4,096 channels; the classifier at 1x: 546-553).

Options given by the user win, and each one that differs is a *deviation* listed in the record
(:func:`segment_deviations`); what wssbench does differently from the release is listed as
``departures`` in every run.
"""

from __future__ import annotations

from typing import Any

from wssbench.engine.description import option_triples
from wssbench.engine.presets import Preset, text
from wssbench.host.options import defaults
from wssbench.host.registry import default_registry

SMALL_FOV = ("segnet.fc6_kernel=4", "segnet.fc6_dilation=4", "segnet.channels=4096")  # DeepLab's original fc6 (not LargeFOV)
VGG16_WEIGHTS = {
    "option": "VGG-16 weights",
    "published": "the Caffe VGG-16 (BGR, 0..255 minus the mean; lr of conv1_1 scales with that input)",
    "used": "timm's vgg16 (torchvision's ImageNet weights, RGB 0..1 normalised by the std); ceil-mode pooling as padding 1",
}
# the Caffe solver of the DeepLab release's EM-Adapt config (module docstring)
EM_ADAPT_SOLVER = {"iterations": 6000, "batch_size": 20, "lr_policy": "step", "lr_step": 2000, "lr_gamma": 0.1,
                   "momentum": 0.9, "weight_decay": 5e-4, "head_lr_mult": 10.0, "bias_lr_mult": 2.0, "bias_decay": False,
                   "crop": 321, "flip": True, "scale": (1.0, 1.0)}
# pathak22/ccnn's solver (src/train.py) on whole images
CCNN_SOLVER = {"iterations": 35000, "batch_size": 1, "crop": None, "flip": False, "scale": (1.0, 1.0), "lr_policy": "fixed",
               "momentum": 0.99, "weight_decay": 5e-7, "head_lr_mult": 1.0, "bias_lr_mult": 2.0, "bias_decay": False}

# why an option of the segmentation presets is a choice (a preset's own ``why`` wins)
WHY = {
    "recipe.iterations": "the length of CCNN's training list: its train.txt is linked from the README, not in the repository",
    "batch_size": "STC's solver: only the paper's abstract could be read (DeepLab-LargeFOV's batch of 20 taken)",
    "epochs": "STC's solver: only the paper's abstract could be read (DeepLab-LargeFOV's 6,000 iterations of 20, about 12 epochs)",
    "lr": "STC's solver: only the paper's abstract could be read (DeepLab-LargeFOV's lr 1e-3)",
    "crf": "STC: whether val is post-processed by a dense CRF is not in the abstract",
    "schedule.step3_simple": "the abstract's 'complex images' are VOC's train_aug, its single-class images included; read as true",
}

SEGMENT_PRESETS: dict[str, Preset] = {
    "em-adapt": Preset(
        "EM-Adapt (Papandreou et al., ICCV 2015): DeepLab (VGG-16, fc6 4x4 hole 4) trained by EM with adaptive "
        "fg/bg biases from image labels",
        {"segnet": "deeplab-largefov", "backbone": "vgg16", "pretrained": True, "objective": "em-adapt",
         "lr": 0.001, "recipe": EM_ADAPT_SOLVER, "crf": True,
         "options": (*SMALL_FOV, "objective.passes=5", "objective.fg_fraction=0.2", "objective.bg_fraction=0.4")},
        "38.2 val / 39.6 test",
        departures=(
            VGG16_WEIGHTS,
            {"option": "image labels", "published": "the labels present in each 321 crop's pixel mask (background only if in the crop)",
             "used": "the whole image's labels, background always: a weakly supervised run has no masks to read"},
            {"option": "E-step", "published": "over every position of the crop, padding included", "used": "over the image's pixels only"},
        ),
    ),
    "ccnn": Preset(
        "CCNN (Pathak, Kraehenbuehl & Darrell, ICCV 2015): FCN-8s-atrous VGG-16 trained towards the KL "
        "projection on image-label constraints",
        {"segnet": "deeplab-largefov", "backbone": "vgg16", "pretrained": True, "objective": "ccnn",
         "lr": 1e-6, "recipe": CCNN_SOLVER, "crf": True, "options": SMALL_FOV},
        "34.5 val / 35.5 test",
        # the length of its training list (train.txt is linked from the README, not in the repository)
        unverified=("recipe.iterations",),
        departures=(
            VGG16_WEIGHTS,
            {"option": "image labels", "published": "VOC's ImageSets/Main/<class>_trainval.txt (a class whose objects are all difficult counts as absent)",
             "used": "the dataset's image labels (on voc2012 give -O dataset.labels=main to read those lists)"},
            {"option": "network", "published": "FCN-8s with skip connections", "used": "the fc6 4x4 hole-4 VGG-16 without skips"},
        ),
    ),
    "stc": Preset(
        "STC (Wei et al., TPAMI 2016): simple to complex; an Initial-DCNN on saliency maps of simple images, an "
        "Enhanced-DCNN on its label-constrained masks of them, a Powerful-DCNN on the Enhanced-DCNN's masks of the "
        "complex images",
        {
            "segnet": "deeplab-largefov", "backbone": "vgg16", "pretrained": True, "objective": "pseudo-masks",
            "schedule": "stc", "crop": 321, "batch_size": 20, "epochs": 12, "lr": 0.001, "crf": True,
            # step 3 on all of the training split: the abstract's "10K complex images from PASCAL VOC" is VOC's
            # train_aug (10,582 images, its single-class ones included); the paper's simple images (40K Flickr)
            # are not part of it, wssbench's are (arXiv 1509.03150, abstract)
            "options": ("schedule.saliency=u2netp", "schedule.step3_simple=true"),
        },
        "49.8 val / 51.2 test",
        # only the abstract could be read: the solver (DeepLab-LargeFOV's), CRF on val, step 3 on the simple
        # images too, and each step from ImageNet weights are choices
        unverified=("batch_size", "epochs", "lr", "crf", "schedule.step3_simple"),
        departures=(
            VGG16_WEIGHTS,
            {"option": "lr schedule", "published": "not read (the paper's body)", "used": "poly decay (power 0.9)"},
            {"option": "simple images", "published": "40K Flickr images of the 20 VOC classes (one class, clean background)",
             "used": "the single-label images of the training split; the complex ones are its other images"},
            {"option": "saliency detector", "published": "DRFI (Jiang et al., CVPR 2013; MATLAB, random forest trained on MSRA-B masks)",
             "used": "U2-Net-p (Qin et al. 2020, trained on DUTS-TR masks; schedule.saliency=u2netp, the 'salient' extra)"},
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
        if key == "recipe":  # the solver, field by field
            for field, published in value.items():
                used = getattr(config.recipe, field)
                if text(used) != text(published):
                    out.append({"option": f"recipe.{field}", "published": published, "used": used})
            continue
        used = getattr(config.recipe, key) if hasattr(config.recipe, key) and key != "seed" else getattr(config, key)
        if text(used) != text(value):
            out.append({"option": key, "published": value, "used": used})
    deviations = preset.deviations(out)
    segnet = config.options_for("segnet")
    if segnet.get("encoder") != "vgg16" or not (segnet.get("pretrained") or config.weights is not None):
        # no VGG-16 weights are loaded: how they would be is moot (segnet.encoder / .pretrained say what ran)
        deviations = [d for d in deviations if d["option"] != VGG16_WEIGHTS["option"]]
    return deviations
