"""On-disk cache of compiled kernels (kernelsolve.engine.cache, used by the CPU target).

Every test points ``KERNELSOLVE_CACHE_DIR`` at a fresh temporary directory (the
library reads it at call time) and, where the test is about the disk, gives the CPU
target an empty in-process memo, so that the disk is consulted. Results are checked
against dense NumPy computations.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

import kernelsolve
from kernelsolve import Vi, Vj
from kernelsolve.engine import cache
from kernelsolve.engine.backends import cpu

# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def data(seed=0, M=13, N=600):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (M, 2)), rng.uniform(-1, 1, (N, 2))


# Formulas that no other test file compiles (cheap: inner dimension 2).
def f_cos(x, y):
    return (Vi(x) - Vj(y)).cos() * Vi(x)


def dense_cos(x, y):
    return (np.cos(x[:, None, :] - y[None, :, :]) * x[:, None, :]).sum(axis=1)


def f_atan(x, y):
    return (Vi(x) * Vj(y)).atan() - Vj(y)


def dense_atan(x, y):
    return (np.arctan(x[:, None, :] * y[None, :, :]) - y[None, :, :]).sum(axis=1)


def entries(root: Path, suffix: str) -> list[Path]:
    return sorted(p for p in root.rglob(f"*{suffix}") if not p.name.startswith("."))


def temporaries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".*"))


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A fresh cache directory and an empty in-process memo of the CPU target."""
    cpu._toolchain_id()  # the compiler identity, computed outside the monkeypatches
    d = tmp_path / "kernel-cache"
    monkeypatch.setenv(cache.ENV_VAR, str(d))
    monkeypatch.setattr(cpu, "_memo", {})
    assert cache.cache_dir() == d
    return d


@pytest.fixture
def count_compiles(monkeypatch):
    """Counts calls of the host compiler (the real one still runs)."""
    calls = []
    real = cpu.compile_shared

    def counting(src, out, flags=cpu.FLAGS):
        calls.append(Path(src))
        return real(src, out, flags)

    monkeypatch.setattr(cpu, "compile_shared", counting)
    return calls


# ----------------------------------------------------------------------------
# Location and keys
# ----------------------------------------------------------------------------


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    """KERNELSOLVE_CACHE_DIR wins; else $XDG_CACHE_HOME/kernelsolve; else
    ~/.cache/kernelsolve; read at call time."""
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "a"
    monkeypatch.delenv(cache.ENV_VAR)
    assert cache.cache_dir() == tmp_path / "xdg" / "kernelsolve"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "kernelsolve"


def test_key_of_is_a_stable_hash_of_all_parts():
    """Same parts -> same key; any difference (even moving a character between parts)
    -> another key; 40 hex digits."""
    k = cache.key_of("source", "flags", "toolchain")
    assert k == cache.key_of("source", "flags", "toolchain")
    assert len(k) == 40 and int(k, 16) >= 0
    others = {
        cache.key_of("source ", "flags", "toolchain"),
        cache.key_of("source", "flags", "toolchain2"),
        cache.key_of("sourcef", "lags", "toolchain"),
        cache.key_of("source", "flags"),
    }
    assert k not in others and len(others) == 4


def test_entry_path_layout(tmp_cache):
    """<cache>/<key[:2]>/<key><suffix>."""
    key = cache.key_of("x")
    assert cache.entry_path(key, ".so") == tmp_cache / key[:2] / (key + ".so")


def test_kernels_land_in_the_configured_directory(tmp_cache, count_compiles, monkeypatch):
    """A reduction writes <key>.so and <key>.cpp under KERNELSOLVE_CACHE_DIR (the .cpp
    holds the generated kernel); the same source reuses the entry (no compile, with an
    empty memo), a different one gets another key."""
    x, y = data(1)
    got = f_cos(x, y).sum(dim=1, backend="CPU")
    np.testing.assert_allclose(got, dense_cos(x, y), rtol=1e-12)
    sos, cpps = entries(tmp_cache, ".so"), entries(tmp_cache, ".cpp")
    assert len(sos) == 1 and len(cpps) == 1 and len(count_compiles) == 1
    so = sos[0]
    key = so.stem
    assert so.parent.name == key[:2] and so.parent.parent == tmp_cache
    assert cpps[0] == so.with_suffix(".cpp")
    text = cpps[0].read_text()
    assert "ks_kernel" in text and "cos(" in text
    assert not temporaries(tmp_cache)

    # same formula and reduction, new data, empty memo: loaded from disk
    monkeypatch.setattr(cpu, "_memo", {})
    x2, y2 = data(2, M=5, N=40)
    got = f_cos(x2, y2).sum(dim=1, backend="CPU")
    np.testing.assert_allclose(got, dense_cos(x2, y2), rtol=1e-12)
    assert len(count_compiles) == 1, "recompiled a cached kernel"
    assert entries(tmp_cache, ".so") == sos

    # another formula: another key
    got = f_atan(x, y).sum(dim=1, backend="CPU")
    np.testing.assert_allclose(got, dense_atan(x, y), rtol=1e-12)
    sos2 = entries(tmp_cache, ".so")
    assert len(sos2) == 2 and len(count_compiles) == 2
    assert {p.stem for p in sos2} - {key}
    assert not temporaries(tmp_cache)


def test_nothing_written_outside_the_configured_directory(tmp_path, monkeypatch):
    """With KERNELSOLVE_CACHE_DIR set, XDG_CACHE_HOME and HOME stay untouched."""
    cpu._toolchain_id()
    monkeypatch.setattr(cpu, "_memo", {})
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "c"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    x, y = data(3)
    f_atan(x, y).sum(dim=1, backend="CPU")
    assert entries(tmp_path / "c", ".so")
    assert not (tmp_path / "xdg").exists()


# ----------------------------------------------------------------------------
# Several processes at once
# ----------------------------------------------------------------------------


def _compile_and_run(cache_path: str, barrier, queue, seed: int) -> None:
    """Child process: wait for the others, then compile and run one new kernel."""
    os.environ[cache.ENV_VAR] = cache_path
    try:
        x, y = data(seed)
        F = f_cos(x, y)
        if barrier is not None:
            barrier.wait(timeout=120)
        queue.put((seed, F.sum(dim=1, backend="CPU"), None))
    except BaseException as e:  # report, do not hang the parent
        queue.put((seed, None, repr(e)))


def _spawn(ctx, cache_path, seeds, barrier=None):
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_compile_and_run, args=(cache_path, barrier, queue, s)) for s in seeds
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0, f"child exited with {p.exitcode}"
    return results


def test_concurrent_processes_compile_the_same_kernel(tmp_path):
    """Four processes (spawn) compiling the same new kernel into the same fresh cache at
    once all succeed with identical, correct results; one .so and one .cpp remain and no
    temporary file is left behind."""
    d = tmp_path / "shared-cache"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = _spawn(ctx, str(d), [7, 7, 7, 7], barrier)
    errors = [e for _, _, e in results if e is not None]
    assert not errors, errors
    x, y = data(7)
    want = dense_cos(x, y)
    first = results[0][1]
    for _, got, _ in results:
        np.testing.assert_array_equal(got, first)
    np.testing.assert_allclose(first, want, rtol=1e-12)
    assert len(entries(d, ".so")) == 1 and len(entries(d, ".cpp")) == 1
    assert not temporaries(d), f"temporary files left: {temporaries(d)}"


# ----------------------------------------------------------------------------
# Corrupt entries
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", [b"", b"\x7fELF garbage"])
def test_corrupt_entry_is_rebuilt(tmp_cache, count_compiles, garbage):
    """A truncated / garbage .so (written by another process, never loaded here) is
    deleted and rebuilt, not fatal; the results are right."""
    ctx = multiprocessing.get_context("spawn")
    results = _spawn(ctx, str(tmp_cache), [11])  # populate the cache in a child
    assert results[0][2] is None, results[0][2]
    (so,) = entries(tmp_cache, ".so")
    size = so.stat().st_size
    so.write_bytes(garbage)

    x, y = data(11)
    got = f_cos(x, y).sum(dim=1, backend="CPU")
    np.testing.assert_allclose(got, dense_cos(x, y), rtol=1e-12)
    assert len(count_compiles) == 1, "the corrupt entry was not rebuilt"
    assert entries(tmp_cache, ".so") == [so]
    assert so.stat().st_size == size
    assert not temporaries(tmp_cache)


# ----------------------------------------------------------------------------
# clear_cache
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("clear", ["engine", "top-level"])
def test_clear_cache_removes_everything_and_next_call_recompiles(
    tmp_path, monkeypatch, count_compiles, clear
):
    """clear_cache() removes the cache directory and empties the in-process memos; the
    next call compiles again and is right. kernelsolve.clear_cache is the same function."""
    assert kernelsolve.clear_cache is cache.clear_cache
    cpu._toolchain_id()
    d = tmp_path / "to-clear"
    monkeypatch.setenv(cache.ENV_VAR, str(d))
    assert cache.cache_dir() == d  # never clear a real cache from a test
    cache.clear_cache()  # empty memos: the first call below compiles into d
    x, y = data(12)
    F = f_atan(x, y)
    F.sum(dim=1, backend="CPU")
    assert entries(d, ".so")
    n = len(count_compiles)

    (cache.clear_cache if clear == "engine" else kernelsolve.clear_cache)()
    assert not d.exists()
    assert len(cpu._memo) == 0
    assert all(
        size == 0 for name, size in cache.memo_sizes().items() if cache._memos[name].clearable
    )

    got = F.sum(dim=1, backend="CPU")
    np.testing.assert_allclose(got, dense_atan(x, y), rtol=1e-12)
    assert len(count_compiles) == n + 1, "the next call did not compile again"
    assert len(entries(d, ".so")) == 1


def test_clear_cache_without_a_directory(tmp_path, monkeypatch):
    """Clearing a cache that does not exist is a no-op."""
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "never-created"))
    cache.clear_cache()
    assert not (tmp_path / "never-created").exists()
