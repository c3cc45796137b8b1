"""The MPI transport (mpi4py): collectives on NumPy arrays, every one nonblocking.

Each collective starts an MPI nonblocking operation (``Iallreduce``, ``Ibcast`` ...) and
returns a ``Request``; ``Request.wait`` polls it with a deadline, so a rank that never
arrives (it raised, it hangs, it runs another collective) becomes a ``DistTimeoutError``
naming the collective instead of a hang. Polling also drives MPICH's progress engine:
without a progress thread a nonblocking collective advances only inside MPI calls, which
is why ``poke`` exists (DDP calls it between gradient hooks, so a bucket's all-reduce
moves while the rest of the backward computes).

Buffers must be C-contiguous NumPy arrays; the caller copies when they are not.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

_REDUCE_NAMES = ("SUM", "PRODUCT", "MAX", "MIN")


class DistTimeoutError(RuntimeError):
    """A collective did not complete within the process group's timeout."""


def load_mpi():
    """mpi4py's MPI module, initialized; ImportError with the install command if absent."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("ember.distributed needs mpi4py and an MPI library: "
                          "pip install 'ember[distributed]' (mpi4py and the mpich wheel)") from e
    return MPI


class Request:
    """An MPI operation in flight; ``then`` runs once it completed (a copy back, AVG's
    division)."""

    __slots__ = ("reqs", "what", "timeout", "then", "done")

    def __init__(self, reqs: list, what: str, timeout: float,
                 then: Callable[[], None] | None = None) -> None:
        self.reqs, self.what, self.timeout, self.then, self.done = reqs, what, timeout, then, False

    def test(self) -> bool:
        if self.done:
            return True
        from mpi4py import MPI
        if MPI.Request.Testall(self.reqs):
            self._finish()
        return self.done

    def wait(self, timeout: float | None = None) -> None:
        if self.done:
            return
        from mpi4py import MPI
        limit = self.timeout if timeout is None else timeout
        start = time.monotonic()
        polls = 0
        # Yield the core while waiting (2 cores may run 3 ranks): sleep(0) for the first
        # polls, then back off to 0.5 ms; a blocking MPI wait would spin at 100% instead.
        while not MPI.Request.Testall(self.reqs):
            polls += 1
            if polls > 200:
                if time.monotonic() - start > limit:
                    raise DistTimeoutError(
                        f"{self.what}: timed out after {limit:.1f} s waiting for the other ranks "
                        "(a rank failed, hangs, or called a different collective)")
                time.sleep(0.0005 if polls > 2000 else 0)
        self._finish()

    def _finish(self) -> None:
        self.done = True
        if self.then is not None:
            then, self.then = self.then, None
            then()


class MPIBackend:
    """Collectives of one communicator on NumPy arrays."""

    name = "mpi"

    def __init__(self, comm, timeout: float) -> None:
        MPI = load_mpi()
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = timeout
        self._ops = {"SUM": MPI.SUM, "PRODUCT": MPI.PROD, "MAX": MPI.MAX, "MIN": MPI.MIN,
                     "BAND": MPI.BAND, "BOR": MPI.BOR, "BXOR": MPI.BXOR}

    def _req(self, reqs, what: str, then=None) -> Request:
        return Request(reqs if isinstance(reqs, list) else [reqs], what, self.timeout, then)

    def _buf(self, a: np.ndarray):
        # Bool arrays: MPI's C_BOOL has no MAX/MIN in every MPI; reduce them as bytes.
        if a.dtype == np.bool_:
            return [a.view(np.uint8), self.MPI.UNSIGNED_CHAR]
        return a

    # ---- collectives ------------------------------------------------------------------
    def all_reduce(self, a: np.ndarray, op: str, what: str = "all_reduce") -> Request:
        return self._req(self.comm.Iallreduce(self.MPI.IN_PLACE, self._buf(a), self._ops[op]),
                         what)

    def broadcast(self, a: np.ndarray, src: int, what: str = "broadcast") -> Request:
        return self._req(self.comm.Ibcast(self._buf(a), root=src), what)

    def all_gather(self, out: np.ndarray, a: np.ndarray, what: str = "all_gather") -> Request:
        """``out`` has shape (world, *a.shape)."""
        return self._req(self.comm.Iallgather(self._buf(a), self._buf(out)), what)

    def reduce_scatter(self, out: np.ndarray, a: np.ndarray, op: str,
                       what: str = "reduce_scatter") -> Request:
        """``a`` holds world blocks of ``out``'s size; rank r gets the reduction of block r."""
        return self._req(self.comm.Ireduce_scatter_block(self._buf(a), self._buf(out),
                                                         self._ops[op]), what)

    def reduce(self, a: np.ndarray, op: str, dst: int, what: str = "reduce") -> Request:
        if self.rank == dst:
            r = self.comm.Ireduce(self.MPI.IN_PLACE, self._buf(a), self._ops[op], root=dst)
        else:
            r = self.comm.Ireduce(self._buf(a), None, self._ops[op], root=dst)
        return self._req(r, what)

    def gather(self, out: np.ndarray | None, a: np.ndarray, dst: int,
               what: str = "gather") -> Request:
        recv = self._buf(out) if self.rank == dst else None
        return self._req(self.comm.Igather(self._buf(a), recv, root=dst), what)

    def scatter(self, out: np.ndarray, a: np.ndarray | None, src: int,
                what: str = "scatter") -> Request:
        send = self._buf(a) if self.rank == src else None
        return self._req(self.comm.Iscatter(send, self._buf(out), root=src), what)

    def send(self, a: np.ndarray, dst: int, tag: int, what: str = "send") -> Request:
        return self._req(self.comm.Isend(self._buf(a), dest=dst, tag=tag), what)

    def recv(self, a: np.ndarray, src: int | None, tag: int, what: str = "recv") -> Request:
        source = self.MPI.ANY_SOURCE if src is None else src
        return self._req(self.comm.Irecv(self._buf(a), source=source, tag=tag), what)

    def barrier(self, what: str = "barrier") -> Request:
        return self._req(self.comm.Ibarrier(), what)

    def poke(self) -> None:
        """Give MPI's progress engine a turn (nonblocking collectives advance only in MPI
        calls when MPICH runs without a progress thread)."""
        self.MPI.Request.Testall([])
        self.comm.Iprobe(self.MPI.ANY_SOURCE, 0x7FFF)

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)

    def close(self) -> None:
        if self.comm is not self.MPI.COMM_WORLD:
            self.comm.Free()
