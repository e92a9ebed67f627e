"""The random walk of PSA and IRN (wssbench.methods.random_walk) against a literal dense computation."""

import numpy as np
import pytest
import torch

from wssbench.methods.random_walk import PairAffinity, pair_indices, random_walk, search_offsets, transition_matrix


def test_search_offsets_by_hand():
    assert search_offsets(2) == [(0, 1), (1, -1), (1, 0), (1, 1)]
    assert search_offsets(3) == [(0, 1), (0, 2), (1, -2), (1, -1), (1, 0), (1, 1), (1, 2),
                                (2, -2), (2, -1), (2, 0), (2, 1), (2, 2)]  # 2**2 + 2**2 = 8 < 9
    assert len(search_offsets(5)) == 34  # 68 neighbours: PSA's and IRN's walk radius
    for radius in (2, 5, 10):
        offsets = search_offsets(radius)
        assert all(dy * dy + dx * dx < radius * radius for dy, dx in offsets)
        # one of each pair: no offset is the negation of another, and together they cover the disc
        assert not {(-dy, -dx) for dy, dx in offsets} & set(offsets)
        disc = {(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
                if 0 < dy * dy + dx * dx < radius * radius}
        assert set(offsets) | {(-dy, -dx) for dy, dx in offsets} == disc


def test_pair_indices_crop_by_hand():
    # 3 x 4 grid, radius 2: sources are rows 0-1, columns 1-2 (pixels 1, 2, 5, 6)
    src, dst = pair_indices(3, 4, 2, border="crop")
    assert src.tolist() == [1, 2, 5, 6] * 4
    assert dst.tolist() == [2, 3, 6, 7,  4, 5, 8, 9,  5, 6, 9, 10,  6, 7, 10, 11]


def _pairs_brute_force(h, w, radius):
    pairs = set()
    for i in range(h * w):
        for j in range(h * w):
            (yi, xi), (yj, xj) = divmod(i, w), divmod(j, w)
            if i < j and (yi - yj) ** 2 + (xi - xj) ** 2 < radius * radius:
                pairs.add((i, j))
    return pairs


@pytest.mark.parametrize("h,w,radius", [(4, 5, 2), (6, 7, 3), (9, 11, 5)])
def test_pair_indices_all_is_every_pair_once(h, w, radius):
    src, dst = pair_indices(h, w, radius, border="all")
    got = [tuple(sorted(p)) for p in zip(src.tolist(), dst.tolist())]
    assert len(got) == len(set(got))
    assert set(got) == _pairs_brute_force(h, w, radius)
    crop = {tuple(sorted(p)) for p in zip(*(a.tolist() for a in pair_indices(h, w, radius, border="crop")))}
    assert crop < set(got)  # PSA's set lacks pairs along the borders


def _literal_walk(maps, h, w, radius, value, beta, log_t):
    """The definition, written out: A over all pixel pairs, T = A^beta column-normalised, T^(2^t)."""
    n = h * w
    a = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            (yi, xi), (yj, xj) = divmod(i, w), divmod(j, w)
            if i == j:
                a[i, j] = 1.0
            elif (yi - yj) ** 2 + (xi - xj) ** 2 < radius * radius:
                a[i, j] = value(min(i, j), max(i, j))
    t = a ** beta
    t = t / t.sum(axis=0, keepdims=True)
    t = np.linalg.matrix_power(t, 2 ** log_t)
    return (maps.reshape(maps.shape[0], n) @ t).reshape(maps.shape)


@pytest.mark.parametrize("method", ["dense", "sparse"])
def test_random_walk_matches_literal(method):
    h, w, radius, beta, log_t = 5, 6, 3, 3.0, 4
    rng = np.random.default_rng(0)
    table = rng.uniform(0.05, 1.0, size=(h * w, h * w))

    def value(i, j):
        return table[i, j]

    src, dst = pair_indices(h, w, radius, border="all")
    values = torch.tensor([value(min(i, j), max(i, j)) for i, j in zip(src, dst)], dtype=torch.float64)
    affinity = PairAffinity(torch.from_numpy(src), torch.from_numpy(dst), values, (h, w))
    maps = rng.uniform(0, 1, size=(3, h, w))
    got = random_walk(torch.from_numpy(maps), affinity, beta, log_t, method=method)
    want = _literal_walk(maps, h, w, radius, value, beta, log_t)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12)


def test_transition_is_column_stochastic_and_walk_spreads():
    h, w = 4, 4
    src, dst = pair_indices(h, w, 2, border="all")
    affinity = PairAffinity(torch.from_numpy(src), torch.from_numpy(dst), torch.full((len(src),), 0.5, dtype=torch.float64), (h, w))
    t = transition_matrix(affinity, beta=2, log_t=0)
    np.testing.assert_allclose(t.sum(dim=0).numpy(), 1.0)
    impulse = torch.zeros(1, h, w, dtype=torch.float64)
    impulse[0, 0, 0] = 1
    walked = random_walk(impulse, affinity, beta=2, log_t=3)
    assert walked[0, 0, 0] < 1 and walked[0, 3, 3] > 0  # spread over the grid after 8 steps


def test_dense_matrix_layout():
    src, dst = np.array([0, 1]), np.array([1, 3])
    a = PairAffinity(torch.from_numpy(src), torch.from_numpy(dst), torch.tensor([0.25, 0.5]), (2, 2)).dense()
    want = torch.tensor([[1, 0.25, 0, 0], [0.25, 1, 0, 0.5], [0, 0, 1, 0], [0, 0.5, 0, 1]])
    assert torch.equal(a, want)


def test_bad_arguments():
    with pytest.raises(ValueError, match="radius"):
        search_offsets(1)
    with pytest.raises(ValueError, match="border"):
        pair_indices(4, 4, 2, border="wrap")
    with pytest.raises(ValueError, match="too small"):
        pair_indices(6, 6, 5, border="crop")
    src, dst = pair_indices(3, 3, 2, border="all")
    affinity = PairAffinity(torch.from_numpy(src), torch.from_numpy(dst), torch.ones(len(src)), (3, 3))
    with pytest.raises(ValueError, match="do not fit"):
        random_walk(torch.zeros(1, 4, 4), affinity, 1, 1)
    with pytest.raises(ValueError, match="method"):
        random_walk(torch.zeros(1, 3, 3), affinity, 1, 1, method="power")
