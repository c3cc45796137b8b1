"""torch.nn.utils.parametrizations.orthogonal: a weight kept (semi-)orthogonal.

The maps are torch's, composed from matmuls so autograd differentiates them:
``matrix_exp`` of the skew-symmetric ``tril(X) - tril(X)^T`` (scaling and squaring with a
Taylor polynomial; the scaling is chosen from the matrix's 1-norm), and ``householder``
(the product of the reflectors in ``tril(X, -1)``, applied one rank-1 update at a time).
``cayley`` needs a linear solve, which ember does not have yet. With
``use_trivialization=True`` (the default) the buffer ``base`` holds an orthogonal matrix
and the parameter moves on the group from it, as in torch; ``base`` is made from the
assigned matrix by a QR decomposition (NumPy, no gradient).

>>> m = orthogonal(nn.Linear(4, 4))
>>> w = m.weight
>>> bool(((w @ w.T - ember.eye(4)).abs() < 1e-5).all())
True
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ember.autograd import no_grad
from ember.nn.module import Module
from ember.tensor import Tensor, cat, eye, tensor, zeros

__all__ = ["orthogonal"]

_MAPS = ("matrix_exp", "cayley", "householder")


def _matrix_exp(a: Tensor) -> Tensor:
    """exp(a) for square (batches of) matrices: scale by 2^-s so the 1-norm is at most 1/2,
    a degree-12 Taylor polynomial (Horner), then s squarings."""
    n = a.shape[-1]
    with no_grad():
        norm = float(a.detach().abs().sum(-2).max()) if a.numel() else 0.0
    s = max(0, math.ceil(math.log2(norm / 0.5))) if norm > 0 else 0
    b = a / float(2 ** s)
    ident = eye(n, dtype=a.dtype, device=a.device)
    e = ident
    for k in range(12, 0, -1):
        e = ident + b.matmul(e) / float(k)
    for _ in range(s):
        e = e.matmul(e)
    return e


def _householder_product(a: Tensor, tau: Tensor) -> Tensor:
    """The first k columns of H_1 ... H_k, H_i = I - tau_i v_i v_i^T with v_i = e_i +
    a[:, i] below the diagonal (torch.linalg.householder_product)."""
    n, k = a.shape[-2], a.shape[-1]
    ident = eye(n, dtype=a.dtype, device=a.device)
    v = a.tril(-1) + ident[:, :k]
    q = ident[:, :k]
    for i in range(k - 1, -1, -1):
        vi = v[..., :, i:i + 1]                                   # [.., n, 1]
        q = q - (tau[..., i:i + 1].unsqueeze(-1) * vi).matmul(vi.mT.matmul(q))
    return q


def _make_orthogonal(a: np.ndarray) -> np.ndarray:
    """The Q of A = QR with diag(R) > 0 (torch's _make_orthogonal), per matrix."""
    flat = a.reshape((-1,) + a.shape[-2:])
    out = np.empty_like(flat)
    for i, m in enumerate(flat):
        q, r = np.linalg.qr(m)
        out[i] = q * np.sign(np.diag(r))[None, :]
    return out.reshape(a.shape)


def _is_orthogonal(q: np.ndarray) -> bool:
    n, k = q.shape[-2], q.shape[-1]
    eps = 10 * n * np.finfo(q.dtype).eps
    return np.allclose(np.swapaxes(q, -1, -2) @ q, np.eye(k), atol=eps)


class _Orthogonal(Module):
    def __init__(self, weight: Tensor, orthogonal_map: str, *,
                 use_trivialization: bool = True) -> None:
        super().__init__()
        self.shape = tuple(weight.shape)
        self.orthogonal_map = orthogonal_map
        if use_trivialization:
            self.register_buffer("base", None)

    def forward(self, x: Tensor) -> Tensor:
        n, k = x.shape[-2], x.shape[-1]
        transposed = n < k
        if transposed:
            x = x.mT
            n, k = k, n
        if self.orthogonal_map == "matrix_exp":
            x = x.tril()
            if n != k:
                pad = zeros(tuple(x.shape[:-1]) + (n - k,), dtype=x.dtype, device=x.device)
                x = cat([x, pad], -1)
            q = _matrix_exp(x - x.mT)
            if n != k:
                q = q[..., :k]
        elif self.orthogonal_map == "cayley":
            raise NotImplementedError("orthogonal: the 'cayley' map needs a linear solve, "
                                      "which ember does not have; use 'matrix_exp' or "
                                      "'householder'")
        else:
            a = x.tril(-1)
            tau = 2.0 / (1.0 + (a * a).sum(-2))
            q = _householder_product(a, tau)
            # torch multiplies by the diagonal truncated to int (its sign, for a -1 start).
            q = q * x.diagonal(dim1=-2, dim2=-1).detach().int().to(q.dtype).unsqueeze(-2)
        if "base" in self._buffers:
            q = self.base.matmul(q)
        if transposed:
            q = q.mT
        return q

    def right_inverse(self, q: Tensor) -> Tensor:
        if tuple(q.shape) != self.shape:
            raise ValueError(f"Expected a matrix or batch of matrices of shape {self.shape}. "
                             f"Got a tensor of shape {tuple(q.shape)}.")
        with no_grad():
            q_init = q
            n, k = q.shape[-2], q.shape[-1]
            transpose = n < k
            qn = q.detach().numpy()
            if transpose:
                qn = np.swapaxes(qn, -1, -2)
                n, k = k, n
            if "base" not in self._buffers:
                if self.orthogonal_map in ("cayley", "matrix_exp"):
                    raise NotImplementedError("It is not possible to assign to the matrix "
                                              "exponential or the Cayley parametrizations when "
                                              "use_trivialization=False.")
                return self._householder_inverse(qn, transpose, q_init)
            if n == k:
                base = qn.copy() if _is_orthogonal(qn) else _make_orthogonal(qn)
            else:
                extra = np.random.standard_normal(qn.shape[:-2] + (n, n - k)).astype(qn.dtype)
                base = _make_orthogonal(np.concatenate([qn, extra], -1))
            self.base = tensor(base, dtype=q_init.dtype, device=q_init.device)
            neg_id = np.zeros(tuple(q_init.shape), dtype=qn.dtype)
            idx = np.arange(min(q_init.shape[-2:]))
            neg_id[..., idx, idx] = -1.0
            return tensor(neg_id, dtype=q_init.dtype, device=q_init.device)

    @staticmethod
    def _householder_inverse(qn: np.ndarray, transpose: bool, q_init: Tensor) -> Tensor:
        """torch's geqrf route: the reflectors of Q's QR decomposition, the diagonal holding
        the signs of R's (so the forward's truncation to int gives them back)."""
        flat = qn.reshape((-1,) + qn.shape[-2:])
        out = np.empty_like(flat)
        for i, m in enumerate(flat):
            h, tau = np.linalg.qr(m.astype(np.float64), mode="raw")
            a = h.T.copy()
            diag = np.sign(np.diag(a))
            diag[tau == 0.0] *= -1
            a[np.arange(a.shape[1]), np.arange(a.shape[1])] = diag
            out[i] = a
        out = out.reshape(qn.shape)
        if transpose:
            out = np.swapaxes(out, -1, -2)
        return tensor(np.ascontiguousarray(out), dtype=q_init.dtype, device=q_init.device)


def orthogonal(module: Module, name: str = "weight", orthogonal_map: Optional[str] = None,
               *, use_trivialization: bool = True) -> Module:
    """Keep ``module.<name>`` orthogonal (or semi-orthogonal) through a parametrization.

    >>> m = orthogonal(nn.Linear(5, 3))        # a tall weight: householder by default
    >>> m.parametrizations.weight[0].orthogonal_map
    'householder'
    """
    from ember.nn.utils import parametrize
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"Module '{module}' has no parameter or buffer with name '{name}'")
    if weight.ndim < 2:
        raise ValueError(f"Expected a matrix or batch of matrices. Got a tensor of "
                         f"{weight.ndim} dimensions.")
    if orthogonal_map is None:
        orthogonal_map = ("matrix_exp" if weight.shape[-2] == weight.shape[-1]
                          else "householder")
    if orthogonal_map not in _MAPS:
        raise ValueError(f'orthogonal_map has to be one of "matrix_exp", "cayley", '
                         f'"householder". Got: {orthogonal_map}')
    orth = _Orthogonal(weight, orthogonal_map, use_trivialization=use_trivialization)
    parametrize.register_parametrization(module, name, orth, unsafe=True)
    return module
