"""Predictions on dask arrays and xarray objects: lazily, chunk by chunk.

A fitted model's NumPy prediction (an interpolator's ``__call__``, kriging's
``execute``, a GP's or an estimator's ``predict``) starts with one line::

    if dask_predict.is_lazy(x):
        return dask_predict.predict_points(self, "predict", x, n_features=d)

and is then mapped over the chunks of ``x`` by ``dask.array.blockwise``: every task
calls the same NumPy method on one block. The model enters the graph once, as
one ``dask.delayed`` object that every task depends on, so it is pickled once and
sent once to each worker (not once per task).

This module sits in the bottom layer (beside ``config.py``): it imports nothing
from kernelsolve, so that the models of ``linalg/`` and ``sklearn/`` may call it,
and it imports dask and xarray only when handed one of their objects, so that
kernelsolve imports without them.

Conventions
-----------
* points (interpolators, GPs, estimators): a dask array of shape ``(..., d)``
  whose last axis holds the ``d`` coordinates of a point, in one chunk; any
  leading axes (a grid's ``(ny, nx)``) are kept, each output has shape
  ``(..., *tail)``. An xarray DataArray: its last dimension is the coordinate
  axis; a Dataset: its data variables, in order, are the coordinates (broadcast
  against each other). The same type comes back, coordinates kept.
* kriging's ``execute`` (:func:`execute_kriging`): the coordinate vectors of
  PyKrige's styles; "grid" and "masked" give blocks of the grid, one task per pair
  of chunks of ``xpoints`` and ``ypoints`` (and ``zpoints``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

import numpy as np

__all__ = ["is_lazy", "predict_points", "execute_kriging", "model_tasks"]

_FEATURE = "feature"

# One chunk at a time per process: the engine already runs a chunk on every core
# (OpenMP), and LAPACK called from two threads at once (dask's threaded scheduler,
# two chunks of a kriging prediction in ``lu_solve``) corrupted the heap here.
# Parallel chunks come from processes (distributed's workers).
_PREDICTING = threading.Lock()


def _is_dask(a) -> bool:
    mod = sys.modules.get("dask.array")
    return mod is not None and isinstance(a, mod.Array)


def _is_xarray(a) -> bool:
    mod = sys.modules.get("xarray")
    return mod is not None and isinstance(a, (mod.DataArray, mod.Dataset))


def is_lazy(*arrays) -> bool:
    """True when any argument is a dask array or an xarray DataArray/Dataset.

    Reads ``sys.modules`` only: without dask or xarray imported, nothing can be one
    of their objects, and nothing is imported.

    Example
    -------
    >>> import numpy as np
    >>> is_lazy(np.zeros(3), None)
    False
    """
    return any(_is_dask(a) or _is_xarray(a) for a in arrays)


def _delayed_model(model):
    import dask

    # one key holding the model; pure=False: no hashing of a large model to name it
    return dask.delayed(model, pure=False, traverse=False)


def model_tasks(collection, model) -> int:
    """How many tasks of ``collection``'s graph hold ``model`` itself (1 when the model
    is sent once; the number of chunks when each task carries a copy).

    Example
    -------
    >>> import numpy as np
    >>> import dask.array as da
    >>> model = np.arange(10_000.0)
    >>> y = da.zeros(4, chunks=2).map_blocks(lambda b, m: b + m[0], model, meta=np.empty(0))
    >>> model_tasks(y, model)  # embedded in each of the 2 tasks
    2
    """
    import cloudpickle  # what distributed pickles tasks with

    size = len(cloudpickle.dumps(model))
    graph = dict(collection.__dask_graph__())
    return sum(len(cloudpickle.dumps(task)) >= size for task in graph.values())


# ----------------------------------------------------------------------
# points: (..., d) -> (..., *tail), one or several outputs
# ----------------------------------------------------------------------
def _points_block(block, model, method, n_outputs, tail, kwargs):
    lead = block.shape[:-1]
    with _PREDICTING:
        out = getattr(model, method)(block.reshape(-1, block.shape[-1]), **kwargs)
    outs = out if n_outputs > 1 else (out,)
    arrays = [np.asarray(o).reshape(lead + tuple(tail)) for o in outs]
    return np.stack(arrays) if n_outputs > 1 else arrays[0]


def _check_points(x, n_features: int | None, name: str) -> None:
    n_features = x.shape[-1] if n_features is None and x.ndim else n_features
    if x.ndim < 2:
        raise ValueError(
            f"{name}: expected a dask array of points of shape (..., {n_features}) "
            f"(coordinates on the last axis), got shape {x.shape}"
        )
    if x.shape[-1] != n_features:
        raise ValueError(
            f"{name}: the model was fitted on {n_features} features, the last axis of "
            f"the dask array has {x.shape[-1]}"
        )
    if len(x.chunks[-1]) != 1:
        raise ValueError(
            f"{name}: the feature axis (last, size {n_features}) of the dask array is "
            f"split into chunks {x.chunks[-1]}; a point's coordinates must be in one "
            "chunk: x.rechunk({-1: -1})"
        )


def _dask_points(model, method, x, n_features, tail, dtype, n_outputs, kwargs, name):
    import dask.array as da

    _check_points(x, n_features, name)
    lead = "".join(chr(ord("a") + k) for k in range(x.ndim - 1))
    tails = "".join(chr(ord("n") + k) for k in range(len(tail)))
    new_axes = dict(zip(tails, tail))
    out_ind = lead + tails
    if n_outputs > 1:
        out_ind, new_axes = "z" + out_ind, {"z": n_outputs, **new_axes}
    meta = np.empty((0,) * len(out_ind), dtype=dtype)
    out = da.blockwise(
        _points_block,
        out_ind,
        x,
        lead + "y",
        _delayed_model(model),
        None,
        method,
        None,
        n_outputs,
        None,
        tuple(tail),
        None,
        kwargs,
        None,
        new_axes=new_axes,
        concatenate=True,
        dtype=dtype,
        meta=meta,
        token=f"{type(model).__name__.lower()}-{method.strip('_')}",
    )
    return tuple(out[k] for k in range(n_outputs)) if n_outputs > 1 else out


def _xarray_points(model, method, x, n_features, tail, dtype, n_outputs, names, kwargs, name):
    import xarray as xr

    dataset = isinstance(x, xr.Dataset)
    if dataset:
        variables = list(x.data_vars)
        n_features = len(variables) if n_features is None else n_features
        if len(variables) != n_features:
            raise ValueError(
                f"{name}: the model was fitted on {n_features} features, the Dataset has "
                f"{len(variables)} data variables ({variables}); each is one coordinate"
            )
        x = xr.concat(xr.broadcast(*[x[v] for v in variables]), dim=_FEATURE)
        x = x.transpose(..., _FEATURE)
        if x.chunks is not None:
            x = x.chunk({_FEATURE: -1})
    if x.ndim < 1 or (n_features is not None and x.shape[-1] != n_features):
        raise ValueError(
            f"{name}: the model was fitted on {n_features} features; the last dimension "
            f"{x.dims[-1:]} of the DataArray has size {x.shape[-1:]}"
        )
    n_features = x.shape[-1] if n_features is None and x.ndim else n_features
    core = x.dims[-1]
    tail_dims = [f"{name}_dim_{k}" for k in range(len(tail))]

    def apply(arr):
        if _is_dask(arr):
            return _dask_points(
                model, method, arr, n_features, tail, dtype, n_outputs, kwargs, name
            )
        out = _points_block(np.asarray(arr), model, method, n_outputs, tail, kwargs)
        return tuple(out) if n_outputs > 1 else out

    out = xr.apply_ufunc(
        apply,
        x,
        input_core_dims=[[core]],
        output_core_dims=[tail_dims] * n_outputs,
        dask="allowed",
    )
    outs = [o.rename(n) for o, n in zip(out if n_outputs > 1 else (out,), names)]
    if dataset:
        return xr.Dataset(dict(zip(names, outs)))
    return tuple(outs) if n_outputs > 1 else outs[0]


def predict_points(
    model,
    method: str,
    x,
    *,
    n_features: int | None,
    tail: Sequence[int] = (),
    dtype=np.float64,
    n_outputs: int = 1,
    names: Sequence[str] = ("prediction",),
    name: str = "x",
    **kwargs,
):
    """``getattr(model, method)(points, **kwargs)`` over the chunks of ``x``, lazily.

    Parameters
    ----------
    model : object
        A fitted model (it must pickle); sent to the workers once.
    method : str
        The NumPy prediction method, called on ``(k, n_features)`` blocks.
    x : dask array, xarray DataArray or Dataset
        The points (see the module's conventions).
    n_features : int or None
        Coordinates per point (None: any, as a model before its fit).
    tail : tuple of int
        Shape of one point's output (``()`` for a scalar).
    dtype : dtype
        The outputs' dtype.
    n_outputs : int
        The method returns this many arrays (a tuple) when above 1, each of shape
        ``(k, *tail)``; a tuple of as many lazy results comes back.
    names : sequence of str
        The data variables of the Dataset returned for a Dataset ``x``.
    name : str
        The argument's name in error messages.
    **kwargs
        Passed to the method.

    Returns
    -------
    dask array, DataArray or Dataset (or a tuple of them)
        Of ``x``'s type and leading shape, not computed.

    Example
    -------
    >>> import dask.array as da
    >>> import numpy as np
    >>> class Sum:
    ...     def predict(self, x):
    ...         return x.sum(axis=1)
    >>> x = da.ones((10, 3), chunks=(4, 3))
    >>> y = predict_points(Sum(), "predict", x, n_features=3)
    >>> y.chunks, float(y.sum().compute())
    (((4, 4, 2),), 30.0)
    """
    if _is_xarray(x):
        return _xarray_points(
            model, method, x, n_features, tuple(tail), dtype, n_outputs, names, kwargs, name
        )
    return _dask_points(model, method, x, n_features, tuple(tail), dtype, n_outputs, kwargs, name)


# ----------------------------------------------------------------------
# kriging: PyKrige's coordinate vectors, points or grid blocks
# ----------------------------------------------------------------------
def _kriging_block(model, style, d, n_spec, has_mask, options, *arrays):
    coords = arrays[:d]
    mask = arrays[d] if has_mask else None
    spec = list(arrays[d + has_mask : d + has_mask + n_spec]) if n_spec else None
    with _PREDICTING:
        z, s = model._execute(style, coords, mask, *options[:2], spec, *options[2:])
    if s is None:
        return z[None]
    return np.ma.stack([z, s]) if isinstance(z, np.ma.MaskedArray) else np.stack([z, s])


def _as_dask(a, name: str):
    import dask.array as da

    a = a.data if _is_xarray(a) else a
    if _is_dask(a):
        return a
    return da.from_array(np.asarray(a), chunks=-1, name=False)


def _vector(a, name: str):
    a = _as_dask(a, name)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D dask array of coordinates, got shape {a.shape}")
    return a


def _grid_array(a, shape, chunks, name: str):
    """A mask or drift array of the grid's shape (or transposed, as PyKrige accepts),
    chunked as the grid."""
    a = _as_dask(a, name)
    if a.shape != shape and a.shape == shape[::-1]:
        a = a.T
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return a.rechunk(chunks)


def execute_kriging(model, style: str, coords, mask, backend, closest, specified, variance, dtype):
    """Kriging's ``execute`` over chunks of its coordinate vectors, lazily: a pair
    ``(z, ss)`` of dask arrays (DataArrays when the coordinates are DataArrays), ``ss``
    None without variances. ``variance`` must be resolved ("exact", "local" or False),
    so that every chunk computes what one call on all targets would.

    "points": the vectors' chunks (aligned); "grid" / "masked": one block per pair of
    chunks of ``xpoints`` and ``ypoints`` (and ``zpoints``), result ``(ny, nx)``
    (``(nz, ny, nx)``) chunked as the vectors. ``mask`` and the drift arrays may be
    dask arrays of the grid's shape.
    """
    import dask.array as da

    names = ("xpoints", "ypoints", "zpoints")[: len(coords)]
    vecs = [_vector(c, n) for c, n in zip(coords, names)]
    d = len(vecs)
    if style == "points":
        if len({v.shape[0] for v in vecs}) != 1:
            sizes = [v.shape[0] for v in vecs]
            raise ValueError(f"{', '.join(names)} must have the same length, got {sizes}")
        ind, out_shape, chunks = "p", (vecs[0].shape[0],), None
        coord_inds = ["p"] * d
    elif style in ("grid", "masked"):
        axes = "xyz"[:d]
        ind = axes[::-1]
        coord_inds = list(axes)
        out_shape = tuple(v.shape[0] for v in vecs[::-1])
        chunks = tuple(v.chunks[0] for v in vecs[::-1])
    else:
        raise ValueError(f"style={style!r}: expected 'grid', 'points' or 'masked'")
    extra = []
    if style == "masked":
        if mask is None:
            raise ValueError("mask must be given for style='masked'")
        extra += [_grid_array(mask, out_shape, chunks, "mask"), ind]
    spec = list(specified or [])
    for k, a in enumerate(spec):
        if style == "points":
            extra += [_vector(a, f"specified_drift_arrays[{k}]"), "p"]
        else:
            extra += [_grid_array(a, out_shape, chunks, f"specified_drift_arrays[{k}]"), ind]
    n_out = 1 if variance is False else 2
    masked = style == "masked" or backend == "vectorized"
    meta = np.empty((0,) * (len(ind) + 1))
    args = [a for v, i in zip(vecs, coord_inds) for a in (v, i)] + extra
    out = da.blockwise(
        _kriging_block,
        "s" + ind,
        _delayed_model(model),
        None,
        style,
        None,
        d,
        None,
        len(spec),
        None,
        style == "masked",
        None,
        (backend, closest, variance, dtype),
        None,
        *args,
        new_axes={"s": n_out},
        concatenate=True,
        dtype=np.float64,
        meta=np.ma.masked_array(meta) if masked else meta,
        token=f"{type(model).__name__.lower()}-execute",
    )
    z, s = out[0], (None if n_out == 1 else out[1])
    if any(_is_xarray(c) for c in coords):
        z, s = (
            _wrap_kriging(coords, style, z),
            (None if s is None else _wrap_kriging(coords, style, s)),
        )
    return z, s


def _wrap_kriging(coords, style, data):
    import xarray as xr

    arrays = [c for c in coords if isinstance(c, xr.DataArray)]
    if style == "points":
        dims = (arrays[0].dims[0],)
    else:
        dims = tuple(
            c.dims[0] if isinstance(c, xr.DataArray) else "xyz"[k] for k, c in enumerate(coords)
        )[::-1]
    merged = xr.merge([c.coords.to_dataset() for c in arrays], compat="override").coords
    return xr.DataArray(
        data, dims=dims, coords={k: v for k, v in merged.items() if set(v.dims) <= set(dims)}
    )
