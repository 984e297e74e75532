"""CPU template: OpenMP over output rows, SIMD over j.

OpenMP threads take groups of output rows; a group walks j in tiles that stay
in cache (:func:`cpu_tiling`), and each row of the group runs over the tile
in blocks: the formula is evaluated for a whole block in one ``omp simd``
loop (vectorized, with the j-variables read contiguously from their
``(D, NS)`` layout). What happens to a block's values is a *strategy*, one
function each:

* :func:`_fused_sum`: a sum folds inside the SIMD loop, two rows of one batch
  entry at a time (sharing the j loads);
* :func:`_factored_sum`: a sum of ``s * v`` with ``s`` scalar and ``v`` j-only
  (``K @ b``, :func:`factor_scalar`) runs one SIMD loop for ``s`` and one for
  the products with ``v``;
* :func:`_block_reduce`: a reduction with a ``c_block`` (logsumexp) reduces
  the block with SIMD loops and merges;
* :func:`_plain_fold`: every other reduction writes the block to a buffer
  and folds it pair by pair (``c_fold``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import ir
from .dialect import CPU
from .formula import param_and_i_loads, render_formula
from .spec import KernelSpec
from .summation import preamble as sum_preamble

# exp(x) = 2^n exp(r) with a polynomial for exp(r): inline, branch-free and
# vectorizable, keeping 0 / inf / NaN exact (why not -ffast-math: it lets the
# compiler assume no inf/NaN, which logsumexp's -inf start and min's +inf
# start need). See the comments in the header.
CPU_MATH = (Path(__file__).parent / "cpu_math.h").read_text()
# The C library functions the kernels call, declared (see the header's comment).
CPU_LIBM = (Path(__file__).parent / "cpu_libm.h").read_text()

CPU_BLOCK_J = 512  # j per block: the formula of a block is evaluated in one SIMD loop
CPU_BLOCK_FLOATS = 4096  # cap on the per-thread block buffer (it lives on the stack)
# j per block of a factored sum (see :func:`factor_scalar`): its buffers hold one
# value per column and row, and longer blocks spread the horizontal reductions of
# the E accumulators over more columns (measured: 1024 and up are equally fast).
CPU_FACTORED_BLOCK_J = 1024
# Columns of v per product loop of a factored sum: two rows keep 2 x this many
# accumulators, which must stay in the 32 vector registers of AVX-512.
CPU_FACTORED_CHUNK = 12
# Rows of j-variables ((D, N) layout) start every CPU_J_ALIGN elements, so that
# with a 64-byte aligned base every vector load of a block is aligned (a load
# split over two cache lines made K @ b with 11 columns ~15% slower); the
# padding (zeros) is also what the whole-vector loops read past N.
CPU_J_ALIGN = 16
# The SIMD loops of a block run whole vectors of CPU_VECTOR_J columns (a
# multiple of every vector length: 16 floats in AVX-512), reading the padding
# columns of the last block and masking them out of sums: GCC's own epilogue
# for the leftover columns is scalar (one scalar exp per column and row),
# which made N = 100 twice as slow and cost ~10% at N = 1000. Blocks start at
# multiples of CPU_VECTOR_J, so the padding read never passes the row stride.
CPU_VECTOR_J = 16


def cpu_j_stride(n: int) -> int:
    """Elements between consecutive coordinates of a j-variable in the CPU
    layout: ``n`` rounded up to a multiple of :data:`CPU_J_ALIGN`. The kernel
    computes the same value (:func:`c_j_stride`).

    >>> cpu_j_stride(100), cpu_j_stride(112)
    (112, 112)
    """
    return -(-n // CPU_J_ALIGN) * CPU_J_ALIGN


def c_j_stride(n: str) -> str:
    """C expression of :func:`cpu_j_stride` of the int64 expression ``n``."""
    a = CPU_J_ALIGN
    return f"({n} + {a - 1}) / {a} * {a}"


def factor_scalar(formula: ir.Node) -> tuple[ir.Node, ir.Node] | None:
    """``(s, v)`` when ``formula`` is ``s * v`` with ``s`` scalar and ``v`` a
    vector (dim >= 2) that does not depend on i: the shape of ``K @ b``.

    A sum of such a formula is rendered in two SIMD loops per block: ``s`` for
    every column into a buffer, then ``sum_j s_j * v_j`` for the E columns.
    Fused in one loop, the E accumulators of two rows, the j loads and the
    registers of ``s`` (exp constants) do not fit the vector registers, and
    the loop spills; split, each loop runs at the speed of its arithmetic.

    Example
    -------
    >>> x, y, b = ir.var(0, ir.I, 3), ir.var(1, ir.J, 3), ir.var(2, ir.J, 11)
    >>> k = ir.make("exp", ir.make("neg", ir.make("sqdist", x, y)))
    >>> factor_scalar(ir.make("mul", k, b)) == (k, b)
    True
    """
    if formula.op != "mul" or formula.dim < 2:
        return None
    a, b = formula.args
    if a.dim == 1 and b.dim > 1:
        s, v = a, b
    elif b.dim == 1 and a.dim > 1:
        s, v = b, a
    else:
        return None
    if any(leaf.attrs[1] == ir.I for leaf in ir.variables(v)):
        return None
    return s, v


def cpu_block_j(spec: KernelSpec) -> int:
    """Columns per block: 512, fewer for wide formulas so that the block
    buffers (``D`` and ``E`` values per column) stay small on any thread stack;
    :data:`CPU_FACTORED_BLOCK_J` for a factored sum (one value per column)."""
    if spec.reduction.plain_sum and factor_scalar(spec.formula) is not None:
        return CPU_FACTORED_BLOCK_J
    bj = min(CPU_BLOCK_J, CPU_BLOCK_FLOATS // max(spec.D, spec.E, 1))
    if bj >= CPU_VECTOR_J:  # whole vectors (see CPU_VECTOR_J)
        return bj // CPU_VECTOR_J * CPU_VECTOR_J
    return max(1, bj)


def cpu_tiling(spec: KernelSpec) -> tuple[int, int]:
    """(rows per group, j columns per tile) of the CPU kernel.

    A group of rows walks j tile by tile, so that a tile of j-variables
    (about 512 KB) stays in the L2 cache while every row of the group reads
    it; per-row accumulators of a group stay small on the stack.
    """
    entries = sum(f.size for f in spec.fields())
    rows = max(1, min(32, 4096 // max(1, entries)))
    bytes_per_col = max(1, spec.j_dims) * spec.itemsize
    bj = cpu_block_j(spec)
    tile = max(bj, (512 * 1024 // bytes_per_col) // bj * bj)
    return rows, tile


def cpu_full_vectors(spec: KernelSpec) -> bool:
    """Whether the SIMD loops of a block run whole vectors (see
    :data:`CPU_VECTOR_J`): blocks of a multiple of CPU_VECTOR_J columns, i.e.
    every formula of inner dimension up to 256."""
    return cpu_block_j(spec) % CPU_VECTOR_J == 0


def _indent(n: int, lines: list[str]) -> list[str]:
    return [" " * n + line for line in lines]


def _simd_loop(
    pragma: str, body: Callable[[str | None], list[str]], full: bool, bj: int
) -> list[str]:
    """The SIMD loop over the columns of a block. With ``full`` it runs whole
    vectors (see :data:`CPU_VECTOR_J`): a block of ``bj`` columns as one loop
    of constant length, a shorter (last) block over ``nv`` columns, where
    ``body(mask)`` gets the name of an int32 mask, all ones on the columns
    ``j < j1`` and 0 on the padding columns (sums must add nothing there; see
    ``ks_keep``). The mask comes from a 32-bit lane counter: a 64-bit one costs
    GCC two index vectors and a permute per iteration. Without ``full`` the
    loop stops at ``j1``."""
    if not full:
        return [pragma, "for (int64_t j = j0; j < j1; j++) {", *_indent(2, body(None)), "}"]
    plain, masked = body(None), body("km")
    if plain == masked:  # nothing to mask: one loop for every block
        return [
            pragma,
            "for (int32_t jj = 0; jj < nv; jj++) {",
            "  const int64_t j = j0 + jj;",
            *_indent(2, plain),
            "}",
        ]
    return [
        f"if (nj == {bj}) {{",
        "  " + pragma,
        f"  for (int32_t jj = 0; jj < {bj}; jj++) {{",
        "    const int64_t j = j0 + jj;",
        *_indent(4, plain),
        "  }",
        "} else {",
        "  " + pragma,
        "  for (int32_t jj = 0; jj < nv; jj++) {",
        "    const int64_t j = j0 + jj;",
        "    const int32_t km = (jj - nj) >> 31;  // all ones on the columns < j1",
        *_indent(4, masked),
        "  }",
        "}",
    ]


@dataclass
class _Row:
    """What every strategy reads: the spec, the loads of one row and of the
    j-variables, and the block geometry."""

    spec: KernelSpec
    pre_lines: list[str]  # loads of the parameters and of row i
    loaded: dict[int, list[str]]  # argument index -> coordinate names
    jvars: list[int]
    j_loads: list[str]  # loads of column j of every j-variable
    full: bool  # whole-vector SIMD loops (see CPU_VECTOR_J)
    bj: int  # columns per block
    loaded2: dict[int, list[str]] = field(default_factory=dict)  # row i + 1's coordinates

    @classmethod
    def of(cls, spec: KernelSpec) -> _Row:
        pre_lines, loaded = param_and_i_loads(spec, lambda k: f"args[{k}]")
        jvars = [k for k, c in enumerate(spec.var_cats) if c == ir.J]
        j_loads = []
        for k in jvars:
            d = spec.var_dims[k]
            j_loads += [f"const {spec.T} a{k}_{c} = q{k}[{c} * NS + j];" for c in range(d)]
            loaded[k] = [f"a{k}_{c}" for c in range(d)]
        full, bj = cpu_full_vectors(spec), cpu_block_j(spec)
        return cls(spec, pre_lines, loaded, jvars, j_loads, full, bj)

    def render(self, roots: list[ir.Node], second_row: bool = False, prefix: str = "v"):
        """Statements and coordinates of ``roots`` on row i (or on row i + 1,
        sharing the j-loads: see :meth:`second_row_loads`)."""
        loaded = self.loaded2 if second_row else self.loaded
        return render_formula(roots, self.spec.T, CPU, lambda n: loaded[n.attrs[0]], prefix)

    def second_row_loads(self) -> list[str]:
        """Loads of row i + 1 (names suffixed ``_2``), for the two-row strategies."""
        lines, self.loaded2 = param_and_i_loads(
            self.spec, lambda k: f"args[{k}]", row="(i + 1)", suffix="_2"
        )
        self.loaded2.update({k: self.loaded[k] for k in self.jvars})
        return lines

    def add(self, acc: str, e: str, mask: str | None) -> str:
        """``acc += e`` by the sum scheme's fold (:mod:`.summation`; the
        compensation of ``acc`` is ``acc`` + "c", see :meth:`open_sums`);
        masked lanes add +0, which leaves every sum unchanged (a sum that
        starts at +0 is never -0 under round to nearest)."""
        ACC = self.spec.ACC
        x = f"({e})" if mask is None else f"ks_keep(({self.spec.T})({e}), {mask})"
        return f"KS_FOLD_ADD({ACC}, {acc}, {acc}c, {x});"

    def open_sums(self, sums: list[str]) -> tuple[list[str], str]:
        """Declarations of a SIMD loop's sums (and of their compensations
        when the scheme compensates every value), and its pragma."""
        names = sums + ([f"{s}c" for s in sums] if self.spec.scheme.fold_compensated else [])
        decls = [f"{self.spec.ACC} {x} = 0;" for x in names]
        return decls, f"#pragma omp simd reduction(+:{', '.join(names)})"

    def merge(self, k: int, s: str, second: bool = False) -> list[str]:
        """A block's sum ``s`` (see :meth:`open_sums`) into coordinate ``k``
        of the accumulator of row i (or i + 1), by the scheme's merge."""
        name = self.spec.fields()[0].name
        names = self.spec.names("rr + 1" if second else "rr")
        acc, comp, ACC = names[name], names[f"{name}_c"], self.spec.ACC
        lines = [f"KS_MERGE_ADD({ACC}, {acc}[{k}], {comp}[{k}], {s});"]
        if self.spec.scheme.fold_compensated:
            lines.append(f"{comp}[{k}] += {s}c;")
        return lines


@dataclass
class _Body:
    """A strategy's code for one block: ``single`` for one row, ``dual`` for
    rows i and i + 1 (after ``dual_pre``, the loads of row i + 1), and the
    per-thread ``scratch`` buffers they use."""

    single: list[str]
    dual_pre: list[str] = field(default_factory=list)
    dual: list[str] = field(default_factory=list)
    scratch: list[str] = field(default_factory=list)


def _fused_sum(row: _Row) -> _Body:
    """A sum folded inside the SIMD loop; the two-row variant renders the
    formula a second time on the next row's loads and shares the j loads."""
    spec = row.spec
    stmts, (fexpr,) = row.render([spec.formula])
    sums = [f"s{k}" for k in range(spec.D)]
    single, pragma = row.open_sums(sums)
    single += _simd_loop(
        pragma,
        lambda mask: row.j_loads + stmts + [row.add(s, e, mask) for s, e in zip(sums, fexpr)],
        row.full,
        row.bj,
    )
    single += [line for k, s in enumerate(sums) for line in row.merge(k, s)]
    dual_pre = row.second_row_loads()
    stmts2, (fexpr2,) = row.render([spec.formula], second_row=True, prefix="w")
    sums2 = [f"u{k}" for k in range(spec.D)]
    dual, pragma = row.open_sums(sums + sums2)
    dual += _simd_loop(
        pragma,
        lambda mask: (
            row.j_loads
            + stmts
            + stmts2
            + [row.add(s, e, mask) for s, e in zip(sums, fexpr)]
            + [row.add(s, e, mask) for s, e in zip(sums2, fexpr2)]
        ),
        row.full,
        row.bj,
    )
    dual += [line for k, s in enumerate(sums) for line in row.merge(k, s)]
    dual += [line for k, s in enumerate(sums2) for line in row.merge(k, s, second=True)]
    return _Body(single, dual_pre, dual)


def _factored_sum(row: _Row, scal: ir.Node, vec: ir.Node) -> _Body:
    """``K @ b``: ``s`` (the kernel value) of one or two rows for the whole
    block into ``kbuf`` / ``kbuf2``, then the E products with the j-only
    vector ``v``, each load of ``v`` shared by the two rows."""
    spec, T = row.spec, row.spec.T
    dual_pre = row.second_row_loads()
    s_stmts, (s_expr,) = row.render([scal])
    s2_stmts, (s2_expr,) = row.render([scal], second_row=True, prefix="w")
    v_stmts, (v_expr,) = row.render([vec], prefix="z")
    sums, sums2 = [f"s{k}" for k in range(spec.D)], [f"u{k}" for k in range(spec.D)]

    def scalar_loop(two: bool) -> list[str]:
        # j-loads the scalar or the vector do not use are dead code to GCC;
        # padding columns store 0, so that the products need no mask when v is
        # a j-variable (whose padding is 0 too)
        def body(mask):
            def kval(e):
                return e if mask is None else f"ks_keep({e}, {mask})"

            out = row.j_loads + s_stmts + (s2_stmts if two else [])
            out.append(f"kbuf[j - j0] = {kval(s_expr[0])};")
            return out + ([f"kbuf2[j - j0] = {kval(s2_expr[0])};"] if two else [])

        return _simd_loop("#pragma omp simd", body, row.full, row.bj)

    def product_loops(two: bool) -> list[str]:
        # the columns in chunks, so that the accumulators of a loop stay in
        # vector registers (v is recomputed per chunk: it is j-only)
        out = []
        for c0 in range(0, spec.D, CPU_FACTORED_CHUNK):
            cols = range(c0, min(spec.D, c0 + CPU_FACTORED_CHUNK))
            names = [sums[k] for k in cols] + ([sums2[k] for k in cols] if two else [])

            def body(mask, cols=cols):
                # (block-sparse: the columns past a j-range are real data, maybe inf)
                if vec.op == "var" and vec.attrs[1] == ir.J and not spec.ranges:
                    mask = None  # 0 * 0 on the padding (a j-variable's is 0): adds 0
                lines = [f"const {T} k1 = kbuf[j - j0];"]
                lines += [f"const {T} k2 = kbuf2[j - j0];"] if two else []
                lines += row.j_loads + v_stmts
                lines += [row.add(sums[k], f"k1 * {v_expr[k]}", mask) for k in cols]
                if two:
                    lines += [row.add(sums2[k], f"k2 * {v_expr[k]}", mask) for k in cols]
                return lines

            decls, pragma = row.open_sums(names)
            out += decls + _simd_loop(pragma, body, row.full, row.bj)
            out += [line for k in cols for line in row.merge(k, sums[k])]
            if two:
                out += [line for k in cols for line in row.merge(k, sums2[k], second=True)]
        return out

    single = scalar_loop(False) + product_loops(False)
    dual = scalar_loop(True) + product_loops(True)
    return _Body(single, dual_pre, dual, [f"{T} kbuf[{row.bj}], kbuf2[{row.bj}];"])


def _buffered_block(row: _Row) -> _Body:
    """The SIMD loop that writes the block's values to ``buf`` (and the
    weights to ``wbuf``): the first half of the block and fold strategies.
    Padding columns fill the buffer past ``j1 - j0``, which is never read."""
    spec, D, E = row.spec, row.spec.D, row.spec.E
    stmts, results = row.render(spec.roots)
    fexpr = results[0]
    wexpr = results[1] if spec.weight is not None else []
    single = _simd_loop(
        "#pragma omp simd",
        lambda mask: (
            row.j_loads
            + stmts
            + [f"buf[(j - j0) * {D} + {k}] = {e};" for k, e in enumerate(fexpr)]
            + [f"wbuf[(j - j0) * {E} + {k}] = {e};" for k, e in enumerate(wexpr)]
        ),
        row.full,
        row.bj,
    )
    scratch = [f"{spec.T} buf[{row.bj} * {D}];"]
    if E:
        scratch.append(f"{spec.T} wbuf[{row.bj} * {E}];")
    return _Body(single, scratch=scratch)


def _block_reduce(row: _Row) -> _Body:
    """The block's values reduced by the reduction's ``c_block`` (SIMD loops
    into the ``_b`` accumulator), then merged into the row's."""
    spec = row.spec
    body = _buffered_block(row)
    block = spec.snippet("block", buf="buf", n="(j1 - j0)", exp=CPU.exp)
    body.single += block.splitlines() + spec.snippet("merge", row="rr").splitlines()
    body.scratch = spec.declare_acc(suffix="_b") + body.scratch
    return body


def _plain_fold(row: _Row) -> _Body:
    """The block's values folded pair by pair with the reduction's ``c_fold``
    (under ``block_sum``, a reduction that sums folds the block into the
    ``_b`` accumulator, merged into the row's after the block)."""
    spec, T = row.spec, row.spec.T
    body = _buffered_block(row)
    apart = spec.scheme.tile_sums and bool(spec.reduction.sums)
    if apart:
        body.scratch = spec.declare_acc(suffix="_b") + body.scratch
        body.single += spec.snippet("init", into="_b").splitlines()
        fold = spec.snippet("fold", into="_b", val="val", w="w", j="j")
    else:
        fold = spec.snippet("fold", row="rr", val="val", w="w", j="j")
    body.single.append("for (int64_t j = j0; j < j1; j++) {")
    body.single.append(f"  const {T}* val = buf + (j - j0) * {spec.D};")
    if spec.E:
        body.single.append(f"  const {T}* w = wbuf + (j - j0) * {spec.E};")
    body.single += ["  " + line for line in fold.splitlines()] + ["}"]
    if apart:
        body.single += spec.snippet("merge", row="rr").splitlines()
    return body


def _strategy(row: _Row) -> _Body:
    spec = row.spec
    if spec.reduction.plain_sum:
        factored = factor_scalar(spec.formula)
        return _fused_sum(row) if factored is None else _factored_sum(row, *factored)
    if spec.reduction.c_block:
        return _block_reduce(row)
    return _plain_fold(row)


def _j_loops(spec: KernelSpec, rows: int, tile: int):
    """(extra entry parameters, the row-group count, (the group's head, the
    opening of its j-tile loop), the closing): every j in tiles (dense), or
    the tiles of the group's j-ranges (block-sparse, see :func:`render_cpu`)."""
    if not spec.ranges:
        groups = [
            f"  const int64_t NS = {c_j_stride('N')};",
            f"  const int64_t ngroups = (R + {rows - 1}) / {rows};",
        ]
        head = [f"const int64_t r0 = g * {rows}, r1 = r0 + {rows} < R ? r0 + {rows} : R;"]
        tiles = [
            f"for (int64_t t0 = 0; t0 < N; t0 += {tile}) {{",
            f"  const int64_t t1 = t0 + {tile} < N ? t0 + {tile} : N;",
        ]
        return "", groups, (head, tiles), ["}"]
    sig = ", const int64_t* ks_groups, int64_t ks_ngroups, const int64_t* ks_red"
    groups = [
        f"  const int64_t NS = {c_j_stride('N')} + {CPU_VECTOR_J};",
        "  const int64_t ngroups = ks_ngroups;",
    ]
    # ks_ names: the strategies and reductions declare s0, s, ... of their own
    head = [
        "const int64_t r0 = ks_groups[4 * g], r1 = ks_groups[4 * g + 1];",
        "const int64_t ks_s0 = ks_groups[4 * g + 2], ks_s1 = ks_groups[4 * g + 3];",
    ]
    tiles = [
        "for (int64_t ks_s = ks_s0; ks_s < ks_s1; ks_s++) {",
        "const int64_t ks_ja = ks_red[2 * ks_s], ks_jb = ks_red[2 * ks_s + 1];",
        f"for (int64_t t0 = ks_ja; t0 < ks_jb; t0 += {tile}) {{",
        f"  const int64_t t1 = t0 + {tile} < ks_jb ? t0 + {tile} : ks_jb;",
    ]
    return sig, groups, (head, tiles), ["}", "}"]


def render_cpu(spec: KernelSpec, entry: str = "ks_kernel") -> str:
    """C++ source of the CPU kernel (see the module docstring).

    Entry point::

        int entry(int64_t nbatch, int64_t M, int64_t N, const T** args,
                  const int64_t* boff, void** outs, int nthreads)

    and for a block-sparse spec (``spec.ranges``) three more arguments,
    ``const int64_t* ks_groups, int64_t ks_ngroups, const int64_t* ks_red``:
    the groups of :meth:`~kernelsolve.engine.ranges.plan.BlockPlan.groups`
    (made with the rows per group of :func:`cpu_tiling`) and the j-ranges.
    Each group folds only its j-ranges, tile by tile; j-variables then have
    :func:`cpu_j_stride` + :data:`CPU_VECTOR_J` columns, so that the whole
    vectors of a range that ends at N stay inside the array.
    """
    row = _Row.of(spec)
    body = _strategy(row)
    j_bases = [f"const {spec.T}* q{k} = args[{k}] + boff[{k} * nbatch + b];" for k in row.jvars]
    rows, tile = cpu_tiling(spec)
    bj = row.bj
    counts = []  # columns of a block (nj) and of its whole vectors (nv)
    if row.full:
        v = CPU_VECTOR_J
        counts = [
            "const int32_t nj = (int32_t)(j1 - j0);",
            f"const int32_t nv = (nj + {v - 1}) / {v} * {v};",
        ]
    dual = []
    if body.dual:  # rows i and i + 1 of one batch entry, then skip to i + 2
        dual = [
            "if (r + 1 < r1 && i + 1 < M) {",
            *_indent(2, row.pre_lines + body.dual_pre + j_bases),
            f"  for (int64_t j0 = t0; j0 < t1; j0 += {bj}) {{",
            f"    const int64_t j1 = j0 + {bj} < t1 ? j0 + {bj} : t1;",
            *_indent(4, counts),
            *_indent(4, body.dual),
            "  }",
            "  r++;",
            "  continue;",
            "}",
        ]
    outs = {f"out{k}": f"out{k}" for k in range(2)}
    sig, groups, j_open, j_close = _j_loops(spec, rows, tile)
    src = [
        "#include <stdint.h>",
        CPU_LIBM,
        CPU_MATH,
        sum_preamble(spec.sum_scheme),
        spec.reduction.c_preamble,
        f"{CPU.kernel_prefix} int {entry}(int64_t nbatch, int64_t M, int64_t N,",
        f"    const {spec.T}** args, const int64_t* boff, void** outs, int nthreads{sig}) {{",
        "  const int64_t R = nbatch * M;",
        *groups,
        "  #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)",
        "  for (int64_t g = 0; g < ngroups; g++) {",
        "    const ks_flush_guard flush_subnormals;",
        *_indent(4, j_open[0]),
        *spec.declare_acc("    ", rows=rows),
        *_indent(4, body.scratch),
        "    for (int64_t r = r0; r < r1; r++) {",
        "      const int64_t rr = r - r0;",
        *_indent(6, spec.snippet("init", row="rr").splitlines()),
        "    }",
        *_indent(4, j_open[1]),
        "      for (int64_t r = r0; r < r1; r++) {",
        "        const int64_t rr = r - r0;",
        "        const int64_t b = r / M, i = r - b * M;",
        *_indent(8, dual),
        *_indent(8, row.pre_lines + j_bases),
        f"        for (int64_t j0 = t0; j0 < t1; j0 += {bj}) {{",
        f"          const int64_t j1 = j0 + {bj} < t1 ? j0 + {bj} : t1;",
        *_indent(10, counts),
        *_indent(10, body.single),
        "        }",
        "      }",
        *_indent(4, j_close),
        "    for (int64_t r = r0; r < r1; r++) {",
        "      const int64_t rr = r - r0;",
        *_indent(6, spec.out_decls("r")),
        *_indent(6, spec.snippet("finalize", row="rr", **outs).splitlines()),
        "    }",
        "  }",
        "  return 0;",
        "}",
        "",
    ]
    return "\n".join(src)
