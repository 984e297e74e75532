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

The cache holds shared libraries that are loaded and run, so nobody else may
be able to write into it (as ssh and pip refuse such files). The cache root
and its ``<key[:2]>`` subdirectories are created with mode 0700 and every
entry with mode 0700 / 0600. Before anything is written into the cache or
loaded from it, the root, the subdirectory and the entry itself must be owned
by the current user and not be writable by its group or by others; otherwise
:class:`UnsafeCacheError` names the path and the fix. There is no fallback
to another directory (a user-chosen ``KERNELSOLVE_CACHE_DIR`` included):
code is only ever loaded from where the user said, or not at all.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import stat
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

    Raises
    ------
    UnsafeCacheError
        The cache directory, the entry's subdirectory or the entry is owned by
        another user or writable by others: nothing is written or loaded.
    """
    path = entry_path(key, suffix)
    _private_dirs(path.parent.parent, path.parent)
    if path.exists():
        try:
            return _load_checked(path, load)
        except (OSError, ValueError):
            # Corrupt or truncated entry: rebuild it instead of failing.
            _unlink(path)
    src_path = path.with_suffix(".cpp")
    _atomic_write_text(src_path, source)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=suffix)
    os.close(fd)
    try:
        build(src_path, Path(tmp))
        # the linker may recreate its output with the umask's group bits
        os.chmod(tmp, 0o700)
        os.replace(tmp, path)
    finally:
        _unlink(Path(tmp))
    return _load_checked(path, load)


# ----------------------------------------------------------------------------
# Nobody else may write into the cache
# ----------------------------------------------------------------------------


class UnsafeCacheError(RuntimeError):
    """The kernel cache, or an entry of it, could have been written by another
    user: nothing is loaded from it (nor written into it)."""


def _problem(path: Path, what: str) -> str | None:
    """Why ``path`` must not be trusted, or None. ``os.stat`` follows links:
    what counts is the file or directory that would be opened."""
    st = os.stat(path)
    me = os.geteuid()
    if st.st_uid != me:
        return f"the {what} {path} is owned by uid {st.st_uid}, not by you (uid {me})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(st.st_mode)
        return f"the {what} {path} is writable by its group or by others (mode {mode:04o})"
    return None


def _unsafe(problem: str, root: Path, inside: bool) -> UnsafeCacheError:
    if inside:
        fix = (
            f"its contents cannot be trusted: remove the cache (rm -rf {root}, or "
            "kernelsolve.clear_cache()); it is rebuilt with safe permissions"
        )
    else:
        fix = (
            f"chmod 700 {root} (if you trust its contents; else remove it), or set "
            f"{ENV_VAR} to a directory that only you can write"
        )
    return UnsafeCacheError(
        f"kernelsolve refuses to use its kernel cache: {problem}. Compiled kernels are "
        f"loaded and run from there, so nobody else may write into it. Fix: {fix}."
    )


def _check_root(root: Path) -> None:
    problem = _problem(root, "kernel cache directory")
    if problem:
        raise _unsafe(problem, root, inside=False)


def _private_dirs(root: Path, sub: Path) -> None:
    """Create the cache root and the entry's subdirectory with mode 0700 if
    they are missing; raise UnsafeCacheError unless both are safe."""
    if not root.is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        root.mkdir(mode=0o700, exist_ok=True)
    _check_root(root)
    sub.mkdir(mode=0o700, exist_ok=True)
    problem = _problem(sub, "kernel cache subdirectory")
    if problem:
        raise _unsafe(problem, root, inside=True)


def _load_checked(path: Path, load: Callable[[Path], object]):
    """``load(path)`` after checking the cache root, the subdirectory and the entry."""
    root = path.parent.parent
    _check_root(root)
    for what, p in (("kernel cache subdirectory", path.parent), ("cached kernel", path)):
        problem = _problem(p, what)
        if problem:
            raise _unsafe(problem, root, inside=True)
    return load(path)


def safety_problem(root: Path | None = None) -> str | None:
    """Why the kernel cache at ``root`` (default :func:`cache_dir`) would be
    refused, or None when it is safe or does not exist yet (it is then created
    with mode 0700). Checks the root, its subdirectories and their entries."""
    root = cache_dir() if root is None else Path(root)
    if not root.exists():
        return None
    problem = _problem(root, "kernel cache directory")
    if problem:
        return problem
    checks = []
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and not sub.name.startswith("."):
            checks.append(("kernel cache subdirectory", sub))
            checks += [("cached kernel", entry) for entry in sorted(sub.iterdir())]
    for what, path in checks:
        try:
            problem = _problem(path, what)
        except FileNotFoundError:  # removed by another process meanwhile
            continue
        if problem:
            return problem
    return None


def disk_usage(root: Path | None = None) -> tuple[int, int]:
    """(files, bytes) under the kernel cache ``root`` (default :func:`cache_dir`)."""
    root = cache_dir() if root is None else Path(root)
    files, size = 0, 0
    for where, _, names in os.walk(root):
        for name in names:
            try:
                size += os.path.getsize(os.path.join(where, name))
                files += 1
            except OSError:  # removed by another process meanwhile
                pass
    return files, size


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
