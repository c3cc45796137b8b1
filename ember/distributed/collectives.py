"""Collectives on tensors, in place, with PyTorch's signatures.

Eagerly a collective runs on the tensor's memory itself (a contiguous staging copy only
when the tensor is a strided view, or a CUDA tensor on the MPI transport) and bumps the
tensor's version when it completes. ``async_op=True`` returns a ``Work`` whose
``wait()`` completes it. Inside ``@ember.compile`` tracing, ``all_reduce`` and
``broadcast`` are graph ops (``ember/distributed/graph_ops.py``) written into the tensor like
any in-place op, so a replay runs them; the other collectives stop the trace (the
function then runs eagerly, with that reason in ``ember.compile`` stats).

For the first ``CHECKED_CALLS`` collectives of a group (every call with
``EMBER_DISTRIBUTED_DEBUG=1``) the ranks first compare what they called; a difference
raises on every rank, naming the collective, the ranks and the shapes.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ember import dispatch as _dispatch
from ember.distributed.group import ProcessGroup, ReduceOp, resolve
from ember.distributed.mpi import DistTimeoutError
from ember.tensor import array_of

_NAMES = ("all_reduce", "broadcast", "all_gather", "all_gather_into_tensor",
          "reduce_scatter_tensor", "reduce", "gather", "scatter", "barrier", "reduce_scatter")
_DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
_OPS = tuple(ReduceOp)


class Work:
    """A collective started with ``async_op=True``; ``wait()`` completes it.

    >>> w = dist.all_reduce(t, async_op=True)
    >>> w.wait()
    True
    """

    def __init__(self, req=None, outputs: list | None = None) -> None:
        self._req = req
        self._outputs = outputs or []

    def wait(self, timeout=None) -> bool:
        if self._req is not None:
            secs = timeout.total_seconds() if hasattr(timeout, "total_seconds") else timeout
            self._req.wait(secs)
        return True

    def is_completed(self) -> bool:
        return self._req is None or self._req.test()

    def is_success(self) -> bool:
        return self.is_completed()

    def synchronize(self) -> None:
        self.wait()

    def result(self) -> list:
        self.wait()
        return self._outputs

    def exception(self):
        return None


def _finish(req, async_op: bool, outputs=None):
    if async_op:
        return Work(req, outputs)
    if req is not None:
        req.wait()
    return None


# ---- agreement check ------------------------------------------------------------------
def _record(name: str, t, op: ReduceOp | None, root: int, extra: int) -> np.ndarray:
    rec = np.full(16, -1, dtype=np.int64)
    rec[0] = _NAMES.index(name)
    rec[1] = _OPS.index(op) if op is not None else -1
    rec[2] = root
    rec[14] = extra
    if t is not None:
        a = array_of(t)
        rec[3] = _DTYPES.index(a.dtype.name) if a.dtype.name in _DTYPES else 99
        rec[4] = a.ndim
        shape = list(a.shape)
        if len(shape) > 8:   # fold the tail into one number: only equality matters
            shape = shape[:7] + [hash(tuple(shape[7:])) & 0x7FFFFFFF]
        rec[5:5 + len(shape)] = shape
        rec[13] = a.size
    return rec


def _describe(rec: np.ndarray) -> str:
    name = _NAMES[rec[0]]
    parts = []
    if rec[3] >= 0:
        shape = list(rec[5:5 + rec[4]]) if rec[4] <= 8 else "[...]"
        parts.append(f"shape={[int(s) for s in shape] if isinstance(shape, list) else shape}")
        parts.append(f"dtype={_DTYPES[rec[3]] if rec[3] < len(_DTYPES) else '?'}")
    if rec[1] >= 0:
        parts.append(f"op={_OPS[rec[1]].name}")
    if rec[2] >= 0:
        parts.append(f"root={int(rec[2])}")
    if rec[14] >= 0:
        parts.append(f"list_len={int(rec[14])}")
    return f"{name}({', '.join(parts)})"


def _check(pg: ProcessGroup, name: str, t=None, op: ReduceOp | None = None, root: int = -1,
           extra: int = -1) -> None:
    """Raise on every rank when the ranks called different collectives or shapes."""
    if pg.size == 1 or not pg.should_check():
        return
    mine = _record(name, t, op, root, extra)
    everyone = np.empty((pg.size, mine.size), dtype=np.int64)
    pg.mpi.all_gather(everyone, mine, f"{name} (agreement check)").wait()
    if (everyone == everyone[0]).all():
        return
    groups: dict[bytes, list[int]] = {}
    for r in range(pg.size):
        groups.setdefault(everyone[r].tobytes(), []).append(r)
    lines = [f"rank{'s' if len(rs) > 1 else ''} {','.join(map(str, rs))}: "
             f"{_describe(np.frombuffer(k, dtype=np.int64))}" for k, rs in groups.items()]
    raise RuntimeError(f"{name}: the ranks disagree on the collective they run (called on rank "
                       f"{pg.rank}): " + "; ".join(lines))


# ---- buffers --------------------------------------------------------------------------
def _staged(t, transport):
    """(buffer the transport works on, copy-back or None) for tensor ``t``."""
    a = array_of(t)
    if transport.name == "mpi" and t._device.type == "cuda":
        host = np.ascontiguousarray(a.get())
        return host, lambda: a.set(host) if a.flags.c_contiguous else a.__setitem__(
            Ellipsis, t._xp.asarray(host))
    if not a.flags.c_contiguous:
        buf = t._xp.ascontiguousarray(a)
        return buf, lambda: a.__setitem__(Ellipsis, buf)
    return a, None


def _to_host(t, transport):
    a = array_of(t)
    if transport.name == "mpi" and t._device.type == "cuda":
        return np.ascontiguousarray(a.get())
    return t._xp.ascontiguousarray(a)


def _empty_like_buf(buf, shape):
    if isinstance(buf, np.ndarray):
        return np.empty(shape, dtype=buf.dtype)
    import cupy
    return cupy.empty(shape, dtype=buf.dtype)


def _write(t, value) -> None:
    """Write an array (host or device) into tensor ``t`` in place and bump its version."""
    a = array_of(t)
    if t._device.type == "cuda" and isinstance(value, np.ndarray):
        value = t._xp.asarray(value)
    a[...] = value.reshape(a.shape)
    t._vc[0] += 1


def _reduce_name(op, what: str, t) -> str:
    if not isinstance(op, ReduceOp):
        raise TypeError(f"{what}: op must be a dist.ReduceOp, got {op!r}")
    if op is ReduceOp.AVG and t is not None and array_of(t).dtype.kind not in "fc":
        raise ValueError(f"{what}: ReduceOp.AVG needs a floating-point tensor, got "
                         f"{array_of(t).dtype.name}")
    if op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR) and t is not None \
            and array_of(t).dtype.kind not in "biu":
        raise ValueError(f"{what}: ReduceOp.{op.name} needs an integer or bool tensor")
    return "SUM" if op is ReduceOp.AVG else op.name


def _group_rank(pg: ProcessGroup, rank: int | None, group_rank: int | None, what: str,
                arg: str) -> int:
    """PyTorch's ``src``/``dst`` are global ranks; ``group_src``/``group_dst`` the rank in
    the group."""
    if group_rank is not None:
        r = group_rank
    elif rank is None:
        raise ValueError(f"{what}: {arg} is required")
    else:
        if rank not in pg.global_ranks:
            raise ValueError(f"{what}: global rank {rank} is not part of the group "
                             f"(its ranks are {pg.global_ranks})")
        r = pg.global_ranks.index(rank)
    if not 0 <= r < pg.size:
        raise ValueError(f"{what}: {arg}={r} is not a rank of a group of {pg.size}")
    return r


def _trace_unsupported(what: str) -> None:
    tracer = _dispatch.tracer
    if tracer is not None:
        tracer.fail(f"dist.{what} inside a compiled function runs eagerly (only all_reduce and "
                    "broadcast are graph ops)")


# ---- collectives ----------------------------------------------------------------------
def _settle(tensor, back, avg=None, size: int = 1):
    """What a collective does once its data has arrived: AVG's division of the received
    sum (``avg``: the buffer), the copy of a staged buffer back into ``tensor``
    (``back``), and a new version of ``tensor`` (it was written in place)."""
    def then():
        if avg is not None:
            avg[...] /= size
        if back is not None:
            back()
        tensor._vc[0] += 1
    return then


def all_reduce(tensor, op: ReduceOp = ReduceOp.SUM, group=None, async_op: bool = False):
    """Combine ``tensor`` across ranks with ``op``, in place on every rank.

    >>> t = ember.tensor([float(dist.get_rank())])
    >>> dist.all_reduce(t)            # t == sum of all ranks' values on every rank
    """
    pg = resolve(group, "all_reduce")
    name = _reduce_name(op, "all_reduce", tensor)
    _check(pg, "all_reduce", tensor, op)
    if pg.size == 1:
        return _finish(None, async_op, [tensor])
    if _dispatch.tracer is not None:
        from ember.distributed.graph_ops import collective_inplace
        collective_inplace(tensor, "all_reduce", pg, reduce_op=op.name)
        return _finish(None, async_op, [tensor])
    tr = pg.transport(tensor._device.type)
    buf, back = _staged(tensor, tr)
    req = tr.all_reduce(buf, name, "all_reduce")

    req.then = _settle(tensor, back, buf if op is ReduceOp.AVG else None, pg.size)
    return _finish(req, async_op, [tensor])


def broadcast(tensor, src: int | None = None, group=None, async_op: bool = False,
              group_src: int | None = None):
    """Copy rank ``src``'s ``tensor`` into ``tensor`` on every rank."""
    pg = resolve(group, "broadcast")
    root = _group_rank(pg, src, group_src, "broadcast", "src")
    _check(pg, "broadcast", tensor, root=root)
    if pg.size == 1:
        return _finish(None, async_op, [tensor])
    if _dispatch.tracer is not None:
        from ember.distributed.graph_ops import collective_inplace
        collective_inplace(tensor, "broadcast", pg, root=root)
        return _finish(None, async_op, [tensor])
    tr = pg.transport(tensor._device.type)
    buf, back = _staged(tensor, tr)
    req = tr.broadcast(buf, root, "broadcast")

    def then():
        if back is not None and pg.rank != root:
            back()
        tensor._vc[0] += 1
    req.then = then
    return _finish(req, async_op, [tensor])


def all_gather(tensor_list: list, tensor, group=None, async_op: bool = False):
    """Fill ``tensor_list[r]`` with rank r's ``tensor`` on every rank."""
    pg = resolve(group, "all_gather")
    if len(tensor_list) != pg.size:
        raise ValueError(f"all_gather: tensor_list has {len(tensor_list)} tensors, the group "
                         f"has {pg.size} ranks")
    for i, o in enumerate(tensor_list):
        if tuple(o.shape) != tuple(tensor.shape):
            raise ValueError(f"all_gather: tensor_list[{i}] has shape {list(o.shape)}, the input "
                             f"{list(tensor.shape)}")
    _trace_unsupported("all_gather")
    _check(pg, "all_gather", tensor, extra=len(tensor_list))
    tr = pg.transport(tensor._device.type)
    src = _to_host(tensor, tr)
    out = _empty_like_buf(src, (pg.size,) + src.shape)
    req = tr.all_gather(out, src, "all_gather")

    def then():
        for r, o in enumerate(tensor_list):
            _write(o, out[r])
    req.then = then
    return _finish(req, async_op, tensor_list)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op: bool = False):
    """Rank r's ``input_tensor`` becomes block r of ``output_tensor`` (concatenated along
    dim 0, or stacked: ``output_tensor`` of shape (world_size, *input.shape))."""
    pg = resolve(group, "all_gather_into_tensor")
    if output_tensor.numel() != pg.size * input_tensor.numel():
        raise ValueError(f"all_gather_into_tensor: output tensor size ({output_tensor.numel()}, "
                         f"shape {list(output_tensor.shape)}) must be equal to world_size "
                         f"({pg.size}) times input tensor size ({input_tensor.numel()}, shape "
                         f"{list(input_tensor.shape)})")
    _trace_unsupported("all_gather_into_tensor")
    _check(pg, "all_gather_into_tensor", input_tensor)
    tr = pg.transport(input_tensor._device.type)
    src = _to_host(input_tensor, tr)
    out, back = _staged(output_tensor, tr)
    flat = out.reshape(pg.size, src.size)
    req = tr.all_gather(flat, src.reshape(-1), "all_gather_into_tensor")

    req.then = _settle(output_tensor, back)
    return _finish(req, async_op, [output_tensor])


def reduce_scatter_tensor(output, input, op: ReduceOp = ReduceOp.SUM, group=None,
                          async_op: bool = False):
    """Reduce ``input`` (world_size blocks along dim 0) across ranks; rank r gets block r."""
    pg = resolve(group, "reduce_scatter_tensor")
    name = _reduce_name(op, "reduce_scatter_tensor", input)
    if input.numel() != pg.size * output.numel():
        raise ValueError(f"reduce_scatter_tensor: input tensor size ({input.numel()}, shape "
                         f"{list(input.shape)}) must be equal to world_size ({pg.size}) times "
                         f"output tensor size ({output.numel()}, shape {list(output.shape)})")
    _trace_unsupported("reduce_scatter_tensor")
    _check(pg, "reduce_scatter_tensor", input, op)
    tr = pg.transport(input._device.type)
    src = _to_host(input, tr)
    out, back = _staged(output, tr)
    req = tr.reduce_scatter(out.reshape(-1), src.reshape(-1), name, "reduce_scatter_tensor")

    req.then = _settle(output, back, out if op is ReduceOp.AVG else None, pg.size)
    return _finish(req, async_op, [output])


def reduce(tensor, dst: int | None = None, op: ReduceOp = ReduceOp.SUM, group=None,
           async_op: bool = False, group_dst: int | None = None):
    """Combine ``tensor`` across ranks into rank ``dst``'s ``tensor`` (others unchanged)."""
    pg = resolve(group, "reduce")
    root = _group_rank(pg, dst, group_dst, "reduce", "dst")
    name = _reduce_name(op, "reduce", tensor)
    _trace_unsupported("reduce")
    _check(pg, "reduce", tensor, op, root)
    tr = pg.transport(tensor._device.type)
    buf, back = _staged(tensor, tr)
    if pg.rank != root and buf is array_of(tensor):
        buf = buf.copy()    # MPI reads it; NCCL's in-place reduce may write it
    req = tr.reduce(buf, name, root, "reduce")

    def then():
        if pg.rank == root:
            if op is ReduceOp.AVG:
                buf[...] /= pg.size
            if back is not None:
                back()
            tensor._vc[0] += 1
    req.then = then
    return _finish(req, async_op, [tensor])


def gather(tensor, gather_list: list | None = None, dst: int | None = None, group=None,
           async_op: bool = False, group_dst: int | None = None):
    """Rank ``dst`` receives every rank's ``tensor`` into ``gather_list``."""
    pg = resolve(group, "gather")
    root = _group_rank(pg, 0 if dst is None and group_dst is None else dst, group_dst,
                       "gather", "dst")
    if pg.rank == root:
        if gather_list is None or len(gather_list) != pg.size:
            raise ValueError(f"gather: on the destination rank, gather_list must hold "
                             f"{pg.size} tensors")
    elif gather_list:
        raise ValueError("gather: gather_list must be None or empty on non-destination ranks")
    _trace_unsupported("gather")
    _check(pg, "gather", tensor, root=root)
    tr = pg.transport(tensor._device.type)
    src = _to_host(tensor, tr)
    out = _empty_like_buf(src, (pg.size,) + src.shape) if pg.rank == root else None
    req = tr.gather(out, src, root, "gather")

    def then():
        if out is not None:
            for r, o in enumerate(gather_list):
                _write(o, out[r])
    req.then = then
    return _finish(req, async_op, gather_list or [])


def scatter(tensor, scatter_list: list | None = None, src: int | None = None, group=None,
            async_op: bool = False, group_src: int | None = None):
    """Rank r receives ``scatter_list[r]`` of rank ``src`` into ``tensor``."""
    pg = resolve(group, "scatter")
    root = _group_rank(pg, 0 if src is None and group_src is None else src, group_src,
                       "scatter", "src")
    tr = pg.transport(tensor._device.type)
    send = None
    if pg.rank == root:
        if scatter_list is None or len(scatter_list) != pg.size:
            raise ValueError(f"scatter: on the source rank, scatter_list must hold {pg.size} "
                             "tensors")
        for i, s in enumerate(scatter_list):
            if tuple(s.shape) != tuple(tensor.shape):
                raise ValueError(f"scatter: scatter_list[{i}] has shape {list(s.shape)}, the "
                                 f"output tensor {list(tensor.shape)}")
        send = tr_stack([_to_host(s, tr) for s in scatter_list])
    elif scatter_list:
        raise ValueError("scatter: scatter_list must be None or empty on non-source ranks")
    _trace_unsupported("scatter")
    _check(pg, "scatter", tensor, root=root)
    out, back = _staged(tensor, tr)
    req = tr.scatter(out, send, root, "scatter")

    def then():
        if back is not None:
            back()
        tensor._vc[0] += 1
    req.then = then
    return _finish(req, async_op, [tensor])


def tr_stack(arrays: list):
    if isinstance(arrays[0], np.ndarray):
        return np.stack(arrays)
    import cupy
    return cupy.stack(arrays)


def barrier(group=None, async_op: bool = False, device_ids=None):
    """Wait until every rank of the group reached its barrier."""
    pg = resolve(group, "barrier")
    _trace_unsupported("barrier")
    _check(pg, "barrier")
    return _finish(pg.mpi.barrier(), async_op)


# ---- point to point -------------------------------------------------------------------
def isend(tensor, dst: int | None = None, group=None, tag: int = 0,
          group_dst: int | None = None) -> Work:
    """Start sending ``tensor`` to rank ``dst``."""
    pg = resolve(group, "send")
    peer = _group_rank(pg, dst, group_dst, "send", "dst")
    if peer == pg.rank:
        raise ValueError("send: invalid destination rank: should not be the same as the rank "
                         "of the current process")
    _trace_unsupported("send")
    tr = pg.transport(tensor._device.type)
    buf = _to_host(tensor, tr)
    return Work(tr.send(buf, peer, tag, f"send to rank {peer}"))


def send(tensor, dst: int | None = None, group=None, tag: int = 0,
         group_dst: int | None = None) -> None:
    isend(tensor, dst, group, tag, group_dst).wait()


def irecv(tensor, src: int | None = None, group=None, tag: int = 0,
          group_src: int | None = None) -> Work:
    """Start receiving into ``tensor`` from rank ``src`` (any rank when None)."""
    pg = resolve(group, "recv")
    _trace_unsupported("recv")
    tr = pg.transport(tensor._device.type)
    peer = None
    if src is not None or group_src is not None:
        peer = _group_rank(pg, src, group_src, "recv", "src")
    elif tr.name == "mpi":
        peer = _probe_source(pg, tag)
    buf, back = _staged(tensor, tr)
    req = tr.recv(buf, peer, tag, f"recv from rank {peer}")
    expected = buf.nbytes

    def then():
        if back is not None:
            back()
        tensor._vc[0] += 1
    req.then = then
    work = Work(req, [tensor])
    work.source = pg.global_ranks[peer] if peer is not None else -1
    work._expected = expected
    return work


def recv(tensor, src: int | None = None, group=None, tag: int = 0,
         group_src: int | None = None) -> int:
    """Receive into ``tensor``; returns the sender's rank."""
    w = irecv(tensor, src, group, tag, group_src)
    w.wait()
    return w.source


def _probe_source(pg: ProcessGroup, tag: int) -> int:
    MPI = pg.mpi.MPI
    status = MPI.Status()
    start = time.monotonic()
    while not pg.comm.Iprobe(MPI.ANY_SOURCE, tag, status):
        if time.monotonic() - start > pg.timeout:
            raise DistTimeoutError(f"recv: no message with tag {tag} arrived within "
                                   f"{pg.timeout:.1f} s")
        time.sleep(0.0002)
    return status.Get_source()


# ---- Python objects (pickled, over MPI) -----------------------------------------------
def broadcast_object_list(object_list: list, src: int | None = None, group=None,
                          device=None, group_src: int | None = None) -> None:
    """Replace ``object_list``'s items with rank ``src``'s (any picklable objects)."""
    pg = resolve(group, "broadcast_object_list")
    root = _group_rank(pg, 0 if src is None and group_src is None else src, group_src,
                       "broadcast_object_list", "src")
    got = pg.comm.bcast(list(object_list) if pg.rank == root else None, root=root)
    object_list[:] = got


def all_gather_object(object_list: list, obj: Any, group=None) -> None:
    """``object_list[r]`` becomes rank r's ``obj`` on every rank."""
    pg = resolve(group, "all_gather_object")
    if len(object_list) != pg.size:
        raise ValueError(f"all_gather_object: object_list has {len(object_list)} items, the "
                         f"group has {pg.size} ranks")
    object_list[:] = pg.comm.allgather(obj)
