"""The random walk of PSA (AffinityNet, Ahn & Kwak 2018) and IRN (Ahn, Cho & Kwak 2019).

Class maps on a feature grid of N = h * w pixels are propagated along pairwise affinities
between pixels closer than a radius::

    A (N, N)   symmetric: a_ij for the pairs within the radius, 1 on the diagonal, 0 elsewhere
    T = A**beta / A**beta.sum(0)            column-normalised (each column sums to 1)
    walked (K, N) = maps (K, N) @ T ** (2 ** log_t)

PSA: beta 8, log_t 8 (psa infer_aff.py lines 59-62, the matrix squared ``logt`` times, lines
103-107); IRN: beta 10, exp_times 8 (irn run_sample.py lines 47-50; misc/indexing.py
``to_transition_matrix``). Both authors build A densely and square T ``log_t`` times; here
``method="dense"`` does exactly that, and ``method="sparse"`` (the default) multiplies the maps
by the sparse T ``2 ** log_t`` times, the same product in another order: memory and time
linear in N instead of N**2 and N**3 (IRN's stride-4 grid of a 320 px image has N = 6,400:
164 MB dense, 2 TFLOP of squaring).

Pairs: :func:`search_offsets` enumerates one offset (dy, dx) of each pair within the radius
(a half-plane, ``dx**2 + dy**2 < radius**2``), as both authors' code (psa tool/pyutils.py
``get_indices_of_pairs`` lines 125-159; irn misc/indexing.py ``PathIndex``).
:func:`pair_indices` places them on a grid in the authors' two ways (``border``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch


def search_offsets(radius: int) -> list[tuple[int, int]]:
    """(dy, dx) of the pairs within ``radius``, one per pair, in the authors' order:
    (0, 1) .. (0, r-1), then for dy = 1 .. r-1 every dx in -(r-1) .. r-1 with dx**2 + dy**2 < r**2.
    Radius 5 gives 34 offsets (68 neighbours), radius 10 gives 146."""
    if radius < 2:
        raise ValueError(f"radius must be at least 2, got {radius}")
    offsets = [(0, dx) for dx in range(1, radius)]
    for dy in range(1, radius):
        offsets += [(dy, dx) for dx in range(-radius + 1, radius) if dx * dx + dy * dy < radius * radius]
    return offsets


def source_boxes(height: int, width: int, radius: int, border: str = "crop") -> list[tuple[tuple[int, int], tuple[int, int, int, int]]]:
    """For each offset (dy, dx) of :func:`search_offsets`, the box ``(y0, y1, x0, x1)`` of the
    source pixels whose pair's other pixel is source + (dy, dx) (see :func:`pair_indices`)."""
    r = radius - 1
    boxes = []
    for dy, dx in search_offsets(radius):
        if border == "crop":
            if height - r <= 0 or width - 2 * r <= 0:
                raise ValueError(f"a {height} x {width} grid is too small for radius {radius} (border='crop')")
            boxes.append(((dy, dx), (0, height - r, r, width - r)))
        elif border == "all":
            boxes.append(((dy, dx), (0, height - dy, max(0, -dx), width - max(0, dx))))
        else:
            raise ValueError(f"border must be 'crop' or 'all', got '{border}'")
    return boxes


def pair_indices(height: int, width: int, radius: int, border: str = "crop") -> tuple[np.ndarray, np.ndarray]:
    """The pairs within ``radius`` on a (height, width) grid as flat pixel indices ``(src, dst)``,
    each (M,), grouped by offset in :func:`search_offsets` order, each group's sources in row-major
    order.

    ``border="crop"`` (PSA's ``get_indices_of_pairs``, IRN's ``PathIndex`` in training): the
    sources are the pixels whose every offset stays inside, rows ``[0, h - r + 1)`` and columns
    ``[r - 1, w - r + 1)``; M = offsets * sources, and ``src.reshape(D, -1)`` is the same for
    every offset. Pairs of two pixels both near the left, right or bottom border are absent,
    as in PSA's inference (its dense matrix lacks them).
    ``border="all"``: every pair with both pixels on the grid (IRN's inference pads the
    boundary map by the radius and crops the dense matrix back: the same set).
    """
    full = np.arange(height * width, dtype=np.int64).reshape(height, width)
    srcs, dsts = [], []
    for (dy, dx), (y0, y1, x0, x1) in source_boxes(height, width, radius, border):
        srcs.append(full[y0:y1, x0:x1].reshape(-1))
        dsts.append(full[y0 + dy: y1 + dy, x0 + dx: x1 + dx].reshape(-1))
    return np.concatenate(srcs), np.concatenate(dsts)


@dataclass(frozen=True)
class PairAffinity:
    """Affinities of pixel pairs on an (h, w) grid: ``values[m]`` between pixels ``src[m]`` and
    ``dst[m]`` (flat indices, each unordered pair once, no self pair); every other pair has
    affinity 0 and every pixel affinity 1 with itself."""

    src: torch.Tensor  # (M,) int64
    dst: torch.Tensor  # (M,) int64
    values: torch.Tensor  # (M,) in [0, 1]
    size: tuple[int, int]  # (h, w)

    @property
    def n(self) -> int:
        return self.size[0] * self.size[1]

    def dense(self) -> torch.Tensor:
        """The (N, N) symmetric matrix A, as the authors assemble it (psa network/resnet38_aff.py
        lines 60-73, irn misc/indexing.py ``affinity_sparse2dense``)."""
        a = torch.eye(self.n, dtype=self.values.dtype, device=self.values.device)
        a[self.src, self.dst] = self.values
        a[self.dst, self.src] = self.values
        return a  # (N, N)


def transition_matrix(affinity: PairAffinity, beta: float, log_t: int) -> torch.Tensor:
    """T ** (2 ** log_t) with T = A**beta column-normalised, by squaring T ``log_t`` times: the
    authors' computation (psa infer_aff.py lines 103-107, irn ``to_transition_matrix``)."""
    a = affinity.dense() ** beta  # (N, N)
    t = a / a.sum(dim=0, keepdim=True)
    for _ in range(log_t):
        t = t @ t
    return t  # (N, N)


def _sparse_transition_transposed(affinity: PairAffinity, beta: float) -> torch.Tensor:
    """T transposed as a sparse CSR matrix: ``T.T @ x.T`` is ``(x @ T).T``."""
    n = affinity.n
    device = affinity.values.device
    powered = affinity.values ** beta  # (M,)
    diagonal = torch.arange(n, device=device)
    rows = torch.cat([affinity.src, affinity.dst, diagonal])  # A's row index i of a_ij
    cols = torch.cat([affinity.dst, affinity.src, diagonal])  # its column j
    vals = torch.cat([powered, powered, torch.ones(n, dtype=powered.dtype, device=device)])
    column_sums = torch.zeros(n, dtype=vals.dtype, device=device).index_add_(0, cols, vals)  # (N,)
    vals = vals / column_sums[cols]  # T_ij = A_ij / sum_i A_ij
    transposed = torch.sparse_coo_tensor(torch.stack([cols, rows]), vals, (n, n), check_invariants=False).coalesce()
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": CSR is 20x faster than COO here
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
        return transposed.to_sparse_csr()


def random_walk(maps: torch.Tensor, affinity: PairAffinity, beta: float, log_t: int, method: str = "sparse") -> torch.Tensor:
    """``maps (K, h, w) @ T ** (2 ** log_t)`` -> (K, h, w): each map's value at pixel j becomes
    the T-weighted mean of the values around it, ``2 ** log_t`` steps of the walk.

    ``method="dense"``: the authors' computation (:func:`transition_matrix`, N**2 memory);
    ``"sparse"``: the maps multiplied by the sparse T ``2 ** log_t`` times (the same product).
    """
    k, h, w = maps.shape
    if (h, w) != tuple(affinity.size):
        raise ValueError(f"maps of size {h} x {w} do not fit affinities of size {affinity.size[0]} x {affinity.size[1]}")
    x = maps.reshape(k, h * w).to(affinity.values.dtype)  # (K, N)
    if method == "dense":
        return (x @ transition_matrix(affinity, beta, log_t)).reshape(k, h, w)
    if method != "sparse":
        raise ValueError(f"method must be 'dense' or 'sparse', got '{method}'")
    tt = _sparse_transition_transposed(affinity, beta)  # (N, N) sparse
    xt = x.t().contiguous()  # (N, K)
    for _ in range(2 ** log_t):
        xt = tt @ xt
    return xt.t().reshape(k, h, w)
