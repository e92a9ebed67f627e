"""Fusion ``ilp``: the ILP on hand-computed cases, the full call, the fallback, the options."""

import numpy as np
import pulp
import pytest

from wssbench.errors import UsageError
from wssbench.host.registry import build_registry
from wssbench_plugins import ilp_fusion
from wssbench_plugins.fusion import ThresholdFusion
from wssbench_plugins.ilp_fusion import ILPError, ILPFusion, solve_ilp

# three superpixels x (background, A, B); background scores bg_threshold = 0.3
SCORES = np.array([
    [0.3, 0.9, 0.5],
    [0.3, 0.8, 0.6],
    [0.3, 0.1, 0.2],
])
AREAS = np.array([0.4, 0.3, 0.3])


def test_solve_ilp_without_constraints_is_the_argmax():
    assert solve_ilp(SCORES, AREAS, np.zeros(3), 5.0).tolist() == [1, 1, 0]


def test_solve_ilp_min_area_moves_the_cheapest_superpixel():
    # B needs 0.25: giving it s0 loses 0.4*(0.9-0.5) = 0.16, s1 0.3*(0.8-0.6) = 0.06,
    # s2 0.3*(0.3-0.2) = 0.03 -> s2.
    assert solve_ilp(SCORES, AREAS, np.array([0, 0, 0.25]), 5.0).tolist() == [1, 1, 2]


def test_solve_ilp_min_area_needs_two_superpixels():
    # A and B need 0.35 each. B = {s0} leaves A = {s1} (0.3) short, so A also takes s2:
    # loss 0.16 + 0.3*(0.3-0.1) = 0.22. B = {s1, s2}, A = {s0}: loss 0.06 + 0.03 = 0.09.
    # Any other split leaves A or B below 0.35.
    assert solve_ilp(SCORES, AREAS, np.array([0, 0.35, 0.35]), 5.0).tolist() == [1, 2, 2]


def test_solve_ilp_infeasible():
    # A and B need 0.5 each, but no split of (0.4, 0.3, 0.3) gives both 0.5
    with pytest.raises(ILPError, match="infeasible"):
        solve_ilp(SCORES, AREAS, np.array([0, 0.5, 0.5]), 5.0)


@pytest.mark.parametrize("status, sol_status, reason", [
    # what PuLP reads from CBC's "Stopped on time" with and without a labelling found
    (pulp.LpStatusOptimal, pulp.LpSolutionIntegerFeasible, "not proven optimal within time_limit"),
    (pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound, "no solution within time_limit"),
])
def test_solve_ilp_time_limit(monkeypatch, status, sol_status, reason):
    def stopped(problem, solver=None, **kwargs):
        problem.assignStatus(status, sol_status)
    monkeypatch.setattr(pulp.LpProblem, "solve", stopped)
    with pytest.raises(ILPError, match=reason):
        solve_ilp(SCORES, AREAS, np.array([0, 0, 0.25]), 5.0)


def two_halves(h=24, w=32):
    """A red left half and a blue right half; a class map on the left half only."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2, 0] = 200
    image[:, w // 2 :, 2] = 200
    class_map = np.zeros((1, h, w), np.float32)
    class_map[0, :, : w // 2] = 0.8
    return image, class_map


def test_call_labels_the_object_superpixels():
    image, class_map = two_halves()
    probs = ILPFusion(n_segments=12)(image, np.array([5]), class_map, None)
    assert probs.shape == (2, 24, 32) and probs.dtype == np.float32
    assert set(np.unique(probs)) == {0.0, 1.0}  # soft = 0: the labelling itself
    expected = np.zeros((24, 32), int)
    expected[:, :16] = 1
    np.testing.assert_array_equal(probs.argmax(0), expected)


def test_soft_mixes_in_the_threshold_probabilities():
    image, class_map = two_halves()
    hard = ILPFusion(n_segments=12)(image, np.array([5]), class_map, None)
    soft = ILPFusion(n_segments=12, soft=0.3)(image, np.array([5]), class_map, None)
    threshold = ThresholdFusion()(image, np.array([5]), class_map, None)
    np.testing.assert_allclose(soft, 0.7 * hard + 0.3 * threshold, atol=1e-6)
    np.testing.assert_array_equal(soft.argmax(0), hard.argmax(0))


def quadrants(monkeypatch, h=8, w=8):
    """Inject four square superpixels 0 1 / 2 3 in place of SLIC."""
    segments = np.zeros((h, w), int)
    segments[: h // 2, w // 2 :] = 1
    segments[h // 2 :, : w // 2] = 2
    segments[h // 2 :, w // 2 :] = 3
    monkeypatch.setattr(ilp_fusion, "slic_segments", lambda image, n, c: segments)
    return segments


def test_call_min_area_places_a_weak_class(monkeypatch):
    segments = quadrants(monkeypatch)
    image = np.zeros((8, 8, 3), np.uint8)
    # class A strong in quadrant 0; class B below bg_threshold everywhere, least weak in 3
    class_maps = np.zeros((2, 8, 8), np.float32)
    class_maps[0][segments == 0] = 0.9
    class_maps[1] = np.array([0.0, 0.1, 0.1, 0.2])[segments]
    labels = np.array([4, 9])
    free = ILPFusion(min_area=0.0)(image, labels, class_maps, None).argmax(0)
    placed = ILPFusion(min_area=0.2)(image, labels, class_maps, None).argmax(0)
    np.testing.assert_array_equal(free, np.array([1, 0, 0, 0])[segments])
    np.testing.assert_array_equal(placed, np.array([1, 0, 0, 2])[segments])


def test_infeasible_falls_back_to_threshold_with_warning_and_count(monkeypatch):
    quadrants(monkeypatch)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    class_maps = rng.random((3, 8, 8), dtype=np.float32)
    labels = np.array([1, 2, 3])
    fusion = ILPFusion(min_area=0.3)  # three classes of 0.3 from quadrants of 0.25: impossible
    with pytest.warns(UserWarning, match="fell back to the threshold rule: infeasible"):
        probs = fusion(image, labels, class_maps, None)
    np.testing.assert_array_equal(probs, ThresholdFusion()(image, labels, class_maps, None))
    assert fusion.stats() == {"images": 1, "fallbacks": 1, "fallback: infeasible": 1}


def test_solver_error_falls_back(monkeypatch):
    def broken(problem, solver=None, **kwargs):
        raise pulp.PulpSolverError("cbc not found")
    monkeypatch.setattr(pulp.LpProblem, "solve", broken)
    quadrants(monkeypatch)
    image = np.zeros((8, 8, 3), np.uint8)
    class_maps = np.zeros((1, 8, 8), np.float32)  # nothing above bg_threshold: the ILP must run
    fusion = ILPFusion()
    with pytest.warns(UserWarning, match=r"solver error \(cbc not found\)"):
        probs = fusion(image, np.array([1]), class_maps, class_maps)
    np.testing.assert_array_equal(probs, ThresholdFusion()(image, np.array([1]), class_maps, class_maps))
    assert fusion.stats()["fallbacks"] == 1


def test_no_evidence_is_all_background():
    image, class_map = two_halves()
    fusion = ILPFusion()
    for labels, maps in [(np.array([5]), None), (np.zeros(0, int), class_map[:0])]:
        probs = fusion(image, labels, maps, maps)
        assert probs.shape == (len(labels) + 1, 24, 32)
        np.testing.assert_array_equal(probs[0], 1.0)
    assert fusion.stats() == {"images": 2, "fallbacks": 0}


@pytest.mark.parametrize("options", [
    {"n_segments": 0}, {"compactness": 0.0}, {"min_area": 1.0}, {"min_area": -0.1},
    {"time_limit": 0.0}, {"soft": 0.5}, {"soft": -0.1}, {"bg_threshold": 0.0}, {"weight": 1.5},
])
def test_bad_options(options):
    with pytest.raises(ValueError):
        ILPFusion(**options)
    with pytest.raises(UsageError, match="fusion 'integer-lp'"):
        build_registry().create("fusion", "integer-lp", **options)


def test_options_from_strings():
    fusion = build_registry().create("fusion", "integer-lp", min_area="0.05", n_segments="50", soft="0.2")
    assert (fusion.min_area, fusion.n_segments, fusion.soft) == (0.05, 50, 0.2)
