"""What the two stages share: describing a run (``description``) and named published recipes
with their deviations (``presets``). :mod:`wssbench.seed` (stage 1) and
:mod:`wssbench.segmentation` (stage 2) are built on it."""
