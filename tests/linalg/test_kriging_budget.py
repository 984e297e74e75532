"""solver="auto" and the memory budget: direct (exact, as PyKrige) wherever the
dense system fits ``kernelsolve.config.dense_memory_limit``, iterative beyond,
where the default variances are exact for few targets and otherwise local with
a LocalVarianceWarning given once per object."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from kernelsolve.config import config
from kernelsolve.linalg import kriging_direct
from kernelsolve.linalg.kriging import OrdinaryKriging, UniversalKriging
from kernelsolve.linalg.kriging_options import LocalVarianceWarning
from tests.linalg.test_kriging import PKOrdinary, PKUniversal

N = 250
PARAMS = {"psill": 1.0, "range": 0.4, "nugget": 0.01}
BIG, SMALL = 10**9, 10**5  # bytes: (N + 1)^2 doubles (0.5 MB) fit, and do not


def data(seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.random(N), rng.random(N)
    z = np.sin(4 * x) + np.cos(3 * y) + 0.1 * rng.standard_normal(N)
    xt, yt = rng.random(16) * 1.2 - 0.1, rng.random(16) * 1.2 - 0.1
    return x, y, z, xt, yt


@pytest.fixture(autouse=True)
def _no_pykrige_statistics(monkeypatch):
    """PyKrige's UniversalKriging cross-validates every datum (not compared here)."""
    import pykrige.uk

    monkeypatch.setattr(pykrige.uk, "_find_statistics", lambda *a, **k: (np.ones(3),) * 3)


def pykrige_reference(universal=False):
    x, y, z, xt, yt = data()
    if universal:
        ref = PKUniversal(x, y, z, "spherical", PARAMS, drift_terms=["regional_linear"])
    else:
        ref = PKOrdinary(x, y, z, "spherical", PARAMS)
    zz, ss = ref.execute("points", xt, yt)
    return np.asarray(zz), np.asarray(ss)


def ours(universal=False, **kw):
    x, y, z, _, _ = data()
    if universal:
        kw["drift_terms"] = ["regional_linear"]
        return UniversalKriging(x, y, z, "spherical", PARAMS, **kw)
    return OrdinaryKriging(x, y, z, "spherical", PARAMS, **kw)


def relerr(a, ref):
    return np.abs(np.asarray(a) - ref).max() / np.abs(ref).max()


def test_direct_fits_counts_the_matrix_against_the_budget(monkeypatch):
    """The (n + m)^2 doubles, factorized in place, within MATRIX_SHARE of the budget."""
    need = kriging_direct.direct_bytes(1000)
    assert need == 8 * 1000**2
    monkeypatch.setattr(config, "dense_memory_limit", int(need / kriging_direct.MATRIX_SHARE))
    assert kriging_direct.direct_fits(1000)
    assert not kriging_direct.direct_fits(1001)


@pytest.mark.parametrize("universal", [False, True])
@pytest.mark.parametrize(
    "limit, solvers, rtol",
    [(BIG, ("direct",), 1e-10), (SMALL, ("saddle", "cg"), 1e-6)],
    ids=["within-budget", "beyond-budget"],
)
def test_auto_follows_the_budget_and_matches_pykrige(monkeypatch, universal, limit, solvers, rtol):
    """Within the budget: direct, PyKrige's answer to rounding. Beyond: GMRES (or CG),
    and for few targets the default variances are exact, to the solver's tolerance."""
    monkeypatch.setattr(config, "dense_memory_limit", limit)
    ok = ours(universal)
    assert ok.solver in solvers
    _, _, _, xt, yt = data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LocalVarianceWarning)
        zz, ss = ok.execute("points", xt, yt)
    assert ok.variance_info["method"] == "exact"
    zr, sr = pykrige_reference(universal)
    assert relerr(zz, zr) < rtol and relerr(ss, sr) < rtol


def test_local_variances_warn_once_and_exact_is_pykrige(monkeypatch):
    monkeypatch.setattr(config, "dense_memory_limit", SMALL)
    ok = ours(exact_variance_max=5)  # 16 targets are "many" here
    _, _, _, xt, yt = data()
    with pytest.warns(LocalVarianceWarning, match="variance='exact'") as caught:
        _, s_local = ok.execute("points", xt, yt)
    assert len(caught) == 1 and "local approximations" in str(caught[0].message)
    assert "dense memory budget" in str(caught[0].message)
    assert ok.variance_info["method"] == "local"
    with warnings.catch_warnings():
        warnings.simplefilter("error", LocalVarianceWarning)  # once per object
        ok.execute("points", xt, yt)
        _, s_exact = ok.execute("points", xt, yt, variance="exact")
    _, sr = pykrige_reference()
    assert relerr(s_exact, sr) < 1e-6
    assert np.all(s_local >= sr - 1e-6 * sr.max())  # local kriging: an upper bound
    assert relerr(s_local, sr) > 1e-6  # and not exact: the warning is due


def test_direct_matrix_built_in_row_blocks(monkeypatch):
    """A tiny budget with solver="direct": one row of the matrix at a time, the
    targets one at a time, still PyKrige's answer."""
    monkeypatch.setattr(config, "dense_memory_limit", 1000)
    ok = ours(solver="direct")
    _, _, _, xt, yt = data()
    zz, ss = ok.execute("points", xt, yt)
    zr, sr = pykrige_reference()
    assert relerr(zz, zr) < 1e-10 and relerr(ss, sr) < 1e-10


def test_values_only_stay_iterative_when_large(monkeypatch):
    """Built with ``variance=False``, a system above ``VALUES_ONLY_DIRECT_MAX``
    unknowns is solved iteratively even when the dense one fits (the values are
    exact to rtol; an LU would cost minutes at 2e4 points); with variances it
    goes direct."""
    from kernelsolve.linalg import kriging_base

    monkeypatch.setattr(kriging_base, "VALUES_ONLY_DIRECT_MAX", 50)
    rng = np.random.default_rng(5)
    x, y = rng.random(120), rng.random(120)
    z = np.sin(4 * x) + y
    params = {"sill": 1.0, "range": 0.5, "nugget": 0.01}
    values_only = OrdinaryKriging(x, y, z, "spherical", params, variance=False)
    assert values_only.solver != "direct"
    assert OrdinaryKriging(x, y, z, "spherical", params).solver == "direct"
    xt, yt = rng.random(7), rng.random(7)
    ref, _ = OrdinaryKriging(x, y, z, "spherical", params).execute("points", xt, yt)
    got, _ = values_only.execute("points", xt, yt, variance=False)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-8)
