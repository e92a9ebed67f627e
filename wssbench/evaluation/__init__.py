"""Saliency evaluation: pointing game, energy-based pointing game, deletion / insertion AUC,
and the model-randomisation sanity check. Pure functions in :mod:`.localisation`,
:mod:`.causal` and :mod:`.sanity`; the loop over a split in :mod:`.evaluate`."""

from wssbench.evaluation.causal import auc, causal_curve, deletion, insertion
from wssbench.evaluation.evaluate import METRICS, EvalOptions, columns_for_run, evaluate_saliency, leaderboard_columns
from wssbench.evaluation.localisation import PointingGame, bounding_box, energy_inside, is_difficult, max_point, pointing_hit
from wssbench.evaluation.sanity import SanityResult, cascade_units, randomise, sanity_check, spearman

__all__ = [
    "METRICS",
    "EvalOptions",
    "PointingGame",
    "SanityResult",
    "auc",
    "bounding_box",
    "cascade_units",
    "causal_curve",
    "columns_for_run",
    "deletion",
    "energy_inside",
    "evaluate_saliency",
    "insertion",
    "is_difficult",
    "leaderboard_columns",
    "max_point",
    "pointing_hit",
    "randomise",
    "sanity_check",
    "spearman",
]
