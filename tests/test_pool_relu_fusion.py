"""The two CNN fusions: relu's gradient (torch's threshold_backward) inside the max-pooling gradient
(``fuse_pool_relu``: ``max_pool2d_backward`` with ``relu=True``) and bias + relu in the
direct convolution's epilogue (``fuse_conv_epilogue``: ``conv2d_direct`` with a bias
operand and ``relu=True``).

Compiled (fused) against eager (unfused) bit for bit, NaN and -0.0 included, and
against PyTorch; that each pass fires where it should (the attribute shows in the
compiled graph) and not where an intermediate value has another reader; the fused
kernels against the separate ops they replace.
"""
import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.codegen.llvm import directconv, native
from ember.devices import CPU
from ember.dtypes import float32 as e_f32
from ember.ir.graph import Graph, InputSource
from ember.ir.interpreter import interpret
from ember.ir.passes import PIPELINE
from ember.ir.passes.fuse_conv_epilogue import fuse_conv_epilogue
from ember.ir.passes.fuse_pool_relu import fuse_pool_relu
from ember.ops.conv import _conv2d_direct, _max_pool2d_backward


@pytest.fixture(autouse=True)
def _nan_on_purpose():
    """The inputs hold NaN and inf on purpose: NumPy's warnings about them are noise."""
    with np.errstate(invalid="ignore", over="ignore"):
        yield


def _same(a, b):
    """Equal values, NaN where NaN."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


def _same_bits(a, b):
    """Equal values and signs of zero, NaN where NaN."""
    _same(a, b)
    np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


def _compile(fn):
    """ember.compile(fn) whose calls must run compiled: a first-call check that found
    compiled != eager would run the signature eagerly (with a warning) and hide it."""
    cf = ember.compile(fn)

    def call(*args):
        out = cf(*args)
        assert not cf.fallbacks and cf.stats()["eager_calls"] == 0, cf.fallbacks
        return out
    return call


def _graph_ops(fn, *args):
    """[(op, attrs, number of operands)] of every node of fn's compiled graphs."""
    report = ember.explain(fn, *args)
    return [(g.graph[n].op, g.graph[n].attrs, len(g.graph[n].args))
            for g in report.graphs for n in g.graph.nodes()]


def _special(shape, dtype, seed=0):
    """Values with NaN, -0.0, ties, all-negative windows and zeros."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 1, 1] = -0.0
    x[0, 0, 2, :] = 0.0
    x[-1, -1, :2, :2] = -1.0                  # an all-negative window (and ties)
    x[-1, 0, 3, :4] = 0.5                     # ties of a positive maximum
    x[0, -1, -2:, -2:] = -0.0
    return x


# ---- relu -> max_pool2d: the masked pooling gradient ---------------------------------

POOLS = [   # (kernel, stride, padding, dilation, ceil_mode)
    (2, 2, 0, 1, False),
    (3, 1, 1, 1, False),                       # overlapping windows, padding
    ((3, 2), (2, 1), (1, 0), (1, 2), False),   # stride != kernel, dilation
    (2, 2, 0, 1, True),                        # ceil_mode (pads: no fusion, still right)
    (3, 2, 1, 1, True),
]


def _pool_step(params, pool, dtype):
    k, s, p, d, ceil = pool

    def step(x, g):
        z = x + params[0]
        out = F.max_pool2d(F.relu(z), k, s, p, d, ceil_mode=ceil)
        params[0].grad = None
        (out * g).sum().backward()
        return out, params[0].grad
    return step


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pool", POOLS, ids=str)
def test_relu_pool_compiled_equals_eager(pool, dtype):
    x = _special((2, 3, 9, 8), dtype)
    # z = x + p with p of x's shape: p's gradient is z's, no reduction in between
    params = [ember.zeros(2, 3, 9, 8, dtype=ember.float32 if dtype == np.float32
                          else ember.float64, requires_grad=True)]
    step = _pool_step(params, pool, dtype)
    xe = ember.from_numpy(x)
    out, _ = step(xe, ember.ones(1))
    rng = np.random.default_rng(1)
    g = rng.standard_normal(out.shape).astype(dtype)
    g[0, 0, 0, 0] = np.inf    # onto the NaN's window: 0 * inf in the masked cells
    g[-1, -1, 0, 0] = -3.0    # onto the all-negative window: 0 * -3 = -0.0
    ge = ember.from_numpy(g)
    eager_out, eager_grad = (t.detach().numpy().copy() for t in step(xe, ge))
    compiled = _compile(step)
    for _ in range(3):
        c_out, c_grad = (t.detach().numpy().copy() for t in compiled(xe, ge))
        _same_bits(c_out, eager_out)
        _same_bits(c_grad, eager_grad)
    fused = [a for op, a, _ in _graph_ops(step, xe, ge)
             if op == "max_pool2d_backward" and a.get("relu")]
    assert len(fused) == (0 if pool[4] else 1)


@pytest.mark.parametrize("pool", POOLS, ids=str)
def test_relu_pool_against_torch(pool):
    torch = pytest.importorskip("torch")
    k, s, p, d, ceil = pool
    x = _special((2, 3, 9, 8), np.float64, seed=3)
    # NaN included: relu's gradient passes at a NaN output, as torch's does.
    g = np.random.default_rng(4).standard_normal(
        tuple(torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, d, ceil).shape))
    params = [ember.zeros(2, 3, 9, 8, dtype=ember.float64, requires_grad=True)]
    out, grad = _compile(_pool_step(params, pool, np.float64))(
        ember.from_numpy(x), ember.from_numpy(g))
    tz = torch.tensor(x, requires_grad=True)
    t_out = torch.nn.functional.max_pool2d(torch.relu(tz), k, s, p, d, ceil)
    (t_out * torch.tensor(g)).sum().backward()
    np.testing.assert_array_equal(out.detach().numpy(), t_out.detach().numpy())
    np.testing.assert_array_equal(grad.numpy(), tz.grad.numpy())


def test_pre_activation_mask_fuses():
    """A test of z where the pooled tensor is relu(z) is the same test."""
    from ember.dispatch import dispatch

    def f(z, g):
        y = F.relu(z)
        gp = dispatch("max_pool2d_backward", g, y, kernel=(2, 2), stride=(2, 2),
                      padding=(0, 0), dilation=(1, 1))
        return ember.where(z <= 0, 0.0, gp)
    z = ember.from_numpy(_special((2, 2, 6, 6), np.float32))
    g = ember.randn(2, 2, 3, 3)
    ops = _graph_ops(f, z, g)
    assert any(op == "max_pool2d_backward" and a.get("relu") for op, a, _ in ops)
    assert not any(op == "where" for op, _, _ in ops)
    _same_bits(_compile(f)(z, g).detach().numpy(), f(z, g).detach().numpy())


def test_pool_relu_not_fused_when_gradient_is_read_elsewhere():
    from ember.dispatch import dispatch

    def f(y, g):
        gp = dispatch("max_pool2d_backward", g, y, kernel=(2, 2), stride=(2, 2),
                      padding=(0, 0), dilation=(1, 1))
        return ember.where(y <= 0, 0.0, gp), gp   # the unmasked gradient is an output too
    y = ember.relu(ember.from_numpy(_special((2, 2, 6, 6), np.float32)))
    g = ember.randn(2, 2, 3, 3)
    ops = _graph_ops(f, y, g)
    assert not any(a.get("relu") for op, a, _ in ops if op == "max_pool2d_backward")
    for c, e in zip(_compile(f)(y, g), f(y, g)):
        _same_bits(c.numpy(), e.numpy())


def _pool_graph(mask_op="le", threshold=0.0, extra_reader=False, mask_of_other=False,
                value=0.0):
    """where(mask_op(t, threshold), value, max_pool2d_backward(g, y)) built by hand."""
    gr = Graph()
    y = gr.add_input(InputSource("arg", "args[0]"), (1, 1, 4, 4), e_f32, CPU)
    other = gr.add_input(InputSource("arg", "args[1]"), (1, 1, 4, 4), e_f32, CPU)
    g = gr.add_input(InputSource("arg", "args[2]"), (1, 1, 2, 2), e_f32, CPU)
    pb = gr.add("max_pool2d_backward", (g, y), dict(kernel=(2, 2), stride=(2, 2),
                padding=(0, 0), dilation=(1, 1)), (1, 1, 4, 4), e_f32, CPU)
    zero = gr.add_const(np.array(threshold, np.float32), e_f32, CPU)
    cmp = gr.add(mask_op, (other if mask_of_other else y, zero), {}, (1, 1, 4, 4),
                 ember.bool, CPU)
    fill = gr.add_const(np.array(value, np.float32), e_f32, CPU)
    m = gr.add("where", (cmp, fill, pb), {}, (1, 1, 4, 4), e_f32, CPU)
    gr.outputs = [m]
    if extra_reader:
        gr.outputs.append(gr.add("neg", (pb,), {}, (1, 1, 4, 4), e_f32, CPU))
    return gr


@pytest.mark.parametrize("kind,fires", [
    (dict(), True), (dict(mask_op="lt"), False), (dict(threshold=0.5), False),
    (dict(value=1.0), False), (dict(extra_reader=True), False),
    (dict(mask_of_other=True), False)])
def test_pool_relu_pass_on_hand_built_graphs(kind, fires):
    gr = _pool_graph(**kind)
    rng = np.random.default_rng(0)
    inputs = {gr.inputs[0]: _special((1, 1, 4, 4), np.float32),
              gr.inputs[1]: rng.standard_normal((1, 1, 4, 4)).astype(np.float32),
              gr.inputs[2]: np.array([[[[np.inf, -2.0], [1.5, -1.0]]]], np.float32)}
    before = interpret(gr, inputs)
    want = [before[o] for o in gr.outputs]
    gr = fuse_pool_relu(gr)
    after = interpret(gr, inputs)
    fused = [n for n in gr.nodes() if gr[n].attrs.get("relu")]
    assert bool(fused) == fires
    assert (not any(gr[n].op == "where" for n in gr.nodes())) == fires
    for o, w in zip(gr.outputs, want):
        _same_bits(after[o], w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geom", [((2, 2), (2, 2), (0, 0), (1, 1)),
                                  ((3, 3), (1, 1), (1, 1), (1, 1)),
                                  ((3, 2), (2, 1), (1, 0), (1, 2)),
                                  ((2, 3), (3, 2), (1, 1), (2, 1))])
def test_masked_pool_kernel_equals_separate_where(geom, dtype):
    """Native kernel and the array fallback: where(x <= 0, 0, pooled gradient) bit for
    bit (an inf gradient where x <= 0 is 0, a NaN x passes its gradient), on strided x
    too."""
    x = _special((2, 3, 11, 9), dtype)
    out = native.max_pool2d(x, *geom)
    g = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
    g.reshape(-1)[::5] = np.inf
    g.reshape(-1)[1::7] = -np.inf
    want = np.where(x <= 0, dtype(0), native.max_pool2d_backward(g, x, *geom))
    _same_bits(native.max_pool2d_backward(g, x, *geom, relu=True), want)
    xt = np.asfortranarray(x)
    _same_bits(native.max_pool2d_backward(g, xt, *geom, relu=True), want)
    attrs = dict(zip(("kernel", "stride", "padding", "dilation"), geom))
    # the array code (other dtypes and devices): float16 input through the fallback
    fallback = _max_pool2d_backward(np, g.astype(np.float16), x.astype(np.float16),
                                    relu=True, **attrs)
    plain = _max_pool2d_backward(np, g.astype(np.float16), x.astype(np.float16), **attrs)
    _same_bits(fallback, np.where(x.astype(np.float16) <= 0, np.float16(0), plain))


# ---- conv -> bias -> relu (-> pool): the convolution's epilogue -----------------------

def _convnet(lib, dtype, stride=1, padding=0, dilation=1, pool=(2, 2, 0, 1, False)):
    nn = lib.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 5, stride=stride, padding=padding,
                                   dilation=dilation)
            self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            k, s, p, d, ceil = pool
            x = F_(lib).max_pool2d(F_(lib).relu(self.conv1(x)), k, s, p, d,
                                   ceil_mode=ceil)
            x = F_(lib).relu(self.conv2(x))
            return self.fc(x.mean((2, 3)))
    net = Net()
    return net.double() if dtype == np.float64 else net


def F_(lib):
    return lib.nn.functional


NETS = [dict(), dict(stride=2, padding=2), dict(dilation=2, padding=1),
        dict(pool=(3, 2, 1, 1, False)), dict(pool=(2, 2, 0, 1, True)),
        dict(pool=((3, 2), (1, 2), (1, 0), (2, 1), False))]


def _train(net, lib, x, y, steps, compiled):
    opt = lib.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = F_(lib).cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss
    f = _compile(step) if compiled else step
    return [float(f(x, y)) for _ in range(steps)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", NETS, ids=str)
def test_conv_net_compiled_equals_eager_and_torch(cfg, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 20, 18)).astype(dtype)
    y = rng.integers(0, 2, 4)
    nets = []
    for _ in range(2):
        ember.manual_seed(0)
        nets.append(_convnet(ember, dtype, **cfg))
    tnet = _convnet(torch, dtype, **cfg)
    with torch.no_grad():
        for tp, ep in zip(tnet.parameters(), nets[0].parameters()):
            tp.copy_(torch.tensor(ep.detach().numpy()))
    xe, ye = ember.from_numpy(x), ember.from_numpy(y)
    eager = _train(nets[0], ember, xe, ye, 4, compiled=False)
    comp = _train(nets[1], ember, xe, ye, 4, compiled=True)
    tl = _train(tnet, torch, torch.tensor(x), torch.tensor(y), 4, compiled=False)
    tol = 2e-5 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(comp, eager, rtol=tol)
    np.testing.assert_allclose(comp, tl, rtol=tol * 10)
    for cp, ep, tp in zip(nets[1].parameters(), nets[0].parameters(), tnet.parameters()):
        np.testing.assert_allclose(cp.detach().numpy(), ep.detach().numpy(), rtol=tol,
                                   atol=tol)
        np.testing.assert_allclose(cp.detach().numpy(), tp.detach().numpy(),
                                   rtol=tol * 10, atol=tol * 10)
        np.testing.assert_allclose(cp.grad.numpy(), tp.grad.numpy(), rtol=tol * 50,
                                   atol=tol * 50)


def test_conv_net_pass_fires():
    ember.manual_seed(0)
    net = _convnet(ember, np.float32)
    opt = ember.optim.SGD(net.parameters(), lr=0.01)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss
    ops = _graph_ops(step, ember.randn(2, 3, 20, 18), ember.tensor([0, 1]))
    convs = [(a, n) for op, a, n in ops if op == "conv2d_direct"]
    forward = [(a, n) for a, n in convs if a.get("relu")]
    assert len(forward) == 2 and all(n == 3 for a, n in forward)
    # and the second convolution's input gradient (stride 1: a convolution itself)
    assert [(a, n) for a, n in convs if not a.get("relu")] == [
        ({"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1)}, 2)]
    pools = [a for op, a, _ in ops if op == "max_pool2d_backward"]
    assert len(pools) == 1 and pools[0].get("relu")


def test_conv_epilogue_not_fused_when_pre_activation_is_read():
    w = ember.randn(4, 3, 3, 3)
    b = ember.randn(4)

    def both(x):   # the pre-activation is returned too: only the bias moves in
        c = F.conv2d(x, w, b)
        return F.relu(c), c

    def conv_out(x):   # the convolution's own output is read: nothing moves
        c = F.conv2d(x, w)
        return F.relu(c + b.reshape(1, 4, 1, 1)), c

    x = ember.from_numpy(_special((2, 3, 8, 9), np.float32))
    ops = _graph_ops(both, x)
    convs = [(a, n) for op, a, n in ops if op == "conv2d_direct"]
    assert convs == [(convs[0][0], 3)] and not convs[0][0].get("relu")
    assert any(op == "relu" for op, _, _ in ops)
    ops = _graph_ops(conv_out, x)
    convs = [(a, n) for op, a, n in ops if op == "conv2d_direct"]
    assert len(convs) == 1 and convs[0][1] == 2 and not convs[0][0].get("relu")
    for f in (both, conv_out):
        for c, e in zip(_compile(f)(x), f(x)):
            _same(c.numpy(), e.numpy())


def test_conv_relu_without_bias_and_bias_shapes():
    w = ember.randn(5, 3, 3, 3)
    b3 = ember.randn(5, 1, 1)

    def no_bias(x):
        return F.relu(F.conv2d(x, w, padding=1))

    def bias_3d(x):   # a [O, 1, 1] bias broadcasts as [1, O, 1, 1]
        return F.relu(F.conv2d(x, w) + b3)

    def bias_wide(x):   # a bias over the whole plane is not a per-channel bias
        return F.relu(F.conv2d(x, w) + x[:, :1, 1:-1, 1:-1])

    x = ember.from_numpy(_special((2, 3, 9, 7), np.float32))
    for f, nargs, relu in ((no_bias, 2, True), (bias_3d, 3, True), (bias_wide, 2, False)):
        convs = [(a, n) for op, a, n in _graph_ops(f, x) if op == "conv2d_direct"]
        assert len(convs) == 1 and convs[0][1] == nargs
        assert bool(convs[0][0].get("relu")) == relu
        _same(_compile(f)(x).numpy(), f(x).numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geom", [((1, 1), (0, 0), (1, 1)), ((2, 1), (1, 2), (1, 2)),
                                  ((1, 1), (1, 1), (1, 1))])
@pytest.mark.parametrize("hw", [(9, 7), (20, 37)])   # the flat path and the row path
def test_epilogue_kernel_equals_separate_ops(geom, hw, dtype):
    s, p, d = geom
    rng = np.random.default_rng(7)
    x = _special((2, 3) + hw, dtype)
    w = rng.standard_normal((6, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    b[0] = np.inf
    b[1] = -np.inf
    plain = directconv.conv2d(x, w, s, p, d)
    with np.errstate(invalid="ignore"):
        biased = plain + b.reshape(1, 6, 1, 1)
    _same_bits(directconv.conv2d(x, w, s, p, d, bias=b), biased)
    fused = directconv.conv2d(x, w, s, p, d, bias=b, relu=True)
    _same(fused, np.maximum(biased, dtype(0)))
    _same(directconv.conv2d(x, w, s, p, d, relu=True), np.maximum(plain, dtype(0)))
    attrs = dict(stride=s, padding=p, dilation=d)
    # the array code: float16 through the fallback, as the separate ops
    h = [a.astype(np.float16) for a in (x, w, b)]
    with np.errstate(invalid="ignore", over="ignore"):
        sep = np.maximum(_conv2d_direct(np, h[0], h[1], **attrs) + h[2].reshape(1, 6, 1, 1),
                         np.float16(0))
    _same(_conv2d_direct(np, *h, relu=True, **attrs), sep)


@pytest.mark.parametrize("pool,seed,shape", [(False, 8, (2, 3, 7, 6)), (True, 10, (2, 3, 9, 8))])
def test_fused_conv_op_differentiates_eagerly(pool, seed, shape):
    """conv2d_direct with bias and relu (and pooling) called directly: its VJP against
    PyTorch."""
    torch = pytest.importorskip("torch")
    from ember.dispatch import dispatch
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s) for s in (shape, (4, 3, 3, 3), (4,)))
    ex, ew, eb = (ember.tensor(a, requires_grad=True) for a in (x, w, b))
    extra = {"pool": True} if pool else {}
    out = dispatch("conv2d_direct", ex, ew, eb, stride=(1, 1), padding=(1, 1),
                   dilation=(1, 1), relu=True, **extra)
    g = rng.standard_normal(out.shape)
    (out * ember.tensor(g)).sum().backward()
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    t_out = torch.relu(torch.nn.functional.conv2d(tx, tw, tb, padding=1))
    if pool:
        t_out = torch.nn.functional.max_pool2d(t_out, 2)
    (t_out * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), t_out.detach().numpy(), rtol=1e-12)
    for e, t in ((ex, tx), (ew, tw), (eb, tb)):
        np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_pipeline_runs_the_fusions_before_dce():
    names = [p.__name__ for p in PIPELINE]
    assert names.index("fuse_pool_relu") < names.index("dce")
    assert names.index("fuse_conv_epilogue") < names.index("dce")
    assert names.index("cse") < names.index("fuse_pool_relu")


def test_conv_epilogue_pass_on_hand_built_graph():
    """relu(add(conv, reshape(b))) whose add is also an output: only the bias moves
    in when the conv alone is private; the values stay the same."""
    gr = Graph()
    x = gr.add_input(InputSource("arg", "args[0]"), (1, 2, 5, 5), e_f32, CPU)
    w = gr.add_input(InputSource("arg", "args[1]"), (3, 2, 3, 3), e_f32, CPU)
    b = gr.add_input(InputSource("arg", "args[2]"), (3,), e_f32, CPU)
    geom = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1))
    c = gr.add("conv2d_direct", (x, w), geom, (1, 3, 3, 3), e_f32, CPU)
    rb = gr.add("reshape", (b,), dict(shape=(1, 3, 1, 1)), (1, 3, 1, 1), e_f32, CPU)
    a = gr.add("add", (c, rb), {}, (1, 3, 3, 3), e_f32, CPU)
    r = gr.add("relu", (a,), {}, (1, 3, 3, 3), e_f32, CPU)
    gr.outputs = [r, a]
    rng = np.random.default_rng(0)
    inputs = {x: rng.standard_normal((1, 2, 5, 5)).astype(np.float32),
              w: rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
              b: rng.standard_normal(3).astype(np.float32)}
    want = [interpret(gr, inputs)[o] for o in gr.outputs]
    gr = fuse_conv_epilogue(gr)
    assert gr[a].op == "conv2d_direct" and gr[a].args == (x, w, b)
    assert not gr[a].attrs["relu"] and gr[r].op == "relu" and c not in gr
    got = interpret(gr, inputs)
    for o, v in zip(gr.outputs, want):
        _same(got[o], v)


# ---- ... -> max_pool2d(2): pooling in the epilogue (forward-only code) ---------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [   # (x shape, O, kernel, stride, padding, dilation)
    ((2, 3, 32, 32), 6, 5, 1, 0, 1), ((2, 3, 32, 32), 32, 3, 1, 0, 1),
    ((2, 3, 19, 41), 5, 3, (2, 1), 1, (1, 2)), ((3, 8, 17, 47), 20, 3, 1, 1, 1),
    ((2, 3, 9, 11), 5, 3, 1, 0, 1),           # OW < 16: the flat kernel, pooled after
    ((1, 2, 6, 70), 3, 2, 1, 0, 1)])          # an odd number of row vectors
def test_pooled_epilogue_kernel_equals_separate_ops(case, dtype):
    shape, o, k, s, p, d = case
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    s, p, d = pair(s), pair(p), pair(d)
    rng = np.random.default_rng(9)
    x = _special(shape, dtype)
    w = rng.standard_normal((o, shape[1], k, k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    for bias, relu in ((b, True), (None, False), (b, False), (None, True)):
        y = directconv.conv2d(x, w, s, p, d, bias=bias, relu=relu)
        want = native.max_pool2d(y, (2, 2), (2, 2), (0, 0), (1, 1))
        _same(directconv.conv2d(x, w, s, p, d, bias=bias, relu=relu, pool=True), want)
    # the array code (float16) as the separate ops
    h = [a.astype(np.float16) for a in (x, w, b)]
    attrs = dict(stride=s, padding=p, dilation=d)
    y16 = _conv2d_direct(np, *h, relu=True, **attrs)
    from ember.ops.conv import _max_pool2d
    _same(_conv2d_direct(np, *h, relu=True, pool=True, **attrs),
          _max_pool2d(np, y16, (2, 2), (2, 2), (0, 0), (1, 1)))


def test_pool_moves_into_the_epilogue_only_in_forward_code():
    ember.manual_seed(0)
    net = _convnet(ember, np.float32)
    x = ember.from_numpy(_special((3, 3, 20, 18), np.float32))

    def fwd(x):
        with ember.no_grad():
            return net(x)
    ops = _graph_ops(fwd, x)
    convs = [a for op, a, _ in ops if op == "conv2d_direct"]
    assert len(convs) == 2 and convs[0].get("pool") and convs[0].get("relu")
    assert not any(op == "max_pool2d" for op, _, _ in ops)
    _same(_compile(fwd)(x).numpy(), fwd(x).numpy())

    def train_fwd(x):   # the pooling gradient reads the unpooled output: no pool fusion
        out = net(x)
        out.sum().backward()
        return out
    ops = _graph_ops(train_fwd, x)
    assert not any(a.get("pool") for op, a, _ in ops if op == "conv2d_direct")
    assert any(op == "max_pool2d" for op, _, _ in ops)

    def other_pool(x):   # 3x3 pooling, or 2x2 with padding: not the kernel's pooling
        with ember.no_grad():
            y = F.relu(net.conv1(x))
            return F.max_pool2d(y, 3, 2, 1), F.max_pool2d(F.relu(net.conv1(x * 2)), 2, 1)
    ops = _graph_ops(other_pool, x)
    assert not any(a.get("pool") for op, a, _ in ops if op == "conv2d_direct")
    for c, e in zip(_compile(other_pool)(x), other_pool(x)):
        _same(c.numpy(), e.numpy())


def test_conv_gradient_does_not_keep_the_output():
    """conv2d_direct's VJP computes a fused activation again rather than reading its
    output, so (as before the options) writing the output in place is allowed."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    ex, ew = (ember.tensor(a, requires_grad=True) for a in (x, w))
    y = F.conv2d(ex, ew)
    assert y.grad_fn is not None
    y.mul_(2)
    y.sum().backward()
    tx, tw = (torch.tensor(a, requires_grad=True) for a in (x, w))
    ty = torch.nn.functional.conv2d(tx, tw)
    ty.mul_(2)
    ty.sum().backward()
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ew.grad.numpy(), tw.grad.numpy(), rtol=1e-12)
