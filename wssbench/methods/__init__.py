"""Building blocks that two or more methods share (as timm's ``layers``): the gradient
machinery of the back-propagation methods (``saliency``), the shared forward pass, class-map
helpers, the threshold rule of fusion, superpixels and object proposals. A method's own
algorithm lives beside its plugin in ``plugins/``."""
