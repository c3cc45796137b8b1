"""Namespaces programs touch: ember.backends, ember.accelerator, ember.compiler,
ember.amp / ember.cuda.amp (autocast, GradScaler), and the grad-mode managers
(no_grad, set_grad_enabled, inference_mode) as context managers and decorators."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember
from conftest import to_np


def _torch():
    return pytest.importorskip("torch")


def _name(dt) -> str:
    return str(dt).replace("torch.", "").replace("ember.", "")


# ---- backends, accelerator, compiler ----------------------------------------------------------

def test_backend_switches_have_torchs_defaults_and_can_be_set():
    torch = _torch()
    pairs = [("cuda.matmul.allow_tf32", ember.backends.cuda.matmul, torch.backends.cuda.matmul,
              "allow_tf32"),
             ("cudnn.allow_tf32", ember.backends.cudnn, torch.backends.cudnn, "allow_tf32"),
             ("cudnn.benchmark", ember.backends.cudnn, torch.backends.cudnn, "benchmark"),
             ("cudnn.deterministic", ember.backends.cudnn, torch.backends.cudnn, "deterministic"),
             ("cudnn.enabled", ember.backends.cudnn, torch.backends.cudnn, "enabled")]
    for label, e, t, attr in pairs:
        assert getattr(e, attr) == getattr(t, attr), label
    ember.backends.cuda.matmul.allow_tf32 = True
    ember.backends.cudnn.benchmark = True
    try:
        assert ember.backends.cuda.matmul.allow_tf32 is True and ember.backends.cudnn.benchmark
        with pytest.raises(AttributeError):
            ember.backends.cuda.matmul.allow_tf3 = True   # a typo is not silently kept
    finally:
        ember.backends.cuda.matmul.allow_tf32 = False
        ember.backends.cudnn.benchmark = False
    assert ember.backends.mps.is_available() is False and ember.backends.mps.is_built() is False
    assert ember.backends.cudnn.is_available() is False
    import importlib.util
    assert ember.backends.cuda.is_built() == (importlib.util.find_spec("cupy") is not None)
    assert ember.backends.cpu.get_cpu_capability() in ("AVX512", "AVX2", "DEFAULT")
    assert ember.backends.cuda.flash_sdp_enabled()
    ember.backends.cuda.enable_flash_sdp(False)
    assert not ember.backends.cuda.flash_sdp_enabled()
    ember.backends.cuda.enable_flash_sdp(True)


def test_float32_matmul_precision():
    torch = _torch()
    assert ember.get_float32_matmul_precision() == torch.get_float32_matmul_precision()
    ember.set_float32_matmul_precision("high")
    assert ember.get_float32_matmul_precision() == "high"
    with pytest.warns(UserWarning, match="no effect"):
        torch.set_float32_matmul_precision("fast")
    with pytest.warns(UserWarning, match="no effect"):
        ember.set_float32_matmul_precision("fast")
    assert ember.get_float32_matmul_precision() == "high"
    ember.set_float32_matmul_precision("highest")


def test_accelerator_follows_cuda():
    assert ember.accelerator.is_available() == ember.cuda.is_available()
    if ember.cuda.is_available():
        assert ember.accelerator.current_accelerator() == ember.device("cuda")
        assert ember.accelerator.device_count() >= 1
    else:
        assert ember.accelerator.current_accelerator() is None
        assert ember.accelerator.device_count() == 0
    assert ember.accelerator.current_device_index() == 0
    with pytest.raises(RuntimeError):
        ember.accelerator.set_device_index(1)
    ember.accelerator.synchronize()


def test_accelerator_with_the_cupy_standin():
    from cupy_standin import installed
    with installed():
        assert ember.accelerator.is_available()
        assert ember.accelerator.current_accelerator() == ember.device("cuda")
        assert ember.accelerator.device_count() == 1


def test_compiler_is_compiling():
    def f(x):
        return x + 1 if ember.compiler.is_compiling() else x - 1

    cf = ember.compile(f)
    x = ember.ones(2)
    assert ember.compiler.is_compiling() is False and f(x).tolist() == [0.0, 0.0]
    assert [cf(x).tolist() for _ in range(4)] == [[2.0, 2.0]] * 4   # traced, then replayed


# ---- grad modes ----------------------------------------------------------------------------------

def test_version_gates_of_ported_code_pass():
    """vit-pytorch asserts ``version.parse(torch.__version__) >= version.parse('2.0.0')``
    and einops reads ``torch.__version__[0]``: ember reports the PyTorch API it follows,
    its own release as the local label, and compares as a version."""
    v = ember.__version__
    assert v == f"{ember.version.torch_api}+ember.{ember.version.release}"
    assert v >= "2.0" and v > "2.2" and v < "3" and v >= (2, 0) and v == "2.13"
    assert not v < "2.13.0" and v != "2.12" and v[0] == "2" and ember.version.cuda is None
    packaging = pytest.importorskip("packaging.version")
    assert packaging.parse(v) >= packaging.parse("2.0.0")


def test_dynamo_and_compiler_names_libraries_call():
    """einops calls ``torch._dynamo.allow_in_graph`` on torch >= 2.0; training scripts
    call ``torch._dynamo.mark_dynamic``; old attention code enters
    ``torch.backends.cuda.sdp_kernel``."""
    f = ember._dynamo.allow_in_graph(lambda x: x * 2)
    assert ember.compiler.allow_in_graph(f) is f
    cf = ember.compile(lambda x: f(x) + 1)
    assert cf(ember.ones(3)).tolist() == [3.0, 3.0, 3.0]
    x = ember.ones(4, 2)
    ember._dynamo.mark_dynamic(x, 0)
    assert ember._dynamo.disable is ember.compiler.disable
    with pytest.warns(FutureWarning, match="sdp_kernel"):
        with ember.backends.cuda.sdp_kernel(enable_math=False, enable_mem_efficient=False):
            assert not ember.backends.cuda.math_sdp_enabled()
            assert ember.backends.cuda.flash_sdp_enabled()
    assert ember.backends.cuda.math_sdp_enabled()


def test_pytree_flattens_as_torch():
    import collections
    from ember.utils import _pytree as pt
    nt = collections.namedtuple("nt", "a b")
    trees = [{"a": [1, 2], "b": (3, None)}, nt(1, [2, ember.ones(1)]),
             collections.OrderedDict(x=1, y=(2,)), collections.deque([1, (2, 3)], maxlen=5),
             collections.defaultdict(list, {"k": [1]}), 5, [], ()]
    for tree in trees:
        leaves, spec = pt.tree_flatten(tree)
        again = pt.tree_unflatten(leaves, spec)
        assert type(again) is type(tree) and pt.tree_flatten(again)[1] == spec
        assert spec.num_leaves == len(leaves)
    assert pt.tree_leaves({"a": [1, 2], "b": (3, None)}) == [1, 2, 3, None]
    assert pt.tree_map(lambda a, b: a + b, [1, (2, 3)], [10, (20, 30)]) == [11, (22, 33)]
    assert pt.tree_map_only(int, lambda x: -x, [1, "s", (2.0, 3)]) == [-1, "s", (2.0, -3)]
    assert pt.tree_leaves([1, [2, 3]], is_leaf=lambda x: x == [2, 3]) == [1, [2, 3]]
    with pytest.raises(ValueError, match="length 1"):
        pt.tree_unflatten([1], pt.tree_structure([1, 2]))
    torch = pytest.importorskip("torch")
    from torch.utils import _pytree as tpt
    for tree in trees[:1] + trees[2:]:
        assert tpt.tree_leaves(tree) == pt.tree_leaves(tree)


def test_axis_is_dim_where_torch_takes_it():
    """guided-diffusion calls ``th.cat(results, axis=-1)``; torch takes NumPy's name for
    ``dim`` in its native functions."""
    x = ember.arange(6.).view(2, 3)
    assert ember.cat([x, x], axis=-1).shape == (2, 6)
    assert ember.stack([x, x], axis=1).shape == (2, 2, 3)
    assert x.sum(axis=0).tolist() == [3.0, 5.0, 7.0] == ember.sum(x, axis=0).tolist()
    assert x.max(axis=1).values.tolist() == [2.0, 5.0]
    assert ember.argmax(x, axis=1).tolist() == [2, 2]
    assert x.mean(axis=1, keepdim=True).shape == (2, 1)
    assert x.unsqueeze(axis=0).shape == (1, 2, 3)
    with pytest.raises(TypeError, match="both 'dim' and its alias 'axis'"):
        x.sum(dim=0, axis=0)
    f = ember.compile(lambda a: ember.cat([a, a], axis=0).softmax(axis=-1))
    for _ in range(3):
        out = f(x)
    np.testing.assert_allclose(to_np(out), to_np(ember.cat([x, x], 0).softmax(-1)))


def test_flat_buffer_helpers_of_torch_utils():
    """guided-diffusion's fp16_util imports torch._utils' flatten helpers."""
    from ember._utils import _flatten_dense_tensors, _unflatten_dense_tensors
    ts = [ember.arange(6.).view(2, 3), ember.ones(4)]
    flat = _flatten_dense_tensors(ts)
    assert flat.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 1.0, 1.0, 1.0]
    back = _unflatten_dense_tensors(flat, ts)
    assert isinstance(back, tuple) and [b.shape for b in back] == [(2, 3), (4,)]
    back[1].zero_()   # views of the flat buffer, as torch's
    assert flat[6:].tolist() == [0.0] * 4


def test_no_grad_set_grad_enabled_inference_mode_forms():
    x = ember.ones(2, requires_grad=True)

    @ember.no_grad()
    def a(x):
        return x * 2

    @ember.set_grad_enabled(False)
    def b(x):
        return x * 2

    @ember.inference_mode()
    def c(x):
        return x * 2

    @ember.inference_mode(False)
    def d(x):
        return x * 2

    assert ember.is_grad_enabled()   # decorating changed nothing
    assert not a(x).requires_grad and not b(x).requires_grad and not c(x).requires_grad
    assert d(x).requires_grad
    with ember.set_grad_enabled(False):
        assert not (x * 2).requires_grad
        with ember.set_grad_enabled(True):
            assert (x * 2).requires_grad
    assert (x * 2).requires_grad
    ember.set_grad_enabled(False)          # as a plain call it sets the mode
    try:
        assert not ember.is_grad_enabled()
    finally:
        ember.set_grad_enabled(True)
    with ember.inference_mode():
        assert ember.is_inference_mode_enabled() and not (x * 2).requires_grad
    assert not ember.is_inference_mode_enabled() and ember.is_grad_enabled()


def test_compiled_function_under_inference_mode():
    w = ember.ones(3, requires_grad=True)
    cf = ember.compile(lambda x: (x * w).sum())
    x = ember.ones(3)
    with ember.inference_mode():
        for _ in range(3):
            out = cf(x)
    assert not out.requires_grad and float(out) == 3.0
    assert cf(x).requires_grad


# ---- autocast ------------------------------------------------------------------------------------

def _autocast_cases(m):
    x = m.tensor(np.linspace(-1, 1, 12).reshape(3, 4), dtype=m.float32)
    w = m.tensor(np.linspace(0.5, -0.5, 8).reshape(2, 4), dtype=m.float32)
    b = m.tensor([0.25, -0.75])
    img = m.tensor(np.linspace(-1, 1, 50).reshape(1, 2, 5, 5), dtype=m.float32)
    k = m.tensor(np.linspace(-1, 1, 36).reshape(2, 2, 3, 3), dtype=m.float32)
    fn = m.nn.functional
    return {
        "matmul": lambda: x @ w.t(),
        "mm": lambda: x.mm(w.t()),
        "bmm": lambda: x.unsqueeze(0).bmm(w.t().unsqueeze(0)),
        "linear": lambda: fn.linear(x, w, b),
        "linear_nobias": lambda: fn.linear(x, w),
        "conv2d": lambda: fn.conv2d(img, k, m.tensor([0.5, -0.5])),
        "add": lambda: x + x,
        "softmax": lambda: x.softmax(-1),
        "float64_matmul": lambda: x.double() @ w.double().t(),
        "matmul_then_add": lambda: (x @ w.t()) + b,
        # the losses PyTorch's autocast computes in float32
        "cross_entropy": lambda: fn.cross_entropy(x @ w.t(), m.tensor([0, 1, 1])),
        "nll_loss": lambda: fn.nll_loss((x @ w.t()).log_softmax(-1), m.tensor([1, 0, 1])),
        "mse_loss": lambda: fn.mse_loss(x @ w.t(), m.zeros(3, 2)),
        "l1_loss": lambda: fn.l1_loss(x @ w.t(), m.ones(3, 2)),
        "bce_logits": lambda: fn.binary_cross_entropy_with_logits(x @ w.t(), m.ones(3, 2) * 0.5),
        "bce": lambda: fn.binary_cross_entropy((x @ w.t()).sigmoid(), m.ones(3, 2) * 0.5),
    }


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cpu_autocast_dtypes_and_values_equal_torch(dtype):
    torch = _torch()
    with torch.autocast("cpu", dtype=getattr(torch, dtype)):
        tout = {k: f() for k, f in _autocast_cases(torch).items()}
    with ember.amp.autocast("cpu", dtype=getattr(ember, dtype)):
        eout = {k: f() for k, f in _autocast_cases(ember).items()}
    for k in tout:
        assert eout[k].dtype.name == _name(tout[k].dtype), k
        np.testing.assert_allclose(to_np(eout[k].float()), tout[k].float().numpy(),
                                   rtol=2e-2, atol=2e-2, err_msg=k)
    # outside the block: float32 again
    assert (_autocast_cases(ember)["matmul"]()).dtype is ember.float32


def test_autocast_state_queries_equal_torch():
    torch = _torch()
    for m in (ember, torch):
        assert not m.is_autocast_enabled("cpu")
        assert _name(m.get_autocast_dtype("cpu")) == "bfloat16"
    with ember.autocast("cpu"):
        assert ember.is_autocast_enabled("cpu") and not ember.is_autocast_enabled("cuda")
        with ember.amp.autocast("cpu", enabled=False):
            assert not ember.is_autocast_enabled("cpu")
            assert (ember.ones(2, 2) @ ember.ones(2, 2)).dtype is ember.float32
        assert ember.is_autocast_enabled("cpu")
    assert ember.amp.is_autocast_available("cpu") and not ember.amp.is_autocast_available("xla")


def test_autocast_decorator_and_errors():
    @ember.amp.autocast("cpu")
    def f(a):
        return a @ a

    x = ember.ones(2, 2)
    assert f(x).dtype is ember.bfloat16 and (x @ x).dtype is ember.float32
    with pytest.raises(RuntimeError):
        ember.amp.autocast("tpu")
    torch = _torch()
    with warnings.catch_warnings(record=True) as ew:
        warnings.simplefilter("always")
        with ember.amp.autocast("cpu", dtype=ember.float32):
            assert (x @ x).dtype is ember.float32
    with warnings.catch_warnings(record=True) as tw:
        warnings.simplefilter("always")
        with torch.autocast("cpu", dtype=torch.float32):
            pass
    assert ew and tw
    assert "not supported" in str(ew[0].message) and "not supported" in str(tw[0].message)


def test_cuda_autocast_without_gpu_is_a_documented_no_op():
    if ember.cuda.is_available():   # real there: matmuls in float16, PyTorch's CUDA default
        x = ember.ones(2, 2, device="cuda")
        with ember.amp.autocast("cuda"):
            assert (x @ x).dtype.name == "float16"
        return
    torch = _torch()
    x = ember.ones(2, 2)
    tx = torch.ones(2, 2)
    for ctx, tctx in ((lambda: ember.amp.autocast("cuda"), lambda: torch.autocast("cuda")),
                      (lambda: ember.cuda.amp.autocast(), lambda: torch.autocast("cuda"))):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            with ctx():
                e = x @ x
            with tctx():
                t = tx @ tx
        assert e.dtype.name == _name(t.dtype) == "float32"
        assert any("CUDA is not available" in str(m.message) for m in w)
    import ember.amp.autocast_mode as mode
    assert "warns and does nothing" in " ".join(mode.__doc__.split())   # documented


def test_cuda_autocast_casts_cuda_tensors_with_the_standin():
    from cupy_standin import installed
    with installed():
        x = ember.ones(2, 2, device="cuda")
        with ember.amp.autocast("cuda"):
            assert (x @ x).dtype is ember.float16
            assert (ember.ones(2, 2) @ ember.ones(2, 2)).dtype is ember.float32   # CPU: untouched


def test_autocast_gradients_reach_float32_weights_like_torch():
    torch = _torch()
    rng = np.random.default_rng(0)
    xw, ww, bw = (rng.standard_normal(s).astype(np.float32) for s in ((4, 5), (3, 5), (3,)))
    grads = []
    for m in (ember, torch):
        w = m.tensor(ww, requires_grad=True)
        b = m.tensor(bw, requires_grad=True)
        with m.autocast("cpu"):
            out = m.nn.functional.linear(m.tensor(xw), w, b)
        out.float().pow(2).sum().backward()
        grads.append((to_np(w.grad), to_np(b.grad), _name(w.grad.dtype), _name(out.dtype)))
    assert grads[0][2:] == grads[1][2:] == ("float32", "bfloat16")
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=3e-2, atol=3e-2)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=3e-2, atol=3e-2)


def test_autocast_compiled_equals_eager_and_keys_on_the_state():
    model = ember.nn.Sequential(ember.nn.Linear(4, 8), ember.nn.ReLU(), ember.nn.Linear(8, 2))
    x = ember.randn(5, 4)
    cf = ember.compile(lambda x: model(x))
    with ember.amp.autocast("cpu"):
        eager = model(x)
        for _ in range(3):
            got = cf(x)
    assert got.dtype is eager.dtype is ember.bfloat16
    np.testing.assert_array_equal(to_np(got.float()), to_np(eager.float()))
    plain = cf(x)   # outside autocast: a new entry in float32, not the bfloat16 replay
    assert plain.dtype is ember.float32
    np.testing.assert_allclose(to_np(plain), to_np(model(x)), rtol=1e-6)
    assert any("autocast" in r for r in cf.stats()["recompile_reasons"])


# ---- GradScaler ----------------------------------------------------------------------------------

def _scaler_run(m, scaler_cls, steps=8, bad_steps=(2, 5)):
    """Steps of SGD on a tiny model through a GradScaler; on ``bad_steps`` the loss is
    multiplied by inf, so the scaler must skip the step and back off."""
    w = m.tensor([[0.5, -0.25], [0.125, 1.0]], requires_grad=True)
    opt = m.optim.SGD([w], lr=0.1)
    scaler = scaler_cls()
    x = m.tensor([[1.0, 2.0], [3.0, -1.0]])
    scales, params = [], []
    for i in range(steps):
        opt.zero_grad()
        loss = (x @ w).pow(2).mean()
        if i in bad_steps:
            loss = loss * float("inf")
        with np.errstate(invalid="ignore", over="ignore"):   # inf * 0 on the bad steps
            scaler.scale(loss).backward()
        if i % 3 == 0:
            scaler.unscale_(opt)   # as before clipping
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
        params.append(to_np(w).copy())
    return scales, params, scaler.state_dict()


def test_grad_scaler_trajectory_equals_torch():
    torch = _torch()
    kw = dict(init_scale=2.0 ** 10, growth_interval=3)
    e = _scaler_run(ember, lambda: ember.amp.GradScaler("cpu", **kw))
    t = _scaler_run(torch, lambda: torch.amp.GradScaler("cpu", **kw))
    assert e[0] == t[0]                      # the scale: backoff on inf, growth every 3
    np.testing.assert_allclose(np.array(e[1]), np.array(t[1]), rtol=1e-5, atol=1e-7)
    assert e[2] == t[2]


def test_grad_scaler_errors_state_dict_and_disabled():
    torch = _torch()
    w = ember.ones(2, requires_grad=True)
    opt = ember.optim.SGD([w], lr=0.1)
    s = ember.amp.GradScaler("cpu")
    s.scale((w * 2).sum()).backward()
    np.testing.assert_array_equal(to_np(w.grad), [2 ** 17, 2 ** 17])
    s.unscale_(opt)
    np.testing.assert_array_equal(to_np(w.grad), [2.0, 2.0])
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt)
    s.step(opt)
    s.update()
    other = ember.amp.GradScaler("cpu", init_scale=4.0)
    other.load_state_dict(s.state_dict())
    assert other.state_dict() == s.state_dict() and other.get_scale() == 65536.0
    assert s.scale([ember.ones(1), (ember.ones(1),)])[1][0].item() == 65536.0
    # disabled: scale is the identity, step steps, state_dict is empty (as torch)
    d = ember.amp.GradScaler("cpu", enabled=False)
    td = torch.amp.GradScaler("cpu", enabled=False)
    assert d.state_dict() == td.state_dict() == {} and d.get_scale() == td.get_scale() == 1.0
    loss = (w * 3).sum()
    assert d.scale(loss) is loss


def test_cuda_grad_scaler_without_gpu_disables_itself():
    if ember.cuda.is_available():   # with a GPU it scales
        assert ember.amp.GradScaler("cuda").is_enabled()
        return
    torch = _torch()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        es, es2 = ember.amp.GradScaler("cuda"), ember.cuda.amp.GradScaler()
        ts = torch.amp.GradScaler("cuda")
    assert es.is_enabled() == es2.is_enabled() == ts.is_enabled() == False  # noqa: E712
    assert any("CUDA is not available" in str(m.message) for m in w)
    p = ember.ones(2, requires_grad=True)
    opt = ember.optim.SGD([p], lr=0.5)
    es.scale((p * 2).sum()).backward()
    es.step(opt)
    es.update()
    np.testing.assert_array_equal(to_np(p), [0.0, 0.0])


def test_cuda_capability_queries():
    torch = _torch()
    if not ember.cuda.is_available():
        assert not ember.cuda.is_bf16_supported() and not torch.cuda.is_bf16_supported()
    from cupy_standin import installed
    with installed():   # the stand-in reports compute capability 9.0
        assert ember.cuda.get_device_capability() == (9, 0)
        assert ember.cuda.is_bf16_supported()
