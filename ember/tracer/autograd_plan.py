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

The backward behaves as eager's would have: gradients stop at the trace's ``detach``
nodes (``detach()``, ``.data``, ``no_grad``); an input that output ``k`` does not reach
gets no gradient from it (``.grad`` stays None, which optimizers read as "skip"); a
returned tensor the function called ``retain_grad()`` on gets its ``.grad``; and a value
the backward reads (an input, an output) that was changed in place after the forward
makes ``backward()`` raise, as eager's saved-tensor version check does.
"""
from __future__ import annotations

import weakref

import numpy as np

from ember import autograd
from ember.ir.interpreter import TensorInterpreter
from ember.ops.registry import OPS
from ember.ops.random import preserved_rng
from ember.runtime.memory import release_free_memory
from ember.tensor import Tensor, array_of
from ember.tracer.checks import close, precision_floor
from ember.tracer.segments import Segment
from ember.tracer.trace import Tracer, copy_same_layout, tracing
from ember.tracer.writeback import effects, escaping, input_tensor


class CompiledAutograd:
    """The forward and backward segments of one single-segment cache entry."""

    def __init__(self, entry, trace, leaves) -> None:
        self.trace = trace
        g = trace.graph
        if g.rebinds or any(how[0] == "view" for how in g.aliases.values()):
            raise _Disagree("the call rebinds .data or returns views of its arguments")
        tensors = {n: input_tensor(g, n, trace, leaves) for n in g.inputs}
        self.diff = [n for n in g.inputs if tensors[n].requires_grad]
        tracer = Tracer()
        vals: dict[int, Tensor] = {}
        # The forward plan built below must draw the same random numbers (dropout masks)
        # as this eager run, to be checked against it: both start from the same state.
        with preserved_rng(), tracing(tracer):
            for n in g.inputs:
                t = Tensor._wrap(array_of(tensors[n]), tensors[n].requires_grad)
                tracer.add_arg(t, f"%{n}")
                vals[n] = t
            with autograd.enable_grad():
                _JointInterpreter(g, tracer).run(vals)
            cut = tracer.graph.next_id
            outs = [vals[o] for o in g.outputs]
            self.diff_outs = [i for i, o in enumerate(outs) if o.requires_grad]
            # Several outputs: what _exact_backward needs to rerun a call as it ran.
            self.inner = _inner_outputs(outs, self.diff_outs)
            self.random = len(self.diff_outs) > 1 and any(
                getattr(OPS.get(g[n].op), "impure", False) for n in g.nodes())
            self.retained = [i for i in trace.retained_outputs
                             if i in self.diff_outs and g.outputs[i] not in tensors]
            for i in self.retained:
                outs[i].retain_grad()
            self.reach = [_reached(outs[i], {id(vals[n]): j for j, n in enumerate(self.diff)},
                                   {id(outs[r]._node): j for j, r in enumerate(self.retained)})
                          for i in self.diff_outs]
            seeds = []
            for i in self.diff_outs:
                o = outs[i]
                s = Tensor._wrap(o._xp.ones(o.shape, o.dtype.np))
                tracer.add_arg(s, f"grad_output[{i}]")
                seeds.append(s)
            for i, s in zip(self.diff_outs, seeds):
                autograd.backward(outs[i], s, retain_graph=True)
            grads = [vals[n]._grad for n in self.diff]
            kept = [outs[i]._grad for i in self.retained]
        if tracer.failed:
            raise RuntimeError(tracer.failed)
        joint = tracer.graph
        jid = {n: tracer.env[id(t)] for n, t in vals.items()}   # (the kept nodes only)
        self.jid = jid
        self.seed_ids = [tracer.env[id(s)] for s in seeds]
        self.grad_ids = [None if gr is None else tracer.node_of(gr) for gr in grads]
        self.kept_ids = [None if gr is None else tracer.node_of(gr) for gr in kept]
        # The eager values to check the plans against: every value the backward reads is
        # held by the eager autograd graph (its Nodes' saved tensors) or by ``vals``,
        # outputs and seeds by ``outs``/``seeds``, gradients by ``.grad``: all live
        # tensors, whose ids the tracer still knows. The backward's intermediate
        # gradients died as eager freed them; none is compared.
        eager_env = {tracer.env[id(t)]: array_of(t) for t in tracer.live_tensors()[::-1]
                     if id(t) in tracer.env}

        # Forward: the outputs, the write-backs, and everything the backward reads.
        self.writebacks = [(i, jid[v]) for i, v in g.writebacks]
        fneeds = {jid[o] for o in g.outputs} | {v for _, v in self.writebacks}
        for n in joint.nodes():
            if n >= cut:
                fneeds.update(a for a in joint[n].args if a < cut)
        self.saved = sorted(fneeds)
        self.fwd = Segment(0, cut, needs=set(fneeds))
        bneeds = sorted({x for x in self.grad_ids + self.kept_ids if x is not None})
        # An in-place update recorded by autograd (``x.mul_(w)``) made eager save a copy
        # of the old value: reading it is no error. Untracked ones (under no_grad) are.
        copied = {i for i, v in g.writebacks
                  if vals[v].requires_grad and g[v].op != "data_update"}
        self.keep_old = [i for i in copied if jid[i] in fneeds]   # ... so the plan does too
        self.reads = [_saved_reads(joint, g, jid, cut, s, self.seed_ids, bneeds, copied)
                      for s in self.seed_ids]
        self.checked = sorted({n for old, new, _ in self.reads for n in old + new})
        self.bwd = Segment(cut, joint.next_id, needs=set(bneeds))
        self.joint = joint

        missing = [n for n in (*self.saved, *bneeds, *self.seed_ids) if n not in eager_env]
        if missing:   # never built unchecked
            raise _Disagree(f"the eager value of %{missing[0]} is gone, so the compiled one "
                            "cannot be checked against it")
        # Only those stay, held by ``eager_env``: the joint eager run's other tensors
        # (its autograd graph, kept by ``retain_graph``) go before the builds run.
        env = {jid[n]: eager_env[jid[n]] for n in g.inputs}
        eager_env = {n: eager_env[n] for n in (*self.saved, *bneeds, *self.seed_ids)}
        o = None   # (the seeds loop's last output, and so the eager graph, too)
        del tracer, vals, outs, seeds, grads, kept, o
        joint.outputs = self.saved           # every saved value is fresh each call
        entry.build_segment(self.fwd, joint, env, escaping(joint))
        floor = precision_floor(joint)
        for n in self.saved:
            if not close(env[n], eager_env[n], floor):
                raise _Disagree(f"compiled forward value %{n} differs from eager")
        for s in self.seed_ids:
            env[s] = eager_env[s]
        eager_env = {n: eager_env[n] for n in bneeds}   # the backward build's check only
        joint.outputs = bneeds
        entry.build_segment(self.bwd, joint, env, escaping(joint))
        for n in bneeds:
            if not close(env[n], eager_env[n], floor):
                raise _Disagree(f"compiled gradient %{n} differs from eager")
        # Values a call must copy before it writes back or hands them on: the forward's
        # results computed in an input's memory, write-backs read from written memory.
        fenv = {n: env[jid[n]] for n in g.inputs}
        fenv.update((o, env[jid[o]]) for o in g.outputs)
        fenv.update((v, env[jid[v]]) for _, v in g.writebacks)
        self.copies, staged, _ = effects(g, fenv)
        self.staged = {jid[v] for v in staged}
        # The backward runs outside the compiled call (``loss.backward()``), perhaps on
        # another thread, and its plan shares the entry's working memory with the
        # forward's: the two must not run at the same time.
        self.lock = entry.owner._lock
        # The builds' values and the eager gradients go now, not on return.
        del env, eager_env, fenv
        release_free_memory()   # the joint eager run's and the builds' freed arrays

    def forward(self, leaves):
        """Run the forward plan; return the output tensors, differentiable as in eager."""
        g = self.trace.graph
        tensors = {n: input_tensor(g, n, self.trace, leaves) for n in g.inputs}
        env = {self.jid[n]: array_of(t) for n, t in tensors.items()}
        memory = dict(env)
        # Versions as eager's saved tensors would record them: inputs before this call's
        # in-place updates (which then count as modifications), updated ones after.
        before = {n: tensors[n]._version for n in self.checked}
        if len(self.seed_ids) > 1:   # what _exact_backward reruns from
            written = {i for i, _ in g.writebacks}
            rerun = {n: copy_same_layout(array_of(t)) if n in written else array_of(t)
                     for n, t in tensors.items()}
            rng = preserved_rng().__enter__() if self.random else None
        self.fwd.plan.run(env)
        old = {self.jid[n]: copy_same_layout(array_of(tensors[n])) for n in self.keep_old}
        arrays = {i: env[self.jid[o]].copy() for i, o in enumerate(g.outputs) if i in self.copies}
        early = {v: env[v].copy() for v in self.staged}
        with autograd.no_grad():
            for inp, v in self.writebacks:
                new, mem = early.get(v, env[v]), memory[self.jid[inp]]
                if new is not mem:
                    mem[...] = new
                tensors[inp]._version += 1
        env.update(old)
        call = _Call({n: env[n] for n in self.saved}, {n: tensors[n] for n in self.checked},
                     before)
        if len(self.seed_ids) > 1:
            call.rerun = (tensors, rerun, {n: t._version for n, t in tensors.items()}, rng)
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
            op = _Backward(self, self.diff_outs.index(i), call)
            t._node = autograd.Node(op, diff_inputs, {}, Tensor._wrap(arr))
            t._retains_grad = i in self.retained
            outs.append(t)
        call.outputs = [weakref.ref(t) for t in outs]  # weak: an output holds its node
        return outs

    def backward(self, k: int, grad, call: _Call) -> tuple:
        """Input gradients for the seed ``grad`` on differentiable output ``k``."""
        call.check(self.reads[k])
        with self.lock:
            return self._backward(k, grad, call)

    def _backward(self, k: int, grad, call: _Call) -> tuple:
        env = dict(call.saved)
        for j, s in enumerate(self.seed_ids):
            if j == k:  # plans are specialized to the contiguous seed they were built with
                env[s] = np.ascontiguousarray(array_of(grad)) if grad._xp is np else \
                    grad._xp.ascontiguousarray(array_of(grad))
            else:       # another output's gradient: this node only carries output k
                d = self.joint[s]
                env[s] = grad._xp.zeros(d.shape, d.dtype.np)
        self.bwd.plan.run(env)
        inputs, kept = self.reach[k]
        if len(self.seed_ids) > 1 and (self._watched(call) or not all(
                x is None or j not in inputs or bool(np.isfinite(env[x]).all())
                for j, x in enumerate(self.grad_ids)) or not all(
                self.kept_ids[j] is None or bool(np.isfinite(env[self.kept_ids[j]]).all())
                for j in kept)):   # a retained output's gradient too
            return self._exact_backward(k, grad, call)
        for j in kept:    # a retained output that output k's gradient flows through
            t = call.outputs[self.retained[j]]()
            if t is not None and self.kept_ids[j] is not None:
                autograd._accumulate(t, Tensor._wrap(env[self.kept_ids[j]]))
        return tuple(None if x is None or j not in inputs else Tensor._wrap(env[x])
                     for j, x in enumerate(self.grad_ids))

    def _watched(self, call: _Call) -> bool:
        """An output another one was computed from got a hook or retain_grad() after
        the call: eager's backward passes through it, one compiled node per output
        would not (the hook never ran, its .grad stayed None)."""
        for i in self.inner:
            t = call.outputs[i]()
            if t is not None and (t._node.hooks or t._retains_grad and i not in self.retained):
                return True
        return False

    def _exact_backward(self, k: int, grad, call: _Call) -> tuple:
        """Output k's gradients by eager autograd over the trace, rerun from the call's
        inputs as they were (copies of those it wrote; the random state it started from).

        The joint backward seeds the other outputs with zeros, which is exact wherever
        their local derivatives are finite; where one is not, 0 * inf made NaN (x.grad
        of (x.sum(), x.sqrt())[0] at x = 0). And hooks or retain_grad() put after the
        call on an output others were computed from must see its gradient (``_watched``).
        Both cases rerun here, as eager's backward would compute."""
        from ember.tracer.entry import _ReplayInterpreter

        tensors, arrays, after, rng = call.rerun
        g = self.trace.graph
        for n, t in tensors.items():
            if t._version != after[n] and n not in {i for i, _ in g.writebacks}:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified "
                    f"by an inplace operation: an input of CompiledBackward of shape "
                    f"{list(t.shape)} is at version {t._version}; expected version {after[n]} "
                    "instead.")
        inputs, _ = self.reach[k]
        with autograd.enable_grad(), preserved_rng():
            if rng is not None:
                rng.__exit__(None, None, None)   # the state the call's draws started from
            vals = {n: Tensor._wrap(a.copy() if a is not array_of(tensors[n]) else a,
                                    tensors[n].requires_grad) for n, a in arrays.items()}
            env = _ReplayInterpreter(g).run(dict(vals))
            watched = []
            for i in self.diff_outs:
                t = call.outputs[i]()
                if i == self.diff_outs[k] or t is None or t._node is None:
                    continue
                r = env[g.outputs[i]]
                if r._node is not None and t._node.hooks:
                    r._node.hooks = t._node.hooks
                if t._retains_grad:
                    watched.append((t, r))
            targets = [vals[n] for n in self.diff] + [r for _, r in watched]
            grads = autograd.grad(env[g.outputs[self.diff_outs[k]]], targets, grad,
                                  allow_unused=True)
        for (t, _), gr in zip(watched, grads[len(self.diff):]):   # retained outputs
            if gr is not None:
                autograd._accumulate(t, gr.detach())
        return tuple(None if j not in inputs or gr is None else gr.detach()
                     for j, gr in enumerate(grads[:len(self.diff)]))


def _inner_outputs(outs: list, diff_outs: list) -> list:
    """The differentiable outputs another output was computed from (``return loss, y``
    with the loss made from ``y``): eager's backward from the loss passes through ``y``
    (its hooks, ``retain_grad``, ``autograd.grad(loss, y)``); one compiled node per
    output would not."""
    nodes = {id(outs[i]._node): i for i in diff_outs if outs[i]._node is not None}
    inner = set()
    for i in diff_outs:
        root = outs[i]._node
        if root is None:
            continue
        for node in autograd._toposort(root):
            j = nodes.get(id(node))
            if j is not None and j != i:
                inner.add(j)
    return sorted(inner)


class _Disagree(Exception):
    pass


class _Call:
    """What one compiled forward hands its backward: the saved values, and the versions
    of the tensors whose memory they are."""

    def __init__(self, saved: dict, inputs: dict, before: dict) -> None:
        self.saved = saved
        self.inputs = inputs                  # input node -> tensor
        self.before = before                  # input node -> version before the call
        self.after = {n: t._version for n, t in inputs.items()}
        self.outputs: list = []               # weak references to the returned tensors
        self.rerun = None                     # (several outputs: see _exact_backward)

    def check(self, reads: tuple) -> None:
        """Raise as eager does if a value the backward reads was changed in place."""
        old_inputs, new_inputs, outputs = reads
        for n in old_inputs:
            self._same(self.inputs[n], self.before[n], "the input")
        for n in new_inputs:
            self._same(self.inputs[n], self.after[n], "the input")
        for i in outputs:
            t = self.outputs[i]()
            if t is not None:
                self._same(t, 0, f"the output {i}")

    @staticmethod
    def _same(t, version: int, what: str) -> None:
        if t._version != version:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: {what} of CompiledBackward of shape {list(t.shape)} is at "
                f"version {t._version}; expected version {version} instead.")


class _Backward:
    """The autograd op of a compiled call's output: its vjp runs the backward plan."""

    saves_out = False   # the backward checks the versions of what it reads itself

    def __init__(self, plans: CompiledAutograd, k: int, call: _Call) -> None:
        self.plans, self.k, self.call = plans, k, call
        self.name = "compiled"

    def saves_input(self, i: int) -> bool:
        return False

    def vjp(self, g, out, *inputs):
        if autograd.is_grad_enabled():
            raise RuntimeError("create_graph=True through an @ember.compile call is not "
                               "supported; run it with mode='eager' for higher derivatives")
        return self.plans.backward(self.k, g, self.call)


class _JointInterpreter(TensorInterpreter):
    """The trace replayed on fresh tensors under the joint graph's tracer: constants are
    recorded as constants of the joint graph."""

    __slots__ = ("tracer",)

    def __init__(self, graph, tracer: Tracer) -> None:
        super().__init__(graph)
        self.tracer = tracer

    def run(self, env: dict, nodes=None) -> dict:
        """All nodes, each value dropped after its last use as eager drops it (what the
        backward reads, its autograd Nodes hold): the joint run peaks near an eager
        step, not at every forward value. Inputs, outputs and written-back values stay."""
        if nodes is not None:
            return super().run(env, nodes)
        g = self.graph
        last: dict[int, int] = {}
        for nid in g.nodes():
            for a in g[nid].args:
                last[a] = nid
        keep = {*g.inputs, *g.outputs, *(v for _, v in g.writebacks)}
        for nid in g.nodes():
            if nid not in env:
                env[nid] = self.run_node(nid, env)
            for a in g[nid].args:
                if last.get(a) == nid and a not in keep:
                    env.pop(a, None)
            if nid not in last and nid not in keep:
                env.pop(nid, None)
        return env

    def run_node(self, nid: int, env: dict):
        if self.graph[nid].op == "const":
            t = Tensor._wrap(self.graph.const_array(nid))
            self.tracer.constant(t, None)
            return t
        return super().run_node(nid, env)


def _reached(root: Tensor, leaves: dict, kept: dict) -> tuple[set, set]:
    """The differentiable inputs (``leaves``: id of tensor -> index) and retained outputs
    (``kept``: id of node -> index) that eager's backward from ``root`` would reach.
    Others get no gradient from it: their ``.grad`` stays None, not zeros."""
    inputs, outputs = set(), set()
    if root._node is None:
        if id(root) in leaves:
            inputs.add(leaves[id(root)])
        return inputs, outputs
    stack, seen = [root._node], {id(root._node)}
    while stack:
        node = stack.pop()
        for t, parent in zip(node.inputs, node.parents):
            if parent is True:
                if id(t) in leaves:
                    inputs.add(leaves[id(t)])
            elif parent is not None and id(parent) not in seen:
                seen.add(id(parent))
                if id(parent) in kept:
                    outputs.add(kept[id(parent)])
                stack.append(parent)
    return inputs, outputs


# Values that share their argument's memory (a saved view of an input is that input).
_VIEWS = frozenset(("reshape", "permute", "expand", "slice", "detach"))


def _saved_reads(joint, g, jid: dict, cut: int, seed: int, seeds: list, results: list,
                 copied: set) -> tuple:
    """What the backward of one output reads of the forward, as the tensors holding it:
    (inputs read as they were before the call, inputs read as this call's in-place
    updates left them, output positions). These are eager's saved tensors whose version
    ``backward()`` checks. The joint backward serves every output; a gradient is linear
    in the seeds, so what depends only on other outputs' seeds (zeros here) is not read
    for this one: nodes this seed reaches a gradient through, and the seed-free values
    (``a.sign()``, say) they combine it with."""
    nx_graph = joint
    reaching = set(results)
    stack = list(results)
    while stack:                       # backward nodes that feed a gradient
        for a in nx_graph.inputs_of(stack.pop()):
            if a >= cut and a not in reaching:
                reaching.add(a)
                stack.append(a)
    seeded, carried = set(), set()
    for s in seeds:
        stack = [s]
        while stack:                   # nodes fed by seed s (and by this one: carried)
            n = stack.pop()
            for u in nx_graph.users(n):
                if u not in seeded:
                    seeded.add(u)
                    stack.append(u)
    stack = [seed]
    while stack:
        for u in nx_graph.users(stack.pop()):
            if u in reaching and u not in carried:
                carried.add(u)
                stack.append(u)
    needed = set(carried)
    stack = list(carried)
    while stack:                       # with the seed-free values they read
        for a in nx_graph.inputs_of(stack.pop()):
            if a >= cut and a not in needed and a not in seeded and a not in seeds:
                needed.add(a)
                stack.append(a)
    roots = {_root(joint, a) for m in needed for a in joint[m].args if a < cut}
    updated = {_root(joint, jid[v]): i for i, v in g.writebacks}
    old = tuple(n for n in g.inputs if jid[n] in roots and n not in copied)
    new = tuple(updated[r] for r in roots if r in updated)
    outs = tuple(i for i, o in enumerate(g.outputs)
                 if o not in g.sources and _root(joint, jid[o]) in roots)
    return old, new, outs


def _root(joint, n: int) -> int:
    """The node whose memory ``n`` is a view of (itself if none); an in-place update
    under no_grad (data_update) is the memory of the updated tensor."""
    while True:
        d = joint[n]
        if d.op in _VIEWS:
            n = d.args[0]
        elif d.op == "data_update":
            n = d.args[1]
        else:
            return n
