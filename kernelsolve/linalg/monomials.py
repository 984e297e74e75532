"""Monomials of a polynomial tail: their exponents and their values at points."""

from __future__ import annotations

from itertools import combinations_with_replacement

import numpy as np

__all__ = ["monomial_powers", "polynomial_matrix"]


def monomial_powers(ndim: int, degree: int) -> np.ndarray:
    """Exponents of the monomials of degree <= ``degree`` in ``ndim`` variables."""
    rows = []
    for deg in range(degree + 1):
        for combo in combinations_with_replacement(range(ndim), deg):
            p = np.zeros(ndim, dtype=np.int64)
            for k in combo:
                p[k] += 1
            rows.append(p)
    return np.array(rows, dtype=np.int64).reshape(len(rows), ndim)


def polynomial_matrix(x: np.ndarray, powers: np.ndarray) -> np.ndarray:
    """``out[i, k] = prod_l x[i, l] ** powers[k, l]``."""
    return np.prod(x[:, None, :] ** powers[None, :, :], axis=-1)
