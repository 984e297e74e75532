"""On-disk cache of compiled kernels, safe with several processes.

A kernel is stored under ``cache_dir()/<key[:2]>/<key><suffix>`` where the
key hashes the generated source with everything else that changes the
binary (compiler identity, flags, library version, host CPU). The source is
kept beside the binary (``<key>.cpp``) so that a compile error or a crash can
be traced to the exact text.

Writes are atomic: the compiler writes to a unique temporary name in the
same directory, which is then renamed over the final name. Two processes
compiling the same kernel both produce a valid file and the last rename
wins; a reader never sees a half-written file. An entry that fails to load
(truncated, corrupt) is deleted and rebuilt once.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

ENV_VAR = "KERNELSOLVE_CACHE_DIR"


def cache_dir() -> Path:
    """``$KERNELSOLVE_CACHE_DIR``, else ``$XDG_CACHE_HOME/kernelsolve``, else
    ``~/.cache/kernelsolve``."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kernelsolve"


def key_of(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:40]


def entry_path(key: str, suffix: str) -> Path:
    return cache_dir() / key[:2] / (key + suffix)


def get_or_build(
    key: str,
    suffix: str,
    source: str,
    build: Callable[[Path, Path], None],
    load: Callable[[Path], object],
):
    """Load the cached binary for ``key``, building it first if needed.

    ``build(src_path, out_path)`` must write the binary to ``out_path``;
    ``load(path)`` turns it into a usable object and raises ``OSError`` (or
    ``ValueError``) on a corrupt file.
    """
    path = entry_path(key, suffix)
    if path.exists():
        try:
            return load(path)
        except (OSError, ValueError):
            # Corrupt or truncated entry: rebuild it instead of failing.
            _unlink(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    src_path = path.with_suffix(".cpp")
    _atomic_write_text(src_path, source)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=suffix)
    os.close(fd)
    try:
        build(src_path, Path(tmp))
        os.replace(tmp, path)
    finally:
        _unlink(Path(tmp))
    return load(path)


class _Registered:
    """One process-global cache: how to count and empty it."""

    __slots__ = ("obj", "clearable")

    def __init__(self, obj, clearable: bool):
        self.obj, self.clearable = obj, clearable

    def size(self) -> int:
        info = getattr(self.obj, "cache_info", None)
        return info().currsize if info is not None else len(self.obj)

    def clear(self) -> None:
        clear = getattr(self.obj, "cache_clear", None)
        (clear or self.obj.clear)()


_memos: dict[str, _Registered] = {}


def register_memo(memo, name: str, *, clearable: bool = True):
    """Declare a process-global cache under ``name`` (``"module.what"``), so that
    :func:`clear_cache` empties it and ``kernelsolve info`` reports its size.

    ``memo`` is a dict-like object (``len``, ``clear``) or a function wrapped by
    :func:`functools.lru_cache` / :func:`functools.cache` (``cache_info``,
    ``cache_clear``). ``clearable=False`` marks a table that is only reported,
    never emptied (e.g. the IR's interning table: emptying it would break
    the identity of equal formulas). Returns ``memo``.

    Example
    -------
    >>> _table = register_memo({}, "doc.example")
    >>> memo_sizes()["doc.example"]
    0
    """
    _memos[name] = _Registered(memo, clearable)
    return memo


def memoized(name: str, maxsize: int | None = 4096):
    """Decorator: :func:`functools.lru_cache` with ``maxsize``, registered
    under ``name`` (see :func:`register_memo`)."""

    def wrap(fn):
        return register_memo(functools.lru_cache(maxsize=maxsize)(fn), name)

    return wrap


def memo_sizes() -> dict[str, int]:
    """Entries held by every registered process-global cache, by name."""
    return {name: reg.size() for name, reg in sorted(_memos.items())}


def clear_cache() -> None:
    """Remove every compiled kernel: the on-disk cache and the in-process
    memos. The next call of each formula compiles again."""
    for reg in _memos.values():
        if reg.clearable:
            reg.clear()
    d = cache_dir()
    if d.exists():
        shutil.rmtree(d, ignore_errors=True)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        _unlink(Path(tmp))


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
