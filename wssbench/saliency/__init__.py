"""Saliency maps from back-propagated class-score gradients (the ``saliency`` plugin kind).

Modules: :mod:`.rules` (the backward rules at rectifiers), :mod:`.backprop` (class-score
gradients at the input or at layers, Simonyan's map), :mod:`.multilayer` (the poster's
multi-layer maps), :mod:`.dcsm` (DCSM's scales and distinct maps), :mod:`.methods` (the
registered methods).
"""

from . import backprop
from .backprop import class_gradients, saliency_maps
from .dcsm import average_over_scales, distinct_maps
from .methods import Deconvnet, GuidedBP, MultiLayer, SaliencyMethod, VanillaBP
from .multilayer import default_layers, multilayer_maps
from .rules import RULES

__all__ = [
    "RULES",
    "Deconvnet",
    "GuidedBP",
    "MultiLayer",
    "SaliencyMethod",
    "VanillaBP",
    "average_over_scales",
    "backprop",
    "class_gradients",
    "default_layers",
    "distinct_maps",
    "multilayer_maps",
    "saliency_maps",
]
