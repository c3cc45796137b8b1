"""CUDA kernels in ember's persistent cache: CUBINs keyed by source, architecture and
NVRTC version, loaded as CuPy modules, checked before they reach the driver.

There is no GPU here. NVRTC (pip ``nvidia-cuda-nvrtc``) makes real sm_90 CUBINs; the
CuPy stand-in (tests/cupy_standin.py) runs the launches. The stand-in has no driver, so
``FakeModule`` below plays ``cupy.cuda.function.Module``: ``load`` takes the CUBIN bytes,
checks they are an ELF CUBIN, and runs the launches of ``get_function`` on the emulator
with the CUDA C that NVRTC compiled to exactly those bytes (a registry written when
NVRTC ran, kept on disk so a second process finds it). What this cannot show is a real
driver loading the CUBIN (``cuModuleLoadData``): that needs a GPU.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import ember
from ember.codegen import nvrtc
from ember.diskcache import CacheWarning, DiskCache, _kind_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")

try:
    nvrtc.nvrtc_version()
    HAVE_NVRTC = True
except nvrtc.NvrtcError:
    HAVE_NVRTC = False

needs_nvrtc = pytest.mark.skipif(not HAVE_NVRTC, reason="NVRTC (pip nvidia-cuda-nvrtc) "
                                 "is not installed")


# ---- the CUBIN store itself ----------------------------------------------------------------

SOURCE = 'extern "C" __global__ void twice(float* y, const float* x) { y[0] = 2 * x[0]; }'


@needs_nvrtc
def test_cubins_are_compiled_once_per_architecture_and_then_read(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    compiled = []
    real = nvrtc.compile_cubin
    monkeypatch.setattr(nvrtc, "compile_cubin",
                        lambda *a, **k: compiled.append(a[1]) or real(*a, **k))
    a = nvrtc.cached_cubin(SOURCE, "sm_90", ["twice"])
    b = nvrtc.cached_cubin(SOURCE, "sm_80", ["twice"])
    assert a[:4] == b[:4] == b"\x7fELF" and a != b and compiled == ["sm_90", "sm_80"]
    assert nvrtc.cached_cubin(SOURCE, "sm_90", ["twice"]) == a
    assert nvrtc.cached_cubin(SOURCE, "sm_80", ["twice"]) == b
    assert compiled == ["sm_90", "sm_80"]            # the second round came from the cache
    cache = DiskCache(str(tmp_path))
    assert len(cache.entries()) == 2


@needs_nvrtc
def test_an_entry_that_is_not_the_kernels_cubin_is_rebuilt_with_a_warning(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    good = nvrtc.cached_cubin(SOURCE, "sm_90", ["twice"])
    from ember.diskcache import default_cache
    cache = default_cache()
    (path, _, _), = cache.entries()
    key = os.path.basename(path)[:-len(".bin")]
    # A whole, checksummed entry under the right key, but not a CUBIN with the entry
    # point (as a bug or an older format could leave): never handed to the driver.
    for payload in (b"not an ELF file at all", good.replace(b"twice", b"thrice")):
        cache.put(key, payload)
        with pytest.warns(CacheWarning, match="lacks the entry points"):
            assert nvrtc.cached_cubin(SOURCE, "sm_90", ["twice"]) == good
        assert cache.get(key) == good


@needs_nvrtc
def test_the_cache_turned_off_still_compiles(monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", "")
    assert "twice" in nvrtc.cubin_functions(nvrtc.cached_cubin(SOURCE, "sm_90", ["twice"]))


# ---- compiled functions on "cuda": the launches through the loaded modules -----------------

SCRIPT = r"""
import hashlib, json, os, sys, types, warnings
sys.path.insert(0, {tests!r})
import numpy as np
import cupy_standin
cupy_standin.install()
import ember, ember.nn as nn, ember.nn.functional as F
from ember.codegen import nvrtc
from ember.diskcache import default_cache

REGISTRY = {registry!r}       # CUBIN sha256 -> the CUDA C NVRTC compiled to it
MODE = {mode!r}
registry = json.load(open(REGISTRY)) if os.path.exists(REGISTRY) else {{}}
compiles = []
real_compile = nvrtc.compile_cubin

def compile_cubin(source, arch="sm_90", name="ember.cu", options=()):
    cubin, log = real_compile(source, arch, name, options)
    registry[hashlib.sha256(cubin).hexdigest()] = source
    compiles.append(arch)
    return cubin, log

nvrtc.compile_cubin = compile_cubin
loads = []

class FakeModule:
    # cupy.cuda.function.Module: load(bytes) then get_function(name)
    def load(self, cubin):
        if MODE == "refuse":
            raise RuntimeError("CUDA_ERROR_UNSUPPORTED_PTX_VERSION (played by the test)")
        assert type(cubin) is bytes and cubin[:4] == b"\x7fELF"
        self.cubin = cubin
        self.source = registry[hashlib.sha256(cubin).hexdigest()]
        loads.append(len(cubin))

    def get_function(self, name):
        assert name in nvrtc.cubin_functions(self.cubin), name
        return cupy_standin.RawKernel(self.source, name)

cupy_standin.cupy.cuda.function = types.SimpleNamespace(Module=FakeModule)
raw = []
real_raw = cupy_standin.cupy.RawKernel
cupy_standin.cupy.RawKernel = lambda *a, **k: raw.append(a[1]) or real_raw(*a, **k)

ember.manual_seed(0)
model = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3)).to("cuda")
opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

@ember.compile
def step(x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss

softmax = ember.compile(lambda a: (a - a.amax(dim=1, keepdim=True)).exp().sum(dim=1))
x, y = ember.randn(8, 12).cuda(), ember.randint(0, 3, (8,)).cuda()
a = ember.randn(5, 33).cuda()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    losses = [step(x, y).item() for _ in range(4)]
    sums = [softmax(a).cpu().numpy().tolist() for _ in range(3)]
an = a.cpu().numpy()
ref = np.exp(an - an.max(axis=1, keepdims=True)).sum(axis=1)
assert all(np.allclose(s, ref, rtol=1e-5) for s in sums), (sums, ref)
json.dump(registry, open(REGISTRY, "w"))
cache = default_cache()
stats = cache.stats if cache else None
print(json.dumps({{"losses": losses, "compiles": len(compiles), "loads": len(loads),
                  "raw": len(raw), "hits": stats.hits if stats else 0,
                  "writes": stats.writes if stats else 0,
                  "rejected": stats.rejected if stats else 0,
                  "warned": [str(w.message) for w in caught
                             if "cache" in str(w.message) or "CUBIN" in str(w.message)]}}))
"""


def _run(tmp_path, cache_dir, mode="load") -> dict:
    script = SCRIPT.format(tests=TESTS, registry=str(tmp_path / "registry.json"), mode=mode)
    env = dict(os.environ, EMBER_CACHE_DIR=str(cache_dir), PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


pytestmark_gpp = pytest.mark.skipif(shutil.which("g++") is None,
                                    reason="the CuPy stand-in's emulator needs g++")


def _cuda_entries(cache_dir) -> list[str]:
    """Entries of the cache that hold CUBINs (not the CPU's object code)."""
    return [path for path, _, _ in DiskCache(str(cache_dir)).entries()
            if _kind_of(path) == "cubin"]


@needs_nvrtc
@pytestmark_gpp
@pytest.mark.slow
def test_a_second_process_loads_the_cubins_and_computes_the_same(tmp_path):
    first = _run(tmp_path, tmp_path / "cache")
    # A source met again in the same process (the second trace's plan) is a hit already.
    assert 0 < first["compiles"] == len(_cuda_entries(tmp_path / "cache")) <= first["loads"]
    assert first["raw"] == 0          # every launch went through a loaded CUBIN
    second = _run(tmp_path, tmp_path / "cache")
    assert second["compiles"] == 0 and second["loads"] == first["loads"]
    assert second["writes"] == 0 and second["hits"] >= second["loads"]
    assert second["losses"] == first["losses"]   # the same machine code
    assert not first["warned"] and not second["warned"]


@needs_nvrtc
@pytestmark_gpp
@pytest.mark.slow
def test_corrupt_cubins_are_rebuilt_never_loaded(tmp_path):
    first = _run(tmp_path, tmp_path / "cache")
    cubins = _cuda_entries(tmp_path / "cache")
    assert len(cubins) == first["compiles"]
    for path in cubins:
        blob = bytearray(open(path, "rb").read())
        blob[-64:] = b"\xff" * 64              # damage the code section's tail
        open(path, "wb").write(bytes(blob))
    second = _run(tmp_path, tmp_path / "cache")
    assert second["rejected"] >= len(cubins) and second["compiles"] == first["compiles"]
    assert second["warned"] and second["losses"] == first["losses"]


@needs_nvrtc
@pytestmark_gpp
@pytest.mark.slow
def test_without_the_cache_or_when_the_driver_refuses_cupy_compiles(tmp_path):
    off = _run(tmp_path, "")
    assert off["compiles"] == off["loads"] == 0 and off["raw"] > 0
    refused = _run(tmp_path, tmp_path / "cache", mode="refuse")
    assert refused["raw"] > 0 and refused["loads"] == 0
    assert len(refused["warned"]) == 1 and "refused a CUBIN" in refused["warned"][0]
    assert refused["losses"] == off["losses"]


# ---- on a real GPU (skipped here): the driver loads the CUBINs a first process stored ------

GPU_SCRIPT = r"""
import json, sys, warnings
import ember, ember.nn as nn, ember.nn.functional as F
from ember.codegen.cuda import launch
from ember.diskcache import default_cache

def run(device):
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3)).to(device)
    opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    @ember.compile
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    ember.manual_seed(1)
    x, y = ember.randn(8, 12).to(device), ember.randint(0, 3, (8,)).to(device)
    return [step(x, y).item() for _ in range(5)]

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    gpu = run("cuda")
cpu = run("cpu")
info = default_cache().info()
print(json.dumps({"gpu": gpu, "cpu": cpu, "cubins": info["kinds"].get("cubin", 0),
                  "hits": info["hits"], "writes": info["writes"],
                  "off": launch._CUBINS_OFF, "warned": [str(w.message) for w in caught]}))
"""


@pytest.mark.gpu
@needs_nvrtc
@pytest.mark.skipif(not ember.cuda.is_available(), reason="needs a CUDA GPU with CuPy")
def test_on_a_gpu_a_second_process_runs_the_cached_cubins(tmp_path):
    def run() -> dict:
        env = dict(os.environ, EMBER_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT)
        proc = subprocess.run([sys.executable, "-c", GPU_SCRIPT], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    first = run()
    assert first["off"] is None, first["off"]       # the driver took ember's CUBINs
    assert first["cubins"] > 0 and not first["warned"]
    second = run()
    assert second["off"] is None and second["writes"] == 0 and second["hits"] > 0
    assert second["gpu"] == first["gpu"]             # the same machine code
    np.testing.assert_allclose(first["gpu"], first["cpu"], rtol=1e-4, atol=1e-5)
