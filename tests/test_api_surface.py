"""An API surface a user can read: every public signature lists its parameters.

``help(K.solve)`` and ``help(UniversalKriging)`` must show the parameters,
not ``(*args, **kwargs)``; the few ``**`` that remain are named for what they
carry (pykeops' speed-only keywords) and documented.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from kernelsolve import LazyTensor

PUBLIC_MODULES = [
    "kernelsolve",
    "kernelsolve.linalg.cg",
    "kernelsolve.linalg.solve",
    "kernelsolve.linalg.precond",
    "kernelsolve.linalg.interpolate",
    "kernelsolve.linalg.kriging",
    "kernelsolve.integrations.scipy",
]
# **kwargs that are part of the documented API: name -> why
NAMED_VAR_KEYWORDS = {"speed_options"}


def _public_callables():
    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(modname)
        names = getattr(mod, "__all__", None) or [n for n in vars(mod) if not n.startswith("_")]
        for name in names:
            obj = getattr(mod, name)
            if inspect.isclass(obj):
                init = obj.__init__
                if obj.__module__.startswith("kernelsolve") and inspect.isfunction(init):
                    yield f"{modname}.{name}", init
                    for attr, member in vars(obj).items():
                        if not attr.startswith("_") and inspect.isfunction(member):
                            yield f"{modname}.{name}.{attr}", member
            elif inspect.isfunction(obj) and obj.__module__.startswith("kernelsolve"):
                yield f"{modname}.{name}", obj


CALLABLES = dict(_public_callables())


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_signature_lists_its_parameters(name):
    sig = inspect.signature(CALLABLES[name])
    kinds = {p.kind for p in sig.parameters.values()}
    assert inspect.Parameter.VAR_POSITIONAL not in kinds, f"{name}{sig}"
    for p in sig.parameters.values():
        if p.kind == inspect.Parameter.VAR_KEYWORD:
            assert p.name in NAMED_VAR_KEYWORDS, f"{name}{sig}"


def test_solve_method_has_the_signature_of_linalg_solve():
    """K.solve(b, alpha, ...) forwards to linalg.solve.solve: same parameters, same
    defaults, so that neither drifts from the other."""
    from kernelsolve.linalg.solve import solve

    method = list(inspect.signature(LazyTensor.solve).parameters.values())[1:]
    function = list(inspect.signature(solve).parameters.values())[1:]
    assert [(p.name, p.kind, p.default) for p in method] == [
        (p.name, p.kind, p.default) for p in function
    ]


@pytest.mark.parametrize("name", ["sum", "logsumexp", "argKmin", "Kmin_reduction", "min"])
def test_reductions_show_their_options(name):
    sig = inspect.signature(getattr(LazyTensor, name))
    for option in ("backend", "dtype_acc", "call", "out"):
        assert option in sig.parameters
    assert "backend" in getattr(LazyTensor, name).__doc__


def test_universal_kriging_repeats_the_ordinary_signature():
    """UniversalKriging lists its parameters explicitly (help() shows them), so it
    repeats OrdinaryKriging's: same names, kinds and defaults, plus its own (but
    for the two that PyKrige's UniversalKriging does not have either)."""
    from kernelsolve.linalg.kriging import OrdinaryKriging, UniversalKriging

    ordinary = inspect.signature(OrdinaryKriging.__init__).parameters
    universal = inspect.signature(UniversalKriging.__init__).parameters
    shared = [name for name in universal if name in ordinary]
    pykrige_ok_only = {"enable_statistics", "coordinates_type"}
    assert set(ordinary) - set(shared) == pykrige_ok_only, set(ordinary) - set(shared)
    for name in shared:
        a, b = ordinary[name], universal[name]
        assert (a.kind, a.default) == (b.kind, b.default), name
