"""Compiled autograd: a compiled call's forward and backward as two compiled plans.

When a compiled call needs gradients (an argument or a parameter requires grad), its
trace is replayed once through dispatch with gradients recorded, and ``backward`` is run
on its outputs, all under a tracer: one joint graph, forward nodes first. Cutting it
where the backward began gives a forward segment, which also hands on the values the
backward reads (its saved tensors, fresh every call), and a backward segment. Both are
optimized, fused and compiled like any graph, and both are checked against the joint
graph's eager results once. Each call then runs the forward plan and returns outputs
whose autograd node runs the backward plan: the registry's vjps as fused kernels.

    >>> model = ember.compile(model)
    >>> loss = F.cross_entropy(model(x), y); loss.backward()   # both halves compiled
"""
from __future__ import annotations

import numpy as np

from ember import autograd
from ember.dispatch import dispatch
from ember.ops.random import preserved_rng
from ember.ops.registry import OPS
from ember.tensor import Tensor
from ember.tracer.trace import Tracer, tracing


class CompiledAutograd:
    """The forward and backward segments of one single-segment cache entry."""

    def __init__(self, entry, trace, leaves) -> None:
        from ember.tracer.compile import Segment, _close, _effects, _input_tensor

        self.trace = trace
        g = trace.graph
        if g.rebinds or any(how[0] == "view" for how in g.aliases.values()):
            raise _Disagree("the call rebinds .data or returns views of its arguments")
        tensors = {n: _input_tensor(g, n, trace, leaves) for n in g.inputs}
        self.diff = [n for n in g.inputs if tensors[n].requires_grad]
        tracer = Tracer()
        vals: dict[int, Tensor] = {}
        # The forward plan built below must draw the same random numbers (dropout masks)
        # as this eager run, to be checked against it: both start from the same state.
        with preserved_rng(), tracing(tracer):
            for n in g.inputs:
                t = Tensor._wrap(tensors[n]._data, tensors[n].requires_grad)
                tracer.add_arg(t, f"%{n}")
                vals[n] = t
            with autograd.enable_grad():
                for n in g.nodes():
                    if n in vals:
                        continue
                    d = g[n]
                    if d["op"] == "const":
                        vals[n] = Tensor._wrap(g.const_array(n))
                        tracer.constant(vals[n], None)
                    else:
                        vals[n] = dispatch(OPS[d["op"]], *[vals[a] for a in d["args"]],
                                           **d["attrs"])
            cut = tracer.graph._next
            outs = [vals[o] for o in g.outputs]
            self.diff_outs = [i for i, o in enumerate(outs) if o.requires_grad]
            seeds = []
            for i in self.diff_outs:
                o = outs[i]
                s = Tensor._wrap(o._xp.ones(o.shape, o.dtype.np))
                tracer.add_arg(s, f"grad_output[{i}]")
                seeds.append(s)
            for i, s in zip(self.diff_outs, seeds):
                autograd.backward(outs[i], s, retain_graph=True)
            grads = [vals[n]._grad for n in self.diff]
        if tracer.failed:
            raise RuntimeError(tracer.failed)
        joint = tracer.graph
        jid = {n: tracer.env[id(t)] for n, t in vals.items()}
        self.jid = jid
        self.seed_ids = [tracer.env[id(s)] for s in seeds]
        self.grad_ids = [None if gr is None else tracer.node_of(gr) for gr in grads]
        eager_env = {tracer.env[id(t)]: t._data for t in tracer.keep if id(t) in tracer.env}

        # Forward: the outputs, the write-backs, and everything the backward reads.
        self.writebacks = [(i, jid[v]) for i, v in g.writebacks]
        fneeds = {jid[o] for o in g.outputs} | {v for _, v in self.writebacks}
        for n in joint.nodes():
            if n >= cut:
                fneeds.update(a for a in joint[n]["args"] if a < cut)
        self.saved = sorted(fneeds)
        self.fwd = Segment(0, cut, needs=set(fneeds))
        bneeds = [x for x in self.grad_ids if x is not None]
        self.bwd = Segment(cut, joint._next, needs=set(bneeds))
        self.joint = joint

        env = {jid[n]: eager_env[jid[n]] for n in g.inputs}
        joint.outputs = self.saved           # every saved value is fresh each call
        entry._build_segment(self.fwd, joint, env, _escaping_of(joint))
        for n in self.saved:
            if not _close(env[n], eager_env[n]):
                raise _Disagree(f"compiled forward value %{n} differs from eager")
        for s in self.seed_ids:
            env[s] = eager_env[s]
        joint.outputs = bneeds
        entry._build_segment(self.bwd, joint, env, _escaping_of(joint))
        for n in bneeds:
            if not _close(env[n], eager_env[n]):
                raise _Disagree(f"compiled gradient %{n} differs from eager")
        # Values a call must copy before it writes back or hands them on: the forward's
        # results computed in an input's memory, write-backs read from written memory.
        fenv = {n: env[jid[n]] for n in g.inputs}
        fenv.update((o, env[jid[o]]) for o in g.outputs)
        fenv.update((v, env[jid[v]]) for _, v in g.writebacks)
        self.copies, staged, _ = _effects(g, fenv)
        self.staged = {jid[v] for v in staged}

    def forward(self, leaves):
        """Run the forward plan; return the output tensors, differentiable as in eager."""
        from ember.tracer.compile import _input_tensor

        g = self.trace.graph
        tensors = {n: _input_tensor(g, n, self.trace, leaves) for n in g.inputs}
        env = {self.jid[n]: t._data for n, t in tensors.items()}
        memory = dict(env)
        self.fwd.plan.run(env)
        arrays = {i: env[self.jid[o]].copy() for i, o in enumerate(g.outputs) if i in self.copies}
        early = {v: env[v].copy() for v in self.staged}
        with autograd.no_grad():
            for inp, v in self.writebacks:
                new, mem = early.get(v, env[v]), memory[self.jid[inp]]
                if new is not mem:
                    mem[...] = new
                tensors[inp]._version += 1
        saved = {n: env[n] for n in self.saved}
        diff_inputs = tuple(tensors[n] for n in self.diff)
        outs = []
        for i, o in enumerate(g.outputs):
            how = g.aliases.get(i)
            if how is not None:   # an input handed back: the same tensor, as in eager
                outs.append(tensors[how[1]])
                continue
            arr = arrays[i] if i in arrays else env[self.jid[o]]
            if i not in self.diff_outs:
                outs.append(Tensor._wrap(arr))
                continue
            t = Tensor._wrap(arr, True)
            op = _Backward(self, self.diff_outs.index(i), saved)
            t._node = autograd.Node(op, diff_inputs, {}, Tensor._wrap(arr))
            outs.append(t)
        return outs

    def backward(self, k: int, grad, saved: dict) -> tuple:
        """Input gradients for the seed ``grad`` on differentiable output ``k``."""
        env = dict(saved)
        for j, s in enumerate(self.seed_ids):
            if j == k:  # plans are specialized to the contiguous seed they were built with
                env[s] = np.ascontiguousarray(grad._data) if grad._xp is np else \
                    grad._xp.ascontiguousarray(grad._data)
            else:       # another output's gradient: this node only carries output k
                d = self.joint[s]
                env[s] = grad._xp.zeros(d["shape"], d["dtype"].np)
        self.bwd.plan.run(env)
        return tuple(None if x is None else Tensor._wrap(env[x]) for x in self.grad_ids)


class _Disagree(Exception):
    pass


class _Backward:
    """The autograd op of a compiled call's output: its vjp runs the backward plan."""

    saves_out = False

    def __init__(self, plans: CompiledAutograd, k: int, saved: dict) -> None:
        self.plans, self.k, self.saved = plans, k, saved
        self.name = "compiled"

    def saves_input(self, i: int) -> bool:
        return True   # parameters are read by the backward: in-place changes are errors

    def vjp(self, g, out, *inputs):
        if autograd.is_grad_enabled():
            raise RuntimeError("create_graph=True through an @ember.compile call is not "
                               "supported; run it with mode='eager' for higher derivatives")
        return self.plans.backward(self.k, g, self.saved)


def _escaping_of(graph) -> set:
    from ember.tracer.compile import _escaping
    return _escaping(graph)
