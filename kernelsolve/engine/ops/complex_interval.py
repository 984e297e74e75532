"""Interval rules of the complex ops (:mod:`.complex`): the real and the
imaginary parts (interleaved coordinates) bounded separately, with the
building blocks of :mod:`.interval`.

Tight for the linear ops (conversions, parts, ``conj``, sums, differences,
real scaling) and ``complexabs`` (independent parts); sound but loose where
a part appears twice in a formula (``complexmult``, ``complexdiv``,
``complexexp``): interval arithmetic forgets that both occurrences are one
value.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import interval as iv


def interleave(re: np.ndarray, im: np.ndarray) -> np.ndarray:
    """``(re_0, im_0, re_1, im_1, ...)`` from the parts (broadcast)."""
    re, im = np.broadcast_arrays(re, im)
    return np.stack([re, im], axis=-1).reshape(re.shape[:-1] + (2 * re.shape[-1],))


def _parts(z) -> tuple[tuple, tuple]:
    """The intervals of the real and of the imaginary parts of ``z``."""
    return (z[0][..., 0::2], z[1][..., 0::2]), (z[0][..., 1::2], z[1][..., 1::2])


def _joined(re, im) -> tuple[np.ndarray, np.ndarray]:
    return interleave(re[0], im[0]), interleave(re[1], im[1])


def _complex(f: Callable) -> Callable:
    """The rule of an op written on parts: ``f(*(re, im) per argument)``
    returns (re, im) intervals for complex results, one interval for real."""

    def rule(*args):
        out = f(*[_parts(a) for a in args])
        return _joined(*out) if isinstance(out[0], tuple) else out

    return rule


def _zero(x):
    return iv.constant(x, 0.0)


def real2complex(x):
    return _joined(x, _zero(x))


def imag2complex(x):
    return _joined(_zero(x), x)


def exp1j(x):
    return _joined(iv.cos(x), iv.sin(x))


def _mult(p, q):
    (a, b), (c, d) = p, q
    return iv.sub(iv.mul(a, c), iv.mul(b, d)), iv.add(iv.mul(a, d), iv.mul(b, c))


def _div(p, q):
    (a, b), (c, d) = p, q
    den = iv.add(iv.square(c), iv.square(d))
    re = iv.div(iv.add(iv.mul(a, c), iv.mul(b, d)), den)
    return re, iv.div(iv.sub(iv.mul(b, c), iv.mul(a, d)), den)


def _exp(z):
    m = iv.increasing(np.exp)(z[0])
    return iv.mul(m, iv.cos(z[1])), iv.mul(m, iv.sin(z[1]))


def realscal(u, z):
    (re, im) = _parts(z)
    return _joined(iv.mul(u, re), iv.mul(u, im))


complexreal = _complex(lambda z: z[0])
compleximag = _complex(lambda z: z[1])
conj = _complex(lambda z: (z[0], iv.neg(z[1])))
complexabs = _complex(lambda z: iv.sqrt(iv.add(iv.square(z[0]), iv.square(z[1]))))
complexangle = _complex(lambda z: iv.atan2(z[1], z[0]))
complexexp = _complex(_exp)
complexsum = _complex(lambda z: (iv.total(*z[0]), iv.total(*z[1])))
complexmult = _complex(_mult)
complexdiv = _complex(_div)
complexadd = _complex(lambda p, q: (iv.add(p[0], q[0]), iv.add(p[1], q[1])))
complexsub = _complex(lambda p, q: (iv.sub(p[0], q[0]), iv.sub(p[1], q[1])))
