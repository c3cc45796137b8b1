"""The steps of a plan: what one call runs, in order, over an environment of arrays
(value id -> array). Each step lists the values it reads and writes and the buffers its
outputs go to, which is all that memory planning needs to know about it.
"""
from __future__ import annotations

import numpy as np

from ember.devices import array_module
from ember.dispatch import loud, quiet
from ember.errors import OpError
from ember.ir.interpreter import Interpreter, run_node
from ember.ops.matmul import matmul_rows
from ember.ops.registry import OPS
from ember.runtime.memory import Buffer

_NDARRAY = np.ndarray


class KernelStep:
    """A generated kernel: reads ``args``, writes ``writes`` into their buffers. It calls
    ``compiled.run`` itself (what ``backend.launch`` does, one call less per kernel)."""
    may_alias = False   # its outputs are its own buffers, never views of its inputs

    def __init__(self, compiled, args: list[int], outs: list[int], buffers: list[Buffer],
                 backend=None):
        self.compiled, self.reads, self.writes, self.buffers = compiled, args, outs, buffers
        self.backend = backend   # the Backend that compiled it (for batching)

    def __call__(self, env: dict) -> None:
        out = [b.get(env) for b in self.buffers]
        self.compiled.run([env[a] for a in self.reads], out)
        for o, arr in zip(self.writes, out):
            env[o] = arr


class MultiKernelStep:
    """Adjacent independent kernels as one call (horizontal fusion): one machine-code
    call on the CPU, one launch on a GPU. E.g. the optimizer updates of every parameter,
    each of its own shape."""
    may_alias = False

    def __init__(self, steps: list[KernelStep], compiled) -> None:
        self.parts, self.compiled = steps, compiled
        self.reads = [a for s in steps for a in s.reads]
        self.writes = [w for s in steps for w in s.writes]
        self.buffers = [b for s in steps for b in s.buffers]

    def __call__(self, env: dict) -> None:
        outs = [[b.get(env) for b in s.buffers] for s in self.parts]
        self.compiled.run([[env[a] for a in s.reads] for s in self.parts], outs)
        for s, out in zip(self.parts, outs):
            for o, arr in zip(s.writes, out):
                env[o] = arr


class EagerStep:
    """A registry op run eagerly (a view, an index, anything without a kernel). Its
    result may be a view of an input, so it keeps the input's memory alive."""
    may_alias = True

    def __init__(self, graph, nid: int) -> None:
        self.graph, self.nid = graph, nid
        self.reads, self.writes, self.buffers = list(graph[nid].args), [nid], [None]
        self.shape = tuple(graph[nid].shape)
        self.node = graph[nid]
        self.xp = array_module(self.node.device)
        # A result nothing in this plan reads may have another shape than traced: a
        # data-dependent one (x[mask]) ends its segment, and its shape picks the next.
        self.any_shape = (OPS[self.node.op].data_dependent_shape is not None
                          and not graph.users(nid))

    def __call__(self, env: dict) -> None:
        # interpreter.run_node's work, without making an Interpreter per call
        d = self.node
        token = quiet()   # NumPy's inf/NaN warnings off, as in eager (dispatch.py)
        try:
            out = OPS[d.op].eager(self.xp, *[env[a] for a in d.args], **d.attrs)
        except OpError as e:   # an op's own check: eager's error type, the user's line
            raise e.relocated(d.src or e.location) from None
        except Exception as e:
            raise Interpreter(self.graph).node_error(self.nid, d, e)
        finally:
            loud(token)
        if type(out) is not _NDARRAY and not hasattr(out, "__cuda_array_interface__"):
            out = self.xp.asarray(out)  # NumPy returns scalars for 0-dim results
        if out.shape != self.shape and not self.any_shape:   # kernels after this one
            # are built for the traced shape
            raise RuntimeError(f"ember.compile: %{self.nid} ({self.graph[self.nid].op}) "
                               f"gave shape {out.shape}, traced as {self.shape}; a "
                               "data-dependent shape must not be replayed")
        env[self.nid] = out


class ViewStep(EagerStep):
    """``reshape`` or ``permute``: one method call on one array. A view computes nothing,
    so there are no NumPy warnings to silence and no registry call to make (an attention
    block's training step has ~80 of them; ~8 -> ~2 us each)."""

    def __init__(self, graph, nid: int) -> None:
        super().__init__(graph, nid)
        d = self.node
        self.src = d.args[0]
        self.reshape = d.op == "reshape"
        self.arg = d.attrs["shape"] if self.reshape else d.attrs["dims"]

    def __call__(self, env: dict) -> None:
        a = env[self.src]
        try:
            out = a.reshape(self.arg) if self.reshape else a.transpose(self.arg)
        except Exception:   # the registry op's own error, with the user's line
            return EagerStep.__call__(self, env)
        if out.shape != self.shape and not self.any_shape:
            return EagerStep.__call__(self, env)   # (raises: kernels expect the traced one)
        env[self.nid] = out


def eager_step(graph, nid: int) -> EagerStep:
    """The step running op ``nid`` eagerly: a ``ViewStep`` for reshape and permute."""
    if graph[nid].op in ("reshape", "permute"):
        return ViewStep(graph, nid)
    return EagerStep(graph, nid)


class MatmulStep:
    """A BLAS matmul (NumPy's, or cuBLAS through CuPy) into a reused buffer, then its
    elementwise epilogue kernel (if any) right away, while the product is still in cache."""
    may_alias = False

    def __init__(self, graph, nid: int, buffer: Buffer, transposed: bool = False) -> None:
        self.graph, self.nid = graph, nid
        self.reads, self.writes, self.buffers = list(graph[nid].args), [nid], [buffer]
        self.epilogue: KernelStep | None = None
        # Compute (A @ B)^T as B^T @ A^T into a C-order buffer when the product is only
        # read transposed (weight gradients): the kernels reading it then see contiguous
        # memory (vectorized, collapsed loops) instead of a strided view.
        self.transposed = transposed

    def add_epilogue(self, k: KernelStep) -> None:
        self.epilogue = k
        self.reads = self.reads + [a for a in k.reads if a != self.nid and a not in self.reads]
        self.writes = self.writes + k.writes
        self.buffers = self.buffers + k.buffers

    def __call__(self, env: dict) -> None:
        a, b = (env[x] for x in self.graph[self.nid].args)
        buf = self.buffers[0]
        token = quiet()   # NumPy's inf/NaN warnings off, as eager's matmul (dispatch.py)
        try:
            if self.transposed:
                out = buf.xp.matmul(b.swapaxes(-1, -2), a.swapaxes(-1, -2), out=buf.get(env))
                env[self.nid] = out.swapaxes(-1, -2)
            elif a.dtype == b.dtype == buf.dtype and a.ndim >= 1 and b.ndim >= 1:
                env[self.nid] = matmul_rows(buf.xp, a, b, out=buf.get(env))
            else:  # mixed dtypes, vectors: the registry op decides
                env[self.nid] = run_node(self.graph, self.nid, env)
        finally:
            loud(token)
        if self.epilogue is not None:
            self.epilogue(env)


class GroupFallbackStep:
    """A fused group whose kernel failed to compile, run op by op."""
    may_alias = True

    def __init__(self, graph, nodes: list[int]) -> None:
        self.steps = [EagerStep(graph, n) for n in nodes]
        self.reads = sorted({a for s in self.steps for a in s.reads} - set(nodes))
        self.writes = list(nodes)
        self.buffers = [None] * len(nodes)

    def __call__(self, env: dict) -> None:
        for s in self.steps:
            s(env)


