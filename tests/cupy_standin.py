"""A NumPy-backed stand-in for CuPy, so ember's "cuda" paths run in CI without a GPU.

``with installed():`` puts this module's ``cupy`` (and ``cupyx``) in ``sys.modules`` and
in ``ember.devices``, so ``ember.device("cuda")`` works: eager ops, ``.to("cuda")``,
autograd, compiled plans, and the generated CUDA C, which ``RawKernel`` compiles with g++
over the fiber emulator (``cuda_emulator.py``) and launches on the arrays' memory.

It is strict where CuPy is strict, so code that works here has a chance on a GPU:

- arrays are not NumPy arrays: ``np.asarray(a)`` raises TypeError, as with CuPy; data
  comes back only through ``a.get()`` / ``cupy.asnumpy``;
- NumPy arrays mixed into CuPy calls and operators raise TypeError;
- only names CuPy 14 has are offered (``cupy14_api.json``), reductions and scalar indexing
  give 0-d arrays, ``empty`` memory is poisoned (NaN, -1), RandomState holds a lock (so
  it can't be deep-copied, like CuPy's, which holds a cuRAND handle);
- the device is small (2 SMs of 512 threads, 256 per block), so launches loop.

What it can't show: CuPy's own kernels and numerics, CUDA's math functions, concurrency,
speed. Those need a GPU (tests marked ``gpu``).

Regenerate ``cupy14_api.json`` where CuPy imports (no GPU needed):
``python tests/cupy_standin.py --dump-api > tests/cupy14_api.json``.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import sys
import tempfile
import threading
import time
import types

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import cuda_emulator  # noqa: E402

with open(os.path.join(os.path.dirname(__file__), "cupy14_api.json")) as _f:
    API = {k: set(v) for k, v in json.load(_f).items() if not k.startswith("_")}

# CuPy functions that take host data; everything else refuses NumPy arrays.
HOST_INPUTS = {"asarray", "array", "asanyarray"}


# ---- arrays -----------------------------------------------------------------------------

def _unwrap(x, host_ok: bool = False):
    if type(x) is ndarray:
        return x._a
    if isinstance(x, np.ndarray) and not host_ok:
        raise TypeError(f"Unsupported type {type(x)}")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, host_ok) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, host_ok) for k, v in x.items()}
    return x


def _wrap(r):
    if isinstance(r, np.ndarray):
        return ndarray._of(r)
    if isinstance(r, np.generic):
        return ndarray._of(np.asarray(r))   # CuPy reductions give 0-d arrays
    if isinstance(r, (list, tuple)) and any(isinstance(v, (np.ndarray, np.generic)) for v in r):
        items = [_wrap(v) for v in r]
        return type(r)(*items) if hasattr(r, "_fields") else type(r)(items)   # (namedtuples)
    return r


class _Memory:
    def __init__(self, ptr: int) -> None:
        self.ptr = ptr


class _DeviceId:
    id = 0


class ndarray:
    """Device memory: a host NumPy array only this module touches directly."""
    __slots__ = ("_a", "__weakref__")
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C") -> None:
        self._a = _poisoned(np.empty(shape, dtype, order=order))

    @classmethod
    def _of(cls, a: np.ndarray) -> "ndarray":
        obj = cls.__new__(cls)
        obj._a = a
        return obj

    # what CuPy adds to NumPy's attributes
    device = _DeviceId()

    @property
    def data(self) -> _Memory:
        return _Memory(self._a.ctypes.data)

    @property
    def __cuda_array_interface__(self) -> dict:
        a = self._a
        return {"shape": a.shape, "typestr": a.dtype.str, "data": (a.ctypes.data, False),
                "strides": None if a.flags.c_contiguous else a.strides, "version": 3}

    def get(self, stream=None, order="C", out=None) -> np.ndarray:
        return np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None) -> None:
        self._a[...] = arr

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc.__name__ not in API["ufuncs"]:
            raise TypeError(f"CuPy has no ufunc {ufunc.__name__}")
        return _call_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        if func.__name__ not in API["cupy"] | API["linalg"]:
            raise TypeError(f"CuPy has no function {func.__name__}")
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __getattr__(self, name: str):
        if name not in API["ndarray"]:
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}'")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)
        if name in ("item", "tolist"):
            return attr
        return lambda *a, **k: _wrap(attr(*_unwrap(a), **_unwrap(k)))

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, host_ok=True)])

    def __setattr__(self, name: str, value) -> None:
        if name in ("real", "imag"):   # CuPy's setters of a complex array's parts
            setattr(self._a, name, _unwrap(value))
        else:
            object.__setattr__(self, name, value)

    def __setitem__(self, key, value) -> None:
        self._a[_unwrap(key, host_ok=True)] = _unwrap(value)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        return (_wrap(r) for r in self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __index__(self) -> int:
        return self._a.__index__()

    def __copy__(self) -> "ndarray":
        return ndarray._of(self._a.copy())

    def __deepcopy__(self, memo) -> "ndarray":
        return ndarray._of(self._a.copy())

    def __repr__(self) -> str:
        return repr(self._a)

    def __str__(self) -> str:
        return str(self._a)


def _operator(name: str):
    def op(self, *other):
        return _wrap(getattr(self._a, name)(*_unwrap(other)))
    op.__name__ = name
    return op


for _n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
           "xor", "lshift", "rshift"):
    for _p in ("", "r", "i"):
        setattr(ndarray, f"__{_p}{_n}__", _operator(f"__{_p}{_n}__"))
for _n in ("lt", "le", "gt", "ge", "eq", "ne", "neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_n}__", _operator(f"__{_n}__"))


def _call_ufunc(ufunc, method, inputs, kwargs):
    outs = kwargs.get("out")
    r = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
    if outs is not None:   # hand back the caller's own array objects
        outs = outs if isinstance(outs, tuple) else (outs,)
        if isinstance(r, tuple):
            return tuple(o for o in outs)
        return outs[0]
    return _wrap(r)


def _poisoned(a: np.ndarray) -> np.ndarray:
    """Fresh device memory is garbage on a GPU: NaN here, or all bits set."""
    if a.dtype.kind in "fc":
        a.fill(np.nan)
    elif a.dtype.kind in "iub":
        a.reshape(-1).view(np.uint8).fill(0xFF)
    return a


# ---- the module -------------------------------------------------------------------------

class _Ufunc:
    def __init__(self, uf) -> None:
        self._uf, self.__name__ = uf, uf.__name__

    def __call__(self, *args, **kwargs):
        return _call_ufunc(self._uf, "__call__", args, kwargs)

    def __getattr__(self, method: str):
        if method == "at":   # ``cupy.add.at(a, indices, b)``: indices may be host arrays
            return lambda a, indices, *b: self._uf.at(_unwrap(a), _unwrap(indices, True),
                                                       *_unwrap(b))
        return lambda *args, **kwargs: _call_ufunc(self._uf, method, args, kwargs)


def _function(f, name: str):
    host_ok = name in HOST_INPUTS

    def call(*args, **kwargs):
        r = f(*_unwrap(args, host_ok), **_unwrap(kwargs, host_ok))
        out = kwargs.get("out")
        if type(out) is ndarray and r is out._a:   # as CuPy: the caller's own out array
            return out
        return _wrap(r)
    call.__name__ = name
    return call


class _Namespace(types.ModuleType):
    """A module that offers NumPy's ``source`` functions under the names in ``names``."""

    def __init__(self, name: str, source, names: set[str]) -> None:
        super().__init__(name)
        self._source, self._names = source, names

    def __getattr__(self, name: str):
        if name.startswith("__") or name not in self._names or not hasattr(self._source, name):
            raise AttributeError(f"module '{self.__name__}' has no attribute '{name}'")
        obj = getattr(self._source, name)
        if isinstance(obj, np.ufunc):
            obj = _Ufunc(obj)
        elif callable(obj) and not isinstance(obj, type):
            obj = _function(obj, name)
        setattr(self, name, obj)
        return obj


def _empty(shape, dtype=float, order="C"):
    return ndarray._of(_poisoned(np.empty(shape, dtype, order=order)))


def _empty_like(a, dtype=None, order="K", subok=None, shape=None):
    return ndarray._of(_poisoned(np.empty_like(_unwrap(a), dtype, order, shape=shape)))


def asnumpy(a, stream=None, order="C", out=None) -> np.ndarray:
    return a.get(order=order) if type(a) is ndarray else np.asarray(a, order=order)


def get_array_module(*args):
    return cupy if any(type(a) is ndarray for a in args) else np


cupy = _Namespace("cupy", np, API["cupy"])
cupy.ndarray, cupy.empty, cupy.empty_like = ndarray, _empty, _empty_like
cupy.asnumpy, cupy.get_array_module = asnumpy, get_array_module
cupy.linalg = _Namespace("cupy.linalg", np.linalg, API["linalg"])
# cupy.fft has NumPy's functions under NumPy's names (not in cupy14_api.json's lists).
cupy.fft = _Namespace("cupy.fft", np.fft, {n for n in dir(np.fft) if not n.startswith("_")})
cupy.lib = types.ModuleType("cupy.lib")
cupy.lib.stride_tricks = _Namespace("cupy.lib.stride_tricks", np.lib.stride_tricks,
                                    API["lib.stride_tricks"])


# ---- random -----------------------------------------------------------------------------

class RandomState:
    """CuPy's RandomState API over NumPy's (other streams than cuRAND's)."""

    def __init__(self, seed=None, method=None) -> None:
        self._lock = threading.Lock()   # as CuPy's: deepcopy fails
        self.seed(seed)

    def seed(self, seed=None) -> None:
        self._rs = np.random.RandomState(None if seed is None else int(seed) % (1 << 32))

    def random_sample(self, size=None, dtype=float):
        return _wrap(np.asarray(self._rs.random_sample(size), dtype))

    def rand(self, *size, dtype=float):
        return self.random_sample(size, dtype)

    def standard_normal(self, size=None, dtype=float):
        return _wrap(np.asarray(self._rs.standard_normal(size), dtype))

    def randn(self, *size, dtype=float):
        return self.standard_normal(size, dtype)

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        return _wrap(np.asarray(self._rs.normal(loc, scale, size), dtype))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        return _wrap(np.asarray(self._rs.uniform(low, high, size), dtype))

    def randint(self, low, high=None, size=None, dtype="l"):
        return _wrap(np.asarray(self._rs.randint(low, high, size), dtype))

    def __getattr__(self, name: str):
        if name not in API["RandomState"] or name.startswith("_"):
            raise AttributeError(name)
        f = getattr(self._rs, name)
        return lambda *a, **k: _wrap(f(*_unwrap(a), **_unwrap(k)))


cupy.random = types.ModuleType("cupy.random")
cupy.random.RandomState = RandomState
_global_rs = RandomState()
for _n in ("rand", "randn", "random_sample", "standard_normal", "normal", "uniform",
           "randint", "seed"):
    setattr(cupy.random, _n, getattr(_global_rs, _n))


# ---- cuda: the device, and RawKernel over the emulator ----------------------------------

class Device:
    """One small device: launches must loop over it (grid-stride, several rows a block)."""
    attributes = {"MultiProcessorCount": 2, "MaxThreadsPerBlock": 256,
                  "MaxThreadsPerMultiProcessor": 512}
    compute_capability = "90"

    def __init__(self, device=None) -> None:
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise RuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

    def synchronize(self) -> None:
        pass

    def use(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


class Event:
    def __init__(self, *args, **kwargs) -> None:
        self.t = None

    def record(self, stream=None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass


def get_elapsed_time(start: Event, end: Event) -> float:
    return (end.t - start.t) * 1e3


cupy.cuda = types.ModuleType("cupy.cuda")
cupy.cuda.Device, cupy.cuda.Event, cupy.cuda.get_elapsed_time = Device, Event, get_elapsed_time
cupy.cuda.runtime = types.SimpleNamespace(
    getDeviceCount=lambda: 1, deviceSynchronize=lambda: None,
    getDeviceProperties=lambda i: {"name": b"CuPy stand-in (NumPy + CUDA emulator)",
                                   "totalGlobalMem": 1 << 30,
                                   "multiProcessorCount": Device.attributes[
                                       "MultiProcessorCount"]})
cupy.cuda.curand = types.SimpleNamespace(CURAND_RNG_PSEUDO_DEFAULT=100,
                                         CURAND_RNG_PSEUDO_XORWOW=101,
                                         CURAND_RNG_PSEUDO_PHILOX4_32_10=161)

_ENTRY = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\(\d+\)\s+)?(\w+)\s*\(")
_LIBS: dict[str, cuda_emulator.Emulator] = {}
_WORKDIR = tempfile.mkdtemp(prefix="ember-cupy-standin-")
launches: list[tuple[str, int, int]] = []   # (entry, grid, block) of every launch, for tests


class RawKernel:
    """``cupy.RawKernel(code, name, options)``: the CUDA C compiled by g++ over the
    emulator (one shared library per source), launched as ``k(grid, block, args)``."""

    def __init__(self, code: str, name: str, options=(), backend="nvrtc", **kwargs) -> None:
        if not isinstance(options, tuple):
            raise TypeError("options must be a tuple")
        self.code, self.name, self.options = code, name, options

    def __call__(self, grid, block, args, shared_mem=0) -> None:
        emu = _LIBS.get(self.code)
        if emu is None:
            entries = _ENTRY.findall(self.code)
            emu = _LIBS[self.code] = cuda_emulator.Emulator([self.code], entries, _WORKDIR)
        grid = grid if isinstance(grid, tuple) else (grid,)
        block = block if isinstance(block, tuple) else (block,)
        if len(grid) != 1 or len(block) != 1:
            raise ValueError("the stand-in launches 1-D grids only")
        keep, pointers = [], []
        for a in args:
            if type(a) is ndarray:
                pointers.append(a._a.ctypes.data)
            elif a is None or isinstance(a, np.ndarray):
                raise TypeError(f"Unsupported type {type(a)}")
            else:   # a scalar parameter takes a pointer to its value
                v = np.array(a if isinstance(a, np.generic) else
                             np.int64(a) if isinstance(a, int) else np.float64(a))
                keep.append(v)
                pointers.append(v.ctypes.data)
        launches.append((self.name, grid[0], block[0]))
        rc = emu.launch(self.name, grid[0], block[0], pointers)
        if rc:
            raise RuntimeError(f"CUDA error in emulated launch of {self.name} "
                               f"<<<{grid[0]}, {block[0]}>>>: code {rc}")


cupy.RawKernel = RawKernel


# ---- cupyx ------------------------------------------------------------------------------

def scatter_add(a, slices, value) -> None:
    np.add.at(_unwrap(a), _unwrap(slices, host_ok=True), _unwrap(value))


@contextlib.contextmanager
def errstate(linalg=None):
    """``cupyx.errstate(linalg="raise")``: NumPy's LAPACK calls raise LinAlgError anyway."""
    yield


cupyx = types.ModuleType("cupyx")
cupyx.scatter_add, cupyx.errstate = scatter_add, errstate


# ---- installing it ----------------------------------------------------------------------

@contextlib.contextmanager
def installed():
    """``ember.device("cuda")`` runs on the stand-in inside the block."""
    from ember.codegen import cuda as cuda_codegen
    from ember.ops import random as ember_random
    from ember import devices as device

    saved = {k: sys.modules.get(k) for k in ("cupy", "cupyx")}
    saved_device = (device._cupy, device._cupy_error)
    sys.modules["cupy"], sys.modules["cupyx"] = cupy, cupyx
    device._cupy, device._cupy_error = cupy, None
    cuda_codegen._CACHE.clear()          # its RawKernels belong to one CuPy
    ember_random.drop_cuda_handles()
    try:
        yield cupy
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
        device._cupy, device._cupy_error = saved_device
        cuda_codegen._CACHE.clear()
        ember_random.drop_cuda_handles()


_forever = []


def install() -> None:
    """For scripts: the stand-in from now on (``installed()`` is the scoped form)."""
    _forever.append(installed())   # kept: a collected context manager would uninstall
    _forever[-1].__enter__()


def _dump_api() -> None:
    import cupy as real
    import cupyx as real_x

    def pub(o):
        return sorted(n for n in dir(o) if not n.startswith("_"))
    api = {"_about": "Public names of CuPy " + real.__version__ + ", for cupy_standin.py",
           "cupy": pub(real), "ufuncs": sorted(n for n in pub(real)
                                               if isinstance(getattr(real, n), real.ufunc)),
           "ndarray": pub(real.ndarray), "random": pub(real.random),
           "RandomState": pub(real.random.RandomState),
           "lib.stride_tricks": [n for n in pub(real.lib.stride_tricks)
                                 if n not in ("annotations", "np")],
           "linalg": pub(real.linalg), "cupyx": pub(real_x)}
    json.dump(api, sys.stdout, indent=0)


if __name__ == "__main__" and sys.argv[1:] == ["--dump-api"]:
    _dump_api()
