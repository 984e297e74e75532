"""kernelsolve.linalg.variogram beyond PyKrige's models (those are checked against
PyKrige in test_kriging.py): the short-lag semivariogram (moved here from
tests/test_cli.py with the code, kernelsolve.demo -> kernelsolve.linalg.variogram)
and the names kernelsolve.linalg.kriging re-exports."""

from __future__ import annotations

import numpy as np
import pytest

from kernelsolve.linalg import kriging, variogram
from kernelsolve.linalg.variogram import short_lag_variogram


def test_short_lag_variogram_matches_brute_force():
    rng = np.random.default_rng(2)
    X = rng.random((400, 2))
    z = np.sin(4 * X[:, 0]) + rng.standard_normal(400) * 0.1
    lags, sv = short_lag_variogram(X, z, 0.15, 6)
    i, j = np.triu_indices(400, 1)
    d = np.linalg.norm(X[i] - X[j], axis=1)
    g = 0.5 * (z[i] - z[j]) ** 2
    edges = np.linspace(0, 0.15, 7)
    ref_l, ref_g = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (d >= lo) & (d < hi)
        ref_l.append(d[sel].mean())
        ref_g.append(g[sel].mean())
    np.testing.assert_allclose(lags, ref_l, rtol=1e-12)
    np.testing.assert_allclose(sv, ref_g, rtol=1e-12)
    with pytest.raises(ValueError, match="too few point pairs"):
        short_lag_variogram(X[:3], z[:3], 0.01, 6)


def test_kriging_reexports_the_variogram_api():
    for name in (
        "Variogram",
        "VariogramModel",
        "VARIOGRAM_MODELS",
        "variogram_parameter_list",
        "experimental_variogram",
        "fit_variogram",
        "short_lag_variogram",
    ):
        assert getattr(kriging, name) is getattr(variogram, name), name
    assert variogram.as_model("EXPONENTIAL") is variogram.VARIOGRAM_MODELS["exponential"]
    with pytest.raises(ValueError, match="variogram_model='hole-effect'"):
        variogram.as_model("hole-effect")
