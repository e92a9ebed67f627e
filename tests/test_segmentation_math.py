"""EM-Adapt's E-step and CCNN's dual solution against hand-built cases and a generic solver."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import softmax, xlogy

from wssbench_plugins._ccnn import image_constraints, latent_distribution
from wssbench_plugins._em_adapt import adaptive_biases, em_adapt_labels


def hand_volume() -> tuple[torch.Tensor, torch.Tensor]:
    """100 pixels, classes bg=0, fg 1 and 2 present, fg 3 absent with the highest scores.

    Class 1 leads everywhere; background trails class 1 by 0.01 * i on pixel i, class 2 by
    1 + 0.01 * (99 - i), so each needs a bias to win, on the low-i (bg) and high-i (class 2)
    ends respectively; class 3 would win everywhere if it were not absent.
    """
    i = torch.arange(100, dtype=torch.float64)
    scores = torch.stack([5.0 - 0.01 * i, torch.full_like(i, 5.0), 4.0 - 0.01 * (99 - i), torch.full_like(i, 50.0)])
    present = torch.tensor([True, True, True, False])
    return scores, present


def test_adaptive_biases_give_exactly_the_target_fractions():
    scores, present = hand_volume()
    biased = adaptive_biases(scores, present, fg_fraction=0.2, bg_fraction=0.4)
    won = torch.bincount(biased.argmax(0), minlength=4)
    # background got exactly its 40 pixels (the lowest i), class 2 exactly its 20 (the highest
    # i), class 1 keeps the remaining 40 (>= its 20 without any bias), class 3 none
    assert won.tolist() == [40, 40, 20, 0]
    labels = biased.argmax(0)
    assert (labels[:40] == 0).all() and (labels[80:] == 2).all()
    # one bias per class: the midpoint between the 40th and 41st gaps for the background
    # (0.39, 0.40); class 2's gaps to class 1 are 1 + 0.01 * (99 - i): its 20th and 21st are
    # 1.19 and 1.20; class 1, already above its share, got none
    bias = biased - scores
    assert torch.allclose(bias[0], torch.full((100,), 0.395, dtype=torch.float64))
    assert torch.allclose(bias[2], torch.full((100,), 1.195, dtype=torch.float64))
    assert torch.allclose(bias[1], torch.zeros(100, dtype=torch.float64))


@pytest.mark.parametrize("seed", range(5))
def test_absent_classes_never_win_and_present_ones_reach_their_share(seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(6, 500, generator=g, dtype=torch.float64) * 3
    scores[4] += 20  # an absent class with the best scores everywhere
    present = torch.tensor([True, False, True, True, False, False])
    biased = adaptive_biases(scores, present, fg_fraction=0.2, bg_fraction=0.3, passes=3, generator=g)
    won = torch.bincount(biased.argmax(0), minlength=6)
    assert won[~present].sum() == 0
    assert won[present].sum() == 500 and (won[present] > 0).all()
    # the class visited last wins at least its share (earlier ones may have lost some to it,
    # as the authors' layer documents)
    assert won[present].max() >= 100


def test_em_adapt_labels_mark_padding_ignored_and_count_valid_pixels_only():
    scores, present = hand_volume()
    logits = torch.cat([scores, torch.full((4, 20), 9.0, dtype=torch.float64)], 1).float().view(1, 4, 10, 12)
    valid = torch.zeros(1, 10, 12, dtype=torch.bool)
    valid.view(1, -1)[:, :100] = True
    labels = em_adapt_labels(logits, present[None], valid, 0.2, 0.4)
    assert (labels.view(-1)[100:] == 255).all()
    assert torch.bincount(labels.view(-1)[:100], minlength=4).tolist() == [40, 40, 20, 0]


def primal_projection(f, present, **bounds):
    """The KL projection by a generic solver (SLSQP) on the primal: variables P (n, N) and one
    violation xi per soft constraint; min sum_i KL(p_i || q_i) / n + sum slack * xi."""
    n, m = f.shape
    q = softmax(f, axis=1)
    cons = image_constraints(present, **bounds)
    soft = np.flatnonzero(np.isfinite(cons.slack))
    kept = cons.kept

    def unpack(x):
        p = np.zeros((n, m))
        p[:, kept] = x[: n * len(kept)].reshape(n, len(kept))
        return p, x[n * len(kept):]

    def objective(x):
        p, xi = unpack(x)
        return (xlogy(p, p) - xlogy(p, q)).sum() / n + cons.slack[soft] @ xi

    constraints = [{"type": "eq", "fun": lambda x: unpack(x)[0][:, kept].sum(1) - 1}]
    for r in range(len(cons.b)):
        def g(x, r=r):
            p, xi = unpack(x)
            relax = xi[list(soft).index(r)] if r in soft else 0.0
            return cons.A[r] @ p[:, kept].mean(0) - cons.b[r] + relax
        constraints.append({"type": "ineq", "fun": g})
    x0 = np.concatenate([q[:, kept].ravel() / q[:, kept].sum(1).repeat(len(kept)), np.zeros(len(soft))])
    bounds_ = [(1e-12, 1.0)] * (n * len(kept)) + [(0.0, None)] * len(soft)
    result = minimize(objective, x0, method="SLSQP", bounds=bounds_, constraints=constraints,
                      options={"maxiter": 1000, "ftol": 1e-14})
    assert result.success, result.message
    return unpack(result.x)[0]


@pytest.mark.parametrize("slack", [np.inf, 2.0, 0.05])
def test_ccnn_dual_solution_matches_the_primal_kl_projection(slack):
    rng = np.random.default_rng(0)
    # 8 pixels, classes: bg, fg 1 (present, small under Q), fg 2 (absent), fg 3 (present)
    f = rng.normal(size=(8, 4)) + np.array([3.0, -3.0, 1.0, 0.0])
    present = np.array([True, True, False, True])
    bounds = {"fg_lower": 0.2, "fg_slack": slack, "bg_lower": 0.3, "bg_upper": 0.5}
    p = latent_distribution(f, present, **bounds)
    reference = primal_projection(f, present, **bounds)
    np.testing.assert_allclose(p, reference, atol=2e-4)
    assert np.allclose(p.sum(1), 1) and (p[:, 2] == 0).all()
    fractions = p.mean(0)
    assert 0.3 - 1e-6 <= fractions[0] <= 0.5 + 1e-6  # hard background bounds
    if slack == np.inf:
        assert (fractions[[1, 3]] >= 0.2 - 1e-6).all()
    if slack == 0.05:  # cheap violations: class 1 is left below its bound
        assert fractions[1] < 0.2 - 1e-3


def test_ccnn_with_the_papers_bounds_satisfies_every_constraint():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(50, 6)) + np.array([4.0, -2, 0, -4, 0, 0])
    present = np.array([True, True, False, True, False, False])
    p = latent_distribution(f, present)  # fg >= 5 % (slack 2), 30 % <= bg <= 70 %
    fractions = p.mean(0)
    assert (fractions[[2, 4, 5]] == 0).all()
    assert 0.3 - 1e-6 <= fractions[0] <= 0.7 + 1e-6
    assert (fractions[[1, 3]] >= 0.05 - 1e-6).all()


def test_ccnn_background_only_image_is_all_background():
    p = latent_distribution(np.zeros((5, 3)), np.array([True, False, False]))
    assert (p[:, 0] == 1).all()
