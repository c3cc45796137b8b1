"""Move a bias add, a relu and a 2x2 max pooling into the direct convolution's epilogue.

``relu(add(conv2d_direct(x, w), reshape(b, [1, O, 1, 1])))`` (F.conv2d's bias, then
F.relu) becomes ``conv2d_direct(x, w, b, relu=True)``: the kernel adds the bias and
clamps in registers before its store, instead of writing the convolution and running
an elementwise kernel that reads it back. Same numbers: one add of the finished sum, as
the separate add rounds it, then relu's select (a NaN stays NaN). A ``max_pool2d``
(2x2, stride 2, no padding) that is the only reader then moves in too (``pool=True``:
the kernel stores only the pooled rows), which happens in forward-only code: in a
training step the pooling gradient reads the unpooled output.

Rewritten only where the intermediate values have no other reader (no other node,
output or write-back): autograd's graph already exists when passes run, and relu's
gradient reads the relu output, which the fused op still produces. An eager call of
the fused op differentiates as well (``conv2d_direct``'s VJP knows both options).
"""
from __future__ import annotations


# The pooling the kernel does after its epilogue (nn.MaxPool2d(2)).
_POOL = dict(kernel=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1))


def _private(graph, nid: int) -> int | None:
    """The only reader of ``nid`` when it has one, reading it once, and ``nid`` is no
    output or write-back; else None."""
    users = graph.users(nid)
    if len(users) != 1 or graph[users[0]].args.count(nid) != 1:
        return None
    if nid in graph.outputs or any(v == nid for _, v in graph.writebacks):
        return None
    return users[0]


def _bias_operand(graph, add_id: int, conv_id: int) -> int | None:
    """The bias (O values, one per output channel) that ``add`` adds to the conv's
    output: b as [1, O, 1, 1] or [O, 1, 1], or the [O] vector that one reshapes."""
    a, conv = graph[add_id], graph[conv_id]
    other = a.args[1] if a.args[0] == conv_id else a.args[0]
    o = conv.shape[1]
    d = graph[other]
    if d.dtype is not conv.dtype or d.device != conv.device:
        return None
    if d.shape not in ((1, o, 1, 1), (o, 1, 1)):
        return None
    if d.op == "reshape" and graph[d.args[0]].shape == (o,):
        return d.args[0]   # b itself: the reshape then goes if nothing else reads it
    return other


def fuse_conv_epilogue(graph):
    """Rewrite ``max_pool2d(relu(conv2d_direct(x, w) + b))`` (or a leading part of
    it) into one ``conv2d_direct(x, w, b, relu=True, pool=True)``.

    >>> # explain then shows, for conv1 -> relu of SimpleCNN,
    >>> # %7 = conv2d_direct %0, %2, %4 {stride=(1, 1), ..., relu=True}
    """
    for nid in graph.nodes():
        if nid not in graph:
            continue
        conv = graph[nid]
        if conv.op != "conv2d_direct" or len(conv.args) != 2 or conv.attrs.get("relu"):
            continue
        if not conv.dtype.is_floating_point:
            continue
        tail, bias, relu, dead = nid, None, False, []
        user = _private(graph, tail)
        if user is not None and graph[user].op == "add" and not graph[user].attrs \
                and graph[user].shape == conv.shape and graph[user].dtype is conv.dtype:
            bias = _bias_operand(graph, user, tail)
            if bias is not None:
                dead.append(tail)
                tail = user
                user = _private(graph, tail)
        if user is not None and graph[user].op == "relu" and not graph[user].attrs \
                and graph[user].dtype is conv.dtype:
            dead.append(tail)
            tail, relu = user, True
            user = _private(graph, tail)
        pool = False
        if user is not None and graph[user].op == "max_pool2d" \
                and graph[user].attrs == _POOL and graph[user].dtype is conv.dtype:
            # Only where nothing else reads the unpooled values: a training step's
            # pooling gradient reads them, so this is the forward-only (inference) case.
            dead.append(tail)
            tail, pool = user, True
        if tail == nid:
            continue
        args = conv.args + ((bias,) if bias is not None else ())
        attrs = dict(conv.attrs, relu=relu)
        if pool:
            attrs["pool"] = True
        graph.set_node(tail, "conv2d_direct", args, attrs)
        for d in reversed(dead):   # readers first: the add, then the convolution
            graph.remove(d)
    return graph
