"""Generate docs/API.md, the reference of kernelsolve's public API, from the docstrings.

Usage::

    python scripts/gen_api.py           # write docs/API.md
    python scripts/gen_api.py --check   # exit 1 if docs/API.md is stale

The outline (which objects, in which groups) is written here; every signature
and description comes from the code, so the reference changes with it.
``tests/test_notebooks.py`` checks that docs/API.md is current and runs its
``>>>`` examples as doctests, each with the globals of the module it
documents (the ``<!-- module: ... -->`` comments mark them).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "API.md"

# LazyTensor methods grouped as in the pykeops documentation. A method without
# a docstring gets the short description written here.
LAZYTENSOR_GROUPS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Shape and metadata",
        [
            ("shape", ""),
            ("ndim", ""),
            ("dim", ""),
            ("nbatchdims", "Number of leading batch dimensions."),
            ("dtype", ""),
            ("ni", "Number of i-points (rows), None if no i-variable."),
            ("nj", "Number of j-points (columns), None if no j-variable."),
            ("formula", "The formula: an `engine.ir.Node` (its `.key` is the canonical text)."),
            ("ranges", ""),
        ],
    ),
    (
        "Arithmetic (elementwise, broadcasting D = 1 against D)",
        [
            ("__add__", "`x + y` (also with numbers and arrays)."),
            ("__sub__", "`x - y`."),
            ("__mul__", "`x * y`."),
            ("__truediv__", "`x / y`."),
            ("__pow__", "`x ** p`: integer powers are unrolled, 0.5 is `sqrt`, -0.5 `rsqrt`."),
            ("__neg__", "`-x`."),
            ("__abs__", "`abs(x)`."),
            ("__or__", "`x | y`: scalar product over the inner dimension (dim 1)."),
            ("__eq__", "`x == y`, and `!=`, `<`, `<=`, `>`, `>=`: 1.0 where true, 0.0 elsewhere."),
            ("power", "`x ** p`."),
        ],
    ),
    (
        "Elementwise functions",
        [
            ("exp", "`exp(x)`."),
            ("log", "`log(x)`."),
            ("xlogx", ""),
            ("inv", "`1 / x`."),
            ("sqrt", "`sqrt(x)`."),
            ("rsqrt", ""),
            ("square", "`x ** 2`."),
            ("abs", "`|x|`."),
            ("sign", "-1, 0 or 1."),
            ("step", ""),
            ("relu", "`max(x, 0)`."),
            ("sin", "`sin(x)`; also `cos`, `tan`, `asin`, `acos`, `atan`."),
            ("atan2", ""),
            ("sinh", "`sinh(x)`; also `cosh`, `tanh`."),
            ("sinxdivx", ""),
            ("sinc", ""),
            ("floor", "`floor(x)`."),
            ("round", ""),
            ("clamp", ""),
            ("clampint", "Clamp to the integers `[a, b]`."),
            ("ifelse", ""),
            ("mod", ""),
        ],
    ),
    (
        "Vectors (the inner dimension D)",
        [
            ("sum", ""),
            ("sqnorm2", "`|x|^2`: dim 1."),
            ("norm2", "`|x|`: dim 1."),
            ("norm", "`|x|` (pykeops' `norm(dim=-1)`)."),
            ("normalize", ""),
            ("sqdist", ""),
            ("weightedsqnorm", ""),
            ("weightedsqdist", ""),
            ("elem", ""),
            ("extract", ""),
            ("__getitem__", ""),
            ("one_hot", ""),
            ("concat", ""),
            ("concatenate", "`LazyTensor.concatenate((a, b, ...), axis=-1)`: inner dimension."),
            ("cat", "`LazyTensor.cat((a, b, ...), dim=-1)`: the same."),
            ("matvecmult", ""),
            ("vecmatmult", ""),
            ("tensorprod", ""),
        ],
    ),
    (
        "Reductions over i (`dim=0`) or j (`dim=1`)",
        [
            ("sum", ""),
            ("min", ""),
            ("max", "Maximum over i or j (NaN propagates), or over the inner dimension."),
            ("argmin", ""),
            ("argmax", "int64 index of the maximum."),
            ("min_argmin", ""),
            ("max_argmax", "(values, int64 indices) of the maximum."),
            ("Kmin", ""),
            ("argKmin", ""),
            ("Kmin_argKmin", "(values, int64 indices) of the K smallest values."),
            ("logsumexp", ""),
            ("sumsoftmaxweight", ""),
            (
                "sum_reduction",
                "pykeops aliases: `sum_reduction`, `min_reduction`, `max_reduction`, "
                "`argmin_reduction`, `argmax_reduction`, `Kmin_reduction`, "
                "`argKmin_reduction`, `Kmin_argKmin_reduction`, `logsumexp_reduction`, "
                "`sumsoftmaxweight_reduction`, `min_argmin_reduction`, "
                "`max_argmax_reduction` (always a reduction over i or j).",
            ),
        ],
    ),
    (
        "Linear algebra",
        [
            ("__matmul__", ""),
            ("solve", ""),
            ("t", ""),
            ("T", "`K.t()`."),
            ("matvec", "`K @ v` (scipy's LinearOperator name)."),
            ("rmatvec", "`K.T @ v`."),
        ],
    ),
    ("Symbolic gradient", [("grad", "")]),
    (
        "Complex numbers (see `ComplexLazyTensor`)",
        [
            ("real2complex", ""),
            ("imag2complex", ""),
            ("exp1j", ""),
            ("real", ""),
            ("imag", ""),
            ("conj", ""),
            ("angle", ""),
        ],
    ),
]

REDUCTION_OPTIONS = """\
Every reduction accepts pykeops' keywords: `call=False` returns a `ReductionCall` (evaluate
later, or on other arrays of the same layout), `out=` an array to write into,
`backend="CPU" | "GPU" | "reference" | "auto"`, `dtype_acc="float64"` or
`use_double_acc=True` (accumulate in float64), `ranges=None` (block-sparse ranges are not
supported: anything else raises `NotImplementedError`). `enable_chunks`, `sum_scheme`,
`device_id`, `optional_flags` and `use_fast_math` are accepted and ignored (they tune speed,
not results). Any other keyword is a `TypeError`.
"""

# (module, heading, intro, objects); an object is a name, optionally "Class.method".
SECTIONS: list[tuple[str, str, bool, list[str]]] = [
    ("kernelsolve.lazytensor", "kernelsolve: LazyTensor, Vi, Vj, Pm", True, []),
    ("kernelsolve.lazytensor", "", False, ["Vi", "Vj", "Pm", "ReductionCall"]),
    (
        "kernelsolve.lazytensor.complex",
        "kernelsolve.ComplexLazyTensor",
        True,
        ["ComplexLazyTensor"],
    ),
    ("kernelsolve.config", "kernelsolve.config", True, []),
    ("kernelsolve.engine.cache", "kernelsolve.clear_cache", False, ["clear_cache"]),
    (
        "kernelsolve.linalg.solve",
        "kernelsolve.linalg.solve",
        True,
        ["solve", "SolveInfo", "NearSingularWarning"],
    ),
    (
        "kernelsolve.linalg.cg",
        "kernelsolve.linalg.cg",
        True,
        ["cg", "CGInfo", "ConvergenceWarning", "NotPositiveDefiniteError"],
    ),
    (
        "kernelsolve.linalg.precond",
        "kernelsolve.linalg.precond",
        True,
        ["Preconditioner", "Preconditioner.aslinearoperator", "rpcholesky", "jacobi", "make"],
    ),
    (
        "kernelsolve.linalg.interpolate",
        "kernelsolve.linalg.interpolate",
        True,
        ["KernelInterpolator", "KernelInterpolator.__call__"],
    ),
    (
        "kernelsolve.linalg.kriging",
        "kernelsolve.linalg.kriging",
        True,
        ["OrdinaryKriging", "UniversalKriging", "OrdinaryKriging.execute"],
    ),
    (
        "kernelsolve.linalg.variogram",
        "kernelsolve.linalg.variogram",
        True,
        [
            "Variogram",
            "variogram_parameter_list",
            "experimental_variogram",
            "short_lag_variogram",
            "fit_variogram",
        ],
    ),
    (
        "kernelsolve.linalg.gp",
        "kernelsolve.linalg.gp",
        True,
        ["fit_gp_hyperparameters", "gp_posterior_mean", "PosteriorMean", "matern_operator"],
    ),
    ("kernelsolve.linalg.kernels", "kernelsolve.linalg.kernels", True, ["Expr", "engine_formula"]),
    ("kernelsolve.tolerance", "kernelsolve.tolerance", True, []),
    ("kernelsolve.progress", "kernelsolve.progress", True, ["Progress"]),
    (
        "kernelsolve.distributed",
        "kernelsolve.distributed",
        True,
        ["sharded", "current", "bounds", "ShardedExecutor", "ShardError", "ShardTimeout"],
    ),
    (
        "kernelsolve.dask_predict",
        "kernelsolve.dask_predict",
        True,
        ["is_lazy", "predict_points", "execute_kriging", "model_tasks"],
    ),
    (
        "kernelsolve.integrations.scipy",
        "kernelsolve.integrations.scipy",
        True,
        ["aslinearoperator", "KernelLinearOperator"],
    ),
    (
        "kernelsolve.integrations.gpytorch",
        "kernelsolve.integrations.gpytorch",
        True,
        [
            "RBFKernel",
            "MaternKernel",
            "RQKernel",
            "PeriodicKernel",
            "ProductKernel",
            "EngineKernelOperator",
            "DENSE_MAX_ENTRIES",
        ],
    ),
    (
        "kernelsolve.sklearn.kernel_ridge",
        "kernelsolve.sklearn.KernelRidge",
        True,
        ["KernelRidge", "KernelRidge.fit", "KernelRidge.predict"],
    ),
    (
        "kernelsolve.sklearn.density",
        "kernelsolve.sklearn.KernelDensity",
        True,
        ["KernelDensity", "KernelDensity.score_samples", "KernelDensity.sample"],
    ),
    (
        "kernelsolve.sklearn.gaussian_process",
        "kernelsolve.sklearn.GaussianProcessRegressor",
        True,
        [
            "GaussianProcessRegressor",
            "GaussianProcessRegressor.fit",
            "GaussianProcessRegressor.predict",
            "GaussianProcessRegressor.log_marginal_likelihood",
            "KernelFallbackWarning",
        ],
    ),
    ("kernelsolve.sklearn.lml", "kernelsolve.sklearn.lml", True, ["estimate", "exact"]),
    ("kernelsolve.sklearn.kernels", "kernelsolve.sklearn.kernels", True, ["translate"]),
]

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):`~?\.?([^`]+)`")
UNDERLINE = re.compile(r"^\s*(-{3,}|={3,}|~{3,})\s*$")
ENTRY = re.compile(r"^(\*{0,2}[A-Za-z_][\w, .*]*?)\s+:\s+(.+)$|^([A-Za-z_][\w, ]*)$")
ENTRY_SECTIONS = {"Parameters", "Returns", "Attributes", "Raises", "Yields", "Other Parameters"}


def _inline(text: str) -> str:
    """reST inline markup -> Markdown."""
    return ROLE.sub(r"`\1`", text).replace("``", "`")


def _signature(obj, name: str) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return f"{name}(...)"
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    plain = sig.replace(parameters=params, return_annotation=inspect.Signature.empty)
    return f"{name}{plain}"


def docstring_to_markdown(doc: str) -> str:
    """A numpy-style docstring as Markdown: section titles in bold, parameter
    entries as list items, ``>>>`` examples and ``::`` blocks fenced."""
    lines = doc.expandtabs().splitlines()
    out: list[str] = []
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and UNDERLINE.match(nxt) and len(nxt.strip()) >= len(line.strip()) - 1:
            section = line.strip()
            out += ["", f"**{_inline(section)}**", ""]
            i += 2
            continue
        if line.lstrip().startswith(">>>"):
            indent = len(line) - len(line.lstrip())
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][indent:])
                i += 1
            # the blank line ends the doctest's expected output before the fence
            out += ["", "```pycon", *block, "", "```", ""]
            continue
        if line.rstrip().endswith("::") and not nxt.strip():
            out.append(_inline(line.rstrip()[:-1]))
            i += 2
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            body = inspect.cleandoc("\n".join(block))
            out += ["", "```text", body, "```", ""]
            continue
        if section in ENTRY_SECTIONS and line.strip() and not line.startswith(" "):
            m = ENTRY.match(line.strip())
            if m:
                name = m.group(1) or m.group(3)
                kind = f" : {_inline(m.group(2))}" if m.group(2) else ""
                out.append(f"- `{name.strip()}`{kind}")
                i += 1
                continue
        if section in ENTRY_SECTIONS and line.startswith(" "):
            out.append("  " + _inline(line.strip()))
            i += 1
            continue
        out.append(_inline(line))
        i += 1
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _summary(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    if not doc:
        return ""
    first = doc.strip().split("\n\n")[0]
    return _inline(" ".join(s.strip() for s in first.splitlines()))


def _marker(module: str) -> str:
    return f"<!-- module: {module} -->"


def _lazytensor_tables() -> list[str]:
    from kernelsolve import LazyTensor

    out = [_marker("kernelsolve.lazytensor")]
    for title, members in LAZYTENSOR_GROUPS:
        out += ["", f"#### {title}", "", "| member | description |", "| --- | --- |"]
        for name, fallback in members:
            static = inspect.getattr_static(LazyTensor, name)
            if isinstance(static, property):
                doc, shown = inspect.getdoc(static), f"`{name}`"
            elif callable(getattr(LazyTensor, name)) and not isinstance(static, property):
                shown = f"`{_signature(getattr(LazyTensor, name), name)}`"
                doc = inspect.getdoc(getattr(LazyTensor, name))
            else:
                doc, shown = None, f"`{name}`"
            if doc and doc.startswith(("Initialize self", "Return self")):
                doc = None
            text = fallback if fallback and (not doc or name == "sum_reduction") else _summary(doc)
            if not text:
                raise SystemExit(f"gen_api: LazyTensor.{name} has no docstring and no fallback")
            out.append(f"| {shown} | {text.replace('|', chr(92) + '|')} |")
    out += ["", "#### Reduction options", "", REDUCTION_OPTIONS]
    out += ["#### `LazyTensor.solve`", "", _marker("kernelsolve.lazytensor")]
    out.append(docstring_to_markdown(inspect.getdoc(LazyTensor.solve)))
    return out


def _config() -> list[str]:
    """The settings, from the ``#:`` comments of ``Config``'s fields."""
    config_module = importlib.import_module("kernelsolve.config")  # not the instance

    src = inspect.getsource(config_module.Config)
    out = ["", "| setting | default | meaning |", "| --- | --- | --- |"]
    comment: list[str] = []
    for line in src.splitlines():
        s = line.strip()
        if s.startswith("#:"):
            comment.append(s[2:].strip())
            continue
        m = re.match(r"(\w+)\s*:\s*[^=]+=", s)
        if m and comment:
            name = m.group(1)
            default = config_module.Config.__dataclass_fields__[name].default_factory
            value = _default_for_docs(name, default)
            out.append(f"| `{name}` | {value} | {_inline(' '.join(comment))} |")
        if not s.startswith("#:"):
            comment = []
    return out + [""]


def _default_for_docs(name: str, factory) -> str:
    # Evaluate the default without the environment, so the text does not
    # depend on the shell that generated it.
    import os
    from unittest import mock

    keys = [k for k in os.environ if k.startswith("KERNELSOLVE_")]
    with mock.patch.dict(os.environ, {}, clear=False):
        for k in keys:
            del os.environ[k]
        return f"`{factory()!r}`"


def _cli() -> list[str]:
    """Subcommands and options of the ``kernelsolve`` console script."""
    from kernelsolve import cli

    parser = _cli_parser(cli)
    out = [_marker("kernelsolve.cli"), "", _inline(inspect.getdoc(cli) or ""), ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, p in sub.choices.items():
        summary = (helps.get(name) or "").replace("%%", "%")
        out += [f"#### `kernelsolve {name}`", "", summary, ""]
        rows = []
        for a in p._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            flags = ", ".join(a.option_strings) or a.dest
            choices = f" {{{', '.join(map(str, a.choices))}}}" if a.choices else ""
            default = "" if a.default in (None, argparse.SUPPRESS) else f"`{a.default!r}`"
            text = p._get_formatter()._expand_help(a) if a.help else ""  # %(default)s, %%
            rows.append(f"| `{flags}`{choices} | {default} | {text} |")
        if rows:
            out += ["| option | default | meaning |", "| --- | --- | --- |", *rows, ""]
    return out


def _cli_parser(cli) -> argparse.ArgumentParser:
    """The CLI's parser: ``cli.build_parser()`` if it exists, else the parser
    ``cli.main`` builds (caught at ``parse_args``)."""
    if hasattr(cli, "build_parser"):
        return cli.build_parser()

    class Caught(Exception):
        pass

    seen: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_args

    def catch(self, *args, **kwargs):
        seen.append(self)
        raise Caught

    argparse.ArgumentParser.parse_args = catch
    try:
        cli.main([])
    except Caught:
        pass
    finally:
        argparse.ArgumentParser.parse_args = original
    return seen[0]


def _object(module, dotted: str) -> list[str]:
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part)
    name = dotted.split(".")[-1]
    if dotted == "DENSE_MAX_ENTRIES":
        comment = _source_comment(module, dotted)
        return [f"### `{dotted} = {obj!r}`", "", _marker(module.__name__), "", comment, ""]
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            bases = ", ".join(b.__name__ for b in obj.__bases__)
            head = f"### exception `{name}({bases})`"
        else:
            head = f"### class `{_signature(obj, name)}`"
    else:
        shown = dotted if "." in dotted else name
        head = f"### `{_signature(obj, shown)}`"
    doc = inspect.getdoc(obj) or ""
    return [head, "", _marker(module.__name__), "", docstring_to_markdown(doc)]


def _source_comment(module, name: str) -> str:
    src = inspect.getsource(module).splitlines()
    for k, line in enumerate(src):
        if line.startswith(f"{name} ="):
            comment = []
            j = k - 1
            while j >= 0 and src[j].startswith("#:"):
                comment.insert(0, src[j][2:].strip())
                j -= 1
            return _inline(" ".join(comment))
    return ""


HEADER = """\
# API reference

<!-- Generated by scripts/gen_api.py from the docstrings: do not edit by hand.
     Regenerate with `python scripts/gen_api.py`; tests/test_notebooks.py checks it. -->

The public API of kernelsolve. `from kernelsolve import LazyTensor, Vi, Vj, Pm, config,
clear_cache` gives the core; the solvers, interpolators and integrations live in
`kernelsolve.linalg` and `kernelsolve.integrations`. NumPy arrays in give NumPy arrays out,
torch tensors give torch tensors (with autograd). See also
[porting_from_pykeops.md](porting_from_pykeops.md), [ARCHITECTURE.md](ARCHITECTURE.md) and
the notebooks in `notebooks/`.

Contents: [LazyTensor](#kernelsolve-lazytensor-vi-vj-pm) ·
[config](#kernelsolveconfig) · [clear_cache](#kernelsolveclear_cache) ·
[solve](#kernelsolvelinalgsolve) · [cg](#kernelsolvelinalgcg) ·
[precond](#kernelsolvelinalgprecond) · [interpolate](#kernelsolvelinalginterpolate) ·
[kriging](#kernelsolvelinalgkriging) · [variogram](#kernelsolvelinalgvariogram) ·
[gp](#kernelsolvelinalggp) · [kernels](#kernelsolvelinalgkernels) ·
[tolerance](#kernelsolvelinalgtolerance) · [progress](#kernelsolveprogress) ·
[scipy](#kernelsolveintegrationsscipy) · [gpytorch](#kernelsolveintegrationsgpytorch) ·
[KernelRidge](#kernelsolvesklearnkernelridge) · [KernelDensity](#kernelsolvesklearnkerneldensity) ·
[command line](#command-line)
"""


def render() -> str:
    """The text of docs/API.md."""
    out = [HEADER]
    for modname, heading, intro, names in SECTIONS:
        module = importlib.import_module(modname)
        if heading:
            out += ["", f"## {heading}", ""]
        if intro:
            out += [_marker(modname), "", docstring_to_markdown(inspect.getdoc(module) or "")]
        if modname == "kernelsolve.lazytensor" and intro:
            from kernelsolve import LazyTensor

            out += [f"### class `{_signature(LazyTensor, 'LazyTensor')}`", "", _marker(modname)]
            out += ["", docstring_to_markdown(inspect.getdoc(LazyTensor))]
            out += _lazytensor_tables()
        if modname == "kernelsolve.config":
            out += _config()
        for name in names:
            out += ["", *_object(module, name)]
    out += ["", "## Command line", "", *_cli()]
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def doctest_chunks(text: str) -> list[tuple[str, str, int]]:
    """``(module, chunk, first line)`` for each part of ``text`` after a
    ``<!-- module: ... -->`` marker: its examples run with that module's globals."""
    marks = list(re.finditer(r"<!-- module: ([\w.]+) -->", text))
    chunks = []
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        chunks.append((m.group(1), text[m.end() : end], text.count("\n", 0, m.end())))
    return chunks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/API.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print("docs/API.md is stale: run python scripts/gen_api.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
