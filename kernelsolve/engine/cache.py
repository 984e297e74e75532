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


_memos: list[dict] = []


def register_memo(memo: dict) -> dict:
    """Declare an in-process memo of loaded kernels, emptied by
    :func:`clear_cache`."""
    _memos.append(memo)
    return memo


def clear_cache() -> None:
    """Remove every compiled kernel: the on-disk cache and the in-process
    memos. The next call of each formula compiles again."""
    for memo in _memos:
        memo.clear()
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
