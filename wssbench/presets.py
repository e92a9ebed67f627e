"""Named configurations: the poster's methods and the baselines of its tables.

A preset sets ``wssbench run`` options; options given on the command line win. Each entry
cites what it reproduces (on VOC 2012 val, mIoU %, from the poster's tables).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any



@dataclass(frozen=True)
class Preset:
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    published: str = ""


PRESETS: dict[str, Preset] = {
    "mil-fcn": Preset(
        "MIL-FCN (Pathak et al. 2015): FCN score maps of a classifier trained with global max pooling",
        {"pooling": "gmp", "classmap": "fcn", "saliency": "none", "fusion": "threshold", "refine": "none"},
        "25.7 val / 24.9 test",
    ),
    "mil-sppxl": Preset(
        "MIL-sppxl (Pinheiro & Collobert 2015): log-sum-exp pooling, score maps smoothed in superpixels",
        {"pooling": "lse", "classmap": "fcn", "saliency": "none", "fusion": "threshold", "refine": ("sppxl",)},
        "36.6 val",
    ),
    "fcn-gbp": Preset(
        "Poster FCN+GBP: FCN class maps (global max pooling) + guided BP, ILP fusion, superpixel CRF",
        {"pooling": "gmp", "classmap": "fcn", "saliency": "gbp", "fusion": "ilp", "refine": ("sppxl-crf",)},
        "41.4 val / 40.7 test",
    ),
    "zof-gbp": Preset(
        "Poster ZOF+GBP: zoom-out features + mi-SVM class maps + guided BP, ILP fusion, superpixel CRF",
        {"pooling": "gmp", "classmap": "zoomout", "saliency": "gbp", "fusion": "ilp", "refine": ("sppxl-crf",)},
        "38.1 val / 37.7 test",
    ),
    "dcsm": Preset(
        "DCSM (Shimoda & Yanai, ECCV 2016): distinct multi-layer guided-BP maps at 3 scales + dense CRF",
        {
            "pooling": "gmp", "classmap": "none", "saliency": "multilayer", "fusion": "threshold",
            "refine": ("densecrf",), "options": ("saliency.distinct=true", "saliency.scales=0.8,1.0,1.2"),
        },
        "44.1 val / 45.1 test",
    ),
}

