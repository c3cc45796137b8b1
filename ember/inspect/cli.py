"""``ember inspect script.py:function --arg "f32[4,8]" --arg "i64[4]"``: look inside a compile.

Imports the script (its ``if __name__ == "__main__"`` block does not run), makes random
inputs of the given shapes and dtypes, runs ``ember.explain`` and prints the report.

    --arg SPEC       one argument: ``f32[4,8]``, ``i64[4]``, ``b8[3]``, ``f64[]`` (0-dim);
                     integers are drawn from [0, n), n the smallest size among the
                     arguments (so they are valid indices), or ``i64[4]<10`` for [0, 10);
                     anything else is a Python literal: ``3``, ``0.5``, ``True``, ``'mean'``
    --call "SPECS"   another call's arguments, space separated (for --cache)
    --dump DIR       write the dump folder of every compiled graph under DIR
    --html FILE      write the HTML report (pictures, IR, kernel sources side by side)
    --svg FILE       write the picture of the graph after fusion (FILE_1.svg, ... for more)
    --cache          call the function with every argument list and print its cache:
                     each entry's guard key and the recompile reason that made it
    --seed N         seed of the random inputs (default 0)

>>> ember inspect examples/inspect_example.py:loss_fn --arg "f32[4,8]" --arg "i64[4]"
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any, Callable

from ember.tracer.compile import CompiledFunction, CompiledModule

_SPEC = re.compile(r"^\s*(?P<dtype>[a-z]+[0-9]*)?\[(?P<shape>[0-9,\s]*)\]"
                   r"(?:\s*<\s*(?P<high>\d+))?\s*$")
_DTYPES = {"f32": "float32", "float32": "float32", "float": "float32",
           "f64": "float64", "float64": "float64", "double": "float64",
           "i32": "int32", "int32": "int32", "int": "int32",
           "i64": "int64", "int64": "int64", "long": "int64",
           "b8": "bool", "bool": "bool"}


class SpecError(ValueError):
    """An --arg the inspector cannot read."""


def main(argv: list[str]) -> int:
    """Entry point of ``ember inspect``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="ember inspect", description="Compile a function from a script on random inputs "
        "and show what ember made of it.", epilog="example: ember inspect "
        "examples/inspect_example.py:loss_fn --arg 'f32[4,8]' --arg 'i64[4]'")
    parser.add_argument("target", help="script.py:function (a function, module or compiled one)")
    parser.add_argument("--arg", action="append", default=[], metavar="SPEC",
                        help="an argument: f32[4,8], i64[4], i64[4]<10, b8[3], or a Python literal")
    parser.add_argument("--call", action="append", default=[], metavar="SPECS",
                        help="another call's arguments, space separated (used by --cache)")
    parser.add_argument("--dump", metavar="DIR", help="write a dump folder per compiled graph")
    parser.add_argument("--html", metavar="FILE", help="write the HTML report")
    parser.add_argument("--svg", metavar="FILE", help="write the picture after fusion")
    parser.add_argument("--cache", action="store_true",
                        help="print the cache entries and why each exists")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    opts = parser.parse_args(argv)
    try:
        fn = load_target(opts.target)
        calls = [opts.arg] + [c.split() for c in opts.call]
        args_per_call = [make_args(specs, opts.seed + i) for i, specs in enumerate(calls)]
    except (SpecError, FileNotFoundError, AttributeError, ImportError) as e:
        print(f"ember inspect: {e}", file=sys.stderr)
        return 2
    return run_inspect(fn, args_per_call, opts)


def run_inspect(fn: Callable, args_per_call: list[list], opts: argparse.Namespace) -> int:
    """Explain ``fn`` on the first argument list; write what ``opts`` asks for."""
    import ember
    from ember.inspect import dump

    previous = dump.dump_dir()
    if opts.dump:
        dump.set_dump_dir(opts.dump)
    try:
        report = ember.explain(fn, *args_per_call[0])
    finally:
        dump.set_dump_dir(previous)
    print(report)
    if opts.dump:
        folders = sorted(p.name for p in Path(opts.dump).iterdir() if p.is_dir())
        print(f"\ndump folders in {opts.dump}: {', '.join(folders)}")
    if opts.html:
        Path(opts.html).write_text(report.to_html())
        print(f"HTML report: {opts.html}")
    if opts.svg:
        for path in write_svgs(report, Path(opts.svg)):
            print(f"picture: {path}")
    if opts.cache:
        print("\n" + cache_of(fn, args_per_call))
    return 0


def write_svgs(report: Any, path: Path) -> list[Path]:
    """One picture after fusion per compiled graph: ``path``, then ``path_1.svg``, ..."""
    from ember.inspect.draw import graph_svg

    out = []
    for i, g in enumerate(report.graphs):
        p = path if i == 0 else path.with_name(f"{path.stem}_{i}{path.suffix or '.svg'}")
        p.write_text(graph_svg(g.graph, g.kernels, title=f"{report.name}: graph {i} after fusion"))
        out.append(p)
    return out


def cache_of(fn: Callable, args_per_call: list[list]) -> str:
    """Call a fresh compiled ``fn`` three times per argument list (trace, check, replay).
    Each list compiles, a new size too (which a program would first run eagerly until
    compiling it pays: ``tracer/admission.py``): the report shows what each one makes."""
    import warnings

    import ember
    from ember.tracer import admission

    if isinstance(fn, CompiledModule):
        fn = fn._orig_mod
    compiled = ember.compile(fn.fn if isinstance(fn, CompiledFunction) else fn)
    policy, admission.NEW_SIZES = admission.NEW_SIZES, "compile"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fallbacks show in the report itself
            for args in args_per_call:
                for _ in range(3):
                    compiled(*args)
    finally:
        admission.NEW_SIZES = policy
    return compiled.cache_report()


def load_target(target: str) -> Any:
    """``path/to/script.py:name`` -> the object ``name`` of the imported script."""
    path, sep, name = target.rpartition(":")
    if not sep or not path or not name:
        raise SpecError(f"expected script.py:function, got {target!r}")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such script: {path}")
    spec = importlib.util.spec_from_file_location(f"_ember_inspect_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(file.resolve().parent))  # the script's own imports
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(file.resolve().parent))
    obj = module
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def make_args(specs: list[str], seed: int) -> list:
    """Random tensors (and Python values) for argument specs."""
    import ember

    parsed = [parse_spec(s) for s in specs]
    sizes = [n for p in parsed if isinstance(p, tuple) for n in p[1] if n > 0]
    default_high = max(1, min(sizes, default=10))
    ember.manual_seed(seed)
    args = []
    for p in parsed:
        if not isinstance(p, tuple):
            args.append(p)
            continue
        dtype, shape, high = p
        if dtype == "bool":
            args.append(ember.rand(*shape) > 0.5)
        elif dtype.startswith("int"):
            args.append(ember.randint(0, high or default_high, shape,
                                      dtype=getattr(ember, dtype)))
        else:
            args.append(ember.randn(*shape, dtype=getattr(ember, dtype)))
    return args


def parse_spec(spec: str) -> Any:
    """``"f32[4,8]"`` -> ("float32", (4, 8), None); ``"3"`` -> 3."""
    m = _SPEC.match(spec)
    if m:
        dtype = _DTYPES.get(m["dtype"] or "f32")
        if dtype is None:
            raise SpecError(f"unknown dtype {m['dtype']!r} in {spec!r} "
                            f"(f32, f64, i32, i64, b8 or their long names)")
        shape = tuple(int(s) for s in m["shape"].replace(" ", "").split(",") if s)
        high = int(m["high"]) if m["high"] else None
        if high is not None and not dtype.startswith("int"):
            raise SpecError(f"'<N' bounds integer arguments only: {spec!r}")
        return dtype, shape, high
    try:
        return ast.literal_eval(spec)
    except (ValueError, SyntaxError):
        raise SpecError(f"cannot read argument {spec!r}: expected dtype[shape] such as "
                        f"f32[4,8], or a Python literal") from None
