"""CUDA C source of a Kernel: index arithmetic, loop layouts and reductions."""
from __future__ import annotations

import hashlib
import math
import re
from contextlib import contextmanager


from ember.codegen.kernel import LEAVES, REDUCTIONS, Kernel, Load, Param, Parametrizer
from ember.dtypes import DType
from ember.codegen.kernel import collapse_dims, template
from ember.codegen.policy import accumulator_dtype
from ember.codegen.cuda.ops import (B, F32, F64, I32, I64, _CTYPE, _STORAGE, _SUFFIX, _convert,
                                    _literal, _op)



# Rows up to this long are reduced by one warp each: a block per row would leave most of
# its threads idle and pay two __syncthreads per reduction.
WARP_ROW_MAX = 1024
# Rows at least this long, when there are too few of them to fill the GPU, are split
# across several blocks (the entries ``<name>_p<k>`` exist only for such kernels).
SPLIT_MIN_INNER = 16384
SPLIT_MAX_ROWS = 512
# A block handles at least this many points of a row per pass before a row is split
# further; partials per row are capped so combining them stays a single cheap pass.
POINTS_PER_THREAD = 8
MAX_SPLIT = 1024
# Launches never exceed this many threads; the 32-bit index test leaves room for it.
MAX_GRID_THREADS = 1 << 24
ELEMENTWISE_BLOCK = 256
# A CudaKernels launch holds at most this many parts (its vector mask is 64 bits) and
# this many bytes of parameters (CUDA's limit before 12.1 and Volta).
MAX_PARTS = 64
MAX_PARAM_BYTES = 4096
WARP_ROWS_BLOCK = 256

_I31 = (1 << 31) - 1

# ---- code generation ------------------------------------------------------------------

# CUDA's built-in vector types are named after the element type (float4, longlong2,
# uchar4); each is aligned to its size.
_VECTOR = {F32: "float", F64: "double", I32: "int", I64: "longlong", B: "uchar"}
_LANES = "xyzw"
# Which block of how many: a kernel's own launch, or its share of a CudaKernels launch
# (the parameters of its part functions).
_GRID = ("blockIdx.x", "gridDim.x")
_PART = ("bid", "nblocks")


class _Writer:
    """Lines of C with indentation; ``segment()`` reserves a place that definitions can
    be added to later (offsets are defined there on first use, see ``_Offsets``)."""

    def __init__(self) -> None:
        self.lines: list = []
        self.depth = 0

    def __call__(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    @contextmanager
    def block(self, head: str):
        self(head + " {")
        self.depth += 1
        yield
        self.depth -= 1
        self("}")

    def segment(self) -> "_Writer":
        seg = _Writer()
        seg.depth = self.depth
        self.lines.append(seg)
        return seg

    def text(self) -> str:
        out: list[str] = []

        def flat(w: "_Writer") -> None:
            for line in w.lines:
                if isinstance(line, _Writer):
                    flat(line)
                else:
                    out.append(line)
        flat(self)
        return "\n".join(out) + "\n"


class _Offsets:
    """The element offsets of every load (index k) and store (index nl + i) at one loop
    level: ``index`` split into digits over ``shape``, then ``base + sum(digit * stride)``.
    Each is defined in ``seg`` on first use, so unused ones cost no code (and NVRTC no
    warnings); a base from an enclosing level is defined there."""

    def __init__(self, seg: _Writer, ix: str, index: str, shape: tuple[int, ...],
                 strides: list[tuple[int, ...]], bases: list, prefix: list[str], tag: str):
        self.seg, self.ix, self.index, self.shape = seg, ix, index, shape
        self.strides, self.bases, self.prefix, self.tag = strides, bases, prefix, tag
        self.digits: list[str] | None = None
        self.defined: set[int] = set()

    def __getitem__(self, i: int) -> str:
        name = self.prefix[i]
        if i in self.defined:
            return name
        self.defined.add(i)
        base = self.bases[i]
        base = base[i] if isinstance(base, _Offsets) else base
        digits = self._digits()
        terms = [] if base == "0" else [base]
        terms += [digits[d] if s == 1 else f"{digits[d]} * {_int(s)}"
                  for d, s in enumerate(self.strides[i]) if s != 0]
        self.seg(f"const {self.ix} {name} = {' + '.join(terms) or '0'};")
        return name

    def element(self, k: int, ptr: str) -> str:
        """The element load ``k`` reads through ``ptr`` at this point."""
        return f"{ptr}[{self[k]}]"

    def _digits(self) -> list[str]:
        if self.digits is None:
            shape, ix, tag = self.shape, self.ix, self.tag
            if len(shape) == 1:
                self.digits = [self.index]
            else:
                t = f"t{tag}"
                self.seg(f"{ix} {t} = {self.index};")
                self.digits = [""] * len(shape)
                for d in range(len(shape) - 1, 0, -1):
                    self.digits[d] = f"{tag}{d}"
                    self.seg(f"const {ix} {tag}{d} = {t} % {_int(shape[d])}; "
                             f"{t} /= {_int(shape[d])};")
                self.digits[0] = t
        return self.digits


class _Lane:
    """Lane ``c`` of a vector iteration, standing in for ``_Offsets`` where
    ``_Generator._value`` reads loads: a contiguous load is a component of the vector
    loaded for the iteration, an invariant load its one element."""

    def __init__(self, vectors: dict[int, str], c: int, offsets) -> None:
        self.vectors, self.c, self.offsets = vectors, c, offsets

    def element(self, k: int, ptr: str) -> str:
        if k in self.vectors:
            return f"{self.vectors[k]}.{_LANES[self.c]}"
        return f"{ptr}[{_int(self.offsets[k])}]"


class _Generator:
    """Writes the CUDA C of one kernel (see the module docstring for the layouts)."""

    def __init__(self, kernel: Kernel, name: str | None = None) -> None:
        kernel.validate()
        self.k = kernel
        # A kernel without points keeps static code: there is nothing to share, and its
        # collapsed layout (every stride 0) would read as loads broadcast along the row.
        self.generic = kernel.generic and all(kernel.shape)
        nd = len(kernel.shape)
        split = nd - kernel.reduce_dims
        strides = [ld.strides for ld in kernel.loads] + [st.strides for st in kernel.stores]
        self.reduce = kernel.reduce_dims > 0
        self.reductions = [i for i, e in enumerate(kernel.exprs) if e.op in REDUCTIONS]
        if self.reduce:
            self.outer, self.o_st = collapse_dims(kernel.shape[:split],
                                                  [s[:split] for s in strides])
            self.inner_shape, self.i_st = collapse_dims(kernel.shape[split:],
                                                        [s[split:] for s in strides])
            self.rows, self.inner = math.prod(self.outer), math.prod(self.inner_shape)
            self.empty = self.rows == 0 or (self.inner == 0 and not self.reductions)
            self.row_level = kernel.row_level()
        else:
            self.outer, self.o_st = collapse_dims(kernel.shape, strides)
            self.inner_shape, self.i_st = (), [() for _ in strides]
            self.rows, self.inner = math.prod(self.outer), 1
            self.empty = self.rows == 0
            self.row_level = [False] * len(kernel.exprs)
        self.size = math.prod(kernel.shape)
        self.offsets = tuple(ld.offset for ld in kernel.loads)
        # A size-generic kernel's accumulators are a run-time choice (its entries come
        # in both kinds, see ``entries``): this instance's is the policy's for its sizes.
        self.wide = self.generic and any(
            kernel.exprs[j].dtype is F32 and accumulator_dtype(kernel, kernel.exprs[j]) is F64
            for j in self.reductions)
        self.warp_rows = self.reduce and self.inner <= WARP_ROW_MAX and not self.wide
        self.split = (self.reduce and bool(self.reductions) and not self.warp_rows
                      and self.inner >= SPLIT_MIN_INNER and self.rows <= SPLIT_MAX_ROWS)
        self.dims: list[int] | None = None
        if self.generic:
            self._parametrize()
            self.name = _generic_name(kernel, self.template)
            self.rows_c, self.inner_c, self.size_c = "n_rows", "n_inner", "n_size"
            if self.reduce:
                self.row_level = self._collapsed_row_level()
        else:
            self.name = _ident(name or kernel.name)
            self.rows_c, self.inner_c, self.size_c = (_int(self.rows), _int(self.inner),
                                                      _int(self.size))
        self.idx = "long long" if self._needs_64bit() else "int"
        self.max_block = (1024 if self.reduce and not self.warp_rows else
                          WARP_ROWS_BLOCK if self.reduce else ELEMENTWISE_BLOCK)
        # The row layout being written (a generic kernel writes several, see ``source``).
        self._warp, self._split, self._wide = self.warp_rows, self.split, False
        # Each input pointer is typed by the first load that reads it.
        self.in_dtypes: list[DType | None] = [None] * kernel.num_inputs
        for ld in kernel.loads:
            if self.in_dtypes[ld.input] is None:
                self.in_dtypes[ld.input] = ld.dtype
        self.vector = self._vector_plan()

    def _parametrize(self) -> None:
        """Sizes, strides (other than 0 and 1) and nonzero offsets of the collapsed
        layout become ``Param``s read from ``dims`` (in the order the LLVM backend
        takes them); ``template`` is what the code depends on."""
        p = Parametrizer()
        self.outer = p.sizes(self.outer)
        self.inner_shape = p.sizes(self.inner_shape) if self.reduce else ()
        self.o_st = [p.strides(st) for st in self.o_st]
        self.i_st = [p.strides(st) for st in self.i_st]
        self.offsets = p.strides(self.offsets)
        self.dims = p.values
        self.template = template((self.outer, self.o_st, self.inner_shape, self.i_st,
                                  self.offsets))

    def _collapsed_row_level(self) -> list[bool]:
        """``Kernel.row_level`` read off the collapsed layout: a load is row-level when
        it does not move along the (collapsed) inner loop. It differs from the kernel's
        only where a size-1 reduced dim has a stride, and both are right there; this one
        depends on the template alone, as a generic kernel's code must."""
        out: list[bool] = []
        for e in self.k.exprs:
            if e.op in REDUCTIONS or e.op in ("const", "scalar"):
                out.append(True)
            elif e.op == "load":
                out.append(not any(self.i_st[e.args[0]]))
            else:
                out.append(all(out[a] for a in e.args))
        return out

    def _vector_plan(self) -> tuple[int, list[int]] | None:
        """(V, the contiguous loads) if this elementwise kernel also gets a vector entry:
        in the collapsed (then 1-D) iteration space every load it reads has stride 1 or 0
        and every store stride 1; else None. A load of any other stride (broadcast along
        some dims, transposed, reversed) keeps the kernel scalar."""
        k = self.k
        if (self.reduce or (self.empty and not self.generic) or not k.stores
                or len(self.outer) != 1):
            return None
        nl = len(k.loads)
        used = sorted({k.exprs[n].args[0] for st in k.stores for n in k.cone(st.expr)
                       if k.exprs[n].op == "load"})
        if any(self.o_st[j] not in ((0,), (1,)) for j in used):
            return None
        # (A single point collapses to stride 0 everywhere; its store is contiguous too.
        # A generic kernel's code may not depend on its size: it asks stride 1.)
        if ((self.size > 1 or self.generic)
                and any(self.o_st[nl + i] != (1,) for i in range(len(k.stores)))):
            return None
        contiguous = [j for j in used if self.o_st[j] == (1,)]
        # 16 bytes is the widest load or store a thread can issue, and CUDA's vector types
        # have at most four lanes; narrower operands use narrower vectors of as many lanes.
        widest = max([k.loads[j].dtype.itemsize for j in contiguous]
                     + [k.exprs[st.expr].dtype.itemsize for st in k.stores])
        return min(4, 16 // widest), contiguous

    def vector_access(self) -> list[tuple[int, int, int]]:
        """What the vector entry needs of its pointers: (argument index, byte offset,
        alignment) per vector load and store."""
        if not self.vector:
            return []
        v, contiguous = self.vector
        k = self.k
        out = []
        for j in contiguous:
            ld = k.loads[j]
            out.append((ld.input, ld.offset * ld.dtype.itemsize, v * ld.dtype.itemsize))
        for i, st in enumerate(k.stores):
            out.append((k.num_inputs + i, 0, v * k.exprs[st.expr].dtype.itemsize))
        return out

    def _needs_64bit(self) -> bool:
        if self.generic:
            return True   # the sizes are not known when the code is written
        k = self.k
        # Loop indices run up to the size plus one grid (or one split row) of threads.
        bound = self.size + MAX_GRID_THREADS + MAX_SPLIT * 1024
        for ld in k.loads:
            bound = max(bound, abs(ld.offset) + _span(k.shape, ld.strides))
        for st in k.stores:
            bound = max(bound, _span(k.shape, st.strides))
        return bound > _I31

    def entries(self) -> list[str]:
        names = [self.name]
        if self.vector:
            names.append(f"{self.name}_v")
        if self.generic and self.reduce:
            return [entry for layout in self._row_layouts() for entry in layout[3]]
        if self.split:
            names += [f"{self.name}_p{p}" for p in range(len(self.reductions) + 1)]
        return names

    def _row_layouts(self) -> list[tuple[str, bool, bool, list[str]]]:
        """The row layouts this kernel's source holds: (body suffix, warp per row, wide
        accumulators, entry points). A static kernel has the one its sizes pick; a generic
        one has every layout some size could pick, and ``row_entries`` picks per
        instance: a block per row (entry ``<name>``, with split phases ``<name>_p<k>``),
        a warp per row (``<name>_w``) and, with float32 sums, a block per row summing in
        float64 (``<name>_x``, ``<name>_xp<k>``) for rows the policy gives float64."""
        phases = range(len(self.reductions) + 1)
        if not self.generic:
            return [("", self.warp_rows, False,
                     [self.name] + ([f"{self.name}_p{p}" for p in phases] if self.split
                                    else []))]
        split = bool(self.reductions)
        out = [("", False, False, [self.name] + ([f"{self.name}_p{p}" for p in phases]
                                                 if split else [])),
               ("w", True, False, [f"{self.name}_w"])]
        if any(self.k.exprs[j].op == "reduce_sum" and self.k.exprs[j].dtype is F32
               for j in self.reductions):
            out.append(("x", False, True, [f"{self.name}_x"] + (
                [f"{self.name}_xp{p}" for p in phases] if split else [])))
        return out

    def row_entries(self) -> tuple[str, str]:
        """This instance's row entry point and the prefix of its split phases' names."""
        if not self.generic:
            return self.name, f"{self.name}_p"
        if self.warp_rows:
            return f"{self.name}_w", ""
        return (f"{self.name}_x", f"{self.name}_xp") if self.wide else (self.name,
                                                                          f"{self.name}_p")

    # -- the whole program
    def source(self) -> str:
        w = _Writer()
        k = self.k
        if self.generic:
            # Nothing of this instance's sizes (nor its name or ops, which are not part
            # of the structure): equal structures give equal sources, one module.
            w(f"// ember size-generic kernel {self.name}: reduce_dims {k.reduce_dims}, "
              f"{len(self.dims)} sizes, strides and offsets read from dims[]")
        else:
            w(f"// ember kernel {self.name}: shape {tuple(k.shape)}, "
              f"reduce_dims {k.reduce_dims}" + (f", ops {'+'.join(k.ops)}" if k.ops else ""))
        params = self._params()
        if not self.reduce:
            # The most threads a launch of this kernel may have (see CudaKernel.launches):
            # the bound lets the compiler budget registers so that such a launch fits.
            bound = f"__launch_bounds__({self.max_block})"
            self._elementwise_functions(w, f'extern "C" __global__ void {bound}', params,
                                        _GRID)
            return w.text()
        args = self._args()
        for suffix, warp, wide, entries in self._row_layouts():
            self._warp, self._wide = warp, wide
            self._split = len(entries) > 1
            bound = f"__launch_bounds__({WARP_ROWS_BLOCK if warp else 1024})"
            body = f"{self.name}_{suffix}body"
            w("template <int PHASE>")
            with w.block(f"__device__ __forceinline__ void {body}({params}, "
                         "unsigned long long* __restrict__ ws, const int nsplit)"):
                self._hoisted(w, self._rows)
            with w.block(f'extern "C" __global__ void {bound} {entries[0]}({params})'):
                w(f"{body}<-1>({args}, nullptr, 1);")
            for p, entry in enumerate(entries[1:]):
                with w.block(f'extern "C" __global__ void {bound} {entry}({params}, '
                             "unsigned long long* __restrict__ ws, const int nsplit)"):
                    w(f"{body}<{p}>({args}, ws, nsplit);")
        self._warp, self._split, self._wide = self.warp_rows, self.split, False
        return w.text()

    def _hoisted(self, w: _Writer, write) -> None:
        """``write(w)`` a function body; a generic kernel's body first reads the ``dims``
        it uses (``D<i>``) and the counts made of them into locals."""
        if not self.generic:
            write(w)
            return
        top, body = w.segment(), w.segment()
        write(body)
        text = body.text()
        counts = {"n_rows": self.outer, "n_inner": self.inner_shape, "n_size": self.outer}
        used = [c for c in counts if re.search(rf"\b{c}\b", text)]
        text += " ".join(_int(n) for c in used for n in counts[c])
        for i in sorted({int(m) for m in re.findall(r"\bD(\d+)\b", text)}):
            top(f"const long long D{i} = dims[{i}];")
        for i in sorted({int(m) for m in re.findall(r"\bSC(\d+)\b", text)}):
            top(f"const double SC{i} = __longlong_as_double(dims[{len(self.dims) + i}]);")
        for c in used:
            top(f"const long long {c} = {' * '.join(_int(n) for n in counts[c]) or '1'};")

    def part_source(self) -> str:
        """This elementwise kernel as ``__device__`` functions ``<name>`` (and ``<name>_v``
        if it has a vector entry) that run its grid-stride loop over blocks ``bid`` of
        ``nblocks`` of the caller's launch: a part of a ``CudaKernels`` launch."""
        assert not self.reduce, "only elementwise kernels share a launch"
        assert not self.generic, "size-generic kernels launch alone"
        w = _Writer()
        k = self.k
        w(f"// ember kernel part {self.name} ({k.name}): shape {tuple(k.shape)}"
          + (f", ops {'+'.join(k.ops)}" if k.ops else ""))
        params = f"{self._params()}, const int {_PART[0]}, const int {_PART[1]}"
        self._elementwise_functions(w, "__device__ __forceinline__ void", params, _PART)
        return w.text()

    def _elementwise_functions(self, w: _Writer, head: str, params: str,
                               blocks: tuple[str, str]) -> None:
        """The scalar function and, if any, the vector one, over ``blocks``."""
        with w.block(f"{head} {self.name}({params})"):
            self._hoisted(w, lambda body: self._elementwise(body, blocks))
        if self.vector:
            w(f"// {self.vector[0]} points per iteration; the caller checks alignment")
            with w.block(f"{head} {self.name}_v({params})"):
                self._hoisted(w, lambda body: self._vector_elementwise(body, blocks))

    def _params(self, prefix: str = "") -> str:
        """The parameter list: the inputs' then the outputs' pointers (names prefixed
        with ``prefix`` where several kernels' parameters share one list)."""
        ps = []
        for i, d in enumerate(self.in_dtypes):
            ty = _STORAGE[d] if d is not None else "void"
            ps.append(f"const {ty}* __restrict__ {prefix}in{i}")
        for i, st in enumerate(self.k.stores):
            ps.append(f"{_STORAGE[self.k.exprs[st.expr].dtype]}* __restrict__ {prefix}out{i}")
        if self.generic:
            ps.append(f"const long long* __restrict__ {prefix}dims")
        return ", ".join(ps)

    def _args(self, prefix: str = "") -> str:
        """The names of ``_params(prefix)``, to pass them on."""
        return ", ".join([f"{prefix}in{i}" for i in range(self.k.num_inputs)]
                         + [f"{prefix}out{i}" for i in range(len(self.k.stores))]
                         + ([f"{prefix}dims"] if self.generic else []))

    def _level(self, w: _Writer, index: str, shape, strides, bases: list, prefixes: tuple,
               tag: str) -> _Offsets:
        nl, ns = len(self.k.loads), len(self.k.stores)
        names = [f"{prefixes[0]}{j}" for j in range(nl)] + [f"{prefixes[1]}{i}" for i in range(ns)]
        return _Offsets(w.segment(), self.idx, index, shape, strides, bases, names, tag)

    # -- elementwise: a grid-stride loop over the collapsed iteration space
    def _grid_loop(self, var: str, start: int | str, end: int | str,
                   blocks: tuple[str, str]) -> str:
        """A grid-stride loop over [start, end) as block ``blocks[0]`` of ``blocks[1]``
        (numbers, or C expressions of a generic kernel's sizes)."""
        ix = self.idx
        block, nblocks = blocks
        first = f"({ix}){block} * ({ix})blockDim.x + ({ix})threadIdx.x"
        if start:
            first = f"{start if isinstance(start, str) else _int(start)} + {first}"
        end = end if isinstance(end, str) else _int(end)
        return (f"for ({ix} {var} = {first}; {var} < {end}; "
                f"{var} += ({ix})blockDim.x * ({ix}){nblocks})")

    def _elementwise(self, w: _Writer, blocks: tuple[str, str], start: int | str = 0) -> None:
        """The points from ``start`` on, one per iteration."""
        k = self.k
        nl = len(k.loads)
        with w.block(self._grid_loop("i", start, self.size_c, blocks)):
            bases = [_int(off) for off in self.offsets] + ["0"] * len(k.stores)
            offs = self._level(w, "i", self.outer, self.o_st, bases, ("o", "s"), "d")
            memo: dict[int, str] = {}
            for i, st in enumerate(k.stores):
                v = self._value(w, st.expr, memo, offs, "p")
                self._store(w, i, v, offs[nl + i])

    def _vector_elementwise(self, w: _Writer, blocks: tuple[str, str]) -> None:
        """V consecutive points per iteration: each contiguous load is one vector load,
        the lanes are the scalar code over its components, each store one vector store;
        then the last size % V points as in the scalar entry."""
        k = self.k
        v, contiguous = self.vector
        # A generic kernel's point count is known at run time only: both loops are
        # written, and run no iteration where they have nothing to do.
        nvec = f"{self.size_c} / {v}" if self.generic else self.size // v
        if nvec:
            with w.block(self._grid_loop("v", 0, nvec, blocks)):
                vectors: dict[int, str] = {}
                for j in contiguous:
                    ld = k.loads[j]
                    ty = f"{_VECTOR[ld.dtype]}{v}"
                    ptr = self._in_ptr(ld)
                    if self.offsets[j]:
                        ptr = f"{ptr} + {_int(self.offsets[j])}"
                    w(f"const {ty} vec{j} = reinterpret_cast<const {ty}*>({ptr})[v];")
                    vectors[j] = f"vec{j}"
                # Values that read no contiguous load are the same in every lane: lane 0
                # computes them, the others reuse its names.
                invariant: list[bool] = []
                for e in k.exprs:
                    invariant.append(e.args[0] not in vectors if e.op == "load" else
                                     e.op in ("const", "scalar")
                                     or all(invariant[a] for a in e.args))
                shared: dict[int, str] = {}
                lanes = []
                for c in range(v):
                    memo = dict(shared)
                    lane = _Lane(vectors, c, self.offsets)
                    lanes.append([self._value(w, st.expr, memo, lane, f"l{c}_")
                                  for st in k.stores])
                    if c == 0:
                        shared = {j: name for j, name in memo.items() if invariant[j]}
                for i, st in enumerate(k.stores):
                    d = k.exprs[st.expr].dtype
                    ty = f"{_VECTOR[d]}{v}"
                    parts = ", ".join(self._stored(d, lanes[c][i]) for c in range(v))
                    w(f"reinterpret_cast<{ty}*>(out{i})[v] = {ty}{{{parts}}};")
        if self.generic:
            self._elementwise(w, blocks, start=f"{nvec} * {v}")
        elif self.size % v:
            # Fewer than V points, so one iteration for a few threads.
            self._elementwise(w, blocks, start=nvec * v)

    # -- row reductions
    def _rows(self, w: _Writer) -> None:
        k, ix = self.k, self.idx
        nl, ns = len(k.loads), len(k.stores)
        last = len(self.reductions)
        if self._warp:
            w("const int tpr = 32;")
        else:
            w("const int tpr = (int)blockDim.x;")
            w("__shared__ unsigned long long smem[32];")
        w("const int gpb = (int)blockDim.x / tpr;")
        w("const int lane = (int)threadIdx.x % tpr;")
        loop = (f"for ({ix} g = ({ix})blockIdx.x * ({ix})gpb + ({ix})((int)threadIdx.x / tpr); "
                f"g < ({ix}){self.rows_c} * nsplit; g += ({ix})gridDim.x * ({ix})gpb)")
        with w.block(loop):
            w(f"const {ix} row = g / nsplit;")
            w(f"const {ix} vl = (g - row * nsplit) * tpr + lane;   // this thread's first point")
            w(f"const {ix} nthreads = ({ix})nsplit * tpr;")
            bases = [_int(off) for off in self.offsets] + ["0"] * ns
            row_offs = self._level(w, "row", self.outer, self.o_st, bases, ("ro", "rs"), "d")
            memo: dict[int, str] = {}
            for r, j in enumerate(self.reductions):
                self._reduction(w, r, j, memo, row_offs)
            point = [i for i, st in enumerate(k.stores) if not self.row_level[st.expr]]
            rowst = [i for i in range(ns) if i not in point]
            for i in rowst:
                self._value(w, k.stores[i].expr, memo, row_offs, "r")
            for i in point:
                self._ensure_row(w, k.stores[i].expr, memo, row_offs)
            with w.block(f"if (PHASE < 0 || PHASE == {last})"):
                if rowst:
                    with w.block("if (vl == 0)"):
                        for i in rowst:
                            self._store(w, i, memo[k.stores[i].expr], row_offs[nl + i])
                if point:
                    with w.block(self._inner_loop()):
                        offs = self._inner_offsets(w, row_offs)
                        local = dict(memo)
                        for i in point:
                            v = self._value(w, k.stores[i].expr, local, offs, "p")
                            self._store(w, i, v, offs[nl + i])

    def _inner_loop(self) -> str:
        ix = self.idx
        return f"for ({ix} j = vl; j < {self.inner_c}; j += nthreads)"

    def _inner_offsets(self, w: _Writer, row_offs: _Offsets) -> _Offsets:
        n = len(self.k.loads) + len(self.k.stores)
        return self._level(w, "j", self.inner_shape, self.i_st, [row_offs] * n,
                           ("io", "is"), "e")

    def _reduction(self, w: _Writer, r: int, j: int, memo: dict, row_offs: _Offsets) -> None:
        k = self.k
        e = k.exprs[j]
        arg = e.args[0]
        acc = self._accumulator(e)
        red = f"ember_red_{e.op[7:]}_{_SUFFIX[acc]}"
        self._ensure_row(w, arg, memo, row_offs)
        a = f"a{j}"
        w(f"{_CTYPE[acc]} {a};")
        with w.block(f"if (PHASE < 0 || PHASE == {r})"):
            w(f"{a} = {red}::identity();")
            with w.block(self._inner_loop()):
                offs = self._inner_offsets(w, row_offs)
                v = self._value(w, arg, dict(memo), offs, "p")
                v = _convert(v, k.exprs[arg].dtype, e.dtype)
                if acc is not e.dtype:
                    v = _convert(v, e.dtype, acc)
                w(f"{a} = {red}::apply({a}, {v});")
            if self._warp:
                w(f"{a} = ember_warp_reduce<{red}>({a});")
            else:
                w(f"{a} = ember_block_reduce<{red}>({a}, smem);")
            if self._split:
                with w.block(f"if (PHASE == {r})"):
                    w(f"if (threadIdx.x == 0) *reinterpret_cast<{_CTYPE[acc]}*>("
                      f"ws + {self._partials(r)} * nsplit + g) = {a};")
                    w("continue;")
        if self._split:
            # Later phases: this row's partials from the earlier launch, combined in the
            # same order by every block of the row.
            with w.block("else"):
                w(f"{a} = {red}::identity();")
                with w.block("for (int t = (int)threadIdx.x; t < nsplit; t += (int)blockDim.x)"):
                    w(f"{a} = {red}::apply({a}, *reinterpret_cast<const {_CTYPE[acc]}*>("
                      f"ws + ({self._partials(r)} + row) * nsplit + t));")
                w(f"{a} = ember_block_reduce<{red}>({a}, smem);")
        name = f"r{j}"
        w(f"const {_CTYPE[e.dtype]} {name} = {_convert(a, acc, e.dtype)};")
        memo[j] = name

    def _accumulator(self, e) -> DType:
        """The dtype reduction ``e`` accumulates in: the policy both backends share, or
        in a generic kernel's layout the one it is written for."""
        if not self.generic:
            return accumulator_dtype(self.k, e)
        if e.op == "reduce_sum" and e.dtype is F32:
            return F64 if self._wide else F32
        return e.dtype

    def _partials(self, r: int) -> str:
        """Where reduction ``r``'s partials start in the workspace (in rows x nsplit)."""
        return f"({r} * n_rows)" if self.generic else _int(r * self.rows)

    def _ensure_row(self, w: _Writer, j: int, memo: dict, offs: _Offsets) -> None:
        """Compute, at row scope, the row-level exprs that expr ``j`` uses (so an inner
        loop reads them instead of recomputing them per point)."""
        for n in sorted(self.k.cone(j, memo.__contains__)):
            if self.row_level[n] and n not in memo:
                self._value(w, n, memo, offs, "r")

    # -- values and stores
    def _value(self, w: _Writer, j: int, memo: dict, offs: _Offsets, prefix: str) -> str:
        """The C name of expr ``j``'s value, writing its definition (and its operands')
        where not already in ``memo``."""
        if j in memo:
            return memo[j]
        # Operands first, depth first in operand order, as a recursion would write them,
        # but with an explicit stack: a 20,000-op chain is 20,000 deep.
        exprs = self.k.exprs
        stack = [j]
        while stack:
            n = stack[-1]
            if n in memo:
                stack.pop()
                continue
            e = exprs[n]
            if e.op not in LEAVES and e.op not in REDUCTIONS:
                pending = next((a for a in e.args if a not in memo), None)
                if pending is not None:
                    stack.append(pending)
                    continue
            stack.pop()
            self._value_of(w, n, memo, offs, prefix)
        return memo[j]

    def _value_of(self, w: _Writer, j: int, memo: dict, offs: _Offsets, prefix: str) -> str:
        """Write the definition of expr ``j``, whose operands are all in ``memo``."""
        k = self.k
        e = k.exprs[j]
        if e.op == "load":
            ld = k.loads[e.args[0]]
            code = offs.element(e.args[0], self._in_ptr(ld))
            if ld.dtype is B:
                code = f"({code} != 0)"
            code = _convert(code, ld.dtype, e.dtype)
        elif e.op == "const":
            code = _literal(e.args[0], e.dtype)
        elif e.op == "scalar":   # read from dims after the sizes (SC<i>, see _hoisted)
            i = e.args[0]
            code = (_convert(f"SC{i}", F64, e.dtype) if self.generic
                    else _literal(k.scalars[i], e.dtype))
        elif e.op in REDUCTIONS:
            raise AssertionError(f"reduction {j} used before it was computed")
        else:
            args = [self._value(w, a, memo, offs, prefix) for a in e.args]
            code = _op(e.op, args, [k.exprs[a].dtype for a in e.args], e.dtype)
        name = f"{prefix}{j}"
        w(f"const {_CTYPE[e.dtype]} {name} = {code};")
        memo[j] = name
        return name

    def _in_ptr(self, ld: Load) -> str:
        """The input pointer of load ``ld``, typed as the load's dtype."""
        ptr = f"in{ld.input}"
        if self.in_dtypes[ld.input] is not ld.dtype:
            ptr = f"reinterpret_cast<const {_STORAGE[ld.dtype]}*>({ptr})"
        return ptr

    @staticmethod
    def _stored(dt: DType, value: str) -> str:
        return f"(unsigned char){value}" if dt is B else value

    def _store(self, w: _Writer, i: int, value: str, off: str) -> None:
        dt = self.k.exprs[self.k.stores[i].expr].dtype
        w(f"out{i}[{off}] = {self._stored(dt, value)};")


def _ident(name: str) -> str:
    ident = re.sub(r"\W", "_", name or "kernel")
    return ident if not ident[0].isdigit() else "k_" + ident


def _generic_name(kernel: Kernel, layout_template: tuple) -> str:
    """A generic kernel's entry name: from what its code depends on, never its sizes."""
    description = repr((kernel.structure(), layout_template))
    return "generic_" + hashlib.sha1(description.encode()).hexdigest()[:16]


def _span(shape: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """The largest |element offset| a stride list reaches over ``shape``."""
    return sum(max(n - 1, 0) * abs(s) for n, s in zip(shape, strides))


def _int(v: int) -> str:
    """An integer literal of a type wide enough for it; a generic kernel's ``Param`` is
    its run-time value (the local ``D<index>``, read from ``dims``)."""
    if isinstance(v, Param):
        return f"D{v.index}"
    v = int(v)
    return str(v) if -_I31 <= v <= _I31 else f"{v}LL"
