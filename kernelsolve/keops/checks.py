"""pykeops' installation checks ``test_numpy_bindings`` and
``test_torch_bindings``: one small Genred against the same sum done densely."""

from __future__ import annotations

import numpy as np

__all__ = ["test_numpy_bindings", "test_torch_bindings"]

_FORMULA = "SqNorm2(x - y)"
_ALIASES = ["x = Vi(3)", "y = Vj(3)"]


def _dense(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1).sum(1, keepdims=True)


def test_numpy_bindings() -> bool:
    """Run one NumPy Genred; print and return whether it matches NumPy.

    >>> test_numpy_bindings()  # doctest: +ELLIPSIS
    kernelsolve.keops with numpy bindings is working!
    True
    """
    from .genred import Genred

    rng = np.random.default_rng(0)
    x, y = rng.random((5, 3)), rng.random((4, 3))
    ok = bool(np.allclose(Genred(_FORMULA, _ALIASES, axis=1)(x, y), _dense(x, y)))
    print("kernelsolve.keops with numpy bindings is " + ("working!" if ok else "NOT working"))
    return ok


def test_torch_bindings() -> bool:
    """Run one torch Genred; print and return whether it matches NumPy."""
    import torch

    from .genred import Genred

    rng = np.random.default_rng(0)
    x, y = rng.random((5, 3)), rng.random((4, 3))
    out = Genred(_FORMULA, _ALIASES, axis=1)(torch.tensor(x), torch.tensor(y))
    ok = bool(np.allclose(out.numpy(), _dense(x, y)))
    print("kernelsolve.keops with torch bindings is " + ("working!" if ok else "NOT working"))
    return ok
