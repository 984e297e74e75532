"""THE CUDA test matrix on a real target, compared with the CPU target.

Every case of :data:`.cuda_matrix.MATRIX` runs in each layout of
:data:`VARIANTS` (the plan a user gets; small blocks with j split in three and
the merge pass; broadcast batch dims) on a *target*:

* ``cuda``: :func:`kernelsolve.engine.backends.cuda.run` through CuPy, on a
  GPU (the check that CI, without a GPU, cannot make);
* ``emulation``: the same CUDA source on the host
  (:mod:`kernelsolve.engine.backends.emulation`), to check this harness
  itself without a GPU.

Each result is compared by :func:`.cuda_matrix.assert_same` (identical
indices, same NaN / inf pattern, values within the dtype's tolerance) with
the compiled CPU target, or with the NumPy reference engine when no C++
compiler can be run (the JSON says which).

Run from the repository root (no pytest needed, so that it also runs where
only the package's own dependencies are installed)::

    python -m tests.engine.cuda_agreement --json matrix.json     # on a GPU
    python -m tests.engine.cuda_agreement --target emulation --limit 3

The exit status is 0 when every comparison agrees, 1 otherwise. The JSON
(rewritten after every comparison, so that a run cut short still leaves its
results) holds the target, the device, the oracle, one record per
comparison and the counts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from kernelsolve.engine import ir
from kernelsolve.engine.backends import cpu

from .cuda_matrix import MATRIX, Case, Problem, Shapes, assert_same


@dataclass(frozen=True)
class Variant:
    """A layout: output rows, reduced columns, batch shapes (i-, j-side and
    parameters, for a reduction over j), and the launch (None: the plan a
    user gets from ``plan_launch``)."""

    name: str
    rows: int
    cols: int
    batch: dict = field(default_factory=dict)
    block: int | None = None
    nsplit: int | None = None


VARIANTS = (
    Variant("plan", 37, 45),  # default plan: one block, ragged rows and j-tile
    Variant("split", 37, 45, block=16, nsplit=3),  # ragged tiles, j split, merge pass
    Variant("batch", 19, 23, dict(bx=(2, 1), by=(1, 3), bp=(2, 3)), block=16, nsplit=2),
)


def problem(case: Case, v: Variant, seed: int = 0) -> Problem:
    """The case's data laid out so that the kernel sees ``v.rows`` rows and
    folds ``v.cols`` columns (data axes and batch sides swap for axis 0)."""
    b = dict(v.batch)
    if case.axis == 0:
        b["bx"], b["by"] = v.batch.get("by", ()), v.batch.get("bx", ())
    M, N = (v.rows, v.cols) if case.axis == 1 else (v.cols, v.rows)
    return case.problem(Shapes(M, N, **b), seed=seed)


# ----------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------


@contextlib.contextmanager
def forced_plan(cuda_module, block: int | None, nsplit: int | None):
    """Make ``cuda.run`` launch with ``block`` threads and ``nsplit`` splits
    of j (None, None: leave its plan alone)."""
    if block is None and nsplit is None:
        yield
        return
    real = cuda_module.plan_launch

    def plan(spec, nbatch, M, N, **kw):
        return real(spec, nbatch, M, N, **{**kw, "block": block, "nsplit": nsplit})

    cuda_module.plan_launch = plan
    try:
        yield
    finally:
        cuda_module.plan_launch = real


def run_cuda(p: Problem, v: Variant) -> list[np.ndarray]:
    import cupy

    from kernelsolve.engine.backends import cuda

    leaves = [cupy.asarray(a) for a in p.leaves]
    with forced_plan(cuda, v.block, v.nsplit):
        outs = cuda.run(p.spec, leaves, p.batch, p.M, p.N, "cupy")
    return [cupy.asnumpy(o) for o in outs]  # synchronises with the kernel


def run_emulation(p: Problem, v: Variant) -> list[np.ndarray]:
    return p.emulate(block=v.block, nsplit=v.nsplit)


TARGETS = {"cuda": run_cuda, "emulation": run_emulation}


def target_problem(target: str) -> str | None:
    """Why ``target`` cannot run here at all (then no case is tried), or None."""
    if target != "cuda":
        return None
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return None
        return "the CUDA target cannot run: CuPy sees no CUDA device"
    except Exception as exc:  # ImportError, CUDARuntimeError without a driver
        return f"the CUDA target cannot run: {type(exc).__name__}: {exc}"


def host_compiler_works() -> bool:
    return cpu.find_compiler() is not None and cpu.compiler_problem() is None


def oracle(p: Problem) -> list[np.ndarray]:
    """The compiled CPU target's answer (the reference engine's without a compiler)."""
    if host_compiler_works():
        is_j = [c == ir.J for c in p.spec.var_cats]
        call = cpu.HostCall(p.spec, [a.shape for a in p.leaves], is_j, p.batch, p.M, p.N)
        return call(p.leaves, 1)
    return p.reference()


# ----------------------------------------------------------------------------
# Comparisons
# ----------------------------------------------------------------------------


@dataclass
class Result:
    case: str
    variant: str
    ok: bool
    seconds: float
    error: str | None = None


def compare(case: Case, v: Variant, target: str) -> Result:
    """Run ``case`` in layout ``v`` on ``target`` and on the oracle; never raises."""
    t0 = time.perf_counter()
    try:
        p = problem(case, v)
        got = TARGETS[target](p, v)
        assert_same(got, oracle(p), p.spec, f"{case.id} [{v.name}]")
    except Exception as exc:  # AssertionError, compile errors, CUDA errors: all reported
        text = f"{type(exc).__name__}: {exc}".strip()
        return Result(case.id, v.name, False, time.perf_counter() - t0, text[:2000])
    return Result(case.id, v.name, True, time.perf_counter() - t0)


def prebuild(cases: list[Case]) -> None:
    """Compile the CPU kernels of ``cases`` in parallel (one compiler per core)."""
    if not host_compiler_works():
        return
    specs = {c.id: problem(c, VARIANTS[0]).spec for c in cases}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda s: _quietly(cpu.kernel, s), specs.values()))


def _quietly(fn, *args):
    try:
        fn(*args)
    except Exception:  # a case that does not compile is reported by compare()
        pass


def device_name(target: str) -> str:
    if target != "cuda":
        return f"host emulation of the CUDA source ({cpu.cpu_model()})"
    try:
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception as exc:
        return f"unknown ({type(exc).__name__}: {exc})"


def summary(target: str, results: list[Result], done: bool) -> dict:
    return {
        "target": target,
        "device": device_name(target),
        "oracle": "CPU target" if host_compiler_works() else "NumPy reference engine",
        "finished": done,
        "total": len(results),
        "passed": sum(r.ok for r in results),
        "failed": sum(not r.ok for r in results),
        "results": [asdict(r) for r in results],
    }


def write_json(path: str | None, data: dict) -> None:
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=sorted(TARGETS), default="cuda")
    ap.add_argument("--json", metavar="PATH", help="results (rewritten after each comparison)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N cases")
    ap.add_argument("--variants", default=",".join(v.name for v in VARIANTS))
    args = ap.parse_args(argv)
    names = args.variants.split(",")
    variants = [v for v in VARIANTS if v.name in names]
    if len(variants) != len(names):
        ap.error(f"--variants: expected names among {[v.name for v in VARIANTS]}")
    cases = MATRIX[: args.limit] if args.limit else MATRIX
    problem = target_problem(args.target)
    if problem:
        write_json(args.json, {**summary(args.target, [], done=False), "error": problem})
        print(f"matrix not run: {problem}")
        return 1
    prebuild(cases)
    results: list[Result] = []
    for c in cases:
        for v in variants:
            r = compare(c, v, args.target)
            results.append(r)
            print(f"{'ok  ' if r.ok else 'FAIL'} {r.case} [{r.variant}] {r.seconds:.2f} s")
            if r.error:
                print("     " + r.error.replace("\n", "\n     "))
            write_json(args.json, summary(args.target, results, done=False))
    data = summary(args.target, results, done=True)
    write_json(args.json, data)
    print(
        f"matrix on {data['device']} ({args.target}) vs {data['oracle']}: "
        f"{data['passed']} of {data['total']} comparisons agree, {data['failed']} differ"
    )
    return 0 if data["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
