"""Products with a stationary kernel matrix in ``O(n log n)``: near pairs exact,
far pairs through one uniform grid and FFTs (a precorrected-FFT scheme).

``K_ij = k(x_i - x_j)`` for a *stationary* kernel ``k`` of points in 1 to 3
dimensions. An exact product costs ``n^2`` kernel evaluations (``1e12`` at
``n = 1e6``: hours on two cores); this one costs ``O(n)`` evaluations and
FFTs of a grid of about ``n order^d / box_points`` nodes.

Method (after Phillips and White, 1997, "A precorrected-FFT method for
electrostatic analysis of complicated 3-D structures"). The points' bounding box
is cut into equal boxes of about ``box_points`` points.

* **Near field**: pairs in the same or adjacent boxes are summed exactly, by one
  block-sparse engine reduction (the boxes are its clusters).
* **Far field**: on two boxes that are not adjacent, ``k(x - y)`` is smooth in
  both points, and is replaced by its tensor-product Lagrange interpolant on
  ``order`` equispaced nodes per dimension and box,
  ``k(x - y) ~ sum_a sum_b w_a(x) k(n_a - n_b) w_b(y)``. Every box has its
  nodes at the same relative places, spacing ``h = box / order``, so all
  nodes form one uniform grid and ``k(n_a - n_b)`` depends on the grid offset
  alone: the far sums of all boxes are one convolution on the grid (an FFT),
  less the part of it between adjacent boxes (the near field already holds
  those pairs exactly), which is a ``3^d``-term stencil of small blocks.

So ``K v ~ near(v) + S (T * (S^T v) - adjacent(S^T v))``, with ``S`` the sparse
interpolation weights (``order^d`` per point) and ``T`` the kernel on the grid.
The approximation is symmetric (``S T S^T`` and the near field both are), as CG
needs. Its error is that of the interpolant on the closest far pairs (one box
apart): it falls like ``r^-order`` with ``r`` about 5 and with the kernel's
smoothness at the box scale. :meth:`GridKernelProduct.sampled_error` measures it
on random rows; the scikit-learn estimators report it (``grid_error_``).

Cost at ``n = 1e6`` (2-D, Matern 3/2, 64 points per box, order 6): ``9 x 64``
kernel evaluations per point in the near field, ``S`` of 36 entries per
point, FFTs of a 1,500 x 1,500 grid per column: about 1.4 s for 5 columns on
two cores, error 2e-9 (see ``docs/BENCHMARKS.md``).

The boxes are uniform, which suits points spread over their bounding box (a
terrain, a field survey). Clustered points crowd a few boxes, and the near
field grows toward ``n^2`` pairs (:attr:`near_pairs` tells); an adaptive
tree would be the remedy.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.fft
import scipy.sparse

from ..engine import arrays, dispatch, ir
from ..engine.ranges.prune import host_leaves, sparse_ranges
from ..engine.request import DEFAULT_OPTIONS, ReductionOptions, ReductionRequest

__all__ = ["GridKernelProduct", "DEFAULT_ORDER", "MAX_ORDER"]

#: Interpolation nodes per dimension and box, by the points' dimension.
DEFAULT_ORDER = {1: 8, 2: 6, 3: 4}
#: The highest interpolation order, by dimension (the stencil holds
#: ``3^d order^(2d)`` numbers: 216 MB at order 10 in 3-D).
MAX_ORDER = {1: 16, 2: 14, 3: 10}
#: Columns per batch of FFTs (memory: about 16 bytes x 2^d grid nodes per column).
FFT_COLUMNS = 8


class GridKernelProduct:
    """``K @ V`` for a stationary kernel ``K_ij = F(x_i, x_j, p)``, near pairs exact
    and far pairs through a grid (module docstring).

    Parameters
    ----------
    formula : ir.Node
        The scalar kernel ``F``; it must depend on ``x_i - x_j`` alone (the caller
        knows: scikit-learn kernels say so by ``is_stationary()``).
    leaves, cats :
        Its arrays: one i- and one j-variable bound to the same points, shape
        ``(n, d)`` with ``1 <= d <= 3``, the rest parameters.
    box_points : int
        Points per box on average (near-field work ``3^d box_points`` kernel
        evaluations per point).
    order : int, optional
        Interpolation nodes per dimension and box (default :data:`DEFAULT_ORDER`).
    target_error : float, optional
        Raise the order by 2 (up to :data:`MAX_ORDER`) until
        :meth:`sampled_error` is at most this; :attr:`error` holds the last
        measure (None when not measured). Few points make boxes wide against
        the kernel's length scale, where the default order may not suffice.
    options : ReductionOptions, optional
        Target of the near-field reduction.

    Attributes
    ----------
    order : int
        The interpolation order in use.
    error : float or None
        The last :meth:`sampled_error` (with ``target_error``), else None.
    near_pairs : float
        Point pairs summed exactly (the near field).
    grid_nodes : int
        Nodes of the interpolation grid.

    Example
    -------
    >>> x = np.random.default_rng(0).random((20000, 2))
    >>> F = ir.make("exp", ir.make("neg", ir.make("mul", ir.const(50.0),
    ...             ir.make("sqdist", ir.var(0, ir.I, 2), ir.var(1, ir.J, 2)))))
    >>> K = GridKernelProduct(F, (x, x), (ir.I, ir.J))
    >>> K.matmat(np.ones((20000, 1))).shape, K.sampled_error(rows=100) < 1e-6
    ((20000, 1), True)
    """

    def __init__(
        self, formula: ir.Node, leaves, cats, *, box_points: int = 64,
        order: int | None = None, target_error: float | None = None,
        options: ReductionOptions = DEFAULT_OPTIONS,
    ):  # fmt: skip
        self.formula, self.leaves, self.cats = formula, tuple(leaves), tuple(cats)
        self.options = options._replace(tol=None)
        X = _points(formula, self.leaves, self.cats)
        self.n, self.d = X.shape
        self.dtype = X.dtype
        if not (isinstance(box_points, int | np.integer) and box_points >= 1):
            raise ValueError(f"box_points must be an integer >= 1, got {box_points!r}")
        order = DEFAULT_ORDER[self.d] if order is None else order
        top = MAX_ORDER[self.d]
        if not (isinstance(order, int | np.integer) and 2 <= order <= top):
            raise ValueError(
                f"order must be an integer in [2, {top}] for {self.d}-D points, got {order!r}"
            )
        if target_error is not None and not target_error > 0:
            raise ValueError(f"target_error must be > 0 or None, got {target_error!r}")
        X64 = X.astype(np.float64)
        self._boxes(X64, box_points)
        self._near_pattern()
        self.order, self.error = int(order), None
        while True:
            self._interpolation()
            self._grid_kernel()
            if target_error is None:
                break
            self.error = self.sampled_error()
            if self.error <= target_error or self.order + 2 > top:
                break
            self.order += 2

    # -- setup ---------------------------------------------------------
    def _boxes(self, X: np.ndarray, box_points: int) -> None:
        lo = X.min(axis=0)
        extent = X.max(axis=0) - lo
        self.nb = _boxes_per_dimension(extent, self.n, box_points)
        self.box = extent / self.nb
        # a flat dimension (one coordinate value): boxes as wide as the others',
        # so that its interpolation spans no more than theirs
        flat = extent <= 0
        self.box[flat] = self.box[~flat].min() if (~flat).any() else 1.0
        scaled = (X - lo) / self.box
        self.idx = np.minimum(scaled.astype(np.int64), self.nb - 1)
        self.local = scaled - self.idx  # in [0, 1] per dimension
        label = np.ravel_multi_index(tuple(self.idx.T), tuple(self.nb))
        self.perm = np.argsort(label, kind="stable")
        self.occupied, starts = np.unique(label[self.perm], return_index=True)
        ends = np.r_[starts[1:], self.n]
        self.ranges = np.stack([starts, ends], axis=1).astype(np.int64)

    def _near_pattern(self) -> None:
        """Block pairs of occupied boxes that touch (same box included)."""
        cluster = np.full(int(np.prod(self.nb)), -1, dtype=np.int64)
        cluster[self.occupied] = np.arange(len(self.occupied))
        coords = np.stack(np.unravel_index(self.occupied, tuple(self.nb)), axis=1)
        rows, cols = [], []
        for delta in itertools.product((-1, 0, 1), repeat=self.d):
            other = coords + np.asarray(delta)
            inside = np.all((other >= 0) & (other < self.nb), axis=1)
            c = np.full(len(coords), -1, dtype=np.int64)
            c[inside] = cluster[np.ravel_multi_index(tuple(other[inside].T), tuple(self.nb))]
            keep = c >= 0
            rows.append(np.nonzero(keep)[0])
            cols.append(c[keep])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
        self.near_ranges = sparse_ranges(self.ranges, self.ranges, rows, cols)
        width = self.ranges[:, 1] - self.ranges[:, 0]
        self.near_pairs = float((width[rows] * width[cols]).sum())
        self.host = host_leaves(self.leaves, self.cats, self.perm, self.perm)

    def _interpolation(self) -> None:
        """``S``: row ``i`` holds the ``order^d`` Lagrange weights of point ``i`` at
        the grid nodes of its box."""
        q, d = self.order, self.d
        self.h = self.box / q
        self.shape = tuple(int(s) for s in self.nb * q)  # the grid
        per_dim = [_lagrange(self.local[:, k], q) for k in range(d)]  # (n, q) each
        weights = np.ones((self.n, 1))
        cols = np.zeros((self.n, 1), dtype=np.int64)
        for k in range(d):
            node = self.idx[:, k : k + 1] * q + np.arange(q)  # global grid index
            weights = (weights[:, :, None] * per_dim[k][:, None, :]).reshape(self.n, -1)
            cols = (cols[:, :, None] * self.shape[k] + node[:, None, :]).reshape(self.n, -1)
        G = int(np.prod(self.shape))
        indptr = np.arange(0, self.n * q**d + 1, q**d, dtype=np.int64)
        self.S = scipy.sparse.csr_matrix(
            (weights.ravel(), cols.ravel(), indptr), shape=(self.n, G)
        )
        self.St = self.S.T.tocsr()

    def _profile(self, offsets: np.ndarray) -> np.ndarray:
        """``k(offset)``: the formula between ``offsets`` and the origin."""
        leaves, cats = [], []
        for x, c in zip(self.leaves, self.cats):
            if c == ir.I:
                x = np.ascontiguousarray(offsets, dtype=self.dtype)
            elif c == ir.J:
                x = np.zeros((1, self.d), dtype=self.dtype)
            leaves.append(x if c != ir.P else _host_param(x))
            cats.append(c)
        request = ReductionRequest(self.formula, "sum", tuple(leaves), tuple(cats), 1,
                                   options=self.options)  # fmt: skip
        out = np.asarray(arrays.to_host(dispatch.reduce(request)), dtype=np.float64)
        return out[:, 0]

    def _grid_kernel(self) -> None:
        """The FFT of ``k`` on every grid offset (circulant embedding), and the
        ``3^d`` blocks of the adjacent-box stencil."""
        q, d = self.order, self.d
        self.fft_shape = tuple(scipy.fft.next_fast_len(2 * s - 1, real=True) for s in self.shape)
        axes = [np.r_[0:s, -(s - 1) : 0] for s in self.shape]  # offsets, wrapped
        mesh = np.meshgrid(*axes, indexing="ij")
        offsets = np.stack([m.ravel() * self.h[k] for k, m in enumerate(mesh)], axis=1)
        values = self._profile(offsets).reshape([len(a) for a in axes])
        embedded = np.zeros(self.fft_shape)
        index = tuple(np.r_[0:s, P - (s - 1) : P] for s, P in zip(self.shape, self.fft_shape))
        embedded[np.ix_(*index)] = values
        self.kernel_hat = scipy.fft.rfftn(embedded, workers=-1)
        node = np.stack(np.unravel_index(np.arange(q**d), (q,) * d), axis=1)  # (q^d, d)
        diff = node[:, None, :] - node[None, :, :]
        self.deltas = list(itertools.product((-1, 0, 1), repeat=d))
        blocks = []
        for delta in self.deltas:  # source box = target box + delta
            off = (diff - q * np.asarray(delta)) * self.h  # node_a - node_b
            blocks.append(self._profile(off.reshape(-1, d)).reshape(q**d, q**d))
        self.stencil = blocks

    # -- products --------------------------------------------------------
    @property
    def grid_nodes(self) -> int:
        return int(np.prod(self.shape))

    def near(self, V: np.ndarray) -> np.ndarray:
        """The exact sums over pairs in the same or adjacent boxes."""
        f = ir.make("mul", self.formula, ir.var(len(self.cats), ir.J, V.shape[1]))
        Vp = np.ascontiguousarray(V[self.perm], dtype=self.dtype)
        request = ReductionRequest(f, "sum", self.host + (Vp,), self.cats + (ir.J,), 1,
                                   options=self.options, ranges=self.near_ranges)  # fmt: skip
        total = np.asarray(arrays.to_host(dispatch.reduce(request)), dtype=np.float64)
        out = np.empty_like(total)
        out[self.perm] = total
        return out

    def far(self, V: np.ndarray) -> np.ndarray:
        """The interpolated sums over pairs in boxes that do not touch."""
        Q = np.asarray(self.St @ V)  # (G, m) charges on the grid
        U = np.empty_like(Q)
        for start in range(0, Q.shape[1], FFT_COLUMNS):
            cols = slice(start, start + FFT_COLUMNS)
            U[:, cols] = self._convolve(Q[:, cols])
        U -= self._adjacent(Q)
        return np.asarray(self.S @ U)

    def _convolve(self, Q: np.ndarray) -> np.ndarray:
        m, d = Q.shape[1], self.d
        grid = Q.reshape(self.shape + (m,))
        axes = tuple(range(d))
        hat = scipy.fft.rfftn(grid, s=self.fft_shape, axes=axes, workers=-1)
        hat *= self.kernel_hat[..., None]
        full = scipy.fft.irfftn(hat, s=self.fft_shape, axes=axes, workers=-1)
        return full[tuple(slice(0, s) for s in self.shape)].reshape(-1, m)

    def _adjacent(self, Q: np.ndarray) -> np.ndarray:
        """The grid convolution's part between nodes of the same or adjacent boxes."""
        q, d, m = self.order, self.d, Q.shape[1]
        nb = tuple(int(s) for s in self.nb)
        # grid (nb_1, q, ..., nb_d, q, m) -> (q^d, nb_1 + 2, ..., nb_d + 2, m), zero-padded
        split = Q.reshape(sum(((b, q) for b in nb), ()) + (m,))
        nodes_first = split.transpose(
            tuple(range(1, 2 * d, 2)) + tuple(range(0, 2 * d, 2)) + (2 * d,)
        )
        padded = np.zeros((q**d,) + tuple(b + 2 for b in nb) + (m,))
        padded[(slice(None),) + tuple(slice(1, b + 1) for b in nb)] = nodes_first.reshape(
            (q**d,) + nb + (m,)
        )
        out = np.zeros((q**d, int(np.prod(nb)) * m))
        for delta, block in zip(self.deltas, self.stencil):
            src = padded[
                (slice(None),) + tuple(slice(1 + s, 1 + s + b) for s, b in zip(delta, nb))
            ]
            out += block @ src.reshape(q**d, -1)
        # back to the grid's layout
        back = out.reshape((q,) * d + nb + (m,))
        order = sum(((d + k, k) for k in range(d)), ()) + (2 * d,)
        return back.transpose(order).reshape(-1, m)

    def matmat(self, V):
        """``K~ @ V`` for ``V`` shaped ``(n, m)`` or ``(n,)`` (float64 result)."""
        V = np.asarray(arrays.to_host(V))
        vector = V.ndim == 1
        V2 = V[:, None] if vector else V
        if V2.shape[0] != self.n:
            raise ValueError(f"V must have {self.n} rows, got shape {V.shape}")
        out = self.near(V2) + self.far(V2.astype(np.float64))
        return out[:, 0] if vector else out

    # -- accuracy ----------------------------------------------------------
    def sampled_error(self, rows: int = 200, seed: int = 0) -> float:
        """The largest error of :meth:`matmat` on ``rows`` random rows, relative to
        ``sum_j |K_ij v_j|``, for a random ``v`` (Gaussian): the same measure as
        ``tol=`` (``docs/approximation.md``). Costs ``rows x n`` kernel evaluations.
        """
        rng = np.random.default_rng(seed)
        v = rng.standard_normal((self.n, 1))
        pick = rng.choice(self.n, size=min(rows, self.n), replace=False)
        approx = self.matmat(v)[pick, 0]
        exact, scale = self._exact_rows(pick, v)
        return float(np.max(np.abs(approx - exact) / np.maximum(scale, np.finfo(float).tiny)))

    def _exact_rows(self, pick: np.ndarray, v: np.ndarray):
        leaves = tuple(
            np.ascontiguousarray(arrays.to_host(x)[pick]) if c == ir.I
            else (x if c == ir.P else arrays.to_host(x))
            for x, c in zip(self.leaves, self.cats)
        )  # fmt: skip
        cats = self.cats + (ir.J,)
        w = ir.var(len(self.cats), ir.J, 1)
        out = []
        for f, vec in ((self.formula, v), (ir.make("abs", self.formula), np.abs(v))):
            args = leaves + (vec.astype(self.dtype),)
            request = ReductionRequest(ir.make("mul", f, w), "sum", args, cats, 1,
                                       options=self.options)  # fmt: skip
            out.append(np.asarray(arrays.to_host(dispatch.reduce(request)), np.float64)[:, 0])
        return out


def _boxes_per_dimension(extent: np.ndarray, n: int, box_points: int) -> np.ndarray:
    """Boxes along each dimension: cubes holding about ``box_points`` points where
    the cloud is wide; one box across a dimension thinner than a cube's side (a
    flat or thin cloud: the count then comes from the wide dimensions alone)."""
    nb = np.ones(len(extent), dtype=np.int64)
    wide = extent > 0
    while wide.any():
        side = (np.prod(extent[wide]) * box_points / n) ** (1.0 / wide.sum())
        thin = wide & (extent < side)
        if not thin.any():
            nb[wide] = np.maximum(1, np.round(extent[wide] / side))
            break
        wide &= ~thin
    return nb


def _lagrange(t: np.ndarray, q: int) -> np.ndarray:
    """Lagrange basis on the nodes ``(k + 0.5) / q`` at the points ``t``: ``(len(t), q)``."""
    nodes = (np.arange(q) + 0.5) / q
    out = np.ones((len(t), q))
    for k in range(q):
        for m in range(q):
            if m != k:
                out[:, k] *= (t - nodes[m]) / (nodes[k] - nodes[m])
    return out


def _host_param(x):
    return arrays.to_host(x) if arrays.is_array(x) else x


def _points(formula: ir.Node, leaves, cats) -> np.ndarray:
    if formula.dim != 1:
        raise ValueError(f"GridKernelProduct: the kernel must be scalar, not dim {formula.dim}")
    i_leaves = [x for x, c in zip(leaves, cats) if c == ir.I]
    j_leaves = [x for x, c in zip(leaves, cats) if c == ir.J]
    if len(i_leaves) != 1 or len(j_leaves) != 1:
        raise ValueError(
            "GridKernelProduct: the kernel must have one i- and one j-variable (the points), "
            f"got {len(i_leaves)} and {len(j_leaves)}"
        )
    X, Y = (np.asarray(arrays.to_host(a)) for a in (i_leaves[0], j_leaves[0]))
    if X.ndim != 2 or X.shape != Y.shape or not (X is Y or np.array_equal(X, Y)):
        raise ValueError("GridKernelProduct: i- and j-points must be the same (n, d) array")
    if not 1 <= X.shape[1] <= 3:
        raise ValueError(
            f"GridKernelProduct: points must have 1 to 3 dimensions (the grid grows as "
            f"order^d), got {X.shape[1]}"
        )
    if X.shape[0] == 0:
        raise ValueError("GridKernelProduct: no points (the points have shape (0, d))")
    if not np.all(np.isfinite(X)):
        raise ValueError("GridKernelProduct: the points hold NaN or infinite values")
    if X.dtype not in (np.float32, np.float64):
        raise ValueError(f"GridKernelProduct: points must be float32 or float64, got {X.dtype}")
    return X
