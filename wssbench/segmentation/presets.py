"""The methods of the poster's table that train a segmentation network from image labels only.

Each preset sets ``wssbench segment`` options (by parameter name; ``options`` are
``KIND.KEY=VALUE`` component options); options given on the command line win. Both train
DeepLab's recipe (SGD, momentum 0.9, weight decay 5e-4, lr 1e-3 with the classifier at 10x,
poly decay) so that the two rows differ by their objective and network only, and score the
network on val with DeepLab's dense-CRF post-processing, as both papers report. CCNN's own
solver (batch 1, lr 1e-6, momentum 0.99, 35k iterations, step decay; ``pathak22/ccnn``
``src/train.py``) is not reproduced. ImageNet initialisation is not part of a preset: add
``--pretrained`` (download) or ``--weights FILE`` (offline), as both papers start from VGG-16.
"""

from __future__ import annotations

from ..presets import Preset

SEGMENT_PRESETS: dict[str, Preset] = {
    "em-adapt": Preset(
        "EM-Adapt (Papandreou et al., ICCV 2015): DeepLab-LargeFOV (VGG-16) trained by EM with adaptive "
        "fg/bg biases from image labels",
        {"segnet": "deeplab-largefov", "backbone": "vgg16", "objective": "em-adapt", "lr": 0.001, "crf": True},
        "38.2 val / 39.6 test",
    ),
    "ccnn": Preset(
        "CCNN (Pathak, Kraehenbuehl & Darrell, ICCV 2015): FCN-8s-atrous VGG-16 trained towards the KL "
        "projection on image-label constraints",
        {
            "segnet": "deeplab-largefov", "backbone": "vgg16", "objective": "ccnn", "lr": 0.001, "crf": True,
            # the authors' models/fcn_8s/train_8s.prototxt: fc6 4x4, hole 4, 4096 channels
            "options": ("segnet.fc6_kernel=4", "segnet.fc6_dilation=4", "segnet.channels=4096"),
        },
        "34.5 val / 35.5 test",
    ),
}
