"""ember.save / ember.load, pickling of tensors, modules and optimizers, and checkpoints
exchanged with PyTorch in both directions."""
from __future__ import annotations

import copy
import io
import pickle
import zipfile

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.serialization import add_safe_globals, clear_safe_globals, get_safe_globals, safe_globals


def _roundtrip(obj, **load_kwargs):
    buf = io.BytesIO()
    ember.save(obj, buf)
    buf.seek(0)
    return ember.load(buf, **load_kwargs)


def _model():
    ember.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))


def _train(model, opt, x, steps=3):
    for _ in range(steps):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()


class Config:
    """A user class: refused by weights_only loads unless allowed."""

    def __init__(self, width: int) -> None:
        self.width = width


# ---- plain pickling ----------------------------------------------------------------------

def test_pickle_tensor_keeps_values_dtype_and_requires_grad():
    for t in [ember.arange(6).reshape(2, 3), ember.tensor([True, False]),
              ember.randn(3, 2, dtype=ember.float64, requires_grad=True), ember.tensor(2.5)]:
        u = pickle.loads(pickle.dumps(t))
        assert type(u) is ember.Tensor and u.dtype is t.dtype and u.shape == t.shape
        assert u.requires_grad == t.requires_grad and u.is_leaf
        np.testing.assert_array_equal(u.detach().numpy(), t.detach().numpy())


def test_pickle_non_leaf_becomes_leaf_like_torch():
    x = ember.ones(2, requires_grad=True)
    u = pickle.loads(pickle.dumps(x * 2))
    assert u.is_leaf and u.requires_grad and u.tolist() == [2.0, 2.0]


def test_pickle_keeps_views_sharing_memory():
    x = ember.arange(12.).reshape(3, 4)
    row, col, tr = x[1], x[:, 2], x.t()
    a, r, c, t = pickle.loads(pickle.dumps((x, row, col, tr)))
    a[1, 2] = 100.0
    assert r.tolist() == [4.0, 5.0, 100.0, 7.0]
    assert c.tolist() == [2.0, 100.0, 10.0] and t[2, 1].item() == 100.0
    # Separate pickles are separate memory.
    b = pickle.loads(pickle.dumps(x))
    b[0, 0] = -1.0
    assert x[0, 0].item() == 0.0


def test_pickle_parameter_keeps_class_and_flag():
    p = nn.Parameter(ember.ones(3))
    q = pickle.loads(pickle.dumps(p))
    assert type(q) is nn.Parameter and q.requires_grad and q.tolist() == [1.0] * 3
    frozen = pickle.loads(pickle.dumps(nn.Parameter(ember.ones(2), requires_grad=False)))
    assert type(frozen) is nn.Parameter and not frozen.requires_grad


def test_pickle_module_and_optimizer_resume_identically():
    model = _model()
    opt = optim.Adam(model.parameters(), lr=1e-2)
    x = ember.randn(5, 4)
    _train(model, opt, x)
    model2, opt2 = pickle.loads(pickle.dumps((model, opt)))
    # The optimizer's parameters are the unpickled model's, not copies.
    assert [id(p) for p in opt2.param_groups[0]["params"]] == [id(p) for p in model2.parameters()]
    _train(model, opt, x)
    _train(model2, opt2, x)
    for p, q in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_copy_copy_shares_memory_like_torch():
    t = ember.arange(4.)
    c = copy.copy(t)
    c[0] = 9.0
    assert t[0].item() == 9.0 and c is not t
    p = nn.Parameter(ember.ones(2))
    q = copy.copy(p)
    assert type(q) is nn.Parameter and q.requires_grad
    with ember.no_grad():
        q.mul_(3.0)
    assert p.tolist() == [3.0, 3.0]


def test_copy_and_deepcopy_of_module():
    model = _model()
    clone = copy.deepcopy(model)
    with ember.no_grad():
        clone[0].weight.fill_(0.0)
    assert model[0].weight.abs().sum().item() > 0


# ---- ember.save / ember.load ---------------------------------------------------------------

def test_save_load_tensor_file_path(tmp_path):
    t = ember.randn(3, 4)
    path = tmp_path / "t.pt"
    ember.save(t, path)
    assert zipfile.is_zipfile(path)
    assert "t/data.pkl" in zipfile.ZipFile(path).namelist()  # torch names the archive so
    u = ember.load(path)
    np.testing.assert_array_equal(u.numpy(), t.numpy())
    u2 = ember.load(str(path))
    np.testing.assert_array_equal(u2.numpy(), t.numpy())


def test_state_dict_roundtrip_and_shared_views():
    model = _model()
    sd = model.state_dict()
    sd["row"] = sd["0.weight"][1]
    sd["strided"] = ember.arange(20.)[3:15:3]
    sd["transposed"] = sd["0.weight"].t()
    loaded = _roundtrip(sd)
    assert list(loaded) == list(sd)
    for k in sd:
        np.testing.assert_array_equal(loaded[k].numpy(), sd[k].numpy())
        assert loaded[k].dtype is sd[k].dtype
    model2 = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    model2.load_state_dict({k: v for k, v in loaded.items() if "." in k})
    x = ember.randn(2, 4)
    np.testing.assert_array_equal(model2(x).detach().numpy(), model(x).detach().numpy())
    loaded["0.weight"][1, 2] = 42.0  # views of one storage stay views of one storage
    assert loaded["row"][2].item() == 42.0 and loaded["transposed"][2, 1].item() == 42.0


def test_optimizer_state_dict_roundtrip_resumes():
    model = _model()
    opt = optim.Adam(model.parameters(), lr=1e-2)
    x = ember.randn(5, 4)
    _train(model, opt, x)
    ck = _roundtrip({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": 3})
    assert ck["epoch"] == 3
    model2 = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    model2.load_state_dict(ck["model"])
    opt2 = optim.Adam(model2.parameters(), lr=1.0)
    opt2.load_state_dict(ck["opt"])
    assert opt2.param_groups[0]["lr"] == 1e-2
    _train(model, opt, x)
    _train(model2, opt2, x)
    for p, q in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_whole_module_needs_weights_only_false():
    model = _model()
    buf = io.BytesIO()
    ember.save(model, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match=r"(?s)Weights only load failed.*GLOBAL "
                       r"ember\.nn\.container\.Sequential was not an allowed global"):
        ember.load(buf)
    buf.seek(0)
    model2 = ember.load(buf, weights_only=False)
    assert type(model2) is nn.Sequential and type(model2[0].weight) is nn.Parameter
    x = ember.randn(2, 4)
    np.testing.assert_array_equal(model2(x).detach().numpy(), model(x).detach().numpy())


def test_weights_only_refuses_code_and_safe_globals_allow():
    buf = io.BytesIO()
    ember.save({"cfg": Config(7), "w": ember.ones(2)}, buf)
    name = f"{Config.__module__}.Config"
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match=f"GLOBAL {name} was not an allowed global"):
        ember.load(buf)
    buf.seek(0)
    with safe_globals([Config]):
        assert ember.load(buf)["cfg"].width == 7
    assert get_safe_globals() == []
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        ember.load(buf)
    add_safe_globals([Config])
    try:
        buf.seek(0)
        assert ember.load(buf)["cfg"].width == 7
        assert get_safe_globals() == [Config]
    finally:
        clear_safe_globals()


def test_weights_only_refuses_os_system():
    class Evil:
        def __reduce__(self):
            import os
            return os.system, ("echo should-not-run",)
    buf = io.BytesIO()
    ember.save([Evil()], buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="GLOBAL (posix|os|nt).system"):
        ember.load(buf)


def test_containers_and_scalars_load_with_weights_only():
    obj = {"list": [1, 2.5, None, True], "tuple": (1, "a"), "set": {1, 2}, "bytes": b"\x00\xff",
           "complex": 1 + 2j, "dtype": ember.float64, "device": ember.device("cpu"),
           "size": ember.ones(2, 3).shape}
    out = _roundtrip(obj)
    assert out == obj and out["dtype"] is ember.float64


@pytest.mark.parametrize("where", ["cpu", ember.device("cpu"), {"cpu": "cpu"},
                                   lambda storage, loc: storage, lambda storage, loc: None])
def test_map_location_forms(where):
    t = ember.arange(6.).reshape(2, 3)
    u = _roundtrip({"a": t, "b": t[1]}, map_location=where)
    assert u["a"].device == ember.device("cpu")
    np.testing.assert_array_equal(u["a"].numpy(), t.numpy())
    u["a"][1, 0] = -5.0
    assert u["b"][0].item() == -5.0


def test_map_location_function_sees_location():
    seen = []
    _roundtrip([ember.ones(2), ember.zeros(3)], map_location=lambda s, loc: seen.append(loc))
    assert seen == ["cpu", "cpu"]


def test_cuda_location_without_cuda_says_map_location():
    buf = io.BytesIO()
    ember.save(ember.ones(2), buf)
    buf.seek(0)
    if ember.cuda.is_available():   # with a GPU the tensor goes there
        assert ember.load(buf, map_location="cuda:0").device.type == "cuda"
        return
    with pytest.raises(RuntimeError, match="map_location"):
        ember.load(buf, map_location="cuda:0")


def test_not_a_zip_is_a_clear_error():
    with pytest.raises(RuntimeError, match="zip"):
        ember.load(io.BytesIO(pickle.dumps({"a": 1})))


# ---- PyTorch interoperability -----------------------------------------------------------

TORCH_DTYPES = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
                "uint8", "bool"]


def _torch_reference(torch, t):
    """What ember should load for a torch tensor: its values in ember's nearest dtype."""
    if t.dtype == torch.bfloat16:
        return t.float().numpy()
    return t.numpy()


def test_load_torch_state_dict_with_views_and_dtypes(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    sd = tm.state_dict()
    base = torch.arange(40, dtype=torch.float32).reshape(8, 5)
    sd["view_row"] = base[3]
    sd["view_strided"] = base[1:7:2, ::2]
    sd["view_t"] = base.t()
    sd["base"] = base
    sd["offset_scalar"] = base[2, 3]
    for name in TORCH_DTYPES:
        dt = getattr(torch, name)
        sd[f"dt_{name}"] = (torch.arange(-3, 5) % 2 == 0).to(dt) if name == "bool" \
            else torch.arange(-3, 5).mul(1.5 if dt.is_floating_point else 1).to(dt)
    path = tmp_path / "torch_sd.pt"
    torch.save(sd, path)
    loaded = ember.load(path)
    assert list(loaded) == list(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(loaded[k].numpy(), _torch_reference(torch, v), err_msg=k)
        assert tuple(loaded[k].shape) == tuple(v.shape)
    for name in ["float32", "float64", "int64", "int32", "bool"]:
        assert str(loaded[f"dt_{name}"].dtype) == f"ember.{name}"
    # The views of `base` share its memory after loading, as in torch.
    loaded["base"][3, 0] = -1.0
    loaded["base"][2, 3] = -2.0
    assert loaded["view_row"][0].item() == -1.0 and loaded["view_t"][0, 3].item() == -1.0
    assert loaded["offset_scalar"].item() == -2.0
    em = ember.nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    em.load_state_dict({k: v for k, v in loaded.items() if k[0].isdigit()})
    x = torch.randn(6, 4)
    np.testing.assert_allclose(em(ember.tensor(x.numpy())).detach().numpy(),
                               tm(x).detach().numpy(), rtol=1e-6, atol=1e-6)


def test_load_torch_optimizer_checkpoint_and_resume():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    topt = torch.optim.Adam(tm.parameters(), lr=1e-2)
    x = torch.randn(5, 4)
    _train(tm, topt, x)
    buf = io.BytesIO()
    torch.save({"model": tm.state_dict(), "opt": topt.state_dict(), "step": 3}, buf)
    buf.seek(0)
    ck = ember.load(buf)
    em = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    em.load_state_dict(ck["model"])
    eopt = optim.Adam(em.parameters(), lr=1e-2)
    eopt.load_state_dict(ck["opt"])
    _train(tm, topt, x, steps=5)
    _train(em, eopt, ember.tensor(x.numpy()), steps=5)
    for p, q in zip(tm.parameters(), em.parameters()):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_load_torch_parameter_tensor_and_metadata():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.randn(2, 3))
    buf = io.BytesIO()
    torch.save({"p": p, "t": torch.ones(2, requires_grad=True), "dtype": torch.float64,
                "dev": torch.device("cpu"), "size": torch.Size([4, 5])}, buf)
    buf.seek(0)
    out = ember.load(buf)
    assert type(out["p"]) is nn.Parameter and out["p"].requires_grad
    np.testing.assert_array_equal(out["p"].detach().numpy(), p.detach().numpy())
    assert out["t"].requires_grad and out["t"].is_leaf
    assert out["dtype"] is ember.float64 and out["dev"] == ember.device("cpu")
    assert tuple(out["size"]) == (4, 5)


def test_load_whole_torch_module_is_refused_clearly():
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2), buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="torch.nn.modules.linear.Linear"):
        ember.load(buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="state_dict"):
        ember.load(buf, weights_only=False)


def test_torch_loads_ember_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train(model, opt, ember.randn(3, 4))
    sd = model.state_dict()
    sd["row"] = sd["0.weight"][1]
    sd["strided"] = ember.arange(20.)[3:15:3]
    sd["transposed"] = sd["0.weight"].t()
    sd["ints"] = ember.arange(5)
    sd["flags"] = ember.tensor([True, False])
    sd["double"] = ember.randn(3, dtype=ember.float64)
    path = tmp_path / "ember_sd.pt"
    ember.save({"model": sd, "opt": opt.state_dict(), "param": model[0].weight,
                "dtype": ember.int32, "device": ember.device("cpu")}, path)
    out = torch.load(path)  # weights_only=True: only torch's allowed globals were written
    assert isinstance(out["model"], dict) and list(out["model"]) == list(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(out["model"][k].numpy(), v.numpy(), err_msg=k)
        assert str(out["model"][k].dtype).replace("torch.", "") == v.dtype.name
    shared = torch.load(path)["model"]
    shared["0.weight"][1, 2] = 42.0  # sharing kept in torch too
    assert shared["row"][2].item() == 42.0 and shared["transposed"][2, 1] == 42.0
    assert isinstance(out["param"], torch.nn.Parameter) and out["param"].requires_grad
    assert out["dtype"] is torch.int32 and out["device"] == torch.device("cpu")
    tm = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    tm.load_state_dict({k: v for k, v in out["model"].items() if k[0].isdigit()})
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    topt.load_state_dict(out["opt"])
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    _train(tm, topt, torch.tensor(x))
    _train(model, opt, ember.tensor(x))
    for p, q in zip(tm.parameters(), model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)
    # mmap=True needs torch's 64-byte alignment of every record.
    np.testing.assert_array_equal(torch.load(path, mmap=True)["model"]["0.bias"].numpy(),
                                  out["model"]["0.bias"].numpy())


def test_ember_checkpoint_of_non_contiguous_memory(tmp_path):
    torch = pytest.importorskip("torch")
    a = ember.from_numpy(np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::-1].copy()[:, ::-1])
    b = ember.from_numpy(np.frombuffer(np.arange(6, dtype=np.int64).tobytes(), dtype=np.int64))
    path = tmp_path / "odd.pt"
    ember.save([a, b, b[2:]], path)
    ta, tb, tc = torch.load(path)
    np.testing.assert_array_equal(ta.numpy(), a.numpy())
    np.testing.assert_array_equal(tb.numpy(), b.numpy())
    np.testing.assert_array_equal(tc.numpy(), b[2:].numpy())
    ea, eb, ec = ember.load(path)
    np.testing.assert_array_equal(ea.numpy(), a.numpy())
    np.testing.assert_array_equal(ec.numpy(), [2, 3, 4, 5])


# ---- CUDA tensors (on the CuPy stand-in; tests/test_gpu.py style checks need a GPU) ----------

def test_cuda_tensors_save_load_and_map_location():
    import os
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    import cupy_standin
    with cupy_standin.installed():
        x = ember.arange(12.).reshape(3, 4).to("cuda")
        p = nn.Parameter(ember.ones(2, device="cuda"))
        buf = io.BytesIO()
        ember.save({"x": x, "row": x[1], "t": x.t(), "p": p}, buf)
        names = zipfile.ZipFile(buf).namelist()
        assert sum(n.startswith("archive/data/") for n in names) == 2  # x's views share
        buf.seek(0)
        on_gpu = ember.load(buf)
        assert all(v.device == ember.device("cuda", 0) for v in on_gpu.values())
        assert type(on_gpu["p"]) is nn.Parameter and on_gpu["p"].requires_grad
        np.testing.assert_array_equal(on_gpu["t"].cpu().numpy(), x.t().cpu().numpy())
        on_gpu["x"][1, 0] = 50.0
        assert on_gpu["row"][0].item() == 50.0
        buf.seek(0)
        on_cpu = ember.load(buf, map_location="cpu")
        assert all(v.device == ember.device("cpu") for v in on_cpu.values())
        on_cpu["x"][1, 0] = -1.0
        assert on_cpu["row"][0].item() == -1.0 and on_cpu["t"][0, 1].item() == -1.0
        buf.seek(0)
        moved = ember.load(buf, map_location=lambda storage, loc: storage.cuda())
        assert moved["x"].device.type == "cuda"
        buf.seek(0)
        assert ember.load(buf, map_location={"cuda:0": "cpu"})["x"].device.type == "cpu"
        back = pickle.loads(pickle.dumps(x))
        assert back.device.type == "cuda"
        np.testing.assert_array_equal(back.cpu().numpy(), x.cpu().numpy())
        cpu_saved = io.BytesIO()
        ember.save(ember.ones(3), cpu_saved)
        cpu_saved.seek(0)
        assert ember.load(cpu_saved, map_location="cuda").device.type == "cuda"


def test_torch_reads_ember_cuda_checkpoint_with_map_location():
    torch = pytest.importorskip("torch")
    import os
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    import cupy_standin
    with cupy_standin.installed():
        x = ember.randn(3, 2).to("cuda")
        expected = x.cpu().numpy()
        buf = io.BytesIO()
        ember.save({"x": x, "col": x[:, 1]}, buf)
    buf.seek(0)
    out = torch.load(buf, map_location="cpu")
    np.testing.assert_array_equal(out["x"].numpy(), expected)
    np.testing.assert_array_equal(out["col"].numpy(), expected[:, 1])
    assert out["col"].untyped_storage().data_ptr() == out["x"].untyped_storage().data_ptr()


def test_whole_model_loads_with_weights_only_once_its_classes_are_allowed():
    """word_language_model's pattern: torch.save(model) and a load under safe_globals
    naming the model's classes."""
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.rnn = nn.LSTM(4, 4, 2)
            self.drop = nn.Dropout(0.1)
            self.out = nn.Linear(4, 10)

        def forward(self, x):
            h, _ = self.rnn(self.drop(self.emb(x)))
            return self.out(h)
    globals()["LM"] = LM  # picklable by name
    LM.__qualname__ = "LM"
    model = LM()
    buf = io.BytesIO()
    ember.save(model, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="GLOBAL test_serialization.LM"):
        ember.load(buf)
    buf.seek(0)
    with safe_globals([LM, nn.Embedding, nn.LSTM, nn.Dropout, nn.Linear]):
        loaded = ember.load(buf)
    model.eval()
    loaded.eval()
    x = ember.randint(0, 10, (5, 2))
    np.testing.assert_array_equal(loaded(x).detach().numpy(), model(x).detach().numpy())


def _random_views(rng):
    """The same random chain of view ops (slices with steps, permutes, indexing) applied
    to an ember and a torch base: yields (ember view, torch view) pairs."""
    ops = []
    for _ in range(rng.integers(1, 4)):
        kind = rng.integers(0, 3)
        if kind == 0:
            ops.append(("slice", int(rng.integers(0, 3)), int(rng.integers(1, 3))))
        elif kind == 1:
            ops.append(("permute", int(rng.integers(0, 1000)), 0))
        else:
            ops.append(("index", int(rng.integers(0, 2)), 0))

    def apply(t):
        for op, a, b in ops:
            if t.ndim == 0:
                break
            if op == "slice":
                t = t[a % t.shape[0]::b]
            elif op == "permute":
                order = list(np.random.default_rng(a).permutation(t.ndim))
                t = t.permute(*order)
            elif t.shape[0] > 0:
                t = t[a % t.shape[0]]
        return t
    return apply


def test_fuzz_views_and_dtypes_both_ways(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    dtypes = ["float32", "float64", "int64", "int32", "bool"]
    for case in range(25):
        shape = tuple(int(n) for n in rng.integers(2, 5, rng.integers(1, 4)))
        name = dtypes[case % len(dtypes)]
        data = (rng.standard_normal(shape) * 10).astype(name)
        views = [_random_views(rng) for _ in range(3)]
        tbase = torch.tensor(data)
        ebase = ember.tensor(data)
        tsd = {"base": tbase, **{f"v{i}": f(tbase) for i, f in enumerate(views)}}
        esd = {"base": ebase, **{f"v{i}": f(ebase) for i, f in enumerate(views)}}
        for k in tsd:
            np.testing.assert_array_equal(esd[k].numpy(), tsd[k].numpy())
        # torch -> ember, and ember -> torch; then write the base and read every view.
        torch.save(tsd, tmp_path / "t.pt")
        ember.save(esd, tmp_path / "e.pt")
        from_torch = ember.load(tmp_path / "t.pt")
        from_ember = torch.load(tmp_path / "e.pt")
        fill = np.arange(np.prod(shape)).reshape(shape).astype(name)
        from_torch["base"][...] = ember.tensor(fill)
        from_ember["base"][...] = torch.tensor(fill)
        expected = {k: f(torch.tensor(fill)).numpy() for k, f in
                    zip([f"v{i}" for i in range(3)], views)}
        for k, want in expected.items():
            np.testing.assert_array_equal(from_torch[k].numpy(), want, err_msg=f"{case} {k}")
            np.testing.assert_array_equal(from_ember[k].numpy(), want, err_msg=f"{case} {k}")
            assert str(from_torch[k].dtype) == f"ember.{name}"
