"""A seeded random fuzzer of conv2d (+ bias, ReLU, 2x2 max pooling) and its gradients.

Each case draws a geometry (batch, channels, sizes, kernel, stride, padding, dilation,
groups), a dtype, whether a bias, ReLU and pooling follow, and whether gradients are
taken (so both sides of ``direct_conv_rule``: direct or im2col, forward and the input
gradient as a direct convolution or matmul + col2im). The forward and every gradient are
checked against float64 sums in NumPy (the reference) in eager ember and in a compiled
function called twice; against PyTorch too where it is installed.

The fast slice runs with the suite; ``EMBER_CONV_FUZZ=2000 pytest -m fuzz
tests/test_conv_fuzz.py`` runs a large one.
"""
from __future__ import annotations

import os
import random
import warnings

import numpy as np
import pytest

import ember
import ember.nn.functional as F

FAST_CASES = 40


def _case(r: random.Random) -> dict:
    groups = r.choice([1, 1, 1, 1, 2])
    c = groups * r.randint(1, 6)
    o = groups * r.choice([1, 2, 3, 5, 8, 17, 33])
    kh, kw = r.choice([(1, 1), (3, 3), (3, 3), (5, 5), (2, 3), (3, 1)])
    d = r.choice([1, 1, 1, 2])
    return dict(n=r.randint(1, 3), c=c, o=o, h=r.randint(d * (kh - 1) + 2, 19 + 2 * d),
                w=r.randint(d * (kw - 1) + 2, 21 + 2 * d), kernel=(kh, kw),
                stride=r.choice([1, 1, 1, 2, (1, 2)]), padding=r.choice([0, 0, 1, 2, (1, 0)]),
                dilation=d,
                groups=groups, dtype=r.choice([np.float32, np.float64]),
                bias=r.random() < 0.6, relu=r.random() < 0.5, pool=r.random() < 0.3,
                grad=r.random() < 0.7, seed=r.randrange(1 << 30))


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _reference(x, w, b, p, g):
    """Forward and gradients in float64 NumPy: loops over the kernel's taps."""
    s, pad, d, groups = _pair(p["stride"]), _pair(p["padding"]), _pair(p["dilation"]), p["groups"]
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    ow = (wd + 2 * pad[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    og = o // groups
    z = np.zeros((n, o, oh, ow))
    taps = [(i, j, xp[:, :, i * d[0]:i * d[0] + s[0] * (oh - 1) + 1:s[0],
                      j * d[1]:j * d[1] + s[1] * (ow - 1) + 1:s[1]])
            for i in range(kh) for j in range(kw)]
    for gi in range(groups):
        cs, os_ = slice(gi * cg, (gi + 1) * cg), slice(gi * og, (gi + 1) * og)
        for i, j, t in taps:
            z[:, os_] += np.einsum("nchw,oc->nohw", t[:, cs], w[os_, :, i, j])
    if b is not None:
        z += b.reshape(1, o, 1, 1)
    a = np.maximum(z, 0) if p["relu"] else z
    y = a
    if p["pool"]:
        ph, pw = oh // 2, ow // 2
        win = a[:, :, :2 * ph, :2 * pw].reshape(n, o, ph, 2, pw, 2)
        y = win.max(axis=(3, 5))
    if g is None:
        return y, None
    ga = g
    if p["pool"]:   # to the first maximum of each window (row-major), as PyTorch
        flat = win.transpose(0, 1, 2, 4, 3, 5).reshape(n, o, ph, pw, 4)
        k = flat.argmax(-1)
        ga = np.zeros_like(a)
        for q in range(4):
            ga[:, :, q // 2:2 * ph:2, q % 2:2 * pw:2] += np.where(k == q, g, 0)
    gz = ga * (z > 0) if p["relu"] else ga
    gx = np.zeros_like(xp)
    gw = np.zeros_like(w)
    for gi in range(groups):
        cs, os_ = slice(gi * cg, (gi + 1) * cg), slice(gi * og, (gi + 1) * og)
        for i, j, t in taps:
            gw[os_, :, i, j] += np.einsum("nohw,nchw->oc", gz[:, os_], t[:, cs])
            gx[:, cs, i * d[0]:i * d[0] + s[0] * (oh - 1) + 1:s[0],
               j * d[1]:j * d[1] + s[1] * (ow - 1) + 1:s[1]] += np.einsum(
                "nohw,oc->nchw", gz[:, os_], w[os_, :, i, j])
    gx = gx[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + wd]
    gb = gz.sum((0, 2, 3)) if b is not None else None
    return y, (gx, gw, gb)


def _ember(x, w, b, p, g, compiled):
    def fn(x, w, b):
        y = F.conv2d(x, w, b, p["stride"], p["padding"], p["dilation"], p["groups"])
        if p["relu"]:
            y = F.relu(y)
        if p["pool"]:
            y = F.max_pool2d(y, 2)
        return y
    run = ember.compile(fn) if compiled else fn
    outs = []
    for _ in range(2 if compiled else 1):
        ts = [None if a is None else ember.tensor(a, requires_grad=p["grad"])
              for a in (x, w, b)]
        if p["grad"]:
            y = run(*ts)
            (y * ember.tensor(g)).sum().backward()
            outs.append((y.detach().numpy(), [None if t is None else t.grad.numpy()
                                              for t in ts]))
        else:
            with ember.no_grad():
                outs.append((run(*ts).numpy(), None))
    return outs


def _check(p: dict) -> None:
    rng = np.random.default_rng(p["seed"])
    dt = p["dtype"]
    cg = p["c"] // p["groups"]
    x = rng.standard_normal((p["n"], p["c"], p["h"], p["w"])).astype(dt)
    w = rng.standard_normal((p["o"], cg) + p["kernel"]).astype(dt)
    b = rng.standard_normal(p["o"]).astype(dt) if p["bias"] else None
    y64, _ = _reference(x.astype(np.float64), w.astype(np.float64),
                        None if b is None else b.astype(np.float64), p, None)
    if y64.size == 0:
        return
    g = rng.standard_normal(y64.shape).astype(dt)
    y64, grads64 = _reference(x.astype(np.float64), w.astype(np.float64),
                              None if b is None else b.astype(np.float64), p,
                              g.astype(np.float64) if p["grad"] else None)
    tol = 2e-4 if dt == np.float32 else 1e-10
    scale = max(1.0, float(np.abs(y64).max()))
    for compiled in (False, True):
        for y, grads in _ember(x, w, b, p, g, compiled):
            # Pooling picks a window's first maximum: a float32 tie broken the other way
            # moves a whole gradient; the draws are continuous, so ties are rare but
            # checked with float64 only.
            np.testing.assert_allclose(y, y64, rtol=tol, atol=tol * scale,
                                       err_msg=f"forward {p} compiled={compiled}")
            if grads is None or (p["pool"] and dt == np.float32):
                continue
            for name, e, ref in zip("xwb", grads, grads64):
                if ref is None:
                    continue
                gs = max(1.0, float(np.abs(ref).max()))
                np.testing.assert_allclose(e, ref, rtol=tol, atol=tol * gs,
                                           err_msg=f"d{name} {p} compiled={compiled}")


def _cases(count: int, seed: int) -> list[dict]:
    r = random.Random(seed)
    return [_case(r) for _ in range(count)]


@pytest.mark.parametrize("p", _cases(FAST_CASES, 2026), ids=lambda p: str(p["seed"]))
def test_conv_fuzz_fast(p):
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a compiled fallback would warn: none expected
        _check(p)


@pytest.mark.fuzz
def test_conv_fuzz_large():
    count = int(os.environ.get("EMBER_CONV_FUZZ", "500"))
    failures = []
    for p in _cases(count, int(os.environ.get("EMBER_CONV_FUZZ_SEED", "7"))):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                _check(p)
        except AssertionError as e:
            failures.append(str(e)[:400])
    assert not failures, f"{len(failures)} of {count}:\n" + "\n".join(failures[:5])


def test_torch_agrees_with_the_reference():
    """The NumPy reference itself, against PyTorch, on a few cases with every option."""
    torch = pytest.importorskip("torch")
    for p in _cases(12, 11):
        p = dict(p, dtype=np.float64, grad=True)
        rng = np.random.default_rng(p["seed"])
        cg = p["c"] // p["groups"]
        x = rng.standard_normal((p["n"], p["c"], p["h"], p["w"]))
        w = rng.standard_normal((p["o"], cg) + p["kernel"])
        b = rng.standard_normal(p["o"]) if p["bias"] else None
        y64, _ = _reference(x, w, b, p, None)
        if y64.size == 0:
            continue
        g = rng.standard_normal(y64.shape)
        y64, grads = _reference(x, w, b, p, g)
        tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        tb = None if b is None else torch.tensor(b, requires_grad=True)
        ty = torch.nn.functional.conv2d(tx, tw, tb, p["stride"], p["padding"],
                                        p["dilation"], p["groups"])
        if p["relu"]:
            ty = torch.relu(ty)
        if p["pool"]:
            ty = torch.nn.functional.max_pool2d(ty, 2)
        (ty * torch.tensor(g)).sum().backward()
        np.testing.assert_allclose(ty.detach().numpy(), y64, rtol=1e-10, atol=1e-10)
        for t, ref in zip((tx, tw, tb), grads):
            if ref is not None:
                np.testing.assert_allclose(t.grad.numpy(), ref, rtol=1e-9, atol=1e-9)
