"""The persistent kernel cache's store: checks, atomic writes, privacy, LRU bound, CLI."""
from __future__ import annotations

import multiprocessing as mp
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import ember

from ember.diskcache import CacheWarning, DiskCache, default_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_round_trip_and_keys_depend_on_every_part(tmp_path):
    cache = DiskCache(str(tmp_path / "c"))
    k1, k2 = cache.key("kernel", "x86_64 +avx2"), cache.key("kernel", "x86_64 +avx512f")
    assert k1 != k2 and k1 == cache.key("kernel", "x86_64 +avx2")
    assert cache.get(k1) is None
    cache.put(k1, b"\x7fELF code")
    assert cache.get(k1) == b"\x7fELF code" and cache.get(k2) is None
    assert (cache.stats.hits, cache.stats.misses, cache.stats.writes) == (1, 2, 1)


def test_folder_is_private(tmp_path):
    cache = DiskCache(str(tmp_path / "c"))
    cache.put(cache.key("a"), b"x")
    assert stat.S_IMODE(os.stat(cache.root).st_mode) == 0o700
    os.chmod(cache.root, 0o777)
    again = DiskCache(cache.root)
    again.put(again.key("b"), b"y")
    assert stat.S_IMODE(os.stat(cache.root).st_mode) == 0o700


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign", "other_key", "empty"])
def test_damaged_entries_are_removed_with_a_warning_and_rebuilt(tmp_path, damage):
    cache = DiskCache(str(tmp_path / "c"))
    key, payload = cache.key("k"), bytes(range(256)) * 4
    cache.put(key, payload)
    path = os.path.join(cache.root, key + ".bin")
    blob = open(path, "rb").read()
    if damage == "truncate":
        blob = blob[:-100]
    elif damage == "flip":
        blob = blob[:-1] + bytes([blob[-1] ^ 1])
    elif damage == "foreign":
        blob = b"\x7fELF" + blob[4:]
    elif damage == "other_key":
        other = cache.key("other")
        cache.put(other, payload)
        blob = open(os.path.join(cache.root, other + ".bin"), "rb").read()
    else:
        blob = b""
    open(path, "wb").write(blob)
    with pytest.warns(CacheWarning, match="failed its checks"):
        assert cache.get(key) is None
    assert not os.path.exists(path) and cache.stats.rejected == 1
    cache.put(key, payload)
    assert cache.get(key) == payload


def _writer(root: str, key: str, seed: int, n: int) -> None:
    cache = DiskCache(root)
    for i in range(n):
        cache.put(key, bytes([seed]) * (1000 + 37 * (i % 50)))


def test_two_processes_writing_at_once_leave_whole_entries(tmp_path):
    root = str(tmp_path / "c")
    key = DiskCache.key("shared")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(root, key, s, 300)) for s in (1, 2)]
    for p in procs:
        p.start()
    reader = DiskCache(root)
    seen = 0
    while any(p.is_alive() for p in procs):
        got = reader.get(key)  # a half-written entry would fail its checks and warn
        if got is not None:
            assert len(set(got)) == 1
            seen += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert reader.stats.rejected == 0
    assert reader.get(key) is not None
    assert not [n for n in os.listdir(root) if n.startswith(".tmp-")]


def test_least_recently_used_entries_go_first(tmp_path):
    cache = DiskCache(str(tmp_path / "c"), max_bytes=3600)  # three entries with their headers
    keys = [cache.key(str(i)) for i in range(4)]
    for i, k in enumerate(keys[:3]):
        cache.put(k, b"x" * 1000)
        os.utime(os.path.join(cache.root, k + ".bin"), (1000 + i, 1000 + i))
    assert cache.get(keys[0]) is not None  # used: now the newest
    cache.put(keys[3], b"x" * 1000)        # over the bound: the oldest unused goes
    assert cache.get(keys[1]) is None
    assert all(cache.get(k) is not None for k in (keys[0], keys[2], keys[3]))


def test_writes_do_not_scan_the_folder_each_time(tmp_path, monkeypatch):
    # A full cache folder holds tens of thousands of entries: listing and stat-ing them
    # on every write made each compile ~0.1 s slower. The bound still holds.
    from ember import diskcache

    cache = DiskCache(str(tmp_path), max_bytes=40_000)
    scans = []
    real = DiskCache.entries
    monkeypatch.setattr(DiskCache, "entries", lambda self: scans.append(1) or real(self))
    monkeypatch.setattr(diskcache, "RESCAN_EVERY", 50)
    for i in range(120):
        cache.put(cache.key("w", str(i)), b"x" * 1000)
    sizes = [size for _, size, _ in real(cache)]
    assert sum(sizes) <= 40_000 and len(sizes) >= 30   # evicted down to the bound
    assert len(scans) <= 120 // 4, len(scans)


def test_environment_turns_it_off_or_moves_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", "")
    assert default_cache() is None
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "here"))
    monkeypatch.setenv("EMBER_CACHE_MAX_MB", "3")
    cache = default_cache()
    assert cache.root == str(tmp_path / "here") and cache.max_bytes == 3 << 20
    monkeypatch.setenv("EMBER_CACHE_MAX_MB", "lots")
    with pytest.raises(ValueError, match="EMBER_CACHE_MAX_MB"):
        default_cache()


def test_bad_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match="hex digest"):
        DiskCache(str(tmp_path)).get("../../etc/passwd")


def test_command_line_info_and_clear(tmp_path):
    root = tmp_path / "c"
    cache = DiskCache(str(root))
    for i in range(3):
        cache.put(cache.key(str(i)), b"y" * 10)
    env = dict(os.environ, EMBER_CACHE_DIR=str(root), PYTHONPATH=ROOT)
    run = [sys.executable, "-m", "ember", "cache"]
    info = subprocess.run(run + ["info"], env=env, capture_output=True, text=True)
    assert info.returncode == 0 and "entries: 3" in info.stdout, info.stderr
    clear = subprocess.run(run + ["clear"], env=env, capture_output=True, text=True)
    assert "removed 3 entries" in clear.stdout
    assert cache.entries() == []
    off = subprocess.run(run, env=dict(env, EMBER_CACHE_DIR=""), capture_output=True, text=True)
    assert "off" in off.stdout


# ---- the LLVM backend through the cache ----------------------------------------------------

STEP = r"""
import json, sys, warnings
import ember, ember.nn as nn, ember.nn.functional as F
from ember.diskcache import default_cache
ember.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

@ember.compile
def step(x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss

x, y = ember.randn(5, 8), ember.randint(0, 3, (5,))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    losses = [step(x, y).item() for _ in range(5)]
cache = default_cache()
info = cache.info() if cache else {"hits": 0, "writes": 0, "rejected": 0}
print(json.dumps({"losses": losses, "hits": info["hits"], "writes": info["writes"],
                  "rejected": info["rejected"], "warned": [str(w.message) for w in caught
                                                           if "cache" in str(w.message)]}))
"""


def _run_step(root, **env_vars) -> dict:
    import json
    env = dict(os.environ, EMBER_CACHE_DIR=str(root), PYTHONPATH=ROOT, **env_vars)
    proc = subprocess.run([sys.executable, "-c", STEP], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_kernels_and_computes_the_same(tmp_path):
    first = _run_step(tmp_path)
    assert first["writes"] > 0
    second = _run_step(tmp_path)
    assert second["writes"] == 0 and second["hits"] >= first["writes"]
    assert second["losses"] == first["losses"]      # bit for bit: the same machine code
    off = _run_step("")                              # EMBER_CACHE_DIR= : no cache
    assert off["hits"] == off["writes"] == 0 and off["losses"] == first["losses"]


def test_corrupt_machine_code_is_rebuilt_never_run(tmp_path):
    first = _run_step(tmp_path)
    for name in os.listdir(tmp_path):
        if name.endswith(".bin"):
            path = tmp_path / name
            blob = bytearray(path.read_bytes())
            blob[-20:] = b"\xcc" * 20           # int3 instructions in the code
            path.write_bytes(bytes(blob))
    second = _run_step(tmp_path)
    assert second["rejected"] == first["writes"] and second["writes"] == first["writes"]
    assert second["warned"] and second["losses"] == first["losses"]


def test_kernels_from_the_cache_still_show_their_optimized_ir(tmp_path):
    _run_step(tmp_path / "cache")
    second = _run_step(tmp_path / "cache", EMBER_DUMP_DIR=str(tmp_path / "dump"))
    assert second["writes"] == 0
    optimized = list((tmp_path / "dump").rglob("*.opt.ll"))
    assembly = list((tmp_path / "dump").rglob("*.s"))
    assert optimized and all("define" in p.read_text() for p in optimized)
    assert assembly and all(p.stat().st_size > 0 for p in assembly)


def test_info_counts_entries_by_kind(tmp_path):
    root = tmp_path / "c"
    cache = DiskCache(str(root))
    cache.put(cache.key("a"), b"\x7fELF cpu", "llvm")
    cache.put(cache.key("b"), b"\x7fELF cpu", "llvm")
    cache.put(cache.key("c"), b"\x7fELF gpu", "cubin")
    cache.put(cache.key("d"), b"old")               # no kind: shown as "?"
    assert cache.info()["kinds"] == {"llvm": 2, "cubin": 1, "?": 1}
    assert cache.get(cache.key("c")) == b"\x7fELF gpu"   # the kind is not part of the checks
    env = dict(os.environ, EMBER_CACHE_DIR=str(root), PYTHONPATH=ROOT)
    info = subprocess.run([sys.executable, "-m", "ember", "cache", "info"], env=env,
                          capture_output=True, text=True)
    assert "entries: 4 (1 ?, 1 cubin, 2 llvm)" in info.stdout, info.stdout + info.stderr


def test_a_folder_that_refuses_new_files_warns_once_per_write(tmp_path, monkeypatch):
    """mkstemp ran outside the try: a folder one owns but cannot write raised
    PermissionError out of the LLVM object-cache callback (every kernel's build)."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    cache = DiskCache(str(tmp_path / "c"))
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.warns(CacheWarning, match="cannot write"):
        cache.put("a" * 64, b"payload")
    assert cache.get("a" * 64) is None


def test_a_home_relative_folder_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EMBER_CACHE_DIR", "~/embercache")
    assert default_cache().root == str(tmp_path / "embercache")


def test_the_sign_of_a_nan_constant_is_part_of_a_kernels_key():
    """float.hex() writes +nan and -nan alike: where(x > 0, x, -nan) reused the code
    made for +nan (signbit of the result False), in one process and across them."""
    nan = float("nan")

    def fn(c):
        return lambda x: ember.where(x > 0, x, c).signbit()

    for c in (nan, -nan):
        cf = ember.compile(fn(c))
        for _ in range(3):
            cf(ember.tensor([1.0, 2.0]))
        out = cf(ember.tensor([-1.0, 2.0]))
        assert out.tolist() == [bool(np.signbit(c)), False]


def test_the_codegen_fingerprint_covers_the_erf_coefficients():
    """mathlib compiles ops/elementwise.py's ERF32_P/Q into kernels whose description
    only says 'erf': an edited coefficient must not meet code made before."""
    from ember.codegen.llvm import jit
    import inspect
    assert "elementwise.py" in inspect.getsource(jit._codegen_fingerprint)
