"""CCNN's latent distribution (Pathak, Kraehenbuehl & Darrell, ICCV 2015, "Constrained
Convolutional Neural Networks for Weakly Supervised Segmentation").

Per image, the latent label distribution ``P`` (one distribution per pixel) is the one
closest in KL divergence to the network's output ``Q = softmax(f)`` under linear constraints
on the image's label fractions, and the network is trained towards it (loss ``KL(P || Q)``,
gradient ``Q - P`` on the scores). The problem is solved in the dual, per image: with
constraints ``mean_i a_c . p_i >= b_c`` and multipliers ``mu_c`` in ``[0, slack_c]``,

    P = softmax(f + A^T mu*),   mu* = argmin_mu  mean_i logsumexp(f_i + A^T mu) - mu . b

(a small convex problem over a handful of multipliers). The box ``mu_c <= slack_c`` is the
dual of a soft constraint: the primal adds ``slack_c * xi_c`` for a violation ``xi_c``.

What this reproduces is the authors' released code (``pathak22/ccnn``, read for this port):
``src/python_layers.py`` ``WeakLoss`` sets up the constraints and ``lib/constraintloss/
constraintsoftmax.cpp`` solves the dual (projected gradient descent with an adaptive step;
here scipy's L-BFGS-B solves the same box-constrained dual, to tighter tolerance). The
image-label setting (``apply_size_constraint = False``, the row of the poster's table) uses:

* absent classes: ``p_l = 0`` everywhere (``addZeroConstraint``: the class is removed);
* each present foreground class: at least ``fg_lower = 0.05`` of the image, slack ``fg_slack = 2``;
* background: at least ``bg_lower = 0.3`` (hard: slack 1e10) and, when a foreground class is
  present, at most ``bg_upper = 0.7`` (hard);
* ``hardness = 1`` (P is the soft distribution, not its argmax); loss normalised by pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax


@dataclass(frozen=True)
class Constraints:
    """``A p_mean >= b`` over the kept classes, multipliers bounded by ``slack`` (inf = hard)."""

    kept: np.ndarray  # (M,) class indices not constrained to 0
    A: np.ndarray  # (R, M)
    b: np.ndarray  # (R,)
    slack: np.ndarray  # (R,) upper bounds of the multipliers


def image_constraints(present: np.ndarray, fg_lower: float = 0.05, fg_slack: float = 2.0,
                      bg_lower: float = 0.3, bg_upper: float = 0.7, bg_slack: float = np.inf) -> Constraints:
    """CCNN's image-label constraints for one image; ``present`` (N,) bool, index 0 background."""
    present = np.asarray(present, bool).copy()
    present[0] = True
    kept = np.flatnonzero(present)
    rows, b, slack = [], [], []

    def add(c: int, sign: float, bound: float, s: float) -> None:
        a = np.zeros(len(kept))
        a[np.searchsorted(kept, c)] = sign
        rows.append(a), b.append(sign * bound), slack.append(s)

    for c in kept[1:]:
        add(c, 1.0, fg_lower, fg_slack)
    add(0, 1.0, bg_lower, bg_slack)
    if len(kept) > 1:
        add(0, -1.0, bg_upper, np.inf)
    return Constraints(kept, np.array(rows).reshape(len(rows), len(kept)), np.array(b), np.array(slack))


def dual_multipliers(f: np.ndarray, cons: Constraints) -> np.ndarray:
    """The dual solution ``mu*`` (R,) for scores ``f`` (n, M) over the kept classes."""
    f = np.asarray(f, np.float64)

    def objective(mu: np.ndarray) -> tuple[float, np.ndarray]:
        z = f + mu @ cons.A  # (n, M)
        value = logsumexp(z, axis=1).mean() - mu @ cons.b
        grad = cons.A @ softmax(z, axis=1).mean(0) - cons.b
        return float(value), grad

    bounds = [(0.0, None if np.isinf(s) else float(s)) for s in cons.slack]
    result = minimize(objective, np.zeros(len(cons.b)), jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-9})
    return result.x


def latent_distribution(f: np.ndarray, present: np.ndarray, **bounds: float) -> np.ndarray:
    """CCNN's ``P`` (n, N) for scores ``f`` (n, N) of one image's pixels and its labels ``present`` (N,)."""
    f = np.asarray(f, np.float64)
    cons = image_constraints(present, **bounds)
    p = np.zeros_like(f)
    if len(cons.kept) == 1:  # background only: nothing to trade off
        p[:, 0] = 1.0
        return p
    fk = f[:, cons.kept]  # (n, M)
    mu = dual_multipliers(fk, cons)
    p[:, cons.kept] = softmax(fk + mu @ cons.A, axis=1)
    return p
