"""The demo's optional dependencies: a clear error naming the pip extra."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingDependency", "require", "check_dependencies", "check_device"]


class MissingDependency(RuntimeError):
    """An optional package the demo needs is not installed."""


def require(module: str, why: str, extra: str = "demo") -> ModuleType:
    """``import module``, or :class:`MissingDependency` naming ``kernelsolve[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(
            f"{why} needs {module}, which is not installed: pip install 'kernelsolve[{extra}]'"
        ) from None


def check_dependencies(methods, gp_backend: str = "kernelsolve") -> None:
    """Raise :class:`MissingDependency` naming the pip extra for what is missing."""
    require("matplotlib", "kernelsolve demo (the DEM sample data and the figure)")
    if "gp" in methods:
        require("sklearn", "the GP of kernelsolve demo (--methods without gp runs without it)")
        if gp_backend == "gpytorch":
            require("torch", "--gp-backend gpytorch", "gpytorch")
            require("gpytorch", "--gp-backend gpytorch", "gpytorch")


def check_device(device: str) -> None:
    """``"cpu"``, or ``"cuda"`` with a GPU that torch and CuPy (the engine's CUDA
    target) both see; a ValueError or :class:`MissingDependency` saying what is missing."""
    if device == "cpu":
        return
    if device != "cuda":
        raise ValueError(f"device={device!r}: expected 'cpu' or 'cuda'")
    torch = require("torch", "--device cuda")
    if not torch.cuda.is_available():
        raise ValueError(
            "--device cuda: torch sees no CUDA GPU (torch.cuda.is_available() is False)"
        )
    try:
        import cupy

        ok = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: all mean no CUDA target
        ok = False
    if not ok:
        raise MissingDependency(
            "--device cuda: kernelsolve's CUDA target needs CuPy with a visible GPU: "
            "pip install 'kernelsolve[cuda]'"
        )
