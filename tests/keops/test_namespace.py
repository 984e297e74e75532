"""The pykeops-shaped namespaces export what pykeops' do, without importing
torch for NumPy users."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import kernelsolve
import kernelsolve.keops as pykeops

PYKEOPS_NAMES = [
    "Genred", "KernelSolve", "LazyTensor", "Pm", "Vi", "Vj",
    "generic_argkmin", "generic_argmin", "generic_logsumexp", "generic_sum",
]  # fmt: skip


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_names_of_pykeops(lib):
    mod = __import__(f"kernelsolve.keops.{lib}", fromlist=["*"])
    for name in PYKEOPS_NAMES:
        assert hasattr(mod, name), name
    assert mod.LazyTensor is kernelsolve.LazyTensor
    ops = __import__(f"kernelsolve.keops.{lib}.operations", fromlist=["*"])
    assert ops.KernelSolve is mod.KernelSolve


def test_numpy_namespace_does_not_import_torch():
    code = (
        "import sys, kernelsolve.keops.numpy, kernelsolve.keops.config as c; "
        "assert 'torch' not in sys.modules; "
        "import kernelsolve.keops.numpy.utils; assert 'torch' not in sys.modules"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_top_level_helpers(tmp_path, capsys):
    assert isinstance(pykeops.config.gpu_available, bool)
    assert pykeops.test_numpy_bindings() is True
    assert pykeops.test_torch_bindings() is True
    assert "working!" in capsys.readouterr().out
    before = os.environ.get("KERNELSOLVE_CACHE_DIR")
    pykeops.set_build_folder(str(tmp_path))
    try:
        assert pykeops.get_build_folder() == str(tmp_path)
    finally:
        pykeops.set_build_folder(before)
    pykeops.set_verbose(False)
    assert pykeops.verbose is False
    pykeops.set_verbose(True)
