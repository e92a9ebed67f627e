"""Fusion ``ilp``: class maps and saliency maps unified by an integer linear program on superpixels."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pulp

import wssbench
from wssbench.methods.fusion_rules import ThresholdRule
from wssbench.methods.superpixels import check_slic, segment_areas, segment_means, slic_segments

# CBC's status -> the reason an image falls back to the threshold rule
_FAILURES = {
    pulp.LpStatusInfeasible: "infeasible",
    pulp.LpStatusNotSolved: "no solution within time_limit",
}


class ILPError(RuntimeError):
    """CBC returned no optimal labelling; the message is the reason, a solver exception its cause."""


def solve_ilp(scores: np.ndarray, areas: np.ndarray, min_areas: np.ndarray, time_limit: float) -> np.ndarray:
    """The labelling y (S,) maximising ``sum_s areas[s] * scores[s, y[s]]`` under minimum areas.

    ``scores`` (S, L), ``areas`` (S,), ``min_areas`` (L,) in the unit of ``areas``: label l must
    cover at least ``min_areas[l]``. When the per-superpixel argmax already satisfies every
    minimum it is optimal and returned without calling CBC. Raises :class:`ILPError` when CBC
    finds no proven optimum within ``time_limit`` seconds.
    """
    n, n_labels = scores.shape
    best = scores.argmax(1)  # (S,)
    if np.all(np.bincount(best, weights=areas, minlength=n_labels) >= min_areas):
        return best
    prob = pulp.LpProblem("fusion", pulp.LpMaximize)
    x = prob.add_variable_matrix("x", (range(n), range(n_labels)), cat=pulp.LpBinary)  # S lists of L
    prob += pulp.lpSum(areas[s] * scores[s, l] * x[s][l] for s in range(n) for l in range(n_labels))
    for s in range(n):
        prob += pulp.lpSum(x[s]) == 1
    for l in np.flatnonzero(min_areas > 0):
        prob += pulp.lpSum(areas[s] * x[s][l] for s in range(n)) >= min_areas[l]
    try:
        prob.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit))
    except pulp.PulpSolverError as e:
        raise ILPError("solver error") from e
    if prob.sol_status == pulp.LpSolutionIntegerFeasible:  # stopped on time with a labelling
        raise ILPError("not proven optimal within time_limit")
    if prob.sol_status != pulp.LpSolutionOptimal:
        raise ILPError(_FAILURES.get(prob.status, f"CBC status {pulp.LpStatus[prob.status]}"))
    chosen = np.array([[v.value() for v in row] for row in x])  # (S, L), 0/1 up to CBC's tolerance
    return chosen.argmax(1)


@dataclass(frozen=True)
class ILPFusion:
    """Integer linear program on SLIC superpixels (one reading of the poster's "ILP"; ``image-prior`` is the other): most agreement with class and saliency maps, each class >= min_area.

    Per image, with SLIC superpixels s (``n_segments``, ``compactness``) of area a_s (fraction
    of the image) and labels l in {0 = background, 1..K = the detected classes}::

        maximise    sum_s a_s * sum_l score[s, l] * x[s, l]
        subject to  sum_l x[s, l] = 1                for every superpixel s
                    sum_s a_s * x[s, k] >= min_area  for every detected class k >= 1
                    x[s, l] in {0, 1}

    ``score[s, k]`` is the mean over s of the threshold rule's foreground evidence
    ``F_k = weight * C_k + (1 - weight) * S_k`` (class map C_k, saliency map S_k normalised by
    ``normalise_saliency``; one of them alone when the other stage is off), and
    ``score[s, 0] = bg_threshold``. Without the area constraints the optimum is the threshold
    rule applied per superpixel; with them every class the classifier detected appears,
    on the superpixels where that loses the least agreement (CCNN's presence constraint).

    PuLP's bundled CBC solves it within ``time_limit`` seconds per image (skipped when the
    per-superpixel argmax already meets the constraints, as it is then optimal). When CBC
    finds no proven optimum (infeasible: the superpixels cannot give every class min_area;
    time limit; solver error) the image gets the threshold rule's output, a warning names
    the reason and ``stats()`` counts it. With neither map, or no detected class, there is
    nothing to place and the output is the threshold rule's (all background).

    Output: ``(1 - soft) * onehot + soft * threshold`` per pixel, the ILP labelling painted
    back to the pixels mixed with the threshold rule's probabilities. ``soft < 0.5`` keeps
    the argmax equal to the ILP labelling; ``soft > 0`` leaves a refiner after it (densecrf)
    per-pixel evidence to move boundaries with, where a one-hot input would pin them.
    """

    name = "integer-lp"
    n_segments: int = 100
    compactness: float = 10.0
    min_area: float = 0.02  # fraction of the image each detected class must cover
    time_limit: float = 5.0  # seconds of CBC per image
    soft: float = 0.0  # weight of the threshold probabilities in the output, in [0, 0.5)
    # the threshold rule's options, with its defaults
    bg_threshold: float = ThresholdRule.bg_threshold
    weight: float = ThresholdRule.weight
    sigma: float = ThresholdRule.sigma
    quantile: float = ThresholdRule.quantile

    def __post_init__(self) -> None:
        check_slic(self.n_segments, self.compactness)
        if not 0.0 <= self.min_area < 1.0:
            raise ValueError(f"min_area must be in [0, 1), got {self.min_area}")
        if self.time_limit <= 0:
            raise ValueError(f"time_limit must be positive, got {self.time_limit}")
        if not 0.0 <= self.soft < 0.5:
            raise ValueError(f"soft must be in [0, 0.5), got {self.soft}")
        # the threshold rule gives the evidence and the fallback; it validates its own options
        threshold = ThresholdRule(self.bg_threshold, self.weight, self.sigma, self.quantile)
        object.__setattr__(self, "_threshold", threshold)
        object.__setattr__(self, "_stats", Counter())

    def stats(self) -> dict[str, int]:
        """Images fused so far, how many fell back to the threshold rule, and why."""
        return {"images": 0, "fallbacks": 0, **self._stats}

    def __call__(self, image, labels, class_maps, saliency_maps) -> np.ndarray:
        self._stats["images"] += 1
        threshold = self._threshold(image, labels, class_maps, saliency_maps)  # (K+1, H, W)
        if len(labels) == 0 or (class_maps is None and saliency_maps is None):
            return threshold
        # threshold = [bg_threshold, F_1 .. F_K] / sum, so F_k = bg_threshold * p_k / p_0 (p_0 > 0)
        evidence = np.concatenate([np.full_like(threshold[:1], self.bg_threshold),
                                   self.bg_threshold * threshold[1:] / threshold[0]])  # (K+1, H, W)
        segments = slic_segments(image, self.n_segments, self.compactness)  # (H, W)
        scores = segment_means(evidence, segments).T  # (S, K+1)
        # areas in pixels: integer coefficients make CBC's knapsack cuts bite (3x faster when they bind)
        areas = segment_areas(segments).astype(np.float64)  # (S,)
        min_areas = np.r_[0.0, np.full(len(labels), np.ceil(self.min_area * segments.size))]  # (K+1,)
        try:
            assignment = solve_ilp(scores, areas, min_areas, self.time_limit)  # (S,)
        except ILPError as e:
            detail = f" ({e.__cause__})" if e.__cause__ else ""
            warnings.warn(f"integer-lp fusion fell back to the threshold rule: {e}{detail}", stacklevel=2)
            self._stats["fallbacks"] += 1
            self._stats[f"fallback: {e}"] += 1
            return threshold
        onehot = np.arange(len(labels) + 1)[:, None, None] == assignment[segments]  # (K+1, H, W)
        return ((1.0 - self.soft) * onehot + self.soft * threshold).astype(np.float32)


@wssbench.hookimpl
def register_fusion(register):
    register(ILPFusion)
