"""The demo's figure: truth, reconstruction and absolute error, as a small PNG."""

from __future__ import annotations

import io
import os
import sys

import numpy as np

from .data import TRAIN_FRACTION, Terrain

__all__ = ["write_figure"]


def write_figure(path: str, terrain: Terrain, train, test, best) -> None:
    """Truth, reconstruction and absolute error of ``best`` as a PNG.

    ``best`` is a :class:`~kernelsolve.demo.run.MethodResult`: its ``prediction``
    holds the values at ``test`` followed by those at the other points outside
    ``train``, in increasing order (what :func:`~kernelsolve.demo.run.run` predicts).
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # no display needed; keeps a user's interactive backend
    import matplotlib.pyplot as plt

    ny, nx = terrain.z.shape
    data = np.zeros(len(terrain.values), dtype=bool)
    data[train] = True
    query = np.flatnonzero(~data)
    query = np.concatenate([test, np.setdiff1d(query, test)])  # the order of the predictions
    rec = terrain.values.copy()
    rec[query] = best.prediction
    err = np.zeros_like(rec)
    err[query] = np.abs(best.prediction - terrain.values[query])
    vmin, vmax = terrain.z.min(), terrain.z.max()
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.2), constrained_layout=True)
    panels = [
        (terrain.z, f"truth ({ny} x {nx} elevations)", "terrain", vmin, vmax),
        (
            rec.reshape(ny, nx),
            f"{best.method} from {len(train):,} points",
            "terrain",
            vmin,
            vmax,
        ),
        (
            err.reshape(ny, nx),
            f"absolute error (held-out RMSE {best.rmse:.1f} m; 0 at the data)",
            "magma",
            0.0,
            float(np.percentile(err[query], 99)),
        ),
    ]
    for ax, (img, title, cmap, lo, hi) in zip(axes, panels):
        im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, origin="upper", interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.85, label="m")
    fig.suptitle(
        f"kernelsolve demo: Jacksboro DEM from {TRAIN_FRACTION:.0%} of its points",
        fontsize=11,
    )
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    buf.seek(0)
    try:
        from PIL import Image  # a dependency of matplotlib
    except ImportError:
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        return
    # a 256-colour palette: the noisy error panel makes a full-colour PNG ~500 kB
    with Image.open(buf) as im:
        im.convert("RGB").quantize(256).save(path, format="PNG", optimize=True)
