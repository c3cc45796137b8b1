"""ember.linalg's LU, eig, LDL, householder_product, tensorinv/tensorsolve, vander and
matrix_exp (ember/linalg_more.py), and torch.lu / lu_solve / lu_unpack: values and pivots
against PyTorch, reconstructions, batches, gradients (PyTorch's and finite differences),
errors, and a compiled use."""
from __future__ import annotations

import numpy as np
import pytest

import ember
from conftest import check_against_torch, check_grad_fd, to_np

torch = pytest.importorskip("torch")
rng = np.random.default_rng(11)
L = ember.linalg

SHAPES = [(4, 4), (2, 5, 5), (6, 4), (2, 3, 6), (1, 3), (3, 1), (3, 2, 20, 20), (40, 33)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lu_factor_and_lu_match_torch(shape, dtype):
    a = rng.standard_normal(shape).astype(dtype)
    LU, piv = L.lu_factor(ember.tensor(a))
    tLU, tpiv = torch.linalg.lu_factor(torch.tensor(a))
    assert piv.dtype is ember.int32 and LU.dtype is ember.tensor(a).dtype
    np.testing.assert_array_equal(to_np(piv), tpiv.numpy())
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(to_np(LU), tLU.numpy(), rtol=tol, atol=tol)
    P, Lo, U = L.lu(ember.tensor(a))
    np.testing.assert_array_equal(to_np(P), torch.linalg.lu(torch.tensor(a)).P.numpy())
    np.testing.assert_allclose(to_np(P @ Lo @ U), a, rtol=tol, atol=tol)
    for got, want in zip(ember.lu_unpack(LU, piv), (P, Lo, U)):
        np.testing.assert_array_equal(to_np(got), to_np(want))
    info = L.lu_factor_ex(ember.tensor(a)).info
    assert info.dtype is ember.int32 and info.shape == shape[:-2] and not info.any()


def test_large_lu_takes_the_lapack_path_and_agrees_with_the_composed_one():
    a = rng.standard_normal((2, 30, 30))
    fast = L.lu_factor(ember.tensor(a))                       # eager, no grad: getrf
    slow = L.lu_factor(ember.tensor(a, requires_grad=True))   # composed ops
    np.testing.assert_array_equal(to_np(fast.pivots), to_np(slow.pivots))
    np.testing.assert_allclose(to_np(fast.LU), to_np(slow.LU), atol=1e-12)


def test_singular_matrices():
    a = np.stack([np.eye(3), np.array([[1.0, 2, 3], [2, 4, 6], [1, 1, 1]])])
    out = L.lu_factor_ex(ember.tensor(a))
    want = torch.linalg.lu_factor_ex(torch.tensor(a))
    np.testing.assert_array_equal(to_np(out.info), want.info.numpy())
    np.testing.assert_array_equal(to_np(out.pivots), want.pivots.numpy())
    np.testing.assert_allclose(to_np(out.LU), want.LU.numpy(), atol=1e-12)
    with pytest.raises(L.LinAlgError, match=r"^torch.linalg.lu_factor: \(Batch element 1\): "
                       r"U\[3,3\] is zero"):
        L.lu_factor(ember.tensor(a))
    with pytest.raises(RuntimeError, match=r"lu_factor_ex: U\[1,1\] is zero"):
        L.lu_factor_ex(ember.zeros(3, 3), check_errors=True)
    z = L.lu_factor_ex(ember.zeros(2, 3, 3))   # no division by the zero pivots
    assert z.info.tolist() == [1, 1] and z.pivots.tolist() == [[1, 2, 3]] * 2
    assert not to_np(z.LU).any()
    LU, piv, info = ember.lu(ember.zeros(3, 3), get_infos=True)   # torch.lu never raises
    assert int(info) == 1 and len(ember.lu(ember.zeros(3, 3))) == 2


def test_lu_errors():
    with pytest.raises(RuntimeError, match="LU without pivoting is not implemented on the CPU"):
        L.lu_factor(ember.eye(3), pivot=False)
    with pytest.raises(RuntimeError, match="LU without pivoting"):
        L.lu(ember.eye(3), pivot=False)
    with pytest.raises(RuntimeError, match="Expected tensor with 2 or more dimensions"):
        L.lu_factor(ember.ones(3))
    with pytest.raises(RuntimeError, match="supports real float32/float64"):
        L.lu_factor(ember.ones(3, 3, dtype=ember.complex64))
    with pytest.raises(RuntimeError, match="floating point"):
        L.lu_factor(ember.ones(3, 3, dtype=ember.int64))
    LU, piv = L.lu_factor(ember.eye(3))
    with pytest.raises(RuntimeError, match="pivots should be a Tensor of scalar type torch.int32"):
        L.lu_solve(LU, piv.long(), ember.ones(3, 1))
    with pytest.raises(RuntimeError, match="B must have at least 2 dimensions"):
        L.lu_solve(LU, piv, ember.ones(3))
    with pytest.raises(RuntimeError, match=r"Incompatible shapes .* \(3x3 and 2x1\)"):
        L.lu_solve(LU, piv, ember.ones(2, 1))
    with pytest.raises(RuntimeError, match="square matrices, but they are 3 by 4"):
        L.lu_solve(ember.ones(3, 4), piv, ember.ones(3, 1))


@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("adjoint", [False, True])
def test_lu_solve_against_torch(left, adjoint):
    a = rng.standard_normal((2, 4, 4))
    b = rng.standard_normal((3, 1, 4, 2) if left else (3, 1, 2, 4))   # batch dims broadcast

    def make(M):
        def f(x, y):
            LU, piv = M.linalg.lu_factor(x)
            return M.linalg.lu_solve(LU, piv, y, left=left, adjoint=adjoint)
        return f
    check_against_torch(make(ember), make(torch), [a, b])
    # the packed LU and pivots as given (not from a differentiable factorization)
    LU, piv = torch.linalg.lu_factor(torch.tensor(a))
    check_against_torch(
        lambda lu, y: L.lu_solve(lu, ember.tensor(piv.numpy()), y, left=left, adjoint=adjoint),
        lambda lu, y: torch.linalg.lu_solve(lu, piv, y, left=left, adjoint=adjoint),
        [LU.numpy(), b])


@pytest.mark.filterwarnings("ignore:torch.lu_solve is deprecated")
def test_legacy_lu_and_lu_solve():
    a, b = rng.standard_normal((2, 3, 3)), rng.standard_normal((2, 3, 2))
    check_against_torch(lambda x, y: ember.lu_solve(y, *ember.lu(x)),
                        lambda x, y: torch.lu_solve(y, *torch.linalg.lu_factor(x)), [a, b])
    LU, piv, info = ember.lu(ember.tensor(a), get_infos=True)
    np.testing.assert_array_equal(to_np(piv), torch.linalg.lu_factor(torch.tensor(a)).pivots)
    assert info.tolist() == [0, 0]


@pytest.mark.parametrize("shape", [(2, 4, 4), (5, 3), (3, 5)], ids=str)
def test_lu_gradients_match_torch(shape):
    a = rng.standard_normal(shape)
    check_against_torch(lambda x: L.lu_factor(x).LU, lambda x: torch.linalg.lu_factor(x).LU, [a])
    check_against_torch(lambda x: L.lu(x)[1:], lambda x: torch.linalg.lu(x)[1:], [a])
    check_grad_fd(lambda x: L.lu_factor(x).LU, [a])
    check_against_torch(lambda x: ember.lu_unpack(*L.lu_factor(x))[1:],
                        lambda x: torch.lu_unpack(*torch.linalg.lu_factor(x))[1:], [a])


def test_lu_second_derivative():
    a = rng.standard_normal((3, 3))
    x = ember.tensor(a, requires_grad=True)
    tx = torch.tensor(a, requires_grad=True)
    (g,) = ember.autograd.grad((L.lu_factor(x).LU ** 2).sum(), x, create_graph=True)
    (tg,) = torch.autograd.grad((torch.linalg.lu_factor(tx).LU ** 2).sum(), tx,
                                create_graph=True)
    g.sum().backward()
    tg.sum().backward()
    np.testing.assert_allclose(to_np(x.grad), tx.grad.numpy(), rtol=1e-8, atol=1e-10)


def test_lu_unpack_options():
    LU, piv = L.lu_factor(ember.tensor(rng.standard_normal((3, 4))))
    P, Lo, U = ember.lu_unpack(LU, piv, unpack_data=False)
    assert Lo.shape == (0,) and U.shape == (0,) and P.shape == (3, 3)
    P, Lo, U = ember.lu_unpack(LU, piv, unpack_pivots=False)
    assert P.shape == (0,) and Lo.shape == (3, 3) and U.shape == (3, 4)


def test_eig_and_eigvals_match_torch():
    a = rng.standard_normal((2, 5, 5))
    w, v = L.eig(ember.tensor(a))
    tw, tv = torch.linalg.eig(torch.tensor(a))
    assert w.dtype is ember.complex128 and v.dtype is ember.complex128
    np.testing.assert_allclose(to_np(w), tw.numpy(), atol=1e-10)
    # eigenvectors are unique up to a unit complex factor per column
    phase = np.sum(np.conj(to_np(v)) * tv.numpy(), axis=-2, keepdims=True)
    np.testing.assert_allclose(np.abs(phase), 1.0, atol=1e-10)
    np.testing.assert_allclose(to_np(ember.tensor(a).to(ember.complex128) @ v),
                               to_np(v * w.unsqueeze(-2)), atol=1e-10)
    w32 = L.eigvals(ember.tensor(a.astype(np.float32)))
    assert w32.dtype is ember.complex64
    np.testing.assert_allclose(to_np(w32), tw.numpy(), atol=1e-4)
    assert L.eigvals(ember.eye(2)).dtype is ember.complex64   # real eigenvalues too
    with pytest.raises(RuntimeError, match="square matrices, but they are 3 by 4"):
        L.eig(ember.ones(3, 4))
    with pytest.raises(RuntimeError, match="should not contain infs or NaNs"):
        L.eigvals(ember.full((2, 2), float("nan")))
    x = ember.tensor(a, requires_grad=True)
    with pytest.raises(RuntimeError, match="no gradient for eig"):
        L.eigvals(x)
    with ember.no_grad():
        L.eigvals(x)
    L.eig(x.detach())


def test_lu_without_pivoting():
    """pivot=False raises on the CPU (as PyTorch); the factorization itself, as CUDA runs it:"""
    import ember.linalg_more as more
    a = rng.standard_normal((2, 5, 4)) + 5 * np.eye(5, 4)
    LU, perm, piv = more._lu(ember.tensor(a), False)
    assert piv.tolist() == [[0, 1, 2, 3]] * 2 and perm.tolist() == [list(range(5))] * 2
    Lo, U = more._unpack_data(LU)
    np.testing.assert_allclose(to_np(Lo @ U), a, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_ldl_factor_and_solve_match_torch(n, monkeypatch):
    s = rng.standard_normal((3, n, n))
    s = s + np.swapaxes(s, -1, -2)   # symmetric indefinite: 2x2 pivots occur
    if n > 1:
        s[1, 0, 0] = 0.0             # forces a 2x2 block at the first step
    b = rng.standard_normal((3, n, 2))
    LD, piv = L.ldl_factor(ember.tensor(s))
    tLD, tpiv = torch.linalg.ldl_factor(torch.tensor(s))
    np.testing.assert_array_equal(to_np(piv), tpiv.numpy())
    np.testing.assert_allclose(np.tril(to_np(LD)), np.tril(tLD.numpy()), atol=1e-10)
    x = L.ldl_solve(LD, piv, ember.tensor(b))
    np.testing.assert_allclose(to_np(x), torch.linalg.ldl_solve(tLD, tpiv, torch.tensor(b)),
                               atol=1e-9)
    np.testing.assert_allclose(s @ to_np(x), b, atol=1e-9)
    # NumPy alone (without SciPy's sytrf) picks the same pivots
    import ember.linalg_more as more
    monkeypatch.setattr(more, "_sytrf", more._sytf2)
    LD2, piv2, info = L.ldl_factor_ex(ember.tensor(s))
    np.testing.assert_array_equal(to_np(piv2), tpiv.numpy())
    np.testing.assert_allclose(np.tril(to_np(LD2)), np.tril(tLD.numpy()), atol=1e-10)
    assert info.tolist() == [0, 0, 0]


def test_ldl_singular_and_errors():
    z = np.zeros((2, 3, 3))
    z[0] = np.eye(3)
    got, want = L.ldl_factor_ex(ember.tensor(z)), torch.linalg.ldl_factor_ex(torch.tensor(z))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(to_np(g), w.numpy())
    with pytest.raises(L.LinAlgError, match=r"ldl_factor: \(Batch element 1\).*D\[1,1\]"):
        L.ldl_factor(ember.tensor(z))
    with pytest.raises(RuntimeError, match="square matrices"):
        L.ldl_factor(ember.ones(2, 3))
    LD, piv = L.ldl_factor(ember.eye(3))
    with pytest.raises(RuntimeError, match="Incompatible shapes"):
        L.ldl_solve(LD, piv, ember.ones(2, 1))


def test_householder_product_matches_torch():
    a = rng.standard_normal((2, 5, 3))
    tau = rng.standard_normal((2, 2))
    check_against_torch(L.householder_product, torch.linalg.householder_product, [a, tau])
    # geqrf's reflectors give QR's Q
    g, t = torch.geqrf(torch.tensor(a))
    np.testing.assert_allclose(
        to_np(L.householder_product(ember.tensor(g.numpy()), ember.tensor(t.numpy()))),
        torch.linalg.qr(torch.tensor(a)).Q.numpy(), atol=1e-12)
    with pytest.raises(RuntimeError, match=r"input.shape\[-2\] must be greater than or equal"):
        L.householder_product(ember.ones(2, 3), ember.ones(2))
    with pytest.raises(RuntimeError, match=r"input.shape\[-1\] must be greater than or equal"):
        L.householder_product(ember.ones(3, 2), ember.ones(3))


def test_tensorinv_tensorsolve_vander_matrix_exp():
    a = rng.standard_normal((4, 6, 8, 3)) + 0.0
    check_against_torch(lambda x: L.tensorinv(x, ind=2), lambda x: torch.linalg.tensorinv(x, 2),
                        [a])
    a = rng.standard_normal((2, 3, 6))
    b = rng.standard_normal((2, 3))
    check_against_torch(L.tensorsolve, torch.linalg.tensorsolve, [a, b])
    a2 = rng.standard_normal((6, 2, 3))
    check_against_torch(lambda x, y: L.tensorsolve(x, y, dims=(0,)),
                        lambda x, y: torch.linalg.tensorsolve(x, y, dims=(0,)), [a2, b])
    with pytest.raises(RuntimeError, match=r"prod\(self.shape\[ind:\]\) == prod"):
        L.tensorinv(ember.ones(4, 6), ind=1)
    x = rng.standard_normal((2, 3))
    check_against_torch(L.vander, torch.linalg.vander, [x])
    check_against_torch(lambda t: L.vander(t, N=5), lambda t: torch.linalg.vander(t, N=5), [x])
    assert L.vander(ember.tensor([1, 2, 3])).tolist() == torch.linalg.vander(
        torch.tensor([1, 2, 3])).tolist()
    with pytest.raises(RuntimeError, match="N must be greater than 1"):
        L.vander(ember.ones(3), N=1)
    m = rng.standard_normal((2, 3, 3))
    check_against_torch(L.matrix_exp, torch.linalg.matrix_exp, [m])


@pytest.mark.parametrize("driver", [None, "gels", "gelsy", "gelsd", "gelss"])
def test_lstsq_drivers_fields(driver):
    a, b = rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 6, 2))
    got = L.lstsq(ember.tensor(a), ember.tensor(b), driver=driver)
    want = torch.linalg.lstsq(torch.tensor(a), torch.tensor(b), driver=driver)
    np.testing.assert_allclose(to_np(got.solution), want.solution.numpy(), atol=1e-10)
    for field in ("rank", "singular_values") + (("residuals",) if driver else ()):
        g, w = to_np(getattr(got, field)), getattr(want, field).numpy()
        assert g.shape == w.shape, field
        np.testing.assert_allclose(g, w, atol=1e-10)
    with pytest.raises(RuntimeError, match="parameter `driver` should be one of"):
        L.lstsq(ember.tensor(a), ember.tensor(b), driver="gesv")


def test_compiled_lu_solve_equals_eager():
    """Factor and solve inside a compiled training step: the LU traces (no graph break),
    and compiled steps equal eager ones."""
    def run(compiled):
        r = np.random.default_rng(5)
        w = ember.tensor(r.standard_normal((4, 4)) + 4 * np.eye(4), requires_grad=True)
        opt = ember.optim.SGD([w], lr=0.01)

        def step(x):
            LU, piv, _ = L.lu_factor_ex(w)   # (lu_factor reads info to raise: a break)
            loss = (L.lu_solve(LU, piv, x) ** 2).sum() + LU.diagonal().abs().log().sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        f = ember.compile(step) if compiled else step
        x = ember.tensor(r.standard_normal((4, 2)))
        return [float(f(x)) for _ in range(4)], to_np(w), f

    eager, comp = run(False), run(True)
    np.testing.assert_allclose(comp[0], eager[0], rtol=1e-10)
    np.testing.assert_allclose(comp[1], eager[1], rtol=1e-10)
    stats = comp[2].stats()
    assert not stats["fallbacks"] and not stats["breaks"], stats
