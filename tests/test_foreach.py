"""torch's ``_foreach_*`` functions (timm's ModelEmaV3, lion-pytorch's foreach step):
every op, in place and not, against PyTorch and NumPy."""
from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.foreach import BINARY, TERNARY, UNARY

rng = np.random.default_rng(0)
SHAPES = [(3,), (2, 2)]


def _arrays():
    return [rng.uniform(0.2, 0.9, s).astype(np.float32) for s in SHAPES]


A, B, C = _arrays(), _arrays(), _arrays()


def _tensors(mod, arrays):
    return [mod.tensor(a.copy()) for a in arrays]


def _same(got, want):
    assert type(got) is type(want) and len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("inplace", ["", "_"])
def test_every_foreach_op_as_torch(inplace):
    torch = pytest.importorskip("torch")
    cases = [(n, (), ()) for n in UNARY]
    cases += [(n, (_tensors(ember, B),), (_tensors(torch, B),)) for n in BINARY]
    cases += [(n, (0.7,), (0.7,)) for n in BINARY]
    cases += [(n, ([0.5, 2.0],), ([0.5, 2.0],)) for n in BINARY if n != "pow"]
    cases += [("lerp", (_tensors(ember, B), 0.3), (_tensors(torch, B), 0.3))]
    cases += [(n, (_tensors(ember, B), _tensors(ember, C)), (_tensors(torch, B),
                                                            _tensors(torch, C)))
              for n in TERNARY if n != "lerp"]
    for name, e_args, t_args in cases:
        e, t = _tensors(ember, A), _tensors(torch, A)
        got = getattr(ember, f"_foreach_{name}{inplace}")(e, *e_args)
        want = getattr(torch, f"_foreach_{name}{inplace}")(t, *t_args)
        _same(got, want)
        _same(e, t)   # in place: the first list; else: untouched
        if inplace:
            assert got is e


def test_alpha_norm_zero_copy():
    torch = pytest.importorskip("torch")
    e, t = _tensors(ember, A), _tensors(torch, A)
    ember._foreach_add_(e, _tensors(ember, B), alpha=2.0)
    torch._foreach_add_(t, _tensors(torch, B), alpha=2.0)
    _same(e, t)
    _same(ember._foreach_norm(e), torch._foreach_norm(t))
    ember._foreach_copy_(e, _tensors(ember, C))
    np.testing.assert_array_equal(e[1].numpy(), C[1])
    ember._foreach_zero_(e)
    assert all(float(x.abs().sum()) == 0 for x in e)


def test_lerp_against_numpy_and_list_lengths():
    e = _tensors(ember, A)
    ember._foreach_lerp_(e, _tensors(ember, B), 0.25)
    for got, a, b in zip(e, A, B):
        np.testing.assert_allclose(got.numpy(), a + 0.25 * (b - a), rtol=1e-6)
    with pytest.raises(RuntimeError, match="same number of tensors"):
        ember._foreach_mul_(e, [ember.ones(1)])
