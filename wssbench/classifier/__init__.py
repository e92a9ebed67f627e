"""The image-label classifier every method explains (``model``), how it is trained and cached
(``training``), ImageNet networks with their own head (``imagenet``), and local weights
(``weights``)."""

from wssbench.classifier.model import Classifier, downsample_factor

__all__ = ["Classifier", "downsample_factor"]
