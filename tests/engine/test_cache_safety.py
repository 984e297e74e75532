"""Nobody else can write into the kernel cache (kernelsolve.engine.cache).

The cache holds shared libraries that are loaded and run. These tests plant a
library whose constructor appends a line to a marker file under the exact
name of a cache entry, make the cache root, the entry's subdirectory or the
entry writable by others (or owned by another user), and check that the
library is never loaded: the call raises UnsafeCacheError naming the path and
the fix, the marker file stays absent, and nothing is rebuilt in its place.
A control test loads the same planted library from a safe cache and sees the
marker, so the marker mechanism itself is known to work.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kernelsolve import Vi, Vj
from kernelsolve.engine import cache
from kernelsolve.engine.backends import cpu

needs_compiler = pytest.mark.skipif(
    cpu.find_compiler() is None, reason="no C++ compiler to build the planted library"
)

PLANTED = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE* f = fopen(MARKER, "a");
    if (f) { fputs("loaded\n", f); fclose(f); }
}
"""


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def planted(tmp_path):
    """(library path, marker path): a shared library that appends "loaded" to
    the marker file when it is loaded."""
    marker = tmp_path / "marker.txt"
    src = tmp_path / "planted.c"
    src.write_text(PLANTED)
    lib = tmp_path / "planted.so"
    cmd = [cpu.find_compiler(), "-x", "c", "-shared", "-fPIC", f'-DMARKER="{marker}"']
    subprocess.run([*cmd, str(src), "-o", str(lib)], check=True, capture_output=True)
    return lib, marker


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    d = tmp_path / "kernel-cache"
    monkeypatch.setenv(cache.ENV_VAR, str(d))
    monkeypatch.setattr(cpu, "_memo", {})
    assert cache.cache_dir() == d
    return d


def plant(lib: Path, key: str, suffix: str = ".so") -> Path:
    """Copy the planted library to the entry of ``key`` (dirs made 0700)."""
    entry = cache.entry_path(key, suffix)
    entry.parent.mkdir(parents=True, exist_ok=True)
    for d in (entry.parent.parent, entry.parent):
        os.chmod(d, 0o700)
    entry.write_bytes(lib.read_bytes())
    os.chmod(entry, 0o700)
    return entry


def never_build(src, out):
    raise AssertionError("the planted entry was rebuilt instead of refused")


def load_lib(path):
    import ctypes

    return ctypes.CDLL(str(path))


KEY = cache.key_of("planted")


# ----------------------------------------------------------------------------
# Creation with safe permissions
# ----------------------------------------------------------------------------


@needs_compiler
def test_cache_is_created_private_even_with_an_open_umask(private_cache):
    """With umask 000 (files would be 0666, directories 0777), the cache root,
    its subdirectory and the entries are neither group- nor world-writable."""
    rng = np.random.default_rng(0)
    x, y = rng.random((7, 2)), rng.random((30, 2))
    old = os.umask(0)
    try:
        got = ((Vi(x) - Vj(y)).sinh() * Vi(x)).sum(dim=1, backend="CPU")
    finally:
        os.umask(old)
    want = (np.sinh(x[:, None, :] - y[None, :, :]) * x[:, None, :]).sum(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    (so,) = private_cache.rglob("*.so")
    assert mode_of(private_cache) == 0o700
    assert mode_of(so.parent) == 0o700
    assert mode_of(so) == 0o700
    assert mode_of(so.with_suffix(".cpp")) == 0o600
    assert cache.safety_problem(private_cache) is None


# ----------------------------------------------------------------------------
# The planted library
# ----------------------------------------------------------------------------


@needs_compiler
def test_control_planted_library_is_loaded_from_a_safe_cache(private_cache, planted):
    """Control: in a safe cache the planted entry is loaded (the marker shows
    it), so the refusals below are the checks at work, not a broken marker."""
    lib, marker = planted
    plant(lib, KEY)
    cache.get_or_build(KEY, ".so", "src", never_build, load_lib)
    assert marker.read_text() == "loaded\n"


UNSAFE_MODES = [0o777, 0o775, 0o1777, 0o757]


@needs_compiler
@pytest.mark.parametrize("mode", UNSAFE_MODES, ids=lambda m: f"{m:04o}")
def test_planted_library_in_an_open_cache_root_is_never_loaded(private_cache, planted, mode):
    """Cache root writable by its group or others (sticky /tmp-like 1777
    included): UnsafeCacheError naming the root and 'chmod 700'; not loaded,
    not rebuilt."""
    lib, marker = planted
    plant(lib, KEY)
    os.chmod(private_cache, mode)
    with pytest.raises(cache.UnsafeCacheError) as err:
        cache.get_or_build(KEY, ".so", "src", never_build, load_lib)
    msg = str(err.value)
    assert str(private_cache) in msg and f"{mode:04o}" in msg
    assert f"chmod 700 {private_cache}" in msg and cache.ENV_VAR in msg
    assert not marker.exists()
    assert cache.safety_problem(private_cache) is not None


@needs_compiler
@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_planted_library_in_an_open_subdirectory_is_never_loaded(private_cache, planted, mode):
    lib, marker = planted
    entry = plant(lib, KEY)
    os.chmod(entry.parent, mode)
    with pytest.raises(cache.UnsafeCacheError, match="subdirectory") as err:
        cache.get_or_build(KEY, ".so", "src", never_build, load_lib)
    assert str(entry.parent) in str(err.value) and "rm -rf" in str(err.value)
    assert not marker.exists()


@needs_compiler
@pytest.mark.parametrize("mode", [0o666, 0o772, 0o620])
def test_open_entry_is_never_loaded(private_cache, planted, mode):
    """Safe directories, but the entry itself writable by others: refused, not
    loaded, not silently rebuilt over."""
    lib, marker = planted
    entry = plant(lib, KEY)
    os.chmod(entry, mode)
    with pytest.raises(cache.UnsafeCacheError, match="cached kernel") as err:
        cache.get_or_build(KEY, ".so", "src", never_build, load_lib)
    assert str(entry) in str(err.value)
    assert not marker.exists()
    assert entry.read_bytes() == lib.read_bytes()


@pytest.fixture
def other_uid():
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user (chown) needs root")
    return 65534  # nobody


@needs_compiler
@pytest.mark.parametrize("which", ["root", "subdirectory", "entry"])
def test_planted_library_owned_by_another_user_is_never_loaded(
    private_cache, planted, other_uid, which
):
    """Mode 0700 everywhere, but one of root / subdirectory / entry belongs to
    another user: refused with the uid in the message."""
    lib, marker = planted
    entry = plant(lib, KEY)
    target = {"root": private_cache, "subdirectory": entry.parent, "entry": entry}[which]
    os.chown(target, other_uid, -1)
    with pytest.raises(cache.UnsafeCacheError, match=f"owned by uid {other_uid}") as err:
        cache.get_or_build(KEY, ".so", "src", never_build, load_lib)
    assert str(target) in str(err.value)
    assert not marker.exists()


@needs_compiler
def test_reduction_refuses_a_planted_kernel(private_cache, planted):
    """End to end: the planted library sits under the exact name of the kernel
    of a reduction, in a world-writable cache. The reduction raises (no
    fallback to the reference engine, no other directory), and the library
    is never loaded."""
    lib, marker = planted
    rng = np.random.default_rng(1)
    x, y = rng.random((5, 2)), rng.random((40, 2))

    def F():
        return ((Vi(x) * Vj(y)).cosh() - Vj(y)).sum(dim=1, backend="CPU")

    F()  # compiles and loads the real kernel: learn its entry's name
    (so,) = private_cache.rglob("*.so")
    # a new file under the name (rewriting the loaded library in place would
    # change the code this process has mapped)
    planted_copy = so.with_name(".planted")
    planted_copy.write_bytes(lib.read_bytes())
    os.chmod(planted_copy, 0o700)
    os.replace(planted_copy, so)
    os.chmod(private_cache, 0o777)
    cpu._memo.clear()
    with pytest.raises(cache.UnsafeCacheError, match=str(private_cache)):
        F()
    assert not marker.exists()
    assert so.read_bytes() == lib.read_bytes()


# ----------------------------------------------------------------------------
# A user-chosen KERNELSOLVE_CACHE_DIR that is unsafe
# ----------------------------------------------------------------------------


@needs_compiler
def test_unsafe_user_chosen_directory_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    """KERNELSOLVE_CACHE_DIR pointing at an existing world-writable directory
    (like /tmp): the first compile raises UnsafeCacheError naming the directory
    and both fixes; nothing is written there or anywhere else (XDG_CACHE_HOME
    stays untouched)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    monkeypatch.setenv(cache.ENV_VAR, str(shared))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(cpu, "_memo", {})
    rng = np.random.default_rng(2)
    x, y = rng.random((5, 2)), rng.random((9, 2))
    with pytest.raises(cache.UnsafeCacheError) as err:
        (Vi(x) - Vj(y)).tanh().sum(dim=1, backend="CPU")
    msg = str(err.value)
    assert f"chmod 700 {shared}" in msg and f"set {cache.ENV_VAR}" in msg
    assert list(shared.iterdir()) == []
    assert not (tmp_path / "xdg").exists()


def test_safety_problem_reports_without_raising(tmp_path):
    """safety_problem: None for a missing or private cache, the reason for an
    open one (used by `kernelsolve info`)."""
    d = tmp_path / "c"
    assert cache.safety_problem(d) is None
    d.mkdir(mode=0o700)
    (d / "ab").mkdir(mode=0o700)
    (d / "ab" / "abcd.so").write_bytes(b"x")
    os.chmod(d / "ab" / "abcd.so", 0o600)
    assert cache.safety_problem(d) is None
    os.chmod(d / "ab" / "abcd.so", 0o646)
    assert "abcd.so" in cache.safety_problem(d)
    os.chmod(d, 0o770)
    assert "mode 0770" in cache.safety_problem(d)


def test_safety_checks_run_in_a_fresh_process(tmp_path):
    """The error is what a user sees in a new process (no state from this one)."""
    shared = tmp_path / "open"
    shared.mkdir()
    os.chmod(shared, 0o777)
    code = (
        "from kernelsolve.engine import cache\n"
        "try:\n"
        "    cache.get_or_build('ab' * 20, '.so', 's', None, None)\n"
        "except cache.UnsafeCacheError as e:\n"
        "    print('refused:', e)\n"
    )
    env = dict(os.environ, KERNELSOLVE_CACHE_DIR=str(shared))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("refused:") and str(shared) in out
