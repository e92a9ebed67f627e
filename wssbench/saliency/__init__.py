"""Saliency maps from back-propagated class-score gradients (the ``saliency`` plugin kind)."""

from .backprop import RULES, Deconvnet, GuidedBP, VanillaBP, class_gradients, saliency_maps

__all__ = ["RULES", "Deconvnet", "GuidedBP", "VanillaBP", "class_gradients", "saliency_maps"]
