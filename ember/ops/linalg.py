"""Matrix decompositions and solves: extern ops run by LAPACK (NumPy) or cuSOLVER (CuPy).

Each op takes real float32/float64 matrices with any leading batch dims. An op with
several results (``eigh``: eigenvalues and eigenvectors) returns them *packed*, each
flattened along one last axis (``pack``), since a registry op has one output; its
Python entry point (ember/linalg_decomp.py) splits them (``unpack``, a narrow and a
reshape each, so their gradients come back packed to the one vjp). The gradients are
PyTorch's formulas (torch/csrc/autograd/FunctionsManual.cpp), written with ember ops.
"""
from __future__ import annotations

import math

import numpy as np

from ember.dispatch import dispatch
from ember.errors import OpError
from ember.ops.elementwise import sum_to
from ember.ops.registry import EXTERN, defop


class LinAlgError(OpError):
    """A matrix the op cannot factor or invert (singular, not positive-definite): a
    ``RuntimeError``, like ``torch.linalg.LinAlgError``."""


# ---- packing several results into one array -------------------------------------------

def pack(xp, batch: tuple, parts) -> object:
    """The arrays ``parts`` (each ``batch + shape``) flattened and joined on a last axis."""
    return xp.concatenate([p.reshape(batch + (-1,)) for p in parts], axis=-1)


def unpack(t, batch: tuple, shapes) -> list:
    """The tensors packed by ``pack`` (``shapes``: each part's shape past ``batch``)."""
    out, start = [], 0
    for s in shapes:
        n = math.prod(s)
        out.append(t.narrow(-1, start, n).reshape(batch + tuple(s)))
        start += n
    return out


def _raising(xp, name: str, arrays, fn):
    """Run ``fn`` with CuPy's linalg errors raised (CuPy returns NaNs by default), and turn
    LAPACK's error into a LinAlgError that names the op, the batch element and the shape."""
    try:
        if xp is np:
            return fn()
        import cupyx
        with cupyx.errstate(linalg="raise"):
            return fn()
    except np.linalg.LinAlgError as e:
        a = arrays[0]
        where = ""
        if a.ndim > 2:   # find the failing matrix: only on this error path
            flat = a.reshape((-1,) + a.shape[-2:])
            for i in range(flat.shape[0]):
                try:
                    m = flat[i]
                    _raising(xp, name, (m,), lambda: _one(xp, name, m))
                except LinAlgError:
                    where = f"(Batch element {i}): "
                    break
        shapes = " and ".join(str(list(x.shape)) for x in arrays)
        raise LinAlgError(name, f"{where}{_REASONS.get(name, str(e))} (input of shape "
                          f"{shapes})") from None


def _one(xp, name, m):
    if name == "linalg.cholesky":
        return xp.linalg.cholesky(m)
    return xp.linalg.inv(m)


_REASONS = {
    "linalg.inv": "The input matrix is singular, so it has no inverse.",
    "linalg.solve": "The solver failed because the input matrix is singular.",
    "linalg.cholesky": "The factorization could not be completed because the input is not "
                       "positive-definite.",
}


def _mT(a):
    return a.swapaxes(-1, -2)


# ---- inv, solve, det -------------------------------------------------------------------

def _inv_vjp(g, out, a):
    return (-(out.mT @ g @ out.mT),)


defop("linalg_inv", EXTERN,
      lambda xp, a: _raising(xp, "linalg.inv", (a,), lambda: xp.linalg.inv(a)).astype(a.dtype),
      _inv_vjp)


def _solve(xp, a, b):
    """X with A X = B: ``b`` is a batch of matrices; batch dims broadcast."""
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a2 = xp.broadcast_to(a, batch + a.shape[-2:])
    b2 = xp.broadcast_to(b, batch + b.shape[-2:])
    return _raising(xp, "linalg.solve", (a2, b2), lambda: xp.linalg.solve(a2, b2)).astype(a.dtype)


def _solve_vjp(g, out, a, b):
    gb = dispatch("linalg_solve", a.mT, g)
    ga = -(gb @ out.mT) if a.requires_grad else None
    return (sum_to(ga, a.shape) if ga is not None else None,
            sum_to(gb, b.shape) if b.requires_grad else None)


defop("linalg_solve", EXTERN, _solve, _solve_vjp)


def _det_vjp(g, out, a):
    # The cofactor matrix from the SVD, det(U) det(V) U diag(prod_{j != i} s_j) V^T: it
    # stays finite for singular matrices, where det * inv(A)^T is 0 * inf.
    n = a.shape[-1]
    p = dispatch("linalg_svd", a, full_matrices=False)
    batch = a.shape[:-2]
    u, s, vh = unpack(p.detach(), batch, ((n, n), (n,), (n, n)))
    ones = s.new_ones(batch + (1,))
    left = dispatch("cat", ones, s.narrow(-1, 0, n - 1).cumprod(-1), dim=-1)
    right = dispatch("cat", ones, s.flip(-1).narrow(-1, 0, n - 1).cumprod(-1), dim=-1).flip(-1)
    sign = dispatch("linalg_det", u) * dispatch("linalg_det", vh)
    cof = (u * (left * right).unsqueeze(-2)) @ vh * sign.unsqueeze(-1).unsqueeze(-1)
    return (g.unsqueeze(-1).unsqueeze(-1) * cof,)


defop("linalg_det", EXTERN, lambda xp, a: xp.asarray(xp.linalg.det(a), dtype=a.dtype), _det_vjp)


def _slogdet(xp, a):
    sign, logabs = xp.linalg.slogdet(a)
    return pack(xp, a.shape[:-2], (xp.asarray(sign, a.dtype), xp.asarray(logabs, a.dtype)))


def _slogdet_vjp(g, out, a):
    glog = g.narrow(-1, 1, 1).unsqueeze(-1)   # the sign has no gradient
    return (glog * dispatch("linalg_inv", a).mT,)


defop("linalg_slogdet", EXTERN, _slogdet, _slogdet_vjp)


# ---- triangular --------------------------------------------------------------------------

def _triangle(xp, a, upper, unitriangular):
    t = xp.triu(a) if upper else xp.tril(a)
    if unitriangular:
        n = a.shape[-1]
        t = t * (1 - xp.eye(n, dtype=a.dtype)) + xp.eye(n, dtype=a.dtype)
    return t


def _solve_triangular(xp, a, b, upper, unitriangular):
    # LU on a triangular matrix is backward stable too; NumPy has no batched trsm.
    t = _triangle(xp, a, upper, unitriangular)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    t = xp.broadcast_to(t, batch + a.shape[-2:])
    b2 = xp.broadcast_to(b, batch + b.shape[-2:])
    with np.errstate(all="ignore"):
        try:
            return xp.linalg.solve(t, b2).astype(a.dtype)
        except np.linalg.LinAlgError:   # a zero on the diagonal: trsm divides by it
            return _back_substitute(xp, t, b2).astype(a.dtype)


def _back_substitute(xp, t, b):
    """Forward or back substitution, row by row, dividing by zeros as trsm does."""
    n = t.shape[-1]
    x = xp.zeros(b.shape, dtype=np.result_type(t.dtype, b.dtype))
    lower = bool(xp.all(xp.triu(t, 1) == 0))
    rows = range(n) if lower else range(n - 1, -1, -1)
    for i in rows:
        acc = b[..., i, :] - (t[..., i:i + 1, :] @ x)[..., 0, :]
        x[..., i, :] = acc / t[..., i, i:i + 1]
    return x


def _solve_triangular_vjp(g, out, a, b, upper, unitriangular):
    gb = dispatch("linalg_solve_triangular", a.mT, g, upper=not upper,
                  unitriangular=unitriangular)
    ga = None
    if a.requires_grad:
        ga = -(gb @ out.mT)
        k = 1 if unitriangular else 0
        ga = sum_to(ga.triu(k) if upper else ga.tril(-k), a.shape)
    return ga, sum_to(gb, b.shape) if b.requires_grad else None


defop("linalg_solve_triangular", EXTERN, _solve_triangular, _solve_triangular_vjp)


def _tri_solve(a, b, upper, left=True):
    """A^-1 B (``left``) or B A^-1, ``a`` triangular, with ember ops."""
    if left:
        return dispatch("linalg_solve_triangular", a, b, upper=upper, unitriangular=False)
    return dispatch("linalg_solve_triangular", a.mT, b.mT, upper=not upper,
                    unitriangular=False).mT


# ---- cholesky, qr ----------------------------------------------------------------------

def _cholesky_vjp(g, out, a):
    # gA = L^-H Phi(L^H gL) L^-1, Phi: the lower triangle, its diagonal halved, mirrored
    ga = (out.mT @ g).tril()
    ga = 0.5 * (ga + ga.tril(-1).mT)
    ga = _tri_solve(out.mT, ga, upper=True)
    return (_tri_solve(out, ga, upper=False, left=False),)


defop("linalg_cholesky", EXTERN,
      lambda xp, a: _raising(xp, "linalg.cholesky", (a,), lambda: xp.linalg.cholesky(a))
      .astype(a.dtype), _cholesky_vjp)


def _qr(xp, a, mode):
    q, r = xp.linalg.qr(a, mode="complete" if mode == "complete" else "reduced")
    return pack(xp, a.shape[:-2], (q.astype(a.dtype), r.astype(a.dtype)))


def qr_shapes(m: int, n: int, mode: str) -> tuple:
    k = m if mode == "complete" else min(m, n)
    return (m, k), (k, n)


def _qr_vjp(g, out, a, mode):
    m, n = a.shape[-2:]
    if mode == "complete" and m > n:
        raise RuntimeError("The QR decomposition is not differentiable when mode='complete' "
                           "and nrows > ncols.")
    batch = a.shape[:-2]
    (sq, sr) = qr_shapes(m, n, mode)
    q, r = unpack(out, batch, (sq, sr))
    gq, gr = unpack(g, batch, (sq, sr))
    if m >= n:
        return (_qr_square_vjp(gq, gr, q, r),)
    # A = Q [X | Y]: Y = Q^T A_Y adds Q Y gR_Y^T to Q's gradient
    rx, ry = r.narrow(-1, 0, m), r.narrow(-1, m, n - m)
    grx, gry = gr.narrow(-1, 0, m), gr.narrow(-1, m, n - m)
    gx = _qr_square_vjp(gq + q @ ry @ gry.mT, grx, q, rx)
    return (dispatch("cat", gx, q @ gry, dim=-1),)


def _qr_square_vjp(gq, gr, q, r):
    # (gQ + Q copyltu(M)) R^-T with M = R gR^T - gQ^T Q (m >= n)
    mm = r @ gr.mT - gq.mT @ q
    sym = mm.tril() + mm.tril(-1).mT
    return _tri_solve(r.mT, gq + q @ sym, upper=False, left=False)


defop("linalg_qr", EXTERN, _qr, _qr_vjp)


# ---- eigh, svd, pinv -------------------------------------------------------------------

def _eigh(xp, a, upper):
    w, v = xp.linalg.eigh(a, UPLO="U" if upper else "L")
    return pack(xp, a.shape[:-2], (w.astype(a.dtype), v.astype(a.dtype)))


def _eigh_vjp(g, out, a, upper):
    n = a.shape[-1]
    batch = a.shape[:-2]
    w, v = unpack(out, batch, ((n,), (n, n)))
    gw, gv = unpack(g, batch, ((n,), (n, n)))
    vtgv = v.mT @ gv
    inner = 0.5 * (vtgv - vtgv.mT) / _gaps(w, w) + _diag(gw)
    return (v @ inner @ v.mT,)


def _gaps(row, col):
    """E[i, j] = row_j - col_i off the diagonal, 1 on it (a safe divisor)."""
    n = row.shape[-1]
    e = row.unsqueeze(-2) - col.unsqueeze(-1)
    eye = _eye(row, n)
    return e * (1 - eye) + eye


def _eye(t, n):
    from ember.tensor_create import eye   # ember.tensor_create imports the op registry
    return eye(n, dtype=t.dtype, device=t.device)


def _diag(v):
    n = v.shape[-1]
    return v.unsqueeze(-1) * _eye(v, n)


defop("linalg_eigh", EXTERN, _eigh, _eigh_vjp)


def svd_shapes(m: int, n: int, full_matrices: bool) -> tuple:
    k = min(m, n)
    return ((m, m if full_matrices else k), (k,), (n if full_matrices else k, n))


def _svd(xp, a, full_matrices):
    u, s, vh = xp.linalg.svd(a, full_matrices=full_matrices)
    return pack(xp, a.shape[:-2], (u.astype(a.dtype), s.astype(a.dtype), vh.astype(a.dtype)))


def _svd_vjp(g, out, a, full_matrices):
    m, n = a.shape[-2:]
    k = min(m, n)
    batch = a.shape[:-2]
    shapes = svd_shapes(m, n, full_matrices)
    u, s, vh = unpack(out, batch, shapes)
    gu, gs, gvh = unpack(g, batch, shapes)
    if full_matrices:   # only the first k columns take part in A (as PyTorch)
        u, gu = u.narrow(-1, 0, k), gu.narrow(-1, 0, k)
        vh, gvh = vh.narrow(-2, 0, k), gvh.narrow(-2, 0, k)
    uhgu = u.mT @ gu
    uhgu = uhgu - uhgu.mT
    vhgv = vh @ gvh.mT
    vhgv = vhgv - vhgv.mT
    s2 = s * s
    ga = (uhgu * s.unsqueeze(-2) + s.unsqueeze(-1) * vhgv) / _gaps(s2, s2) + _diag(gs)
    if m > n:
        gusinv = gu / s.unsqueeze(-2)
        ga = (u @ ga + gusinv - u @ (u.mT @ gusinv)) @ vh
    elif m < n:
        sinvgvh = gvh / s.unsqueeze(-1)
        ga = u @ (ga @ vh + sinvgvh - (sinvgvh @ vh.mT) @ vh)
    else:
        ga = u @ ga @ vh
    return (ga,)


defop("linalg_svd", EXTERN, _svd, _svd_vjp)


def _pinv(xp, a, atol, rtol, hermitian):
    u, s, vh = xp.linalg.svd(a, full_matrices=False)
    smax = s.max(axis=-1, keepdims=True) if s.shape[-1] else xp.zeros(s.shape[:-1] + (1,), s.dtype)
    cut = xp.maximum(atol, rtol * smax)
    with np.errstate(divide="ignore"):
        sinv = xp.where(s > cut, 1 / xp.where(s > cut, s, 1), 0)
    return (_mT(vh) * sinv[..., None, :]) @ _mT(u)


def _pinv_vjp(g, out, a, atol, rtol, hermitian):
    # -P^T g P^T + (I - A P)^T-side and (I - P A)-side terms (Golub and Pereyra)
    p = out
    gt = g.mT
    return (-(p.mT @ g @ p.mT) + (gt - a @ (p @ gt)) @ p @ p.mT
            + p.mT @ p @ (gt - (gt @ p) @ a),)


defop("linalg_pinv", EXTERN,
      lambda xp, a, atol, rtol, hermitian: _pinv(xp, a, atol, rtol, hermitian).astype(a.dtype),
      _pinv_vjp)
