"""The same programs on "cuda" (CuPy) against the CPU: every registry op with its
gradient, random compiled programs, the ported models and a compiled training step.
Skipped without a CUDA GPU and CuPy; run them on a machine that has one."""
from __future__ import annotations

import random
import warnings

import numpy as np
import pytest

import ember
from ember.ops.registry import OPS

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not ember.cuda.is_available(), reason="needs a CUDA GPU with CuPy")]

CUDA = ember.device("cuda")


def _on(x, device):
    return ember.from_numpy(x).to(device) if isinstance(x, np.ndarray) else x


def _host(t):
    return t.detach().cpu().numpy()


def _registry_params():
    from test_registry_ops import PARAMS
    return PARAMS


@pytest.mark.parametrize("name,case", _registry_params())
def test_op_and_gradient_on_cuda_match_cpu(name, case):
    op = OPS[name]
    if op.kind in ("random", "creation"):
        attrs = dict(case.eattrs if case.eattrs is not None else case.attrs, device=CUDA)
        out = ember.dispatch.dispatch(name, *[_on(x, CUDA) for x in case.inputs], **attrs)
        assert out.device.type == "cuda"
        if op.kind == "creation":
            cpu = ember.dispatch.dispatch(name, **dict(attrs, device=ember.device("cpu")))
            np.testing.assert_array_equal(_host(out), _host(cpu))
        return
    fn = case.ember_fn(name)
    grad = op.vjp is not None and case.grad
    outs = []
    for device in (ember.device("cpu"), CUDA):
        xs = [_on(x, device) for x in case.inputs]
        for x in xs:
            if grad and isinstance(x, ember.Tensor) and x.is_floating_point():
                x.requires_grad_(True)
        y = fn(*xs)
        grads = []
        if grad and y.is_floating_point():
            # squares for the sign-free vectors: their gradient must not depend on the sign
            loss = y.float() * (y.float() if name in _SIGN_FREE else 1.5)
            loss.sum().backward()
            grads = [_host(x.grad) if isinstance(x, ember.Tensor) and x.grad is not None
                     else None for x in xs]
        outs.append((_host(y), grads))
    (y0, g0), (y1, g1) = outs
    if name in _SIGN_FREE:
        y0, y1 = (_fixed_signs(name, case.inputs[0].shape, y) for y in (y0, y1))
    tol = 1e-5 if y0.real.dtype == np.float32 else 1e-10
    if y0.dtype.kind in "fc":   # FFTs: cuFFT and pocketfft round differently
        np.testing.assert_allclose(y1, y0, rtol=tol, atol=tol, equal_nan=True)
    else:
        np.testing.assert_array_equal(y1, y0)
    for a, b in zip(g0, g1):
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


_SIGN_FREE = ("linalg_eigh", "linalg_svd")   # vectors defined up to their sign


def _fixed_signs(name, shape, packed):
    """eigh's (w, v) or svd's (u, s, vh), packed on the last axis, with each vector's
    largest component made positive: cuSOLVER and LAPACK choose signs differently."""
    *batch, m, n = shape
    out = packed.copy()
    if name == "linalg_eigh":
        v = out[..., m:].reshape(*batch, m, m)
        v *= np.sign(np.take_along_axis(v, np.abs(v).argmax(-2)[..., None, :], -2))
    else:
        k = min(m, n)
        u = out[..., :m * k].reshape(*batch, m, k)
        vh = out[..., m * k + k:].reshape(*batch, k, n)
        f = np.sign(np.take_along_axis(u, np.abs(u).argmax(-2)[..., None, :], -2))
        u *= f
        vh *= np.swapaxes(f, -1, -2)
        return np.concatenate([u.reshape(*batch, -1), out[..., m * k:m * k + k],
                               vh.reshape(*batch, -1)], -1)
    return np.concatenate([out[..., :m], v.reshape(*batch, -1)], -1)


@pytest.mark.parametrize("seed", range(20))
def test_random_compiled_programs_on_cuda_match_cpu(seed):
    from test_compile import _random_program

    program, x, y = _random_program(random.Random(seed))
    expected = _host(program(x, y))
    cf = ember.compile(program)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            got = cf(x.cuda(), y.cuda())
            assert got.device.type == "cuda"
            np.testing.assert_allclose(_host(got), expected, rtol=1e-4, atol=1e-4)


def _train(model, x, y, device, steps=10, compiled=True):
    model = model.to(device)
    from test_train_step import make_step

    step = make_step(model, ember.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    step = ember.compile(step) if compiled else step
    x, y = x.to(device), y.to(device)
    return [step(x, y).item() for _ in range(steps)], [_host(p) for p in model.parameters()]


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_compiled_training_step_on_cuda_matches_cpu(which):
    import copy

    from test_train_step import SimpleCNN, mlp

    ember.manual_seed(0)
    model = mlp() if which == "mlp" else SimpleCNN()
    shape = (32, 784) if which == "mlp" else (8, 3, 32, 32)
    x = ember.randn(*shape)
    y = ember.randint(0, 10, (shape[0],))
    cpu = _train(copy.deepcopy(model), x, y, ember.device("cpu"), compiled=False)
    gpu = _train(model, x, y, CUDA)
    np.testing.assert_allclose(gpu[0], cpu[0], rtol=2e-4, atol=2e-4)
    for a, b in zip(gpu[1], cpu[1]):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)


def test_mixing_devices_is_a_clear_error():
    with pytest.raises(ember.OpError, match="same device"):
        ember.randn(3) + ember.randn(3).cuda()


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_index_checks_on_cuda_raise_as_on_the_cpu(compiled):
    """check_index's one-kernel test on a GPU: targets below 0, at C and above raise
    with the first bad value; ignore_index (-100) passes; int32 embedding indices too."""
    import ember.nn.functional as F

    def nll(x, t):
        return F.nll_loss(F.log_softmax(x, dim=1), t)

    def emb(i, w):
        return F.embedding(i, w).sum()

    f, g = (ember.compile(nll), ember.compile(emb)) if compiled else (nll, emb)
    x, w = ember.randn(4, 5, device="cuda"), ember.randn(10, 3, device="cuda")
    for t in ([0, 1, 2, 3], [0, -1, 2, 3], [0, 5, 2, 3], [-100, 1, 2, 3], [7, 5, -1, 3],
              [4, 4, 4, 4]):
        bad = [v for v in t if v != -100 and not 0 <= v < 5]
        tc = ember.tensor(t, device="cuda")
        if bad:
            with pytest.raises(IndexError, match=f"Target {bad[0]} is out of bounds"):
                f(x, tc)
        else:
            np.testing.assert_allclose(_host(f(x, tc)), _host(nll(x.cpu(), tc.cpu())),
                                       rtol=1e-5, atol=1e-6)
    for i in ([0, 9], [10, 1], [3, -1]):
        ic = ember.tensor(i, dtype=ember.int32, device="cuda")
        if all(0 <= v < 10 for v in i):
            np.testing.assert_allclose(_host(g(ic, w)), _host(emb(ic.cpu(), w.cpu())),
                                       rtol=1e-5)
        else:
            with pytest.raises(IndexError, match="out of range|out of bounds"):
                g(ic, w)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("name", ["simple_cnn", "mnist_mlp", "quickstart"])
def test_ported_program_on_cuda_matches_cpu(name, compiled):
    """test_ported_programs.py's PyTorch programs (imports changed, nothing else), their
    model moved with ``.to("cuda")``: outputs, losses, gradients and SGD-updated weights
    equal the CPU run's, eagerly and with ``train_step`` compiled."""
    import copy

    from test_ported_programs import EMBER_IMPORTS, PROGRAMS, load_program

    source, shape, classes = PROGRAMS[name]
    prog = load_program(source, EMBER_IMPORTS)
    ember.manual_seed(0)
    cpu_net = prog["make_model"]()
    gpu_net = copy.deepcopy(cpu_net).to("cuda")
    gpu_step = ember.compile(prog["train_step"]) if compiled else prog["train_step"]
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.integers(0, classes, size=shape[0])
        want = prog["train_step"](cpu_net, ember.tensor(x), ember.tensor(y))
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # no fallback to eager, no graph break
            got = gpu_step(gpu_net, ember.tensor(x).cuda(), ember.tensor(y).cuda())
        (wout, wloss, wgrads), (gout, gloss, ggrads) = want, got
        assert gout.device.type == "cuda"
        np.testing.assert_allclose(_host(gout), _host(wout), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(_host(gloss), _host(wloss), rtol=1e-4, atol=1e-5)
        for key, g in wgrads.items():
            np.testing.assert_allclose(_host(ggrads[key]), _host(g), rtol=1e-4, atol=1e-5)
    for (key, a), b in zip(gpu_net.state_dict().items(), cpu_net.state_dict().values()):
        np.testing.assert_allclose(_host(a), _host(b), rtol=1e-4, atol=1e-5, err_msg=key)
