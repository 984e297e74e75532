"""GPU template: one thread per output row, j-tiles staged in shared memory,
an optional split of j over the grid's second dimension merged by a second
kernel. Every word that is CUDA's comes from the :class:`.dialect.GPUDialect`
(:data:`.dialect.CUDA`), so another GPU dialect reuses this template.
"""

from __future__ import annotations

from .. import ir
from ..arrays import HALF_DTYPES
from ..reductions import INDEX
from .dialect import CUDA, GPUDialect
from .formula import param_and_i_loads, render_formula
from .spec import KernelSpec
from .summation import preamble as sum_preamble


def cuda_param_list(spec: KernelSpec) -> list[tuple[str, str]]:
    """(C type, name) of every parameter of ``ks_main``, in order; the
    launcher (CuPy or the emulation harness) passes them in this order."""
    params = [("int64_t", "nbatch"), ("int64_t", "M"), ("int64_t", "N")]
    params += [(f"const {spec.S}*", f"arg{k}") for k in range(len(spec.var_cats))]
    params += [("const int64_t*", "boff")]
    params += [("void*", f"outp{k}") for k in range(len(spec.outputs()))]
    params += [(f"{spec.ACC}*", "part_v"), ("int64_t*", "part_i")]
    params += [("int64_t", "chunk"), ("int64_t", "blocks_per_batch")]
    if spec.ranges:  # block-sparse: one group of rows per block, and the j-ranges
        params += [("const int64_t*", "ks_groups"), ("const int64_t*", "ks_red")]
    return params


def cuda_merge_param_list(spec: KernelSpec) -> list[tuple[str, str]]:
    """(C type, name) of every parameter of ``ks_merge``, in order."""
    params = [("int64_t", "rows")]
    params += [("void*", f"outp{k}") for k in range(len(spec.outputs()))]
    params += [(f"const {spec.ACC}*", "part_v"), ("const int64_t*", "part_i")]
    params += [("int64_t", "nsplit")]
    return params


def _field_slots(spec: KernelSpec):
    """Offsets of the value fields and index fields in the split buffers."""
    val_off, idx_off, slots = 0, 0, []
    for f in spec.fields():
        if f.kind == INDEX:
            slots.append((f, "part_i", idx_off))
            idx_off += f.size
        else:
            slots.append((f, "part_v", val_off))
            val_off += f.size
    return slots, val_off, idx_off


def cuda_shared_bytes(spec: KernelSpec, block: int) -> int:
    """Dynamic shared memory of ``ks_main`` for a block of ``block`` threads."""
    return block * max(spec.j_dims, 1) * spec.itemsize


def split_sizes(spec: KernelSpec) -> tuple[int, int]:
    """Entries per row of the split-j buffers (values, indices)."""
    _, nv, ni = _field_slots(spec)
    return nv, ni


def _tile_staging(spec: KernelSpec, d: GPUDialect, loaded: dict) -> tuple[list[str], list[str]]:
    """Statements that stage one column of every j-variable into shared
    memory (each thread its column ``jl``, converted to the compute type),
    and the loads of column ``jj`` of the tile, filling ``loaded``."""
    stage, j_loads, dj = [], [], spec.j_dims
    off = 0
    for k, (cat, dim) in enumerate(zip(spec.var_cats, spec.var_dims)):
        if cat != ir.J:
            continue
        stage.append(f"const {spec.S}* q{k} = arg{k} + boff[{k} * nbatch + b] + jl * {dim};")
        stage += [
            f"ysh[{d.thread_x} * {dj} + {off + c}] = {spec.load(f'q{k}[{c}]')};"
            for c in range(dim)
        ]
        j_loads += [f"const {spec.T} a{k}_{c} = ysh[jj * {dj} + {off + c}];" for c in range(dim)]
        loaded[k] = [f"a{k}_{c}" for c in range(dim)]
        off += dim
    return stage, j_loads


def _split_buffers(spec: KernelSpec, d: GPUDialect) -> tuple[list[str], list[str], list[str]]:
    """Statements that store a split's accumulator (``store``), load the first
    split's into the accumulator (``load_a``) and split ``ks_s``'s into the
    ``_b`` accumulator (``load_b``)."""
    slots, nv, ni = _field_slots(spec)
    store, load_a, load_b = [], [], []
    for f, buf, off in slots:
        n = nv if buf == "part_v" else ni
        loop = f"for (int t = 0; t < {f.size}; t++) "
        store.append(
            f"{loop}{buf}[(r * {d.grid_dim_y} + {d.block_y}) * {n} + {off} + t] = {f.name}[t];"
        )
        load_a.append(f"{loop}{f.name}[t] = {buf}[r * nsplit * {n} + {off} + t];")
        load_b.append(f"{loop}{f.name}_b[t] = {buf}[(r * nsplit + ks_s) * {n} + {off} + t];")
    return store, load_a, load_b


def _rows_and_j(spec: KernelSpec, d: GPUDialect) -> tuple[list[str], list[str], list[str]]:
    """The block's rows (``b``, ``i``, ``active``) and the j-ranges it folds:
    dense, rows ``i`` of batch entry ``b`` and the columns of the split; block-
    sparse, the group ``ks_groups[block]`` (the block's index) = (r0, r1, s0, s1) of rows and
    its j-ranges ``ks_red[s0:s1]`` (no batch, no split of j)."""
    if not spec.ranges:
        bdim = d.block_dim_x
        head = [
            f"  const int64_t b = {d.block_x} / blocks_per_batch;",
            f"  const int64_t i = ({d.block_x} % blocks_per_batch) * (int64_t){bdim}"
            f" + {d.thread_x};",
            "  const bool active = i < M;",
        ]
        split = [
            f"  const int64_t js = (int64_t){d.block_y} * chunk;",
            "  const int64_t je = js + chunk < N ? js + chunk : N;",
        ]
        return head + split, [], []
    head = [
        f"  const int64_t* grp = ks_groups + 4 * (int64_t){d.block_x};",
        "  const int64_t b = 0;",
        f"  const int64_t i = grp[0] + {d.thread_x};",
        "  const bool active = i < grp[1];",
    ]
    j_open = [
        # ks_rs: reductions name accumulator fields s, m, ...
        "  for (int64_t ks_rs = grp[2]; ks_rs < grp[3]; ks_rs++) {",
        "  const int64_t js = ks_red[2 * ks_rs], je = ks_red[2 * ks_rs + 1];",
    ]
    return head, j_open, ["  }"]


def _main_kernel(
    spec: KernelSpec, d: GPUDialect, out_decls: list[str], finalize: str
) -> list[str]:
    T = spec.T
    pre_lines, loaded = param_and_i_loads(spec, lambda k: f"arg{k}", row="ii")
    stage, j_loads = _tile_staging(spec, d, loaded)
    stmts, results = render_formula(spec.roots, T, d, lambda n: loaded[n.attrs[0]])
    # block_sum: a tile's values are summed apart (the _b accumulator), then
    # merged into the row's sums (see summation.py)
    tiles = spec.scheme.tile_sums and bool(spec.reduction.sums)
    into = "_b" if tiles else ""
    fold = spec.snippet("fold", into=into, val="val", w="w", j="j")
    tile_init = spec.snippet("init", into="_b").splitlines() if tiles else []
    tile_merge = spec.snippet("merge").splitlines() if tiles else []
    val_decl = [f"const {T} val[{spec.D}] = {{{', '.join(results[0])}}};"]
    if spec.E:
        val_decl.append(f"const {T} w[{spec.E}] = {{{', '.join(results[1])}}};")
    store, _, _ = _split_buffers(spec, d)
    params = ", ".join(f"{t} {n}" for t, n in cuda_param_list(spec))
    bdim, ind = d.block_dim_x, "        "
    head, j_open, j_close = _rows_and_j(spec, d)
    return [
        f"{d.kernel_prefix} void ks_main({params}) {{",
        f"  KS_DYNAMIC_SHARED({T}, ysh);",
        *head,
        "  const int64_t ii = active ? i : 0;  // inactive threads still stage tiles",
        *["  " + s for s in pre_lines],
        *spec.declare_acc("  "),
        *(spec.declare_acc("  ", suffix="_b") if tiles else []),
        *["  " + line for line in spec.snippet("init").splitlines()],
        *j_open,
        f"  for (int64_t jt = js; jt < je; jt += {bdim}) {{",
        f"    const int64_t jl = jt + {d.thread_x};",
        "    if (jl < je) {",
        *["      " + s for s in stage],
        "    }",
        f"    {d.barrier}",
        "    if (active) {",
        f"      const int64_t jn = je - jt < (int64_t){bdim} ? je - jt : (int64_t){bdim};",
        *["      " + line for line in tile_init],
        "      for (int64_t jj = 0; jj < jn; jj++) {",
        "        const int64_t j = jt + jj;",
        *[ind + s for s in j_loads + stmts + val_decl],
        *[ind + line for line in fold.splitlines()],
        "      }",
        *["      " + line for line in tile_merge],
        "    }",
        f"    {d.barrier}",
        "  }",
        *j_close,
        "  if (!active) return;",
        "  const int64_t r = b * M + i;",
        f"  if ({d.grid_dim_y} == 1) {{",
        *["    " + s for s in out_decls],
        *["    " + line for line in finalize.splitlines()],
        "  } else {",
        *["    " + s for s in store],
        "  }",
        "}",
        "",
    ]


def _merge_kernel(spec: KernelSpec, d: GPUDialect, out_decls: list[str], finalize: str):
    _, load_a, load_b = _split_buffers(spec, d)
    params = ", ".join(f"{t} {n}" for t, n in cuda_merge_param_list(spec))
    return [
        f"{d.kernel_prefix} void ks_merge({params}) {{",
        f"  const int64_t r = (int64_t){d.block_x} * {d.block_dim_x} + {d.thread_x};",
        "  if (r >= rows) return;",
        *spec.declare_acc("  "),
        *["  " + s for s in spec.declare_acc(suffix="_b")],
        *["  " + s for s in load_a],
        "  for (int64_t ks_s = 1; ks_s < nsplit; ks_s++) {",
        *["    " + s for s in load_b],
        *["    " + line for line in spec.snippet("merge").splitlines()],
        "  }",
        *["  " + s for s in out_decls],
        *["  " + line for line in finalize.splitlines()],
        "}",
        "",
    ]


def render_cuda(spec: KernelSpec, dialect: GPUDialect = CUDA) -> str:
    """GPU source with two kernels, ``ks_main`` and ``ks_merge``.

    ``ks_main`` runs one thread per output row (b, i); blocks never span two
    batch entries (``blocks_per_batch`` blocks per entry along the grid's
    first dimension). Each block walks the j range of its split (the grid's
    second dimension, splits of ``chunk`` columns) in tiles of one column
    per thread: every thread stages one column's j-variables into shared
    memory (float16 / bfloat16 converted to float on the way: they are
    computed and accumulated in float, and the value outputs are written
    back in the input's dtype, rounded to nearest even), a barrier, then
    every thread folds the tile, a barrier. With one split the row is
    finalized in place; with several, each split stores its accumulator in
    ``part_v``/``part_i`` and ``ks_merge`` merges them in order.
    """
    outs = {f"out{k}": f"out{k}" for k in range(2)}
    finalize = spec.snippet("finalize", **outs)
    out_decls = [s.replace("outs[", "outp").replace("]) +", ") +") for s in spec.out_decls("r")]
    src = [
        dialect.preamble,
        dialect.half_preamble if spec.dtype in HALF_DTYPES else "",
        sum_preamble(spec.sum_scheme),
        spec.reduction.c_preamble,
        *_main_kernel(spec, dialect, out_decls, finalize),
        *_merge_kernel(spec, dialect, out_decls, finalize),
    ]
    return "\n".join(src)
