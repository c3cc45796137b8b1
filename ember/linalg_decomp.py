"""``ember.linalg``: solves, inverses, determinants and decompositions (PyTorch's names,
signatures and results; the primitives are in ember/ops/linalg.py).

Inputs are real float32/float64 matrices with any leading batch dims; everything here is
differentiable where PyTorch's is, traces into compiled functions (run there eagerly,
as LAPACK calls) and runs on CUDA through CuPy.

>>> ember.linalg.solve(ember.tensor([[2.0, 0.0], [0.0, 4.0]]), ember.tensor([2.0, 2.0]))
tensor([1.0, 0.5])
"""
from __future__ import annotations

from collections import namedtuple

from ember import dtypes
from ember.dispatch import dispatch
from ember.errors import OpError
from ember.ops.linalg import LinAlgError, qr_shapes, svd_shapes, unpack
from ember.tensor import Tensor

__all__ = ["inv", "inv_ex", "solve", "solve_ex", "det", "slogdet", "cholesky", "cholesky_ex",
           "qr", "eigh", "eigvalsh", "svd", "svdvals", "pinv", "lstsq", "matrix_rank",
           "matrix_power", "cross", "vecdot", "multi_dot", "solve_triangular", "LinAlgError",
           "logdet", "cholesky_solve", "triangular_solve", "cond", "matmul", "diagonal"]

SlogdetResult = namedtuple("SlogdetResult", ["sign", "logabsdet"])
QRResult = namedtuple("QRResult", ["Q", "R"])
EighResult = namedtuple("EighResult", ["eigenvalues", "eigenvectors"])
SVDResult = namedtuple("SVDResult", ["U", "S", "Vh"])
LstsqResult = namedtuple("LstsqResult", ["solution", "residuals", "rank", "singular_values"])
InvExResult = namedtuple("InvExResult", ["inverse", "info"])
CholeskyExResult = namedtuple("CholeskyExResult", ["L", "info"])
SolveExResult = namedtuple("SolveExResult", ["result", "info"])
TriangularSolveResult = namedtuple("TriangularSolveResult", ["solution", "cloned_coefficient"])


def inv(A: Tensor) -> Tensor:
    """The inverse of each square matrix; a singular one raises ``LinAlgError``.

    >>> ember.linalg.inv(ember.tensor([[2.0, 0.0], [0.0, 4.0]]))
    tensor([[0.50, 0.00],
            [0.00, 0.25]])
    """
    _check_square(A, "linalg.inv")
    return dispatch("linalg_inv", A)


def inv_ex(A: Tensor, *, check_errors: bool = False) -> InvExResult:
    """``(inverse, info)``: info is 0 where a matrix was inverted, nonzero where it is
    singular (that inverse is then NaN), instead of raising unless ``check_errors``."""
    return InvExResult(*_ex(inv, A, check_errors, "linalg.inv_ex"))


def solve(A: Tensor, B: Tensor, *, left: bool = True) -> Tensor:
    """X with ``A @ X = B`` (``X @ A = B`` when not ``left``). ``B`` is a batch of vectors
    when it has one dim less than ``A`` and its shape is ``A``'s without the last dim (or
    is 1-D); batch dims broadcast.

    >>> ember.linalg.solve(ember.eye(2) * 2, ember.ones(2, 3)).shape
    ember.Size([2, 3])
    """
    _check_square(A, "linalg.solve")
    _check_float(B, "linalg.solve")
    if not left:
        return solve(A.mT, B.mT).mT
    vector = B.ndim == 1 or (B.ndim == A.ndim - 1 and B.shape == A.shape[:-1])
    b = B.unsqueeze(-1) if vector else B
    if b.shape[-2] != A.shape[-1]:
        raise OpError("linalg.solve", f"linalg.solve: Incompatible shapes of A and B for the "
                      f"equation AX = B ({_by(A)} and {_by(b)})", (A, B))
    if A.dtype != B.dtype:
        raise OpError("linalg.solve", f"linalg.solve: Expected A and B to have the same dtype, "
                      f"but found A of type {A.dtype.name} and B of type {B.dtype.name} instead",
                      (A, B))
    x = dispatch("linalg_solve", A, b)
    return x.squeeze(-1) if vector else x


def solve_ex(A: Tensor, B: Tensor, *, left: bool = True, check_errors: bool = False):
    """``(result, info)`` as ``inv_ex``, for ``solve``."""
    return SolveExResult(*_ex(lambda a: solve(a, B, left=left), A, check_errors,
                              "linalg.solve_ex"))


def det(A: Tensor) -> Tensor:
    """The determinant of each square matrix (its gradient is finite for singular ones).

    >>> ember.linalg.det(ember.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor(-2.)
    """
    _check_square(A, "linalg.det")
    return dispatch("linalg_det", A)


def slogdet(A: Tensor) -> SlogdetResult:
    """``(sign, logabsdet)``: the determinant's sign (0 when singular) and the log of its
    absolute value (-inf when singular), stable where ``det`` over- or underflows.

    >>> ember.linalg.slogdet(ember.eye(3) * 2).logabsdet
    tensor(2.0794)
    """
    _check_square(A, "linalg.slogdet")
    sign, logabs = unpack(dispatch("linalg_slogdet", A), A.shape[:-2], ((), ()))
    return SlogdetResult(sign.detach(), logabs)


def logdet(A: Tensor) -> Tensor:
    """``torch.logdet``: log(det A), NaN where the determinant is negative, -inf where 0.

    >>> ember.logdet(ember.eye(2) * 3)
    tensor(2.1972)
    """
    _check_square(A, "logdet")
    sign, logabs = slogdet(A)
    return dispatch("where", sign < 0, float("nan"), logabs)


def cholesky(A: Tensor, *, upper: bool = False) -> Tensor:
    """L with ``A = L @ L.mT`` (lower triangular; ``upper``: its transpose U, A = U^T U).
    Only the lower triangle of ``A`` is read; not positive-definite raises.

    >>> ember.linalg.cholesky(ember.tensor([[4.0, 2.0], [2.0, 2.0]]))
    tensor([[2., 0.],
            [1., 1.]])
    """
    _check_square(A, "linalg.cholesky")
    L = dispatch("linalg_cholesky", A)
    return L.mT if upper else L


def cholesky_ex(A: Tensor, *, upper: bool = False, check_errors: bool = False):
    """``(L, info)`` as ``inv_ex``, for ``cholesky``."""
    return CholeskyExResult(*_ex(lambda a: cholesky(a, upper=upper), A, check_errors,
                                 "linalg.cholesky_ex"))


def qr(A: Tensor, mode: str = "reduced") -> QRResult:
    """``(Q, R)`` with ``A = Q @ R``, Q orthonormal columns, R upper triangular; ``mode``
    "reduced" (k = min(m, n) columns), "complete" (Q square) or "r" (Q empty).

    >>> Q, R = ember.linalg.qr(ember.randn(4, 3)); Q.shape, R.shape
    (ember.Size([4, 3]), ember.Size([3, 3]))
    """
    _check_matrix(A, "linalg.qr")
    if mode not in ("reduced", "complete", "r"):
        raise OpError("linalg.qr", f"qr received unrecognized mode '{mode}' but expected one "
                      "of 'reduced' (default), 'r', or 'complete'", (A,))
    m, n = A.shape[-2:]
    packed = dispatch("linalg_qr", A, mode="complete" if mode == "complete" else "reduced")
    Q, R = unpack(packed, A.shape[:-2], qr_shapes(m, n, mode))
    if mode == "r":
        Q = A.new_zeros((0,))
    return QRResult(Q, R)


def eigh(A: Tensor, UPLO: str = "L") -> EighResult:
    """Eigenvalues (ascending) and orthonormal eigenvectors (columns) of each symmetric
    matrix, reading its lower (``UPLO="L"``) or upper triangle.

    >>> ember.linalg.eigh(ember.tensor([[2.0, 1.0], [1.0, 2.0]])).eigenvalues
    tensor([1., 3.])
    """
    _check_square(A, "linalg.eigh")
    if UPLO not in ("L", "U"):
        raise OpError("linalg.eigh", f"linalg.eigh: Expected UPLO argument to be 'L' or 'U', "
                      f"but got {UPLO}", (A,))
    n = A.shape[-1]
    w, v = unpack(dispatch("linalg_eigh", A, upper=UPLO == "U"), A.shape[:-2], ((n,), (n, n)))
    return EighResult(w, v)


def eigvalsh(A: Tensor, UPLO: str = "L") -> Tensor:
    """The eigenvalues of ``eigh``, ascending."""
    return eigh(A, UPLO).eigenvalues


def svd(A: Tensor, full_matrices: bool = True, *, driver=None) -> SVDResult:
    """``(U, S, Vh)`` with ``A = U @ diag(S) @ Vh``, S descending; ``full_matrices=False``
    keeps k = min(m, n) columns of U and rows of Vh (the gradient needs distinct S).

    >>> ember.linalg.svd(ember.tensor([[3.0, 0.0], [0.0, -2.0]])).S
    tensor([3., 2.])
    """
    _check_matrix(A, "linalg.svd")
    m, n = A.shape[-2:]
    packed = dispatch("linalg_svd", A, full_matrices=bool(full_matrices))
    return SVDResult(*unpack(packed, A.shape[:-2], svd_shapes(m, n, bool(full_matrices))))


def svdvals(A: Tensor, *, driver=None) -> Tensor:
    """The singular values of ``svd``, descending."""
    return svd(A, full_matrices=False).S


def pinv(A: Tensor, *, atol=None, rtol=None, hermitian: bool = False) -> Tensor:
    """The Moore-Penrose pseudo-inverse: singular values at or below
    ``max(atol, rtol * largest)`` count as zero (``rtol`` defaults to eps * max(m, n)
    when ``atol`` is not given, else 0).

    >>> ember.linalg.pinv(ember.tensor([[2.0, 0.0], [0.0, 0.0]]))
    tensor([[0.5, 0.0],
            [0.0, 0.0]])
    """
    _check_matrix(A, "linalg.pinv")
    atol_v, rtol_v = _tolerances(A, atol, rtol)
    return dispatch("linalg_pinv", A, atol=atol_v, rtol=rtol_v, hermitian=bool(hermitian))


def lstsq(A: Tensor, B: Tensor, rcond=None, *, driver=None) -> LstsqResult:
    """The least-squares solution X of ``A @ X ~ B`` (by the pseudo-inverse: the
    minimum-norm one when A is rank-deficient); ``residuals`` (the squared residual norms)
    when m > n and A has full rank, else empty (always for ``driver="gelsy"``; PyTorch's
    default None means "gelsy" and leaves them empty too, ember's None computes them);
    ``rank`` (empty for "gels"); ``singular_values`` empty unless ``driver`` is "gelsd" or
    "gelss"."""
    _check_matrix(A, "linalg.lstsq")
    if driver not in (None, "gels", "gelsy", "gelsd", "gelss"):
        raise OpError("linalg.lstsq", "torch.linalg.lstsq: parameter `driver` should be one "
                      "of (gels, gelsy, gelsd, gelss)", (A, B))
    vector = B.ndim == A.ndim - 1
    b = B.unsqueeze(-1) if vector else B
    if b.shape[-2] != A.shape[-2]:
        raise OpError("linalg.lstsq", f"torch.linalg.lstsq: input.size(-2) should match "
                      f"other.size(-2) ({_by(A)} and {_by(b)})", (A, B))
    m, n = A.shape[-2:]
    if rcond is None:
        rcond = dtypes.as_dtype(A.dtype).eps * max(m, n)
    x = pinv(A, rtol=rcond) @ b
    rank = matrix_rank(A.detach(), rtol=rcond)
    residuals = A.new_zeros((0,))
    # PyTorch leaves the residuals empty for an explicit "gelsy" (None keeps them here)
    if m > n and driver != "gelsy" and bool((rank == n).all()):
        residuals = ((A @ x - b) ** 2).sum(-2)
    if driver == "gels":   # gels (QR) assumes full rank and reports none
        rank = rank.new_zeros((0,))
    sv = svdvals(A) if driver in ("gelsd", "gelss") else A.new_zeros((0,))
    return LstsqResult(x.squeeze(-1) if vector else x, residuals, rank, sv)


def matrix_rank(A: Tensor, *, atol=None, rtol=None, hermitian: bool = False) -> Tensor:
    """How many singular values exceed ``max(atol, rtol * largest)`` (int64).

    >>> ember.linalg.matrix_rank(ember.tensor([[1.0, 2.0], [2.0, 4.0]]))
    tensor(1)
    """
    _check_matrix(A, "linalg.matrix_rank")
    atol_v, rtol_v = _tolerances(A, atol, rtol)
    s = svdvals(A.detach())
    largest = s.amax(-1, keepdim=True) if s.shape[-1] else s.new_zeros(s.shape[:-1] + (1,))
    cut = (largest * rtol_v).clamp(min=atol_v)
    return (s > cut).sum(-1)


def matrix_power(A: Tensor, n: int) -> Tensor:
    """A multiplied by itself ``n`` times (the identity for 0, the inverse's power for
    negative ``n``), by repeated squaring.

    >>> ember.linalg.matrix_power(ember.tensor([[1.0, 1.0], [0.0, 1.0]]), 3)
    tensor([[1., 3.],
            [0., 1.]])
    """
    _check_square(A, "linalg.matrix_power")
    if not isinstance(n, int):
        raise TypeError(f"linalg.matrix_power(): argument 'n' must be int, not {type(n).__name__}")
    if n == 0:
        from ember.tensor_create import eye
        return eye(A.shape[-1], dtype=A.dtype, device=A.device).expand(A.shape).clone()
    if n < 0:
        A, n = inv(A), -n
    result, base = None, A
    while n:
        if n & 1:
            result = base if result is None else result @ base
        n >>= 1
        if n:
            base = base @ base
    return result


def cross(input: Tensor, other: Tensor, *, dim: int = -1) -> Tensor:
    """The cross product of 3-vectors along ``dim`` (batch dims broadcast).

    >>> ember.linalg.cross(ember.tensor([1.0, 0.0, 0.0]), ember.tensor([0.0, 1.0, 0.0]))
    tensor([0., 0., 1.])
    """
    if input.shape[dim] != 3 or other.shape[dim] != 3:
        raise OpError("linalg.cross", f"linalg.cross: inputs dimension {dim} must have length "
                      f"3. Got {input.shape[dim]} and {other.shape[dim]}", (input, other))
    a = [input.narrow(dim, i, 1) for i in range(3)]
    b = [other.narrow(dim, i, 1) for i in range(3)]
    return dispatch("cat", a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2],
                    a[0] * b[1] - a[1] * b[0], dim=dim % max(input.ndim, other.ndim))


def vecdot(x: Tensor, y: Tensor, *, dim: int = -1) -> Tensor:
    """The dot product along ``dim``, batch dims broadcast.

    >>> ember.linalg.vecdot(ember.tensor([1.0, 2.0]), ember.tensor([3.0, 4.0]))
    tensor(11.)
    """
    return (x * y).sum(dim)


def multi_dot(tensors) -> Tensor:
    """The product of the matrices in order, the first and last may be vectors; the
    order of the products minimizes the multiplications (dynamic programming, as PyTorch).

    >>> ember.linalg.multi_dot([ember.ones(2), ember.ones(2, 3), ember.ones(3)])
    tensor(6.)
    """
    ts = list(tensors)
    if len(ts) < 2:
        raise OpError("linalg.multi_dot", "multi_dot(): expected at least 2 tensors but got "
                      f"{len(ts)}", tuple(ts))
    first_vec, last_vec = ts[0].ndim == 1, ts[-1].ndim == 1
    if first_vec:
        ts[0] = ts[0].unsqueeze(0)
    if last_vec:
        ts[-1] = ts[-1].unsqueeze(-1)
    for i, t in enumerate(ts):
        if t.ndim != 2:
            raise OpError("linalg.multi_dot", f"multi_dot(): tensor {i} must be 2D but got "
                          f"{t.ndim}D", tuple(ts))
    for i in range(len(ts) - 1):
        if ts[i].shape[1] != ts[i + 1].shape[0]:
            raise OpError("linalg.multi_dot", f"multi_dot(): tensors {i} and {i + 1} with "
                          f"shapes {_by(ts[i])} and {_by(ts[i + 1])} cannot be multiplied",
                          tuple(ts))
    out = _chain(ts, _chain_order([t.shape[0] for t in ts] + [ts[-1].shape[1]]), 0, len(ts) - 1)
    if first_vec:
        out = out.squeeze(0)
    if last_vec:
        out = out.squeeze(-1)
    return out


def solve_triangular(A: Tensor, B: Tensor, *, upper: bool, left: bool = True,
                     unitriangular: bool = False) -> Tensor:
    """X with ``A @ X = B`` (``X @ A = B`` when not ``left``), reading only ``A``'s upper
    or lower triangle (its diagonal taken as ones when ``unitriangular``).

    >>> ember.linalg.solve_triangular(ember.tensor([[2.0, 1.0], [0.0, 1.0]]),
    ...                               ember.tensor([[3.0], [1.0]]), upper=True)
    tensor([[1.],
            [1.]])
    """
    _check_square(A, "linalg.solve_triangular")
    _check_float(B, "linalg.solve_triangular")
    if B.ndim < 2:
        raise OpError("linalg.solve_triangular", "linalg.solve_triangular: The input tensor B "
                      "must have at least 2 dimensions.", (A, B))
    if not left:
        return dispatch("linalg_solve_triangular", A.mT, B.mT, upper=not upper,
                        unitriangular=bool(unitriangular)).mT
    if B.shape[-2] != A.shape[-1]:
        raise OpError("linalg.solve_triangular", "linalg.solve_triangular: Incompatible shapes "
                      f"of A and B for the equation AX = B ({_by(A)} and {_by(B)})", (A, B))
    return dispatch("linalg_solve_triangular", A, B, upper=bool(upper),
                    unitriangular=bool(unitriangular))


def cholesky_solve(B: Tensor, L: Tensor, upper: bool = False) -> Tensor:
    """``torch.cholesky_solve``: X with ``A @ X = B``, given A's Cholesky factor ``L``
    (lower; upper when ``upper``)."""
    # A = L L^H (or U^H U): solve with the lower factor, then with its conjugate transpose
    low = L if not upper else (L.mT.conj() if L.dtype.is_complex else L.mT)
    y = solve_triangular(low, B, upper=False)
    return solve_triangular(low.mT.conj() if low.dtype.is_complex else low.mT, y, upper=True)


def triangular_solve(b: Tensor, A: Tensor, upper: bool = True, transpose: bool = False,
                     unitriangular: bool = False) -> TriangularSolveResult:
    """``torch.triangular_solve`` (deprecated there): ``(solution, A's copy)``."""
    a = A.mT if transpose else A
    x = solve_triangular(a, b, upper=upper != transpose, unitriangular=unitriangular)
    return TriangularSolveResult(x, A.clone())


def cond(A: Tensor, p=None) -> Tensor:
    """The condition number: largest over smallest singular value (``p`` None or 2; -2
    the inverse), else ``matrix_norm(A, p) * matrix_norm(inv(A), p)``.

    >>> ember.linalg.cond(ember.tensor([[2.0, 0.0], [0.0, 0.5]]))
    tensor(4.)
    """
    _check_matrix(A, "linalg.cond")
    if p in (None, 2, -2):
        s = svdvals(A)
        big, small = s.narrow(-1, 0, 1).squeeze(-1), s.narrow(-1, s.shape[-1] - 1, 1).squeeze(-1)
        return big / small if p != -2 else small / big
    from ember.linalg import matrix_norm
    return matrix_norm(A, p) * matrix_norm(inv(A), p)


def matmul(input: Tensor, other: Tensor) -> Tensor:
    """``ember.matmul``."""
    return input @ other


def diagonal(A: Tensor, *, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:
    """``A.diagonal`` over the last two dims by default."""
    return A.diagonal(offset, dim1, dim2)


def legacy_cholesky(A: Tensor, upper: bool = False) -> Tensor:
    """``torch.cholesky`` (deprecated there): ``linalg.cholesky`` with a positional ``upper``."""
    return cholesky(A, upper=upper)


def pinverse(A: Tensor, rcond: float = 1e-15) -> Tensor:
    """``torch.pinverse``: ``linalg.pinv`` with ``rtol=rcond``."""
    return pinv(A, rtol=rcond)


def legacy_svd(input: Tensor, some: bool = True, compute_uv: bool = True) -> SVDResult:
    """``torch.svd`` (deprecated there): ``(U, S, V)``, V not transposed; ``some``: the
    reduced factors; without ``compute_uv``, U and V are zeros."""
    U, S, Vh = svd(input, full_matrices=not some)
    if not compute_uv:
        return SVDResult(U.detach() * 0, S, Vh.mT.detach() * 0)
    return SVDResult(U, S, Vh.mT)


def legacy_qr(input: Tensor, some: bool = True) -> QRResult:
    """``torch.qr`` (deprecated there): ``linalg.qr`` in mode "reduced" (``some``) or
    "complete"."""
    return qr(input, "reduced" if some else "complete")


def legacy_cross(input: Tensor, other: Tensor, dim: int | None = None) -> Tensor:
    """``torch.cross``: ``linalg.cross`` along ``dim``; None takes the first dim of size 3
    (PyTorch's deprecated default)."""
    if dim is None:
        import numpy as np
        shape = np.broadcast_shapes(tuple(input.shape), tuple(other.shape))
        dim = next((i for i, s in enumerate(shape) if s == 3), -1)
    return cross(input, other, dim=dim)


# ---- helpers -------------------------------------------------------------------------------

def _ex(fn, A, check_errors, name):
    import numpy as np
    try:
        return fn(A), A.new_zeros(A.shape[:-2], dtype=dtypes.int32)
    except LinAlgError:
        if check_errors:
            raise
    # One matrix at a time: the singular ones get NaN and a nonzero info (PyTorch's info is
    # LAPACK's index of the failing pivot; here it is 1).
    flat = A.reshape((-1,) + tuple(A.shape[-2:]))
    outs, infos = [], []
    for i in range(flat.shape[0]):
        try:
            outs.append(fn(flat[i]))
            infos.append(0)
        except LinAlgError:
            outs.append(flat[i] * float("nan"))
            infos.append(1)
    from ember.tensor_create import stack, tensor
    out = stack(outs).reshape(A.shape[:-2] + tuple(outs[0].shape))
    return out, tensor(np.array(infos, dtype=np.int32).reshape(A.shape[:-2]), device=A.device)


def _tolerances(A, atol, rtol):
    """PyTorch's rule: rtol = eps * max(m, n) when neither is given; 0 when only atol is."""
    if isinstance(atol, Tensor) or isinstance(rtol, Tensor):
        raise NotImplementedError("ember.linalg: tensor atol/rtol are not supported; pass floats")
    eps = dtypes.as_dtype(A.dtype).eps
    if rtol is None:
        rtol = eps * max(A.shape[-2:]) if atol is None or atol <= 0 else 0.0
    return float(atol or 0.0), float(rtol)


def _chain_order(dims):
    """split[i][j]: where the optimal product of matrices i..j splits (matrix chain DP)."""
    n = len(dims) - 1
    cost = [[0] * n for _ in range(n)]
    split = [[0] * n for _ in range(n)]
    for length in range(1, n):
        for i in range(n - length):
            j = i + length
            cost[i][j] = None
            for k in range(i, j):
                c = cost[i][k] + cost[k + 1][j] + dims[i] * dims[k + 1] * dims[j + 1]
                if cost[i][j] is None or c < cost[i][j]:
                    cost[i][j], split[i][j] = c, k
    return split


def _chain(ts, split, i, j):
    if i == j:
        return ts[i]
    k = split[i][j]
    return _chain(ts, split, i, k) @ _chain(ts, split, k + 1, j)


def _by(t) -> str:
    return f"{t.shape[-2]}x{t.shape[-1]}" if t.ndim >= 2 else f"{tuple(t.shape)}"


def _check_float(A, op):
    if not isinstance(A, Tensor):
        raise TypeError(f"{op}(): argument must be Tensor, not {type(A).__name__}")
    if A.dtype not in (dtypes.float32, dtypes.float64):
        raise OpError(op, f"{op}: Low precision dtypes not supported. Got {A.dtype.name}"
                      if A.dtype.is_floating_point and not A.dtype.is_complex else
                      f"{op}: Expected a floating point tensor as input. Got {A.dtype.name}"
                      + (" (ember.linalg supports real float32/float64 only)"
                         if A.dtype.is_complex else ""), (A,))


def _check_matrix(A, op):
    _check_float(A, op)
    if A.ndim < 2:
        raise OpError(op, f"{op}: The input tensor A must have at least 2 dimensions.", (A,))


def _check_square(A, op):
    _check_matrix(A, op)
    if A.shape[-1] != A.shape[-2]:
        raise OpError(op, f"{op}: A must be batches of square matrices, but they are "
                      f"{A.shape[-2]} by {A.shape[-1]} matrices", (A,))
