#!/usr/bin/env bash
# One prepared GPU check of kernelsolve, for a machine we cannot debug
# interactively. Usage (from anywhere; it runs from the repository root):
#
#   scripts/gpu_check.sh OUTDIR
#
# Runs the working tree through PYTHONPATH (no install, no download), each step
# under its own `timeout`, going on to the next step when one fails, and all
# within GPU_CHECK_BUDGET seconds (440 by default, so that with the report and
# the grace of each `timeout` it ends within 8 minutes):
#
#   0. info       python -m kernelsolve info (what the library finds there)
#   1. gpu-tests  pytest -m gpu (tests/test_gpu.py, tests/engine/test_cuda_device.py)
#                 without the matrix test, which step 2 runs
#   2. matrix     every case of tests/engine/cuda_matrix.py on the CUDA target
#                 against the CPU target (python -m tests.engine.cuda_agreement)
#   3. bench      benchmarks/bench_reductions.py --device cuda at N = M = 1e6,
#                 float32 (Gaussian K @ b, logsumexp, argKmin) against tiled torch
#   4. bench-f64  the float64 Gaussian K @ b, with what is left of the budget
#
# and writes OUTDIR/gpu_report.md (card, versions, each step's counts, the
# benchmark tables, the failures) beside the raw logs and results of each step.
# Exit status: 0 when every step passed, or when there is no GPU to check (the
# report then says SKIPPED and why); 1 when a step failed; 2 on bad usage.
#
# Environment: PYTHON (default python3); GPU_CHECK_BUDGET (seconds);
# GPU_CHECK_PRETEND_NO_GPU=1 (take the no-GPU path anyway);
# GPU_CHECK_IGNORE_PROBE=1 (run the GPU steps even when the probe finds no GPU);
# GPU_CHECK_REHEARSAL=1 (run every step with a CPU stand-in, to check this
# script on a machine without a GPU: see tests/test_gpu_check.py).

set -u -o pipefail

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd) || exit 2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || exit 2
cd "$ROOT" || exit 2

PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-440}
REHEARSAL=${GPU_CHECK_REHEARSAL:-0}
REPORT_RESERVE=25 # seconds kept for the report
START=$SECONDS

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
export PYTHONUNBUFFERED=1
# Private caches: nothing from an earlier run is trusted or reused.
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/kernelsolve-gpu-check.XXXXXX") || exit 2
trap 'rm -rf "$SCRATCH"' EXIT
export KERNELSOLVE_CACHE_DIR="$SCRATCH/kernels"
export CUPY_CACHE_DIR="$SCRATCH/cupy"

# Results of an earlier run in OUTDIR would be read as this run's.
for f in probe.json steps.tsv pytest_gpu.xml matrix.json bench.json bench.md \
    bench_f64.json bench_f64.md gpu_report.md probe.log info.log pytest_gpu.log matrix.log \
    bench.log bench_f64.log report.log; do
    rm -f "${OUT:?}/$f"
done

STEPS="$OUT/steps.tsv"
printf 'step\trc\tseconds\tlimit\tlog\n' >"$STEPS"

# run_step ID LIMIT LOG COMMAND...: COMMAND under `timeout`, its output in
# OUTDIR/LOG, a line in steps.tsv; never stops the script.
run_step() {
    local id=$1 limit=$2 log=$3
    shift 3
    local left=$((BUDGET - (SECONDS - START) - REPORT_RESERVE))
    if [ "$left" -lt 20 ]; then
        printf '%s\tnot-run\t0\t0\t\n' "$id" >>"$STEPS"
        echo "== $id: not run (no time left in the ${BUDGET} s budget)"
        return 0
    fi
    if [ "$limit" -gt "$left" ]; then
        limit=$left
    fi
    echo "== $id (limit ${limit} s): $*"
    local t0=$SECONDS rc=0
    timeout -k 5 "$limit" "$@" >"$OUT/$log" 2>&1 || rc=$?
    printf '%s\t%s\t%s\t%s\t%s\n' "$id" "$rc" "$((SECONDS - t0))" "$limit" "$log" >>"$STEPS"
    echo "   exit status $rc after $((SECONDS - t0)) s (log: $log)"
}

# write_report [--rehearsal]: OUTDIR/gpu_report.md by the Python half, or a
# minimal one from steps.tsv when Python itself cannot run.
write_report() {
    local commit
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if timeout -k 2 20 "$PY" scripts/gpu_check.py report "$OUT" --commit "$commit" "$@" \
        >"$OUT/report.log" 2>&1; then
        return 0
    fi
    if [ -s "$OUT/gpu_report.md" ] && grep -q '^Result: ' "$OUT/gpu_report.md"; then
        return 1 # the report was written and says FAIL
    fi
    {
        echo "# kernelsolve GPU check"
        echo
        echo "Result: **FAIL**: the report could not be written by $PY (see report.log)."
        echo
        echo '```'
        cat "$STEPS" "$OUT/report.log" 2>/dev/null
        echo '```'
    } >"$OUT/gpu_report.md"
    return 1
}

# ------------------------------------------------------------------ probe
PROBE_ARGS=()
if [ "${GPU_CHECK_PRETEND_NO_GPU:-0}" = 1 ]; then
    PROBE_ARGS+=(--pretend-no-gpu)
fi
probe_rc=0
timeout -k 5 60 "$PY" scripts/gpu_check.py probe --json "$OUT/probe.json" ${PROBE_ARGS[@]+"${PROBE_ARGS[@]}"} \
    >"$OUT/probe.log" 2>&1 || probe_rc=$?
cat "$OUT/probe.log"
if [ "$REHEARSAL" != 1 ] && [ "${GPU_CHECK_IGNORE_PROBE:-0}" != 1 ] && [ "$probe_rc" -ne 0 ]; then
    write_report || true
    echo "no GPU: skipped; report in $OUT/gpu_report.md"
    exit 0
fi

# ------------------------------------------------------------------ steps
if [ "$REHEARSAL" = 1 ]; then
    PYTEST_PATHS=(tests/test_gpu.py tests/engine/test_cuda_device.py)
    MATRIX_ARGS=(--target emulation --limit 2)
    BENCH_ARGS=(--device cpu --quick --dims 3 --columns 1 --no-extras --no-pykeops)
    BENCH_F32=(--only gauss --dtypes float32)
    BENCH_F64=(--only gauss --dtypes float64)
else
    PYTEST_PATHS=(tests)
    MATRIX_ARGS=(--target cuda)
    BENCH_ARGS=(--device cuda --sizes 1e6 --dims 3 --columns 1 --no-extras --no-pykeops)
    BENCH_F32=(--dtypes float32)
    BENCH_F64=(--only gauss --dtypes float64)
fi

run_step info 60 info.log "$PY" -m kernelsolve info

run_step gpu-tests 100 pytest_gpu.log \
    "$PY" -m pytest -m gpu -k "not device_matrix" -q -rfEs -p no:cacheprovider \
    --continue-on-collection-errors --junitxml "$OUT/pytest_gpu.xml" "${PYTEST_PATHS[@]}"

run_step matrix 120 matrix.log \
    "$PY" -m tests.engine.cuda_agreement "${MATRIX_ARGS[@]}" --json "$OUT/matrix.json"

run_step bench 150 bench.log \
    "$PY" benchmarks/bench_reductions.py "${BENCH_ARGS[@]}" "${BENCH_F32[@]}" \
    --json "$OUT/bench.json" --markdown "$OUT/bench.md"

run_step bench-f64 120 bench_f64.log \
    "$PY" benchmarks/bench_reductions.py "${BENCH_ARGS[@]}" "${BENCH_F64[@]}" \
    --json "$OUT/bench_f64.json" --markdown "$OUT/bench_f64.md"

# ------------------------------------------------------------------ report
REPORT_ARGS=()
if [ "$REHEARSAL" = 1 ]; then
    REPORT_ARGS+=(--rehearsal)
fi
if [ "${GPU_CHECK_IGNORE_PROBE:-0}" = 1 ]; then
    REPORT_ARGS+=(--ignore-probe)
fi
status=0
write_report ${REPORT_ARGS[@]+"${REPORT_ARGS[@]}"} || status=1
echo "report: $OUT/gpu_report.md ($((SECONDS - START)) s in all)"
exit "$status"
