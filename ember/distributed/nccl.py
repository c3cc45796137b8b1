"""The NCCL transport (``cupy.cuda.nccl``): collectives on CuPy arrays, one GPU a rank.

The communicator is bootstrapped over MPI (rank 0 makes the unique id and broadcasts
it), so the same launcher serves both backends. Each collective is enqueued on the
current CuPy stream, so later work on that stream is ordered after it and ``wait()``
need not block the host (PyTorch's NCCL semantics). With ``EMBER_NCCL_BLOCKING_WAIT=1``
a ``Request`` polls a CUDA event recorded after the collective with the group's
deadline, so a peer that never arrives ends in ``DistTimeoutError`` (and an aborted
communicator) instead of a hang. gather and scatter are built from grouped send/recv,
as NCCL has no such collectives.

Written against CuPy's ``NcclCommunicator`` (CuPy >= 10); run only where a GPU is.
"""
from __future__ import annotations

import os
import time

from ember.distributed.mpi import DistTimeoutError, Request

BLOCKING_WAIT = os.environ.get("EMBER_NCCL_BLOCKING_WAIT", "0") not in ("", "0") or \
    os.environ.get("TORCH_NCCL_BLOCKING_WAIT", "0") not in ("", "0")


def load_nccl():
    try:
        import cupy
        from cupy.cuda import nccl
    except ImportError as e:
        raise RuntimeError("the nccl backend needs CuPy with NCCL (pip install 'ember[cuda]' "
                           "and NCCL for your CUDA)") from e
    if not getattr(nccl, "available", True):
        raise RuntimeError("CuPy was built without NCCL: the nccl backend is unavailable")
    return cupy, nccl


class NCCLRequest(Request):
    """A collective on the NCCL stream; completion is its CUDA event (``then`` and the
    finishing are ``Request``'s)."""
    __slots__ = ("event", "comm")

    def __init__(self, event, what: str, timeout: float, comm, then=None) -> None:
        self.event, self.what, self.timeout, self.comm = event, what, timeout, comm
        self.then, self.done = then, False

    def test(self) -> bool:
        if not self.done and self.event.done:
            self._finish()
        return self.done

    def wait(self, timeout: float | None = None) -> None:
        """Stream-ordered by default, as PyTorch's NCCL work: the collective was enqueued
        on the current stream, so what runs on that stream afterwards already sees its
        result and the host need not block. ``EMBER_NCCL_BLOCKING_WAIT=1`` makes the host
        wait (with the group's timeout, aborting the communicator when it passes)."""
        if self.done:
            return
        if not BLOCKING_WAIT:
            self._finish()
            return
        limit = self.timeout if timeout is None else timeout
        start = time.monotonic()
        while not self.event.done:
            if time.monotonic() - start > limit:
                self.comm.abort()   # NCCL kernels waiting for a peer never return otherwise
                raise DistTimeoutError(f"{self.what}: timed out after {limit:.1f} s waiting "
                                       "for the other ranks (NCCL communicator aborted)")
            time.sleep(0.0001)
        self._finish()


class NCCLBackend:
    """Collectives of one NCCL communicator on CuPy arrays of this rank's GPU."""

    name = "nccl"

    def __init__(self, mpi_comm, timeout: float, device_index: int) -> None:
        cupy, nccl = load_nccl()
        self.cupy, self.nccl = cupy, nccl
        self.rank, self.size = mpi_comm.Get_rank(), mpi_comm.Get_size()
        self.timeout = timeout
        self.device = device_index
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = mpi_comm.bcast(uid, root=0)
        with cupy.cuda.Device(device_index):
            self.comm = nccl.NcclCommunicator(self.size, uid, self.rank)
        self._ops = {"SUM": nccl.NCCL_SUM, "PRODUCT": nccl.NCCL_PROD, "MAX": nccl.NCCL_MAX,
                     "MIN": nccl.NCCL_MIN}
        self._types = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
                       "float64": nccl.NCCL_FLOAT64, "int32": nccl.NCCL_INT32,
                       "int64": nccl.NCCL_INT64, "uint8": nccl.NCCL_UINT8,
                       "int8": nccl.NCCL_INT8, "bool": nccl.NCCL_UINT8}

    def _t(self, a):
        try:
            return self._types[a.dtype.name]
        except KeyError:
            raise TypeError(f"nccl: unsupported dtype {a.dtype.name}") from None

    def _stream(self) -> int:
        return self.cupy.cuda.get_current_stream().ptr

    def _req(self, what: str, then=None) -> NCCLRequest:
        ev = self.cupy.cuda.Event(disable_timing=True)
        ev.record()
        return NCCLRequest(ev, what, self.timeout, self.comm, then)

    def all_reduce(self, a, op: str, what: str = "all_reduce") -> NCCLRequest:
        self.comm.allReduce(a.data.ptr, a.data.ptr, a.size, self._t(a), self._ops[op],
                            self._stream())
        return self._req(what)

    def broadcast(self, a, src: int, what: str = "broadcast") -> NCCLRequest:
        self.comm.broadcast(a.data.ptr, a.data.ptr, a.size, self._t(a), src, self._stream())
        return self._req(what)

    def all_gather(self, out, a, what: str = "all_gather") -> NCCLRequest:
        self.comm.allGather(a.data.ptr, out.data.ptr, a.size, self._t(a), self._stream())
        return self._req(what)

    def reduce_scatter(self, out, a, op: str, what: str = "reduce_scatter") -> NCCLRequest:
        self.comm.reduceScatter(a.data.ptr, out.data.ptr, out.size, self._t(a), self._ops[op],
                                self._stream())
        return self._req(what)

    def reduce(self, a, op: str, dst: int, what: str = "reduce") -> NCCLRequest:
        self.comm.reduce(a.data.ptr, a.data.ptr, a.size, self._t(a), self._ops[op], dst,
                         self._stream())
        return self._req(what)

    def gather(self, out, a, dst: int, what: str = "gather") -> NCCLRequest:
        s = self._stream()
        self.nccl.groupStart()
        if self.rank == dst:
            for r in range(self.size):
                if r == dst:
                    out[r][...] = a
                else:
                    self.comm.recv(out[r].data.ptr, a.size, self._t(a), r, s)
        else:
            self.comm.send(a.data.ptr, a.size, self._t(a), dst, s)
        self.nccl.groupEnd()
        return self._req(what)

    def scatter(self, out, a, src: int, what: str = "scatter") -> NCCLRequest:
        s = self._stream()
        self.nccl.groupStart()
        if self.rank == src:
            for r in range(self.size):
                if r == src:
                    out[...] = a[r]
                else:
                    self.comm.send(a[r].data.ptr, out.size, self._t(out), r, s)
        else:
            self.comm.recv(out.data.ptr, out.size, self._t(out), src, s)
        self.nccl.groupEnd()
        return self._req(what)

    def send(self, a, dst: int, tag: int, what: str = "send") -> NCCLRequest:
        self.comm.send(a.data.ptr, a.size, self._t(a), dst, self._stream())
        return self._req(what)

    def recv(self, a, src: int | None, tag: int, what: str = "recv") -> NCCLRequest:
        if src is None:
            raise RuntimeError("recv: the nccl backend needs an explicit src rank")
        self.comm.recv(a.data.ptr, a.size, self._t(a), src, self._stream())
        return self._req(what)

    def poke(self) -> None:
        pass   # NCCL kernels progress on the GPU by themselves

    def close(self) -> None:
        self.comm.destroy()
