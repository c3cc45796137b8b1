"""DistributedDataParallel: one model replica per process, gradients averaged.

At construction rank 0's parameters and buffers are broadcast to every rank. The
gradients are grouped in buckets (in reverse parameter order, as the backward produces
them; ``bucket_cap_mb`` each, one dtype and device per bucket). During ``backward`` the
reducer counts, per parameter, the gradient contributions the graph will deliver; when a
parameter's last one has arrived it is ready, and when a bucket's parameters are all
ready its all-reduce starts (nonblocking), while the backward goes on with the earlier
layers. Buckets start in index order on every rank (MPI needs the same order
everywhere). At the end of the backward each bucket is waited for and its average
written to the parameters' ``.grad``.

Inside ``@ember.compile`` the same code records each bucket's all-reduce as a graph op
(``ember/distributed/graph_ops.py``), so a compiled training step is one graph whose
collectives are scheduled as soon as their bucket's gradients exist.
"""
from __future__ import annotations

import contextlib
import weakref
from typing import Any, Iterator

import numpy as np

from ember import autograd
from ember import dispatch as _dispatch
from ember.nn.module import Module
from ember.tensor import array_of


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training over the default process group.

    >>> dist.init_process_group("gloo")
    >>> model = DistributedDataParallel(nn.Linear(4, 2))
    >>> model(x).sum().backward()        # .grad is averaged over the ranks
    """

    def __init__(self, module: Module, device_ids: list | None = None,
                 output_device=None, dim: int = 0, broadcast_buffers: bool = True,
                 process_group=None, bucket_cap_mb: float | None = None,
                 find_unused_parameters: bool = False, check_reduction: bool = False,
                 gradient_as_bucket_view: bool = False, static_graph: bool = False,
                 delay_all_reduce_named_params=None, param_to_hook_all_reduce=None,
                 mixed_precision=None, device_mesh=None) -> None:
        from ember.distributed.group import resolve

        super().__init__()
        pg = resolve(process_group, "DistributedDataParallel")
        # ember.compile(model) is not a Module: keep the model as ``.module`` (clean
        # state_dict keys, ``parameters()``) and call the compiled one in forward.
        inner = getattr(module, "_orig_mod", None) if not isinstance(module, Module) else None
        self.module = inner if isinstance(inner, Module) else module
        object.__setattr__(self, "_call", module)
        self.device_ids = device_ids
        self.output_device = output_device
        self.dim = dim
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.gradient_as_bucket_view = gradient_as_bucket_view
        self.static_graph = static_graph
        self.require_backward_grad_sync = True
        self.process_group = pg
        self.bucket_bytes_cap = int((25 if bucket_cap_mb is None else bucket_cap_mb) * 2 ** 20)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't "
                               "have any parameter that requires a gradient.")
        _verify_same_parameters(named, pg)
        self._sync_module_states(pg)
        self.reducer = _Reducer(named, pg, self.bucket_bytes_cap, find_unused_parameters)

    def _sync_module_states(self, pg) -> None:
        """Every rank starts from rank 0's parameters and buffers."""
        from ember.distributed.collectives import broadcast
        if pg.size == 1:
            return
        src = pg.global_ranks[0]
        with autograd.no_grad():
            works = [broadcast(t, src, group=pg, async_op=True)
                     for t in list(self.module.parameters()) + list(self.module.buffers())]
            for w in works:
                w.wait()

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        self.reducer.before_forward()
        if self.broadcast_buffers and self.training and self.process_group.size > 1:
            bufs = list(self.module.buffers())
            if bufs:
                from ember.distributed.collectives import broadcast
                with autograd.no_grad():
                    for b in bufs:
                        broadcast(b, self.process_group.global_ranks[0],
                                  group=self.process_group)
        sync = self.require_backward_grad_sync and autograd.is_grad_enabled()
        if _dispatch.tracer is not None:
            # Recorded, so that a replay arms the reducer too (see _register_ddp_prepare).
            from ember.dispatch import dispatch
            _register_ddp_prepare()
            dispatch("ddp_prepare", self.reducer.params[0].detach(), reducer=self.reducer.id,
                     sync=sync)
        else:
            self.reducer.prepare(sync)
        return self._call(*inputs, **kwargs)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes of forwards run inside accumulate gradients locally, without
        communication; the first synchronized backward after it averages the sum.

        >>> with ddp.no_sync():
        ...     ddp(x1).sum().backward()     # local only
        >>> ddp(x2).sum().backward()         # averages x1's and x2's gradients
        """
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        """Accepts PyTorch DDP checkpoints (keys ``module.*``) and the wrapped module's
        own (no prefix)."""
        if state_dict and not any(k.startswith("module.") for k in state_dict):
            state_dict = {f"module.{k}": v for k, v in state_dict.items()}
        return super().load_state_dict(state_dict, strict=strict)

    def extra_repr(self) -> str:
        return ""


def _verify_same_parameters(named: list, pg) -> None:
    """Every rank must wrap the same parameters (shapes, dtypes, order), or the bucket
    all-reduces would mix unrelated gradients: one small allgather, at construction."""
    import zlib
    if pg.size == 1:
        return
    desc = [(n, tuple(p.shape), p.dtype.name) for n, p in named]
    mine = np.array([len(desc), zlib.crc32(repr(desc).encode())], dtype=np.int64)
    every = np.empty((pg.size, 2), dtype=np.int64)
    pg.mpi.all_gather(every, mine, "DistributedDataParallel (parameter check)").wait()
    if (every == every[0]).all():
        return
    first = ", ".join(f"{n}{list(s)}" for n, s, _ in desc[:4])
    ranks = "; ".join(f"rank {r}: {int(c)} parameters (signature {int(h):08x})"
                      for r, (c, h) in enumerate(every))
    raise RuntimeError(f"DistributedDataParallel: the ranks' models differ in their parameters "
                       f"(names, shapes or dtypes): {ranks}. This rank ({pg.rank}) has "
                       f"{len(desc)}: {first}{', ...' if len(desc) > 4 else ''}")


def consume_prefix_in_state_dict_if_present(state_dict: dict, prefix: str) -> None:
    """Strip ``prefix`` (e.g. "module.") from the keys of ``state_dict`` in place."""
    for key in list(state_dict.keys()):
        if key.startswith(prefix):
            state_dict[key[len(prefix):]] = state_dict.pop(key)


class _Watch:
    """What ``autograd.backward_observers`` holds: a weak reference to a reducer, so a
    dropped DDP model is not kept alive (and leaves the list)."""

    def __init__(self, reducer: _Reducer) -> None:
        self.ref = weakref.ref(reducer, self._dead)

    def _dead(self, _ref) -> None:
        with contextlib.suppress(ValueError):
            autograd.backward_observers.remove(self)

    def begin(self, order) -> bool:
        r = self.ref()
        return r is not None and r.begin(order)

    def leaf(self, t) -> None:
        self.ref().leaf(t)

    def end(self) -> None:
        self.ref().end()


REDUCERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()   # id -> _Reducer


class _Reducer:
    """Buckets of parameters and the state of one backward's gradient reduction."""

    _next_id = 0

    def __init__(self, named: list, pg, cap_bytes: int, find_unused: bool) -> None:
        self.id = _Reducer._next_id
        _Reducer._next_id += 1
        REDUCERS[self.id] = self
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.index = {id(p): i for i, p in enumerate(self.params)}
        self.pg = pg
        self.find_unused = find_unused
        self.buckets: list[list[int]] = []
        key, size = None, 0
        for i in reversed(range(len(self.params))):
            p = self.params[i]
            k = (p.dtype, p.device)
            nbytes = p.numel() * array_of(p).itemsize
            if not self.buckets or k != key or (size + nbytes > cap_bytes and size):
                self.buckets.append([])
                key, size = k, 0
            self.buckets[-1].append(i)
            size += nbytes
        self.bucket_of = {i: b for b, idx in enumerate(self.buckets) for i in idx}
        self.armed = False
        self.active = False
        self.unused_error: str | None = None
        self.comm_seconds = 0.0     # time spent waiting for all-reduces (eager), for stats
        self._watch = _Watch(self)
        autograd.backward_observers.append(self._watch)

    # ---- called by DistributedDataParallel.forward --------------------------------------
    def before_forward(self) -> None:
        if self.unused_error is not None:
            msg, self.unused_error = self.unused_error, None
            raise RuntimeError(msg)

    def prepare(self, sync: bool) -> None:
        self.armed = sync

    # ---- called by autograd.backward ----------------------------------------------------
    def begin(self, order) -> bool:
        if not self.armed:
            return False
        pending = [0] * len(self.params)
        index = self.index
        for node in order:
            for t, child in zip(node.inputs, node.parents):
                if child is True:
                    i = index.get(id(t))
                    if i is not None:
                        pending[i] += 1
        if not any(pending):
            return False        # a backward of another graph: not this model's
        self.armed = False
        self.active = True
        self.pending = pending
        self.used = [c > 0 for c in pending]
        self.left = [sum(1 for i in idx if pending[i]) for idx in self.buckets]
        self.results: list = [None] * len(self.buckets)
        self.next = 0
        self.tracing = _dispatch.tracer is not None
        if self.tracing and self.find_unused:
            _dispatch.tracer.fail("DistributedDataParallel(find_unused_parameters=True) decides "
                                  "from the ranks' usage which gradients to set: runs eagerly")
            self.tracing = False
        self._launch_ready()
        return True

    def leaf(self, t) -> None:
        i = self.index.get(id(t))
        if i is None or not self.active:
            return
        self.pending[i] -= 1
        if self.pending[i] == 0:
            b = self.bucket_of[i]
            self.left[b] -= 1
            if self.left[b] == 0:
                self._launch_ready()
                return
        if not self.tracing and self.next:
            self.pg.transport(self.params[0].device.type).poke()

    def end(self) -> None:
        if not self.active:
            return
        self.active = False
        while self.next < len(self.buckets):   # buckets holding unused parameters
            self._launch(self.next)
            self.next += 1
        globally_used = self.used
        if self.find_unused:
            flags = np.array(self.used, dtype=np.uint8)
            if self.pg.size > 1:
                self.pg.mpi.all_reduce(flags, "MAX", "DDP unused-parameter map").wait()
            globally_used = [bool(f) for f in flags]
        elif not all(self.used):
            missing = [f"{i} ({self.names[i]})" for i, u in enumerate(self.used) if not u]
            self.unused_error = (
                "Expected to have finished reduction in the prior iteration before starting a "
                "new one. This error indicates that your module has parameters that were not "
                "used in producing loss. You can enable unused parameter detection by passing "
                "the keyword argument `find_unused_parameters=True` to "
                "`ember.nn.parallel.DistributedDataParallel`. Parameter indices which did not "
                f"receive grad for rank {self.pg.rank}: {' '.join(missing)}")
        for b in range(len(self.buckets)):
            self._finish(b, globally_used)

    # ---- buckets ------------------------------------------------------------------------
    def _launch_ready(self) -> None:
        while self.next < len(self.buckets) and self.left[self.next] == 0:
            self._launch(self.next)
            self.next += 1

    def _grads(self, b: int) -> list:
        from ember.tensor import zeros
        out = []
        for i in self.buckets[b]:
            p = self.params[i]
            g = p.grad
            out.append(zeros(p.shape, dtype=p.dtype, device=p.device) if g is None else g)
        return out

    def _launch(self, b: int) -> None:
        grads = self._grads(b)
        if self.pg.size == 1:
            self.results[b] = None
            return
        if self.tracing:
            from ember.distributed.graph_ops import all_reduce_value
            from ember.tensor import cat
            flat = cat([g.reshape(-1) for g in grads])
            self.results[b] = all_reduce_value(flat, self.pg)
            return
        xp = grads[0]._xp
        flat = xp.concatenate([array_of(g).reshape(-1) for g in grads])
        tr = self.pg.transport(grads[0].device.type)
        if tr.name == "mpi" and not isinstance(flat, np.ndarray):
            flat = flat.get()
        self.results[b] = (tr.all_reduce(flat, "SUM", f"DDP gradient bucket {b}"), flat)

    def _finish(self, b: int, globally_used: list) -> None:
        import time
        from ember.tensor import Tensor
        res = self.results[b]
        self.results[b] = None
        idx = self.buckets[b]
        if self.pg.size == 1:
            return
        n = self.pg.size
        if self.tracing:
            avg = res / n
            off = 0
            for i in idx:
                p = self.params[i]
                k = p.numel()
                if globally_used[i] or not self.find_unused:
                    p.grad = avg[off:off + k].view(p.shape)
                off += k
            return
        req, flat = res
        t0 = time.perf_counter()
        req.wait()
        self.comm_seconds += time.perf_counter() - t0
        flat /= n
        p0 = self.params[idx[0]]
        if p0.device.type == "cuda" and isinstance(flat, np.ndarray):
            flat = p0._xp.asarray(flat)
        off = 0
        for i in idx:
            p = self.params[i]
            k = p.numel()
            if globally_used[i] or not self.find_unused:
                p.grad = Tensor._wrap(flat[off:off + k].reshape(p.shape))
            off += k


def _ddp_prepare(xp, a, reducer: int, sync: bool):
    r = REDUCERS.get(reducer)
    if r is not None:
        r.prepare(sync)
    return xp.zeros((0,), dtype=a.dtype)


def _register_ddp_prepare() -> None:
    """Register the ``ddp_prepare`` graph op (once, on the first traced forward)."""
    from ember.ops.registry import EXTERN, OPS, defop
    if "ddp_prepare" in OPS:
        return
    # DistributedDataParallel.forward arming its reducer for the next backward: a Python
    # side effect that a replay must repeat, or ``ember.compile(ddp)`` followed by an
    # eager ``loss.backward()`` would skip the gradient all-reduce. Reads a parameter only
    # to have a device and a place in the schedule.
    defop("ddp_prepare", EXTERN, _ddp_prepare, impure=True, effect=True)
