"""``KernelInterpolator``'s iterative solver at the sizes where its design choices show:
the memory of a fit and the coarse level's automatic choice (helpers from
test_interpolate.py)."""

from __future__ import annotations

import tracemalloc

from scipy.interpolate import RBFInterpolator

from tests.linalg.test_interpolate import TOL, epsilon_for, fit, problem, rel_err


def test_fit_memory_far_below_dense():
    """Fitting 8000 points allocates (NumPy side, seen by tracemalloc) far less than one
    dense (N, N) float64 matrix: peak < 0.25 * 8 N^2 bytes."""
    n, ndim = 8000, 2
    y, d, _ = problem(n, ndim, seed=9)
    kernel = "inverse_multiquadric"
    kw = dict(kernel=kernel, epsilon=epsilon_for(kernel, ndim, eps_h=2.0))
    fit(y[:200], d[:200], **kw)  # compile the kernels outside the measurement
    tracemalloc.start()
    try:
        f = fit(y, d, **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f.info.converged
    dense = 8 * n * n
    assert peak < 0.25 * dense, (
        f"peak {peak / 2**20:.0f} MiB while fitting {n} points; one dense (N, N) matrix is "
        f"{dense / 2**20:.0f} MiB"
    )


def test_coarse_level_follows_the_kernels_reach():
    """coarse="auto" from 1000 points on: two levels for a kernel that couples points
    beyond a cardinal function's neighbourhood (cubic in 3-D: measured 200 iterations
    with one level at 1500 points, 15 with two; inverse multiquadric in 2-D), one for a
    kernel that has decayed within it (Gaussian, epsilon * spacing = 1, reach ~0)."""
    n = 1500
    y, d, x = problem(n, 3, seed=15)
    f = fit(y, d, kernel="cubic")
    assert f.info.coarse_products > 0 and f.info.iterations <= 40, f.info
    assert rel_err(f(x), RBFInterpolator(y, d, kernel="cubic")(x)) <= TOL
    y, d, _ = problem(n, 2, seed=15)
    eps = epsilon_for("inverse_multiquadric", 2)
    f = fit(y, d, kernel="inverse_multiquadric", epsilon=eps)
    assert f._solver.reach >= 0.1 and f.info.coarse_products > 0
    g = fit(y, d, kernel="gaussian", epsilon=epsilon_for("gaussian", 2))
    assert g._solver.reach < 0.1 and g.info.coarse_products == 0
