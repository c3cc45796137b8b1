"""Shared test helpers: comparisons against PyTorch and a float64 finite-difference checker."""
from __future__ import annotations

from builtins import max as builtins_max

import numpy as np
import pytest

import ember

# Tolerances per dtype: float32 results are compared loosely, float64 tightly.
TOL = {np.dtype(np.float32): (1e-5, 1e-6), np.dtype(np.float64): (1e-10, 1e-12)}


def to_np(x):
    """An ember or torch tensor (or anything array-like) as a NumPy array."""
    if isinstance(x, ember.Tensor):
        return x.detach().cpu().numpy()
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # a torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)


def dtype_name(x) -> str:
    """'float32', 'int64', 'bool', ... for ember and torch tensors alike."""
    return str(x.dtype).replace("torch.", "").replace("ember.", "")


def assert_close(actual, expected, rtol=None, atol=None, check_dtype=True) -> None:
    """Values (and dtypes when asked) of ember/torch/NumPy results agree."""
    a, e = to_np(actual), to_np(expected)
    if check_dtype and hasattr(actual, "dtype") and hasattr(expected, "dtype"):
        if not isinstance(expected, np.ndarray):
            assert dtype_name(actual) == dtype_name(expected), (actual.dtype, expected.dtype)
    assert a.shape == e.shape, f"shape {a.shape} != expected {e.shape}"
    if a.dtype.kind in "fc" or e.dtype.kind in "fc":   # complex: its parts' tolerance
        r, t = TOL.get(a.real.dtype, (1e-5, 1e-6))
        np.testing.assert_allclose(a, e, rtol=rtol if rtol is not None else r,
                                   atol=atol if atol is not None else t, equal_nan=True)
    else:
        np.testing.assert_array_equal(a, e)


def ember_inputs(inputs, requires_grad: bool):
    """NumPy inputs as ember tensors sharing memory (so strides, i.e. non-contiguity, survive)."""
    out = []
    for x in inputs:
        if isinstance(x, np.ndarray):
            t = ember.from_numpy(x)
            if requires_grad and x.dtype.kind == "f":
                t.requires_grad_(True)
            out.append(t)
        else:
            out.append(x)
    return out


def torch_inputs(inputs, requires_grad: bool):
    import torch

    out = []
    for x in inputs:
        if isinstance(x, np.ndarray):
            # torch.from_numpy rejects negative strides; the values are what matter here.
            # (np.ascontiguousarray would turn a 0-dim array into a 1-dim one.)
            t = torch.from_numpy(np.array(x, order="C", copy=True))
            if requires_grad and x.dtype.kind == "f":
                t.requires_grad_(True)
            out.append(t)
        else:
            out.append(x)
    return out


def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _cotangent(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 1.5, size=shape)


def check_against_torch(fn_ember, fn_torch, inputs, *, grad: bool = True, rtol=None, atol=None,
                        check_dtype: bool = True) -> None:
    """Run ``fn_ember`` and ``fn_torch`` on the same NumPy ``inputs``; compare the outputs
    (values, shapes, dtypes) and, with ``grad``, the gradients of every float input under
    the same random cotangent."""
    import torch

    e_in = ember_inputs(inputs, grad)
    t_in = torch_inputs(inputs, grad)
    e_out, t_out = _outputs(fn_ember(*e_in)), _outputs(fn_torch(*t_in))
    assert len(e_out) == len(t_out)
    if rtol is None and (any(getattr(x, "dtype", None) == np.float32 for x in inputs) or any(
            dtype_name(o) == "float32" for o in t_out)):
        # Anything computed in float32 (even a float64 input's gradient) has float32 precision.
        rtol, atol = TOL[np.dtype(np.float32)]
    for a, b in zip(e_out, t_out):
        assert_close(a, b, rtol, atol, check_dtype)
    if not grad:
        return
    e_wrt = [t for t in e_in if isinstance(t, ember.Tensor) and t.requires_grad]
    t_wrt = [t for t in t_in if isinstance(t, torch.Tensor) and t.requires_grad]
    pairs = [(a, b) for a, b in zip(e_out, t_out) if b.requires_grad]
    if not t_wrt or not pairs:
        return
    loss_e, loss_t = 0, 0
    for i, (a, b) in enumerate(pairs):
        w = _cotangent(tuple(b.shape), seed=i)
        loss_e = loss_e + (a * ember.tensor(w, dtype=a.dtype)).sum()
        loss_t = loss_t + (b * torch.tensor(w, dtype=b.dtype)).sum()
    t_grads = torch.autograd.grad(loss_t, t_wrt, allow_unused=True)
    loss_e.backward()
    for x, g in zip(e_wrt, t_grads):
        if g is None:
            assert x.grad is None or not np.any(to_np(x.grad))
        else:
            assert x.grad is not None, "ember gave no gradient where torch gives one"
            assert_close(x.grad, g, rtol, atol, check_dtype)


def numerical_grads(fn, inputs, wrt, cotangents, eps: float = 1e-6):
    """Central differences of sum(fn(*inputs)[k] * cotangents[k]) w.r.t. inputs[i], i in wrt.

    ``inputs`` are float64 NumPy arrays; ``fn`` maps NumPy arrays to NumPy outputs."""
    def scalar(args):
        return sum(float(np.sum(o * c)) for o, c in zip(_outputs(fn(*args)), cotangents))

    grads = []
    for i in wrt:
        x = np.array(inputs[i], dtype=np.float64)
        g = np.zeros_like(x)
        for j in np.ndindex(x.shape):
            args = list(inputs)
            xp, xm = x.copy(), x.copy()
            xp[j] += eps
            xm[j] -= eps
            args[i] = xp
            fp = scalar(args)
            args[i] = xm
            g[j] = (fp - scalar(args)) / (2 * eps)
        grads.append(g)
    return grads


def check_grad_fd(fn_ember, inputs, *, rtol: float = 1e-5, atol: float = 1e-7,
                  eps: float = 1e-6) -> None:
    """ember's autograd gradients of ``fn_ember`` agree with float64 central differences.

    Every float64 NumPy array in ``inputs`` is differentiated."""
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, np.ndarray) and x.dtype == np.float64]
    assert wrt, "check_grad_fd needs float64 inputs"
    e_in = ember_inputs(inputs, True)
    outs = [o for o in _outputs(fn_ember(*e_in)) if o.requires_grad]
    if any(o.dtype is not ember.float64 for o in outs):
        # Differences of float32 results resolve only about 1e-7 relative: use big steps.
        eps, rtol, atol = 1e-3, builtins_max(rtol, 2e-3), builtins_max(atol, 1e-4)
    cots = [_cotangent(tuple(o.shape), seed=k) for k, o in enumerate(outs)]
    loss = 0
    for o, c in zip(outs, cots):
        loss = loss + (o * ember.tensor(c, dtype=o.dtype)).sum()
    loss.backward()

    def np_fn(*args):
        with ember.no_grad():
            res = _outputs(fn_ember(*ember_inputs(args, False)))
        return [to_np(r) for r in res if r.dtype.is_floating_point]

    expected = numerical_grads(np_fn, inputs, wrt, cots, eps)
    for i, g in zip(wrt, expected):
        got = e_in[i].grad
        assert got is not None, f"no gradient for input {i}"
        np.testing.assert_allclose(to_np(got), g, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i}")


@pytest.fixture(autouse=True)
def _fresh_state():
    """Each test starts with grad mode on, the default dtype float32 and a fixed seed."""
    from ember.tracer import admission
    ember.set_grad_enabled(True)
    ember.set_default_dtype(ember.float32)
    ember.manual_seed(0)
    # New sizes compile at once, so that tests of what compiled code does at each size
    # see compiled code; the tests of the default rule (run eagerly until compiling a
    # size pays: tracer/admission.py) use the ``rent_new_sizes`` fixture.
    policy, admission.NEW_SIZES = admission.NEW_SIZES, "compile"
    yield
    admission.NEW_SIZES = policy
    ember.set_grad_enabled(True)
    ember.set_default_dtype(ember.float32)


@pytest.fixture
def rent_new_sizes(monkeypatch):
    """The default rule for new sizes (tracer/admission.py): eagerly until compiling pays."""
    from ember.tracer import admission
    monkeypatch.setattr(admission, "NEW_SIZES", "rent")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``fuzz`` (the large fuzzer runs, minutes to hours) run only when asked
    for by marker, e.g. ``pytest -m fuzz``; a plain ``pytest`` (the README's command, CI)
    skips them. Tests marked ``slow`` (a few seconds each: subprocesses, the CUDA
    emulator) run in a plain ``pytest``; ``pytest -m "not slow"`` is the fast lane."""
    if "fuzz" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="a large fuzz run: select it with -m fuzz")
    for item in items:
        if "fuzz" in item.keywords:
            item.add_marker(skip)


def compiled_steps_agree(make, loss, args, *, lr: float = 0.1, steps: int = 3,
                         rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Train ``make()`` (seeded 0) for ``steps`` SGD steps of ``loss(model, *args)``, eager
    then under ``ember.compile`` (warnings are errors there: no eager fallback), and
    compare the losses and the final state_dict."""
    import warnings
    results = []
    for compiled in (False, True):
        ember.manual_seed(0)
        model = make()
        opt = ember.optim.SGD(model.parameters(), lr=lr)

        def step(*xs):
            opt.zero_grad()
            out = loss(model, *xs)
            out.backward()
            opt.step()
            return out
        run = ember.compile(step) if compiled else step
        with warnings.catch_warnings():
            warnings.simplefilter("error" if compiled else "ignore")
            losses = [run(*args).item() for _ in range(steps)]
        results.append((losses, {k: to_np(v).copy() for k, v in model.state_dict().items()}))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=rtol)
    for k, v in results[0][1].items():
        np.testing.assert_allclose(results[1][1][k], v, rtol=rtol, atol=atol, err_msg=k)
