"""``ember.linalg``: LU (``lu_factor``, ``lu``, ``lu_solve``, ``lu_unpack``), ``eig``,
``ldl_factor``/``ldl_solve``, ``householder_product``, ``tensorinv``/``tensorsolve``,
``vander`` and ``matrix_exp``, with PyTorch's names, results and errors.

The LU factorization is composed from registry ops (argmax, gather, triangular solves,
matmul): LAPACK's recursive partial-pivoting algorithm (``getrf2``: factor the left half
of the columns, update the right half, factor its Schur complement), so it picks
LAPACK's pivots, traces into compiled functions without a graph break, runs on CUDA,
and its gradients (of any order) are those of the factorization. ``lu_solve`` is
triangular solves with the packed factors. ``eig`` and the LDL functions run LAPACK
through NumPy/SciPy on the values (a graph break when compiled) and have no gradient:
ember's complex tensors cannot require grad, and PyTorch's LDL has no derivative.

>>> LU, pivots = ember.linalg.lu_factor(ember.tensor([[1.0, 2.0], [3.0, 4.0]]))
>>> pivots
tensor([2, 2], dtype=ember.int32)
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from ember import dtypes
from ember.dispatch import dispatch
from ember.errors import OpError
from ember.linalg_decomp import (_by, _check_float, _check_matrix, _check_square, inv, solve)
from ember.ops.linalg import LinAlgError
from ember.tensor import Tensor

__all__ = ["lu_factor", "lu_factor_ex", "lu", "lu_solve", "eig", "eigvals", "matrix_exp",
           "householder_product", "ldl_factor", "ldl_factor_ex", "ldl_solve", "tensorinv",
           "tensorsolve", "vander"]

LUResult = namedtuple("LUResult", ["P", "L", "U"])
LUFactorResult = namedtuple("LUFactorResult", ["LU", "pivots"])
LUFactorExResult = namedtuple("LUFactorExResult", ["LU", "pivots", "info"])
LUUnpackResult = namedtuple("LUUnpackResult", ["P", "L", "U"])
LUWithInfoResult = namedtuple("LUWithInfoResult", ["LU", "pivots", "info"])
EigResult = namedtuple("EigResult", ["eigenvalues", "eigenvectors"])
LDLFactorResult = namedtuple("LDLFactorResult", ["LD", "pivots"])
LDLFactorExResult = namedtuple("LDLFactorExResult", ["LD", "pivots", "info"])


# ---- LU ----------------------------------------------------------------------------------

def lu_factor_ex(A: Tensor, *, pivot: bool = True,
                 check_errors: bool = False) -> LUFactorExResult:
    """``(LU, pivots, info)``: L (unit lower, its diagonal not stored) and U packed in one
    matrix with ``A = P L U``; ``pivots`` (int32, 1-based, LAPACK's): row i was swapped with
    row ``pivots[i]``; ``info`` (int32) is 0, or the 1-based index of U's first zero on
    the diagonal (the factorization still completes). ``check_errors`` raises then.

    >>> ember.linalg.lu_factor_ex(ember.tensor([[0.0, 1.0], [2.0, 3.0]])).pivots
    tensor([2, 2], dtype=ember.int32)
    """
    name = "torch.linalg.lu_factor_ex"
    _check_lu_input(A, name, pivot)
    LU, perm, piv = _lu(A, pivot)
    info = _info(LU)
    if check_errors:
        _raise_singular(info, name)
    return LUFactorExResult(LU, (piv + 1).to(dtypes.int32), info)


def lu_factor(A: Tensor, *, pivot: bool = True) -> LUFactorResult:
    """``(LU, pivots)`` of ``lu_factor_ex``; a zero on U's diagonal raises (``lu_solve``
    would divide by it).

    >>> LU, piv = ember.linalg.lu_factor(ember.tensor([[2.0, 1.0], [4.0, 1.0]]))
    >>> LU
    tensor([[4.0, 1.0],
            [0.5, 0.5]])
    """
    name = "torch.linalg.lu_factor"
    _check_lu_input(A, name, pivot)
    LU, perm, piv = _lu(A, pivot)
    _raise_singular(_info(LU), name)
    return LUFactorResult(LU, (piv + 1).to(dtypes.int32))


def lu(A: Tensor, *, pivot: bool = True) -> LUResult:
    """``(P, L, U)`` with ``A = P @ L @ U``: P a permutation matrix (m x m), L unit lower
    (m x k), U upper (k x n), k = min(m, n). Singular matrices factor too.

    >>> P, L, U = ember.linalg.lu(ember.tensor([[1.0, 2.0], [3.0, 4.0]]))
    >>> P
    tensor([[0., 1.],
            [1., 0.]])
    """
    _check_lu_input(A, "torch.linalg.lu", pivot)
    LU, perm, _ = _lu(A, pivot)
    L, U = _unpack_data(LU)
    P = _perm_matrix(perm, A.dtype) if pivot else A.new_zeros((0,))
    return LUResult(P, L, U)


def lu_unpack(LU_data: Tensor, LU_pivots: Tensor, unpack_data: bool = True,
              unpack_pivots: bool = True) -> LUUnpackResult:
    """``torch.lu_unpack``: ``(P, L, U)`` from ``lu_factor``'s packed factors and pivots
    (an empty tensor for what is not unpacked).

    >>> LU, piv = ember.linalg.lu_factor(ember.tensor([[1.0, 2.0], [3.0, 4.0]]))
    >>> ember.lu_unpack(LU, piv).P
    tensor([[0., 1.],
            [1., 0.]])
    """
    name = "torch.lu_unpack"
    _check_matrix(LU_data, name)
    _check_pivots(LU_pivots, name)
    m, n = LU_data.shape[-2:]
    if LU_pivots.shape[-1] != min(m, n):
        raise OpError(name, f"{name}: the length of the pivots ({LU_pivots.shape[-1]}) must "
                      f"be min(m, n) = {min(m, n)}", (LU_data, LU_pivots))
    empty = LU_data.new_zeros((0,))
    L, U = _unpack_data(LU_data) if unpack_data else (empty, empty)
    P = _perm_matrix(_pivots_to_perm(LU_pivots, m), LU_data.dtype) if unpack_pivots else empty
    return LUUnpackResult(P, L, U)


def lu_solve(LU: Tensor, pivots: Tensor, B: Tensor, *, left: bool = True,
             adjoint: bool = False) -> Tensor:
    """X with ``A @ X = B`` given ``lu_factor(A)`` (``A^T`` when ``adjoint``; ``X @ A = B``
    when not ``left``); batch dims broadcast.

    >>> A = ember.tensor([[2.0, 1.0], [4.0, 1.0]])
    >>> ember.linalg.lu_solve(*ember.linalg.lu_factor(A), ember.tensor([[3.0], [5.0]]))
    tensor([[1.],
            [1.]])
    """
    name = "linalg.lu_solve"
    if isinstance(LU, Tensor) and LU.ndim >= 2 and LU.shape[-1] != LU.shape[-2]:
        raise OpError(name, f"torch.linalg.lu_solve: A must be batches of square matrices, "
                      f"but they are {LU.shape[-2]} by {LU.shape[-1]} matrices", (LU,))
    _check_square(LU, name)
    _check_float(B, name)
    _check_pivots(pivots, name)
    if B.ndim < 2:
        raise OpError(name, f"{name}: The input tensor B must have at least 2 dimensions.",
                      (LU, B))
    if LU.dtype != B.dtype:
        raise OpError(name, f"{name}: Expected LU and B to have the same dtype, but found LU "
                      f"of type {LU.dtype.name} and B of type {B.dtype.name} instead", (LU, B))
    n = LU.shape[-1]
    if pivots.shape[-1] != n:
        raise OpError(name, f"{name}: Expected pivots to have {n} elements in the last dim, "
                      f"got {pivots.shape[-1]}", (LU, pivots))
    if not left:   # X A = B  <=>  A^T X^T = B^T
        return lu_solve(LU, pivots, B.mT, adjoint=not adjoint).mT
    if B.shape[-2] != n:
        raise OpError(name, f"{name}: Incompatible shapes of A and B for the equation AX = B "
                      f"({_by(LU)} and {_by(B)})", (LU, B))
    P = _perm_matrix(_pivots_to_perm(pivots, n), LU.dtype)
    if not adjoint:   # A = P L U: X = U^-1 L^-1 P^T B
        y = _trsm(LU, P.mT @ B, upper=False, unit=True)
        return _trsm(LU, y, upper=True, unit=False)
    # A^T = U^T L^T P^T: X = P L^-T U^-T B
    y = _trsm(LU.mT, B, upper=False, unit=False)
    return P @ _trsm(LU.mT, y, upper=True, unit=True)


def legacy_lu(A: Tensor, pivot: bool = True, get_infos: bool = False):
    """``torch.lu`` (deprecated there): ``(LU, pivots)``, with ``info`` too when
    ``get_infos``; it does not raise for singular matrices."""
    LU, piv, info = lu_factor_ex(A, pivot=pivot)
    return LUWithInfoResult(LU, piv, info) if get_infos else (LU, piv)


def legacy_lu_solve(b: Tensor, LU_data: Tensor, LU_pivots: Tensor) -> Tensor:
    """``torch.lu_solve`` (deprecated there): ``linalg.lu_solve(LU_data, LU_pivots, b)``."""
    return lu_solve(LU_data, LU_pivots, b)


def _lu(A: Tensor, pivot: bool):
    """(LU packed, perm, pivots) with ``A[..., perm, :] = L U``; pivots 0-based, LAPACK's
    sequence of row swaps. LAPACK's getrf2 recursion: the same split of the columns
    (k // 2), so the same pivots, each the first largest magnitude of its column."""
    m, n = A.shape[-2:]
    batch = tuple(A.shape[:-2])
    if m == 0 or n == 0:
        perm = _arange(A, m).expand(batch + (m,))
        return A.clone(), perm, perm.narrow(-1, 0, 0)
    if pivot and min(m, n) > 16 and _lapack_ok(A):
        return _lu_lapack(A)
    return _lu_rec(A, pivot)


def _lapack_ok(A: Tensor) -> bool:
    """Whether LAPACK's getrf (SciPy's, when installed) may stand in for the composed
    factorization: its one call beats the composed one's O(n) small ops, but it is not
    recorded, so only eagerly, on the CPU and with no gradient to compute."""
    from ember import autograd
    from ember.compiler import is_compiling
    if A.device.type != "cpu" or is_compiling() or (A.requires_grad
                                                    and autograd.is_grad_enabled()):
        return False
    try:
        import scipy.linalg  # noqa: F401
    except ImportError:
        return False
    return True


def _lu_lapack(A: Tensor):
    import warnings

    import scipy.linalg
    a = _host(A)
    with warnings.catch_warnings():   # a singular matrix warns; info reports it instead
        warnings.simplefilter("ignore")
        lu, piv = scipy.linalg.lu_factor(a, check_finite=False)
    piv = _from_host(piv.astype(np.int64), dtypes.int64, A)
    return _from_host(lu, A.dtype, A), _pivots_to_perm(piv + 1, a.shape[-2]), piv


def _lu_rec(a: Tensor, pivot: bool):
    m, n = a.shape[-2:]
    batch = tuple(a.shape[:-2])
    if m == 1:   # a row: nothing to eliminate
        zero = _arange(a, 1).expand(batch + (1,))
        return a, zero, zero
    if n == 1:   # a column: swap its largest entry to the top, scale the rest by it
        rows = _arange(a, m)
        if pivot:
            p = a.squeeze(-1).abs().argmax(-1, keepdim=True)        # (..., 1)
            perm = dispatch("where", rows == p, 0, dispatch("where", rows == 0, p, rows))
            a = a.gather(-2, perm.unsqueeze(-1))
        else:
            p = rows.narrow(-1, 0, 1).expand(batch + (1,))
            perm = rows.expand(batch + (m,))
        top = a.narrow(-2, 0, 1)
        # a zero pivot (the whole column is zero) is left undivided, as LAPACK does
        safe = dispatch("where", top == 0, 1.0, top)
        return dispatch("cat", top, a.narrow(-2, 1, m - 1) / safe, dim=-2), perm, p
    n1 = min(m, n) // 2
    n2 = n - n1
    lu_l, perm1, piv1 = _lu_rec(a.narrow(-1, 0, n1), pivot)
    right = a.narrow(-1, n1, n2).gather(-2, perm1.unsqueeze(-1).expand(batch + (m, n2)))
    l11, l21 = lu_l.narrow(-2, 0, n1), lu_l.narrow(-2, n1, m - n1)
    u12 = _trsm(l11, right.narrow(-2, 0, n1), upper=False, unit=True)
    a22 = right.narrow(-2, n1, m - n1) - l21 @ u12
    lu22, perm2, piv2 = _lu_rec(a22, pivot)
    l21 = l21.gather(-2, perm2.unsqueeze(-1).expand(batch + (m - n1, n1)))
    lu = dispatch("cat", dispatch("cat", l11, u12, dim=-1), dispatch("cat", l21, lu22, dim=-1),
                  dim=-2)
    perm = dispatch("cat", perm1.narrow(-1, 0, n1),
                    perm1.narrow(-1, n1, m - n1).gather(-1, perm2), dim=-1)
    return lu, perm, dispatch("cat", piv1, piv2 + n1, dim=-1)


def _trsm(a: Tensor, b: Tensor, *, upper: bool, unit: bool) -> Tensor:
    """a^-1 b reading one triangle of ``a`` (a packed LU holds both factors)."""
    return dispatch("linalg_solve_triangular", a, b, upper=upper, unitriangular=unit)


def _unpack_data(LU: Tensor):
    m, n = LU.shape[-2:]
    k = min(m, n)
    from ember.tensor_create import eye
    L = LU.narrow(-1, 0, k).tril(-1) + eye(m, k, dtype=LU.dtype, device=LU.device)
    return L, LU.narrow(-2, 0, k).triu()


def _perm_matrix(perm: Tensor, dtype) -> Tensor:
    """P with ``P[perm[i], i] = 1``, so that ``A = P @ A[perm]``."""
    m = perm.shape[-1]
    return (_arange(perm, m).unsqueeze(-1) == perm.unsqueeze(-2)).to(dtype)


def _pivots_to_perm(pivots: Tensor, m: int) -> Tensor:
    """The row order the swaps ``pivots`` (1-based, applied in turn) make of ``range(m)``."""
    from ember.compiler import is_compiling
    if not is_compiling():   # pivots have no gradient: NumPy's loop is cheaper than k ops
        piv = pivots.detach().cpu().numpy().astype(np.int64) - 1
        perm = np.broadcast_to(np.arange(m), piv.shape[:-1] + (m,)).copy()
        for j in range(piv.shape[-1]):   # the swaps, in turn, over the whole batch at once
            pj = piv[..., j:j + 1]
            at_j = perm[..., j:j + 1].copy()
            perm[..., j:j + 1] = np.take_along_axis(perm, pj, -1)
            np.put_along_axis(perm, pj, at_j, -1)
        return _from_host(perm, dtypes.int64, pivots)
    piv = pivots.to(dtypes.int64) - 1
    rows = _arange(piv, m)
    perm = rows.expand(tuple(piv.shape[:-1]) + (m,))
    for j in range(piv.shape[-1]):
        pj = piv.narrow(-1, j, 1)
        at_j, at_p = perm.narrow(-1, j, 1), perm.gather(-1, pj)
        perm = dispatch("where", rows == j, at_p, dispatch("where", rows == pj, at_j, perm))
    return perm


def _info(LU: Tensor) -> Tensor:
    """0, or the 1-based index of U's first zero diagonal entry (int32, per matrix)."""
    zero = (LU.diagonal(0, -2, -1) == 0).to(dtypes.int32)
    if zero.shape[-1] == 0:
        return zero.sum(-1)
    first = zero.argmax(-1).to(dtypes.int32) + 1
    return first * zero.amax(-1)


def _raise_singular(info: Tensor, name: str) -> None:
    if not bool((info > 0).any()):
        return
    flat = info.reshape(-1).tolist()
    i = next(b for b, v in enumerate(flat) if v > 0)
    where = f"(Batch element {i}): " if info.ndim else ""
    raise LinAlgError(name, f"{where}U[{flat[i]},{flat[i]}] is zero and using it on "
                      "lu_solve would result in a division by zero. If you still want to "
                      "perform the factorization, consider calling linalg.lu(A, pivot) or "
                      "linalg.lu_factor_ex(A, pivot)")


def _check_lu_input(A, name, pivot):
    if isinstance(A, Tensor) and A.ndim < 2:
        raise OpError(name, f"torch.lu_factor: Expected tensor with 2 or more dimensions. Got "
                      f"size: {list(A.shape)} instead", (A,))
    _check_matrix(A, name)
    if not pivot and A.device.type == "cpu":
        raise OpError(name, "linalg.lu_factor: LU without pivoting is not implemented on the "
                      "CPU", (A,))


def _check_pivots(pivots, name):
    if not isinstance(pivots, Tensor) or pivots.dtype != dtypes.int32:
        raise OpError(name, f"{name}: pivots should be a Tensor of scalar type torch.int32",
                      (pivots,) if isinstance(pivots, Tensor) else ())


def _arange(t: Tensor, n: int) -> Tensor:
    from ember.tensor_create import arange
    return arange(n, dtype=dtypes.int64, device=t.device)


# ---- eig -------------------------------------------------------------------------------

def eig(A: Tensor) -> EigResult:
    """``(eigenvalues, eigenvectors)`` of each square matrix, complex (complex64 for
    float32, complex128 for float64), eigenvectors as unit-norm columns (LAPACK's geev,
    as PyTorch). Not differentiable in ember (complex tensors cannot require grad): an
    input that requires grad raises while grad mode is on, instead of a silently missing
    gradient.

    >>> ember.linalg.eig(ember.tensor([[2.0, 0.0], [0.0, 3.0]])).eigenvalues
    tensor([2.+0.j, 3.+0.j])
    """
    _check_eig_input(A, "linalg.eig")
    w, v = np.linalg.eig(_host(A))
    ct = _complex_of(A)
    return EigResult(_from_host(w, ct, A), _from_host(v, ct, A))


def eigvals(A: Tensor) -> Tensor:
    """The eigenvalues of ``eig`` (complex), in LAPACK's order.

    >>> ember.linalg.eigvals(ember.tensor([[0.0, -1.0], [1.0, 0.0]]))
    tensor([0.+1.j, 0.-1.j])
    """
    _check_eig_input(A, "linalg.eigvals")
    return _from_host(np.linalg.eigvals(_host(A)), _complex_of(A), A)


def _check_eig_input(A: Tensor, name: str) -> None:
    from ember import autograd
    _check_square(A, name)
    if A.requires_grad and autograd.is_grad_enabled():
        # a result without a gradient would silently drop this term of a loss's gradient
        raise OpError(name, f"{name}: ember computes no gradient for eig/eigvals (complex "
                      "tensors cannot require grad); call it on A.detach() or under "
                      "ember.no_grad()", (A,))
    if not bool(A.isfinite().all()):
        raise OpError(name, f"{name}: input tensor should not contain infs or NaNs.", (A,))


def _host(A: Tensor) -> np.ndarray:
    return A.detach().cpu().numpy()


def _from_host(a: np.ndarray, dtype, like: Tensor) -> Tensor:
    from ember.tensor_create import tensor
    return tensor(np.ascontiguousarray(a, dtype=dtype.name), device=like.device)


def _complex_of(A: Tensor):
    return dtypes.complex64 if A.dtype == dtypes.float32 else dtypes.complex128


# ---- matrix_exp, householder_product, tensorinv, tensorsolve, vander ------------------------

def matrix_exp(A: Tensor) -> Tensor:
    """The matrix exponential of each square matrix (``ember.matrix_exp``: Pade 13 with
    scaling and squaring, differentiable).

    >>> ember.linalg.matrix_exp(ember.zeros(2, 2))
    tensor([[1., 0.],
            [0., 1.]])
    """
    from ember.tensor_extra import matrix_exp as _matrix_exp
    return _matrix_exp(A)


def householder_product(A: Tensor, tau: Tensor) -> Tensor:
    """The first n columns of ``H_1 ... H_k``, ``H_i = I - tau_i v_i v_i^T`` with ``v_i``
    column i of ``A`` below the diagonal and 1 on it (``geqrf``'s reflectors: LAPACK's
    orgqr); A is m x n with m >= n >= k = ``tau.shape[-1]``.

    >>> ember.linalg.householder_product(ember.zeros(2, 1), ember.tensor([2.0]))
    tensor([[-1.],
            [ 0.]])
    """
    name = "torch.linalg.householder_product"
    _check_float(A, name)
    _check_float(tau, name)
    if A.ndim < 2:
        raise OpError(name, f"{name}: input must have at least 2 dimensions.", (A,))
    if tau.ndim < 1:
        raise OpError(name, f"{name}: tau must have at least 1 dimension.", (tau,))
    m, n = A.shape[-2:]
    k = tau.shape[-1]
    if m < n:
        raise OpError(name, f"{name}: input.shape[-2] must be greater than or equal to "
                      "input.shape[-1]", (A,))
    if n < k:
        raise OpError(name, f"{name}: input.shape[-1] must be greater than or equal to "
                      "tau.shape[-1]", (A, tau))
    if tau.ndim != A.ndim - 1 or tuple(tau.shape[:-1]) != tuple(A.shape[:-2]):
        raise OpError(name, f"{name}: Expected batch dimensions of tau to be equal to "
                      f"input.shape[:-2], but got {list(tau.shape[:-1])}", (A, tau))
    if A.dtype != tau.dtype:
        raise OpError(name, f"{name}: tau dtype {tau.dtype.name} does not match input dtype "
                      f"{A.dtype.name}", (A, tau))
    from ember.tensor_create import eye
    ident = eye(m, n, dtype=A.dtype, device=A.device)
    V = A.tril(-1) + ident
    Q = ident.expand(tuple(A.shape)) if A.ndim > 2 else ident
    for i in range(k - 1, -1, -1):   # Q = H_i Q, from the last reflector to the first
        v = V.narrow(-1, i, 1)
        t = tau.narrow(-1, i, 1).unsqueeze(-1)
        Q = Q - (t * v) @ (v.mT @ Q)
    return Q


def tensorinv(A: Tensor, ind: int = 2) -> Tensor:
    """The inverse for ``tensordot(.., ind)``: A read as a matrix with rows
    ``A.shape[:ind]`` and columns ``A.shape[ind:]`` (equal products), inverted, of shape
    ``A.shape[ind:] + A.shape[:ind]``.

    >>> ember.linalg.tensorinv(ember.eye(4).reshape(4, 2, 2), ind=1).shape
    ember.Size([2, 2, 4])
    """
    name = "linalg.tensorinv"
    if not isinstance(ind, int) or ind <= 0:
        raise OpError(name, f"Expected a strictly positive integer for 'ind', but got {ind}",
                      (A,))
    rows, cols = tuple(A.shape[:ind]), tuple(A.shape[ind:])
    if math.prod(rows) != math.prod(cols):
        raise OpError(name, "Expected self to satisfy the requirement prod(self.shape[ind:]) "
                      f"== prod(self.shape[:ind]), but got {math.prod(cols)} != "
                      f"{math.prod(rows)}", (A,))
    p = math.prod(rows)
    return inv(A.reshape(p, p)).reshape(cols + rows)


def tensorsolve(A: Tensor, B: Tensor, dims=None) -> Tensor:
    """X with ``tensordot(A, X, X.ndim) = B``: X has shape ``A.shape[B.ndim:]``; ``dims``
    are dims of A moved to the end first.

    >>> ember.linalg.tensorsolve(ember.eye(6).reshape(2, 3, 6), ember.ones(2, 3)).shape
    ember.Size([6])
    """
    name = "linalg.tensorsolve"
    if dims is not None:
        dims = [d % A.ndim for d in dims]
        rest = [d for d in range(A.ndim) if d not in dims]
        A = A.permute(*(rest + dims))
    lead, trail = tuple(A.shape[:B.ndim]), tuple(A.shape[B.ndim:])
    if math.prod(lead) != math.prod(trail) or tuple(A.shape[:B.ndim]) != tuple(B.shape):
        raise OpError(name, "Expected self to satisfy the requirement prod(self.shape[other."
                      "ndim:]) == prod(self.shape[:other.ndim]), but got "
                      f"{math.prod(trail)} != {math.prod(lead)}", (A, B))
    p = math.prod(lead)
    return solve(A.reshape(p, p), B.reshape(p)).reshape(trail)


def vander(x: Tensor, *, N: int | None = None) -> Tensor:
    """The Vandermonde matrix of increasing powers ``x ** 0 ... x ** (N-1)`` along a new
    last dim (N defaults to ``x.shape[-1]``); batch dims are kept. (``ember.vander`` is
    numpy's, with decreasing powers.)

    >>> ember.linalg.vander(ember.tensor([1.0, 2.0, 3.0]))
    tensor([[1., 1., 1.],
            [1., 2., 4.],
            [1., 3., 9.]])
    """
    name = "linalg.vander"
    if x.dtype in (dtypes.float16, dtypes.bfloat16, dtypes.bool_):
        raise OpError(name, "linalg.vander supports floating point, complex, and integer "
                      f"tensors, but got {x.dtype.name}", (x,))
    if x.ndim == 0:
        x = x.unsqueeze(-1)
    n = x.shape[-1] if N is None else int(N)
    if n <= 1:
        raise OpError(name, "N must be greater than 1.", (x,))
    # cumprod, as PyTorch: its gradient is exact at x = 0, where pow's needs 0 ** -1
    powers = x.unsqueeze(-1).expand(tuple(x.shape) + (n - 1,)).cumprod(-1)
    return dispatch("cat", x.new_ones(tuple(x.shape) + (1,)), powers, dim=-1)


# ---- LDL (Bunch-Kaufman) -------------------------------------------------------------------

def ldl_factor_ex(A: Tensor, *, hermitian: bool = False,
                  check_errors: bool = False) -> LDLFactorExResult:
    """``(LD, pivots, info)``: the Bunch-Kaufman factorization ``A = P L D L^T P^T`` of each
    symmetric matrix (its lower triangle is read), packed as LAPACK's ``sytrf``: D's 1x1
    and 2x2 blocks and L below them; ``pivots`` (int32, 1-based; negative pairs mark 2x2
    blocks); ``info`` the 1-based index of a zero D block, else 0. Not differentiable
    (as PyTorch)."""
    name = "torch.linalg.ldl_factor" + ("" if check_errors else "_ex")
    _check_square(A, name)
    a = _host(A)
    batch, n = a.shape[:-2], a.shape[-1]
    flat = a.reshape((-1, n, n))
    ld = np.empty_like(flat)
    piv = np.empty((flat.shape[0], n), dtype=np.int32)
    info = np.zeros(flat.shape[0], dtype=np.int32)
    for i in range(flat.shape[0]):
        ld[i], piv[i], info[i] = _sytrf(flat[i])
    if check_errors and info.any():
        i = int(np.flatnonzero(info)[0])
        where = f"(Batch element {i}): " if len(batch) else ""
        raise LinAlgError(name, f"{where}The factorization could not be completed because the "
                          f"block diagonal matrix D is singular (D[{info[i]},{info[i]}] is "
                          "zero).")
    return LDLFactorExResult(_from_host(ld.reshape(a.shape), A.dtype, A),
                             _from_host(piv.reshape(batch + (n,)), dtypes.int32, A),
                             _from_host(info.reshape(batch), dtypes.int32, A))


def ldl_factor(A: Tensor, *, hermitian: bool = False) -> LDLFactorResult:
    """``(LD, pivots)`` of ``ldl_factor_ex``; a singular D raises (as PyTorch, whose
    message there is an internal error).

    >>> LD, piv = ember.linalg.ldl_factor(ember.tensor([[4.0, 2.0], [2.0, 3.0]]))
    >>> LD
    tensor([[4.0, 0.0],
            [0.5, 2.0]])
    """
    LD, piv, _ = ldl_factor_ex(A, hermitian=hermitian, check_errors=True)
    return LDLFactorResult(LD, piv)


def ldl_solve(LD: Tensor, pivots: Tensor, B: Tensor, *, hermitian: bool = False) -> Tensor:
    """X with ``A @ X = B`` given ``ldl_factor(A)`` (LAPACK's ``sytrs``); batch dims of LD
    and B broadcast. Not differentiable (as PyTorch).

    >>> A = ember.tensor([[4.0, 2.0], [2.0, 3.0]])
    >>> ember.linalg.ldl_solve(*ember.linalg.ldl_factor(A), ember.tensor([[6.0], [5.0]]))
    tensor([[1.],
            [1.]])
    """
    name = "torch.linalg.ldl_solve"
    _check_square(LD, name)
    _check_float(B, name)
    _check_pivots(pivots, name)
    if B.ndim < 2:
        raise OpError(name, f"{name}: The input tensor B must have at least 2 dimensions.",
                      (LD, B))
    if B.shape[-2] != LD.shape[-1]:
        raise OpError(name, f"{name}: Incompatible shapes of A and B for the equation AX = B "
                      f"({_by(LD)} and {_by(B)})", (LD, B))
    if LD.dtype != B.dtype:
        raise OpError(name, f"{name}: Expected LD and B to have the same dtype, but found LD "
                      f"of type {LD.dtype.name} and B of type {B.dtype.name} instead", (LD, B))
    ld, piv, b = _host(LD), pivots.detach().cpu().numpy(), _host(B)
    batch = np.broadcast_shapes(ld.shape[:-2], piv.shape[:-1], b.shape[:-2])
    n, k = ld.shape[-1], b.shape[-1]
    ld = np.broadcast_to(ld, batch + (n, n)).reshape(-1, n, n)
    piv = np.broadcast_to(piv, batch + (n,)).reshape(-1, n)
    b = np.broadcast_to(b, batch + (n, k)).reshape(-1, n, k)
    x = np.stack([_sytrs(ld[i], piv[i], b[i]) for i in range(ld.shape[0])]) if ld.shape[0] \
        else np.empty((0, n, k), b.dtype)
    return _from_host(x.reshape(batch + (n, k)), LD.dtype, LD)


_ALPHA = (1.0 + math.sqrt(17.0)) / 8.0   # Bunch-Kaufman's pivot threshold (LAPACK's)


def _sytrf(a: np.ndarray):
    """LAPACK's ``?sytrf`` (lower): SciPy's when present, else ``?sytf2``'s algorithm
    (the same pivot choices) in NumPy."""
    try:
        from scipy.linalg import lapack
    except ImportError:
        return _sytf2(a)
    fn = lapack.dsytrf if a.dtype == np.float64 else lapack.ssytrf
    ld, ipiv, info = fn(a, lower=1)
    return np.tril(ld), ipiv, info


def _sytf2(a: np.ndarray):
    """Bunch-Kaufman with partial pivoting on the lower triangle, column by column."""
    n = a.shape[0]
    a = np.tril(a).astype(a.dtype, copy=True)
    a = a + np.tril(a, -1).T   # work on the full symmetric matrix; the lower part is kept
    ipiv = np.zeros(n, dtype=np.int32)
    info = 0
    k = 0
    while k < n:
        kstep = 1
        absakk = abs(a[k, k])
        if k < n - 1:
            imax = k + 1 + int(np.argmax(np.abs(a[k + 1:, k])))
            colmax = abs(a[imax, k])
        else:
            imax, colmax = k, 0.0
        if max(absakk, colmax) == 0:
            info = info or k + 1
            kp = k
        else:
            if absakk >= _ALPHA * colmax:
                kp = k
            else:
                # the largest off-diagonal magnitude in row/column imax
                row = np.abs(a[imax, k:imax])
                rowmax = row.max() if row.size else 0.0
                if imax < n - 1:
                    rowmax = max(rowmax, np.abs(a[imax + 1:, imax]).max())
                if absakk >= _ALPHA * colmax * (colmax / rowmax):
                    kp = k
                elif abs(a[imax, imax]) >= _ALPHA * rowmax:
                    kp = imax
                else:
                    kp, kstep = imax, 2
            kk = k + kstep - 1
            if kp != kk:   # swap rows and columns kk and kp of the trailing matrix only:
                t = a[k:, k:]   # L's columns before k keep their order (sytrs swaps in turn)
                t[[kk - k, kp - k], :] = t[[kp - k, kk - k], :]
                t[:, [kk - k, kp - k]] = t[:, [kp - k, kk - k]]
            if kstep == 1:
                if k < n - 1:
                    d11 = 1.0 / a[k, k]   # the reciprocal, as LAPACK (the same rounding)
                    col = a[k + 1:, k].copy()
                    a[k + 1:, k + 1:] -= d11 * np.outer(col, col)
                    a[k + 1:, k] = d11 * col
            elif k < n - 2:
                d21 = a[k + 1, k]
                d11 = a[k + 1, k + 1] / d21
                d22 = a[k, k] / d21
                t = 1.0 / (d11 * d22 - 1.0)
                d21 = t / d21
                w1 = d21 * (d11 * a[k + 2:, k] - a[k + 2:, k + 1])   # L's two columns
                w2 = d21 * (d22 * a[k + 2:, k + 1] - a[k + 2:, k])
                c1, c2 = a[k + 2:, k].copy(), a[k + 2:, k + 1].copy()
                a[k + 2:, k + 2:] -= np.outer(c1, w1) + np.outer(c2, w2)
                a[k + 2:, k], a[k + 2:, k + 1] = w1, w2
        if kstep == 1:
            ipiv[k] = kp + 1
        else:
            ipiv[k] = ipiv[k + 1] = -(kp + 1)
        k += kstep
    return np.tril(a), ipiv, info


def _sytrs(ld: np.ndarray, ipiv: np.ndarray, b: np.ndarray) -> np.ndarray:
    """LAPACK's ``?sytrs`` (lower): solve with sytrf's packed factors."""
    n = ld.shape[0]
    x = b.astype(ld.dtype, copy=True)
    with np.errstate(all="ignore"):
        k = 0   # L D y = P^T b, forward
        while k < n:
            if ipiv[k] > 0:
                kp = ipiv[k] - 1
                x[[k, kp]] = x[[kp, k]]
                if k < n - 1:
                    x[k + 1:] -= np.outer(ld[k + 1:, k], x[k])
                x[k] /= ld[k, k]
                k += 1
            else:
                kp = -ipiv[k] - 1
                x[[k + 1, kp]] = x[[kp, k + 1]]
                if k < n - 2:
                    x[k + 2:] -= np.outer(ld[k + 2:, k], x[k]) + np.outer(ld[k + 2:, k + 1],
                                                                          x[k + 1])
                akm1k = ld[k + 1, k]
                akm1 = ld[k, k] / akm1k
                ak = ld[k + 1, k + 1] / akm1k
                denom = akm1 * ak - 1.0
                bkm1 = x[k] / akm1k
                bk = x[k + 1] / akm1k
                x[k] = (ak * bkm1 - bk) / denom
                x[k + 1] = (akm1 * bk - bkm1) / denom
                k += 2
        k = n - 1   # L^T P^T x = y, backward
        while k >= 0:
            if ipiv[k] > 0:
                if k < n - 1:
                    x[k] -= ld[k + 1:, k] @ x[k + 1:]
                kp = ipiv[k] - 1
                x[[k, kp]] = x[[kp, k]]
                k -= 1
            else:
                if k < n - 1:
                    x[k] -= ld[k + 1:, k] @ x[k + 1:]
                    x[k - 1] -= ld[k + 1:, k - 1] @ x[k + 1:]
                kp = -ipiv[k] - 1
                x[[k, kp]] = x[[kp, k]]
                k -= 2
    return x
