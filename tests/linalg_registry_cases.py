"""Registry cases (tests/test_registry_ops.py) and compiled programs (tests/test_compile.py)
for the linalg primitives of ember/ops/linalg.py. Their raw outputs are packed (several
results flattened on one last axis), so the torch references pack theirs alike."""
from __future__ import annotations

import numpy as np

import ember
from ember.dispatch import dispatch

r = np.random.default_rng(41)


def _flat(batch_ndim, *parts):
    import torch
    return torch.cat([p.reshape(tuple(p.shape[:batch_ndim]) + (-1,)) for p in parts], -1)


def _np_flat(batch_ndim, *parts):
    return np.concatenate([np.asarray(p).reshape(np.shape(p)[:batch_ndim] + (-1,))
                           for p in parts], -1)


def _torch_eigh(x):
    import torch
    w, v = torch.linalg.eigh(x)
    _, nv = np.linalg.eigh(x.detach().numpy())
    return _flat(x.ndim - 2, w, v * _signs(nv, v.detach().numpy(), -2))


def _torch_svd(x):
    import torch
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    nu = np.linalg.svd(x.detach().numpy(), full_matrices=False)[0]
    f = _signs(nu, u.detach().numpy(), -2)
    return _flat(x.ndim - 2, u * f, s, vh * f.transpose(-1, -2))


def _signs(ours, theirs, axis):
    """+-1 per vector (column) that turns PyTorch's vectors into NumPy's (each is defined
    up to its sign; LAPACK builds differ in the choice)."""
    import torch
    dots = np.sum(ours * theirs, axis=axis, keepdims=True)
    return torch.tensor(np.where(dots < 0, -1.0, 1.0), dtype=torch.float64)


def _near_diagonal(*batch_and_shape):
    """Distinct, well separated values on the diagonal and small ones off it."""
    *batch, m, n = batch_and_shape
    a = 1e-2 * r.standard_normal(tuple(batch) + (m, n))
    k = min(m, n)
    a[..., range(k), range(k)] += np.arange(k, 0, -1) * 1.5
    return a


def linalg_cases(Case):
    a = r.standard_normal((2, 3, 3)) + 3 * np.eye(3)
    b = r.standard_normal((2, 3, 2))
    s = r.standard_normal((2, 4, 4))
    spd = s @ s.swapaxes(-1, -2) + 4 * np.eye(4)
    sym = _near_diagonal(4, 4)
    sym = sym + sym.T
    tall, wide = r.standard_normal((2, 4, 3)), r.standard_normal((3, 5))
    eps = np.finfo(np.float64).eps
    tl = _torch_linalg
    return {
        "linalg_inv": [Case([a], lambda x: tl(x).inv(x), np.linalg.inv, id="batched"),
                       Case([a[0].astype(np.float32)], lambda x: tl(x).inv(x), np.linalg.inv,
                            id="f32")],
        "linalg_solve": [Case([a, b], lambda x, y: tl(x).solve(x, y), np.linalg.solve),
                         Case([a[0], b], lambda x, y: tl(x).solve(x, y),
                              lambda x, y: np.linalg.solve(x[None], y), id="broadcast")],
        "linalg_det": [Case([a], lambda x: tl(x).det(x), np.linalg.det)],
        "linalg_slogdet": [Case([a], lambda x: _flat(1, *tl(x).slogdet(x)),
                                lambda x: _np_flat(1, *np.linalg.slogdet(x)))],
        # cholesky and eigh read one triangle, and their gradients (as PyTorch's) are
        # symmetric: finite differences of the raw op differ (tests/test_linalg_decomp.py
        # differentiates them through the symmetric part).
        "linalg_cholesky": [Case([spd], lambda x: tl(x).cholesky(x), np.linalg.cholesky,
                                 grad=False)],
        "linalg_eigh": [Case([sym], _torch_eigh,
                             lambda x: _np_flat(0, *np.linalg.eigh(x)), {"upper": False},
                             grad=False)],
        "linalg_qr": [Case([tall], lambda x: _flat(1, *tl(x).qr(x)),
                           lambda x: _np_flat(1, *np.linalg.qr(x)), {"mode": "reduced"},
                           id="tall"),
                      Case([wide], lambda x: _flat(0, *tl(x).qr(x)),
                           lambda x: _np_flat(0, *np.linalg.qr(x)), {"mode": "reduced"},
                           id="wide")],
        "linalg_svd": [Case([_near_diagonal(2, 4, 3)],
                            _torch_svd,
                            lambda x: _np_flat(1, *np.linalg.svd(x, full_matrices=False)),
                            {"full_matrices": False})],
        "linalg_pinv": [Case([tall], lambda x: tl(x).pinv(x, rtol=eps * 4),
                             lambda x: np.linalg.pinv(x, rcond=eps * 4),
                             {"atol": 0.0, "rtol": eps * 4, "hermitian": False}, id="tall"),
                        Case([wide], lambda x: tl(x).pinv(x, rtol=eps * 5),
                             lambda x: np.linalg.pinv(x, rcond=eps * 5),
                             {"atol": 0.0, "rtol": eps * 5, "hermitian": False}, id="wide")],
        "linalg_solve_triangular": [
            Case([a, b], lambda x, y: tl(x).solve_triangular(x, y, upper=True),
                 lambda x, y: np.linalg.solve(np.triu(x), y),
                 {"upper": True, "unitriangular": False}, id="upper"),
            Case([a[0], b], lambda x, y: tl(x).solve_triangular(x, y, upper=False,
                                                                 unitriangular=True),
                 lambda x, y: np.linalg.solve(np.tril(x, -1) + np.eye(3), y),
                 {"upper": False, "unitriangular": True}, id="lower-unit-broadcast")],
    }


def _torch_linalg(_):
    import torch
    return torch.linalg


def _x(*shape):
    return ember.tensor(r.standard_normal(shape).astype(np.float32))


def _spd(n):
    s = r.standard_normal((n, n))
    return ember.tensor((s @ s.T + n * np.eye(n)).astype(np.float32))


def linalg_programs():
    """Compiled programs (each op between elementwise work, so it sits inside a plan)."""
    return {
        "linalg_inv": lambda: (lambda x: dispatch("linalg_inv", x + 3 * ember.eye(3)) * 2,
                               _x(3, 3)),
        "linalg_solve": lambda: (lambda x, y: dispatch("linalg_solve", x + 3 * ember.eye(3), y) + 1,
                                 _x(3, 3), _x(3, 2)),
        "linalg_det": lambda: (lambda x: dispatch("linalg_det", x * 2) + 1, _x(2, 3, 3)),
        "linalg_slogdet": lambda: (lambda x: dispatch("linalg_slogdet", x * 2) + 1, _x(2, 3, 3)),
        "linalg_cholesky": lambda: (lambda x: dispatch("linalg_cholesky", x * 2) + 1, _spd(4)),
        "linalg_eigh": lambda: (lambda x: dispatch("linalg_eigh", x * 2, upper=False) + 1, _spd(4)),
        "linalg_qr": lambda: (lambda x: dispatch("linalg_qr", x * 2, mode="reduced") + 1, _x(4, 3)),
        "linalg_svd": lambda: (lambda x: dispatch("linalg_svd", x * 2, full_matrices=False) + 1,
                               _x(4, 3)),
        "linalg_pinv": lambda: (lambda x: dispatch("linalg_pinv", x * 2, atol=0.0, rtol=1e-6,
                                                   hermitian=False) + 1, _x(4, 3)),
        "linalg_solve_triangular": lambda: (
            lambda x, y: dispatch("linalg_solve_triangular", x + 3 * ember.eye(3), y * 2,
                                  upper=True, unitriangular=False) + 1, _x(3, 3), _x(3, 2)),
    }


# ---- ember/ops/spectral.py ---------------------------------------------------------------
# Complex results have no real-valued torch cotangent here: their gradients are checked
# through view_as_real in tests/test_fft.py (against torch and finite differences).

def _cplx(*shape):
    return r.standard_normal(shape) + 1j * r.standard_normal(shape)


def spectral_cases(Case):
    import torch
    x, z, z2 = r.standard_normal((3, 8)), _cplx(3, 5), _cplx(2, 4, 5)
    return {
        "fft_c2c": [Case([z], lambda a: torch.fft.fftn(a, dim=(1,)),
                         lambda a: np.fft.fftn(a, axes=(1,)),
                         {"dims": (1,), "norm": "backward", "forward": True}, grad=False),
                    Case([z2], lambda a: torch.fft.ifftn(a, dim=(0, 2), norm="ortho"),
                         lambda a: np.fft.ifftn(a, axes=(0, 2), norm="ortho"),
                         {"dims": (0, 2), "norm": "ortho", "forward": False}, id="inverse",
                         grad=False)],
        "fft_r2c": [Case([x], lambda a: torch.fft.rfftn(a, dim=(1,)),
                         lambda a: np.fft.rfftn(a, axes=(1,)),
                         {"dims": (1,), "norm": "backward", "onesided": True}, grad=False),
                    Case([x], lambda a: torch.fft.fftn(a, dim=(0, 1), norm="forward"),
                         lambda a: np.fft.fftn(a, axes=(0, 1), norm="forward"),
                         {"dims": (0, 1), "norm": "forward", "onesided": False}, id="full",
                         grad=False)],
        "fft_c2r": [Case([z], lambda a: torch.fft.irfftn(a, s=(8,), dim=(1,)),
                         lambda a: np.fft.irfftn(a, s=(8,), axes=(1,)),
                         {"dims": (1,), "norm": "backward", "last_dim_size": 8}, grad=False),
                    Case([z2], lambda a: torch.fft.irfftn(a, s=(2, 9), dim=(0, 2), norm="ortho"),
                         lambda a: np.fft.irfftn(a, s=(2, 9), axes=(0, 2), norm="ortho"),
                         {"dims": (0, 2), "norm": "ortho", "last_dim_size": 9}, id="2d",
                         grad=False)],
        "complex_real": [Case([z], lambda a: torch.real(a).clone(), np.real, grad=False)],
        "complex_imag": [Case([z], lambda a: torch.imag(a).clone(), np.imag, grad=False)],
        "complex_angle": [Case([z], torch.angle, np.angle, grad=False)],
        "conj": [Case([z], lambda a: torch.conj(a).resolve_conj(), np.conj, grad=False)],
        "complex": [Case([x[:, :5], x[:, 3:]], torch.complex, lambda a, b: a + 1j * b,
                         grad=False),
                    Case([x[:, :5], x[0, 3:]], lambda a, b: torch.complex(a, b.expand(3, 5)),
                         lambda a, b: a + 1j * b, id="broadcast", grad=False)],
    }


def spectral_programs():
    z = ember.complex(_x(3, 5), _x(3, 5))
    return {
        "fft_c2c": lambda: (lambda a: dispatch("fft_c2c", a * 2, dims=(1,), norm="ortho",
                                               forward=True).abs() + 1, z),
        "fft_r2c": lambda: (lambda a: dispatch("fft_r2c", a * 2, dims=(1,), norm="backward",
                                               onesided=True).abs() + 1, _x(3, 8)),
        "fft_c2r": lambda: (lambda a: dispatch("fft_c2r", a * 2, dims=(1,), norm="backward",
                                               last_dim_size=8) + 1, z),
        "complex_real": lambda: (lambda a: dispatch("complex_real", a * 2) + 1, z),
        "complex_imag": lambda: (lambda a: dispatch("complex_imag", a * 2) + 1, z),
        "complex_angle": lambda: (lambda a: dispatch("complex_angle", a * 2) + 1, z),
        "conj": lambda: (lambda a: dispatch("conj", a * 2).abs() + 1, z),
        "complex": lambda: (lambda a, b: dispatch("complex", a * 2, b).abs() + 1,
                            _x(3, 5), _x(5)),
    }
