"""Saving and loading: ``ember.save`` / ``ember.load`` in PyTorch's checkpoint format.

``ember.save`` writes the zip file ``torch.save`` writes (``<name>/data.pkl``, a protocol-2
pickle whose tensors are ``torch._utils._rebuild_tensor_v2`` calls on storages given by
persistent ids, and ``<name>/data/<key>``, each storage's raw bytes), so ``torch.load``
reads ember's state dicts and ``ember.load`` reads PyTorch's, without importing torch.
Tensors that share memory share one storage in the file and again after loading.

``ember.load`` is ``weights_only=True`` by default, as PyTorch is since 2.6: a restricted
unpickler builds tensors, dtypes, devices, ``OrderedDict`` and plain containers, and
refuses every other global with PyTorch's message naming it (allow more with
``add_safe_globals`` or ``safe_globals``). ``weights_only=False`` unpickles anything,
whole modules and optimizers included: only for files from a trusted source.

>>> ember.save(model.state_dict(), "model.pt")
>>> model.load_state_dict(ember.load("model.pt"))
"""
from __future__ import annotations

import _compat_pickle
import io
import os
import pickle
import random
import struct
import sys
import types
import zipfile
from collections import Counter, OrderedDict
from typing import Any, Callable, Iterable

import numpy as np

from ember import dtypes
from ember.devices import CPU, Device, array_module, as_device, device_of_array
from ember.tensor import Size, Tensor, array_of

__all__ = ["save", "load", "add_safe_globals", "get_safe_globals", "clear_safe_globals",
           "safe_globals"]

# torch's legacy storage class name for each dtype name (what ``torch.FloatStorage`` is).
_STORAGE_OF_DTYPE = {
    "float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage", "int64": "LongStorage", "int32": "IntStorage",
    "int16": "ShortStorage", "int8": "CharStorage", "uint8": "ByteStorage",
    "bool": "BoolStorage", "complex64": "ComplexFloatStorage",
    "complex128": "ComplexDoubleStorage",
}
_DTYPE_OF_STORAGE = {v: k for k, v in _STORAGE_OF_DTYPE.items()}
# torch dtype attribute names that name the same dtype as an entry above.
_TORCH_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16",
                        "long": "int64", "int": "int32", "short": "int16",
                        "cfloat": "complex64", "cdouble": "complex128"}
_ALIGNMENT = 64  # torch aligns each record's bytes to 64 (for mmap=True loads)


# ---- saving ---------------------------------------------------------------------------------

def save(obj: Any, f, pickle_module: Any = pickle, pickle_protocol: int = 2,
         _use_new_zipfile_serialization: bool = True) -> None:
    """Save ``obj`` (tensors, state dicts, optimizer state, whole modules) to ``f``, a path
    or a binary file object, in the zip format of ``torch.save``.

    >>> ember.save({"model": model.state_dict(), "opt": opt.state_dict()}, "ckpt.pt")
    """
    if not _use_new_zipfile_serialization:
        raise NotImplementedError("ember.save writes only the zip format (PyTorch's default)")
    if pickle_module is not pickle:
        raise NotImplementedError("ember.save supports only the standard pickle module")
    if pickle_protocol < 2:
        raise ValueError("ember.save needs pickle protocol 2 or higher")
    if isinstance(f, (str, os.PathLike)):
        name = os.path.splitext(os.path.basename(os.fspath(f)))[0] or "archive"
        with open(f, "wb") as fh:
            _write_zip(obj, fh, name, pickle_protocol)
    else:
        _write_zip(obj, f, "archive", pickle_protocol)


class _StorageType:
    """A storage class in a checkpoint (``torch.FloatStorage``): the dtype of its bytes;
    ``dtype_name`` None for ``torch.UntypedStorage`` (bytes)."""

    def __init__(self, dtype_name: str | None) -> None:
        self.dtype_name = dtype_name

    def __repr__(self) -> str:
        return f"<storage type {self.dtype_name or 'untyped'}>"


class _StorageRef:
    """A storage being saved: the flat host bytes of one memory block and its element dtype."""

    def __init__(self, key: str, flat: np.ndarray, dtype_name: str, location: str) -> None:
        self.key, self.flat, self.dtype_name, self.location = key, flat, dtype_name, location


def _write_zip(obj: Any, fh, archive: str, protocol: int) -> None:
    buf = io.BytesIO()
    pickler = _CheckpointPickler(buf, protocol)
    pickler.dump(obj)
    try:
        fh.tell()
        seekable = True
    except (OSError, AttributeError, io.UnsupportedOperation):
        seekable = False
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
        def record(name: str, data) -> None:
            _write_record(zf, f"{archive}/{name}", data, seekable)
        record("data.pkl", buf.getvalue())
        record(".format_version", b"1")
        record(".storage_alignment", str(_ALIGNMENT).encode())
        record("byteorder", sys.byteorder.encode())
        for ref in pickler.storages:
            record(f"data/{ref.key}", ref.flat)
        record("version", b"3\n")
        record(".data/serialization_id", str(random.getrandbits(128)).zfill(40).encode())


def _write_record(zf: zipfile.ZipFile, name: str, data, seekable: bool) -> None:
    """One stored (uncompressed) record, its bytes aligned to 64 as torch's writer does."""
    # Bytes through a uint8 view: the buffer protocol has no format for some dtypes
    # (bfloat16).
    view = memoryview(data.view(np.uint8)) if isinstance(data, np.ndarray) else data
    size = len(view) if not isinstance(view, memoryview) else view.nbytes
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    zip64 = size > 0x7FFFFFFF
    if seekable:
        start = zf.fp.tell() + 30 + len(name.encode()) + (20 if zip64 else 0)
        pad = (-(start + 4)) % _ALIGNMENT
        info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    with zf.open(info, "w", force_zip64=zip64) as out:
        out.write(view)


class _CheckpointPickler(pickle._Pickler):
    """Pickles as ``torch.save`` does: tensors become ``torch._utils._rebuild_tensor_v2``
    calls on persistent storages, Parameters ``_rebuild_parameter``, dtypes, devices and
    sizes torch's globals. The pure-Python pickler is used because it lets a global be
    written under torch's name without importing torch."""

    def __init__(self, file, protocol: int) -> None:
        super().__init__(file, protocol)
        self.storages: list[_StorageRef] = []
        self._by_root: dict[tuple, tuple[Any, _StorageRef]] = {}  # keeps roots alive too

    def reducer_override(self, obj):
        t = type(obj)
        if t is Tensor or (isinstance(obj, Tensor) and _is_parameter(obj)):
            return self._reduce_tensor(obj)
        if t is dtypes.DType:
            return obj.name  # a global: see save_global
        if t is Device:
            return Device, (str(obj),)
        if t is Size:
            return Size, (tuple(obj),)
        if t is _StorageType:
            return "storage"  # a global: see save_global
        return NotImplemented

    def save_global(self, obj, name=None) -> None:
        where = _torch_name(obj)
        if where is None:
            return super().save_global(obj, name)
        module, attr = where
        if self.proto >= 4:
            self.save(module)
            self.save(attr)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + module.encode() + b"\n" + attr.encode() + b"\n")
        self.memoize(obj)

    # The pure-Python pickler calls the base class's save_global for functions directly.
    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[types.FunctionType] = lambda self, obj: self.save_global(obj)

    def persistent_id(self, obj):
        if type(obj) is _StorageRef:
            return ("storage", _SAVE_STORAGE_TYPES[obj.dtype_name], obj.key, obj.location,
                    obj.flat.size)
        return None

    def _reduce_tensor(self, t: Tensor):
        if t._node is not None and _is_parameter(t):
            raise RuntimeError("can't save a Parameter that is not a leaf")
        rg = bool(t.requires_grad)
        if _is_parameter(t):
            plain = Tensor._wrap(array_of(t), False)
            return _rebuild_parameter, (plain, rg, OrderedDict())
        ref, offset, strides = self._storage_of(array_of(t))
        return _rebuild_tensor_v2, (ref, offset, tuple(t.shape), strides, rg, OrderedDict())

    def _storage_of(self, a) -> tuple[_StorageRef, int, tuple[int, ...]]:
        """The storage holding array ``a``, ``a``'s element offset and strides in it."""
        name = dtypes.from_numpy_dtype(a.dtype).name
        if name not in _STORAGE_OF_DTYPE:
            raise TypeError(f"ember.save: no checkpoint storage type for dtype {name}")
        location = str(device_of_array(a))
        found = _block_of(a)
        layout = _layout(a, found[1]) if found is not None else None
        if layout is not None:
            owner, block = found
            # Keyed by where the block is, not id(owner): CuPy-like wrappers may hand out a
            # new object for one ``base``. Entries keep their owners alive, so no address
            # is reused while saving.
            where = (location, _address(block), block.size)
            entry = self._by_root.get(where)
            if entry is None:
                flat = _typed(block, a.dtype)
                ref = _StorageRef(str(len(self.storages)),
                                  flat.get() if hasattr(flat, "get") else flat, name, location)
                self.storages.append(ref)
                self._by_root[where] = entry = (owner, ref)
            if entry[1].flat.dtype == a.dtype:
                return (entry[1], *layout)
        # Memory we can't describe as (offset, non-negative strides) of one block of this
        # dtype: the tensor's own copy.
        host = a.get() if hasattr(a, "get") else a
        flat = np.ascontiguousarray(host).reshape(-1)
        ref = _StorageRef(str(len(self.storages)), flat, name, location)
        self.storages.append(ref)
        return ref, 0, _contiguous_strides(a.shape)


def _block_of(a) -> tuple[Any, Any] | None:
    """(owner, bytes) of the memory block that holds array ``a``: the object owning the
    memory (the storage's identity: every view of it has the same owner) and a flat uint8
    array over all of it; None when that block is not one contiguous piece."""
    owner = a
    while getattr(owner, "base", None) is not None:
        owner = owner.base
    if isinstance(owner, type(a)):
        if not (owner.flags.c_contiguous or owner.flags.f_contiguous):
            return None
        return owner, owner.reshape(-1, order="A").view(np.uint8)
    if type(a) is np.ndarray:  # NumPy memory from a buffer (bytes, mmap, ...)
        try:
            return owner, np.frombuffer(owner, dtype=np.uint8)
        except (TypeError, ValueError):
            return None
    return None


def _layout(a, block) -> tuple[int, tuple[int, ...]] | None:
    """``a``'s offset and strides in elements within ``block``, or None if they are not
    whole elements or not non-negative (torch's storages have no negative strides)."""
    item = a.itemsize
    delta = _address(a) - _address(block)
    if a.size == 0 or delta < 0 or delta % item or any(s < 0 or s % item for s in a.strides):
        return None
    strides = tuple(s // item for s in a.strides)
    last = delta // item + sum((n - 1) * s for n, s in zip(a.shape, strides))
    if last >= block.size // item:
        return None
    return delta // item, strides


def _typed(block, dtype):
    """A byte block as a flat array of ``dtype`` (a trailing partial element dropped)."""
    n = block.size // np.dtype(dtype).itemsize * np.dtype(dtype).itemsize
    return block[:n].view(dtype)


def _address(a) -> int:
    if type(a) is np.ndarray:
        return a.__array_interface__["data"][0]
    return a.data.ptr


def _contiguous_strides(shape) -> tuple[int, ...]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(int(n), 1)
    return tuple(reversed(strides))


def _is_parameter(t: Tensor) -> bool:
    from ember.nn.module import Parameter
    return isinstance(t, Parameter)


# ---- the functions a checkpoint names (torch's names, ember's objects) --------------------

class _LoadedStorage:
    """A storage read from a checkpoint: flat host array and the device it is mapped to."""

    def __init__(self, host: np.ndarray, device: Device) -> None:
        self.host, self.device = host, device
        self._on_device = None

    def array(self, dtype):
        """The storage's memory as a flat array of ``dtype`` on its device."""
        flat = self.host if dtype is None or self.host.dtype == dtype else self.host.view(dtype)
        if self.device.type == "cpu":
            return flat
        if self._on_device is None:
            self._on_device = array_module(self.device).asarray(self.host)
        return self._on_device if flat is self.host else self._on_device.view(dtype)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None) -> Tensor:
    """A tensor viewing ``storage`` (as ``torch._utils._rebuild_tensor_v2``)."""
    flat = storage.array(None)
    return Tensor._wrap(_strided(flat, storage_offset, size, stride), bool(requires_grad))


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None) -> Tensor:
    """A tensor of ``dtype`` viewing an untyped (byte) storage."""
    flat = storage.array(dtype.np)
    return Tensor._wrap(_strided(flat, storage_offset, size, stride), bool(requires_grad))


def _strided(flat, offset: int, size, stride):
    """The view of flat array ``flat`` with element ``offset``, ``size`` and ``stride``."""
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    numel = int(np.prod(size)) if size else 1
    if numel and (offset < 0 or any(s < 0 for s in stride)
                  or offset + sum((n - 1) * s for n, s in zip(size, stride)) >= flat.size):
        raise RuntimeError(f"checkpoint tensor of size {list(size)}, stride {list(stride)} and "
                           f"offset {offset} lies outside its storage of {flat.size} elements")
    if numel == 0:
        return flat[:0].reshape(size)
    if stride == _contiguous_strides(size):
        return flat[offset:offset + numel].reshape(size)  # a view that keeps its base
    item = flat.itemsize
    if type(flat) is np.ndarray:
        return np.ndarray(size, flat.dtype, buffer=flat, offset=offset * item,
                          strides=tuple(s * item for s in stride))
    # CuPy: as_strided loses the link to the base, which aliasing checks rely on: a copy.
    xp = array_module(device_of_array(flat))
    return xp.lib.stride_tricks.as_strided(flat[offset:], size,
                                           tuple(s * item for s in stride)).copy()


def _rebuild_parameter(data: Tensor, requires_grad: bool, backward_hooks=None):
    from ember.nn.module import Parameter
    return Parameter(data, requires_grad)


def _rebuild_parameter_with_state(data: Tensor, requires_grad: bool, backward_hooks, state):
    p = _rebuild_parameter(data, requires_grad)
    if isinstance(state, tuple) and state:
        state = state[0]
    if isinstance(state, dict) and state:
        raise pickle.UnpicklingError("ember Parameters can't carry extra attributes "
                                     f"({', '.join(map(str, state))})")
    return p


def _device(type: str = "cpu", index: int | None = None) -> Device:
    return Device(type, index)


_SAVE_STORAGE_TYPES = {name: _StorageType(name) for name in _STORAGE_OF_DTYPE}
_UNTYPED = _StorageType(None)

# Object saved -> (module, name) it is written as.
_SAVE_NAMES: dict[int, tuple[str, str]] = {
    id(_rebuild_tensor_v2): ("torch._utils", "_rebuild_tensor_v2"),
    id(_rebuild_parameter): ("torch._utils", "_rebuild_parameter"),
    id(Device): ("torch", "device"),
    id(Size): ("torch", "Size"),
}
for _name, _st in _SAVE_STORAGE_TYPES.items():
    _SAVE_NAMES[id(_st)] = ("torch", _STORAGE_OF_DTYPE[_name])


def _torch_name(obj) -> tuple[str, str] | None:
    if type(obj) is dtypes.DType:
        return "torch", obj.name
    return _SAVE_NAMES.get(id(obj))


# ---- loading --------------------------------------------------------------------------------

def load(f, map_location=None, pickle_module: Any = None, *, weights_only: bool | None = None,
         mmap: bool | None = None, **pickle_load_args: Any) -> Any:
    """Load what ``ember.save`` or ``torch.save`` wrote to ``f`` (a path or binary file).

    ``map_location`` places the storages: a device or its name, a dict from saved location
    to location (``{"cuda:1": "cuda:0"}``), or a function ``(storage, location)`` returning
    a tensor (the storage, moved) or None (keep the saved location). ``weights_only=True``
    (the default, also when None) refuses any global that is not a tensor, dtype, device or
    container. ``mmap`` is accepted and has no effect: storages are read into memory.

    >>> sd = ember.load("model.pt", map_location="cpu")
    """
    if weights_only is None:
        weights_only = True
    if pickle_module is not None and pickle_module is not pickle:
        if weights_only:
            raise RuntimeError("Can not safely load weights when explicit pickle_module is "
                               "specified")
        raise NotImplementedError("ember.load supports only the standard pickle module")
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as fh:
            return _load(fh, map_location, weights_only, pickle_load_args)
    return _load(f, map_location, weights_only, pickle_load_args)


def _load(fh, map_location, weights_only: bool, pickle_load_args: dict) -> Any:
    if not zipfile.is_zipfile(fh):
        raise RuntimeError("ember.load reads the zip checkpoint format that torch.save writes "
                           "(the default since PyTorch 1.6); this file is not a zip archive")
    fh.seek(0)
    with zipfile.ZipFile(fh) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") and n.count("/") == 1), None)
        if pkl is None:
            raise RuntimeError("not a PyTorch checkpoint: the archive has no data.pkl")
        prefix = pkl[:-len("data.pkl")]
        order = zf.read(prefix + "byteorder").decode() if prefix + "byteorder" in names \
            else "little"
        swap = order != sys.byteorder
        loaded: dict[str, _LoadedStorage] = {}

        def storage(pid) -> _LoadedStorage:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                raise pickle.UnpicklingError(f"unknown persistent id {pid!r} in checkpoint")
            _, stype, key, location, numel = pid
            if key not in loaded:
                if not isinstance(stype, _StorageType):
                    raise pickle.UnpicklingError(f"unknown storage type {stype!r}")
                host = _storage_array(zf.read(f"{prefix}data/{key}"), stype, swap)
                loaded[key] = _place(host, str(location), map_location)
            return loaded[key]

        unpickler = _CheckpointUnpickler(io.BytesIO(zf.read(pkl)), weights_only,
                                         **pickle_load_args)
        unpickler.persistent_load = storage
        try:
            return unpickler.load()
        except pickle.UnpicklingError as e:
            if weights_only and "was not an allowed global" in str(e):
                raise pickle.UnpicklingError(_weights_only_message(str(e))) from None
            raise


def _storage_array(raw: bytes, stype: _StorageType, swap: bool) -> np.ndarray:
    """A writable flat array of a storage's bytes in ember's dtype for it."""
    # An array owning its memory: every tensor of the storage is a view of it.
    data = np.frombuffer(raw, dtype=np.uint8)
    if stype.dtype_name is None:
        return data.copy()
    npd = _numpy_dtype(stype.dtype_name)
    if npd is None:  # bfloat16 without an ember/NumPy bfloat16: its top 16 bits of float32
        bits = data.view(np.uint16)
        if swap:
            bits = bits.byteswap()
        return (bits.astype(np.uint32) << 16).view(np.float32)
    arr = data.view(npd)
    if swap:
        arr = arr.byteswap()
    ember_np = dtypes.from_numpy_dtype(npd).np
    # A dtype ember lacks (float16, int8, ...) loads as the nearest one it has.
    return arr.copy() if ember_np == npd else arr.astype(ember_np)


def _numpy_dtype(name: str):
    d = dtypes._BY_NAME.get(name)
    if d is not None:
        return d.np
    if name == "bfloat16":
        return None
    return np.dtype(name)


def _place(host: np.ndarray, location: str, map_location) -> _LoadedStorage:
    """Where a storage saved at ``location`` goes, after ``map_location``."""
    target: Any = location
    if callable(map_location) and not isinstance(map_location, (str, Device)):
        moved = map_location(Tensor._wrap(host), location)
        if isinstance(moved, Tensor):
            data = array_of(moved)
            if moved.device.type == "cpu":
                return _LoadedStorage(data.reshape(-1), CPU)
            return _LoadedStorage(data.get().reshape(-1), moved.device)
        if moved is not None:
            raise TypeError("map_location function must return a tensor (the storage) or None")
    elif isinstance(map_location, dict):
        target = map_location.get(location, location)
    elif map_location is not None:
        target = map_location
    device = as_device(target)
    if device.type == "cuda":
        try:
            array_module(device)
        except RuntimeError:
            raise RuntimeError("Attempting to deserialize object on a CUDA device but "
                               "ember.cuda.is_available() is False. If you are running on a "
                               "CPU-only machine, please use ember.load with "
                               "map_location=ember.device('cpu') to map your storages to the "
                               "CPU.") from None
    return _LoadedStorage(host, device)


def _load_names() -> dict[str, Any]:
    """What each global a checkpoint may name is built as, and whether weights_only allows
    it (all of these are allowed)."""
    from ember.nn.module import Parameter, _Registry
    names: dict[str, Any] = {
        "collections.OrderedDict": OrderedDict,
        "collections.Counter": Counter,
        "builtins.set": set, "builtins.frozenset": frozenset, "builtins.bytearray": bytearray,
        "builtins.complex": complex, "builtins.slice": slice,
        "_codecs.encode": _codecs_encode,
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
        "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state,
        "torch.nn.parameter.Parameter": Parameter,
        "torch.device": _device,
        "torch.Size": Size,
        "torch.UntypedStorage": _UNTYPED,
        "torch.storage.UntypedStorage": _UNTYPED,
        # A module's parameter/buffer/submodule dicts: an OrderedDict that counts changes.
        # Allowed so that a whole model loads with weights_only once its own classes are
        # named in safe_globals, as PyTorch's plain-dict modules do.
        "ember.nn.module._Registry": _Registry,
        "ember.dtypes.dtype_of_name": dtypes.dtype_of_name,
        "ember.devices.Device": Device,
        "ember.tensor.Size": Size,
    }
    for dname, sname in _STORAGE_OF_DTYPE.items():
        names[f"torch.{sname}"] = _StorageType(dname)
    for dname in _STORAGE_OF_DTYPE:
        names[f"torch.{dname}"] = _TorchDType(dname)
    for alias, dname in _TORCH_DTYPE_ALIASES.items():
        names[f"torch.{alias}"] = _TorchDType(dname)
    return names


class _TorchDType:
    """A ``torch.<dtype>`` global: resolved to ember's dtype when it is found."""

    def __init__(self, name: str) -> None:
        self.name = name

    def resolve(self) -> dtypes.DType:
        d = dtypes._BY_NAME.get(self.name)
        if d is None:
            raise pickle.UnpicklingError(f"the checkpoint uses dtype torch.{self.name}, which "
                                         "ember does not have")
        return d


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    """How protocol 2 pickles bytes: ``_codecs.encode(latin1 text, 'latin1')``."""
    import codecs
    return codecs.encode(text, encoding)


class _CheckpointUnpickler(pickle.Unpickler):
    """Maps torch's globals to ember's; with ``weights_only`` refuses any other global."""

    def __init__(self, file, weights_only: bool, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.weights_only = weights_only
        self.names = _load_names()

    def find_class(self, module: str, name: str):
        # Protocol 2 writes Python 2 names (__builtin__.set); the default find_class, which
        # this replaces, maps them back.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        full = f"{module}.{name}"
        found = self.names.get(full)
        if found is None:
            found = _USER_SAFE.get(full)
        if found is not None:
            return found.resolve() if isinstance(found, _TorchDType) else found
        if self.weights_only:
            shown = name if module == "builtins" else full
            raise pickle.UnpicklingError(
                f"Unsupported global: GLOBAL {shown} was not an allowed global by default. "
                f"Please use `ember.serialization.add_safe_globals([{shown}])` or the "
                f"`ember.serialization.safe_globals([{shown}])` context manager to allowlist "
                "this global if you trust this class/function.")
        if module == "torch" or module.startswith("torch."):
            raise pickle.UnpicklingError(
                f"the checkpoint holds a {full}, a PyTorch object ember can't rebuild: save "
                "its state_dict() with torch.save and load that instead")
        return super().find_class(module, name)


_UNSAFE_MESSAGE = (
    "In PyTorch 2.6 (and in ember) the default value of the `weights_only` argument of "
    "`load` is `True`. Re-running `ember.load` with `weights_only` set to `False` will likely "
    "succeed, but it can result in arbitrary code execution. Do it only if you got the file "
    "from a trusted source.")


def _weights_only_message(message: str) -> str:
    return ("Weights only load failed. This file can still be loaded, to do so you have two "
            f"options, do those steps only if you trust the source of the checkpoint.\n\t(1) "
            f"{_UNSAFE_MESSAGE}\n\t(2) Alternatively, to load with `weights_only=True` please "
            "check the recommended steps in the following error message.\n\tWeightsUnpickler "
            f"error: {message}")


# ---- user-allowed globals for weights_only ---------------------------------------------------

_USER_SAFE: dict[str, Any] = {}


def _full_path(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def add_safe_globals(safe_globals: Iterable[Callable | tuple[Callable, str]]) -> None:
    """Allow these classes/functions in ``weights_only`` loads; each item is the object or
    ``(object, "full.path")`` when the checkpoint names it differently.

    >>> ember.serialization.add_safe_globals([MyConfig])
    """
    for item in safe_globals:
        if isinstance(item, tuple):
            obj, path = item
        else:
            obj, path = item, _full_path(item)
        _USER_SAFE[path] = obj


def get_safe_globals() -> list[Callable | tuple[Callable, str]]:
    """The globals ``add_safe_globals`` allowed."""
    return [obj if _full_path(obj) == path else (obj, path) for path, obj in _USER_SAFE.items()]


def clear_safe_globals() -> None:
    """Forget every global ``add_safe_globals`` allowed."""
    _USER_SAFE.clear()


class safe_globals:
    """Allow some globals in ``weights_only`` loads inside a ``with`` block.

    >>> with ember.serialization.safe_globals([MyConfig]):
    ...     cfg = ember.load("cfg.pt")
    """

    def __init__(self, safe_globals: list[Callable | tuple[Callable, str]]) -> None:
        self.safe_globals = safe_globals

    def __enter__(self) -> None:
        self._saved = dict(_USER_SAFE)
        add_safe_globals(self.safe_globals)

    def __exit__(self, *exc) -> None:
        _USER_SAFE.clear()
        _USER_SAFE.update(self._saved)


# ---- plain pickling of tensors (pickle.dumps, copy, multiprocessing) -------------------------

def reduce_tensor(t: Tensor) -> tuple:
    """``Tensor.__reduce_ex__``: the array owning the tensor's memory (memoized by pickle,
    so tensors sharing memory share it again after ``pickle.loads``), its place in it,
    requires_grad, its class and any instance attributes of a subclass."""
    a = array_of(t)
    found = _block_of(a) if t._xp is np else None
    layout = _layout(a, found[1]) if found is not None and type(found[0]) is np.ndarray \
        else None
    if layout is not None:
        owner, (offset, strides) = found[0], layout
    else:
        host = a if t._xp is np else a.get()
        owner, offset, strides = np.ascontiguousarray(host), 0, _contiguous_strides(a.shape)
    state = getattr(t, "__dict__", None) or None
    args = (owner, a.dtype.str if a.dtype.kind != "V" else a.dtype, offset, tuple(a.shape),
            strides, str(t._device), bool(t.requires_grad), type(t))
    return (_rebuild_pickled, args, state)


def _rebuild_pickled(owner, dtype, offset: int, shape, strides, device: str,
                     requires_grad: bool, cls: type = Tensor) -> Tensor:
    flat = _typed(owner.reshape(-1, order="A").view(np.uint8), np.dtype(dtype))
    data = _strided(flat, offset, shape, strides)
    t = object.__new__(cls)
    if device != "cpu":
        data = array_of(Tensor._wrap(data).to(device))
    Tensor._init(t, data, requires_grad)
    return t
