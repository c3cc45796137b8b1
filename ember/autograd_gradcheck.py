"""``ember.autograd.gradcheck``: gradients checked against finite differences, as
``torch.autograd.gradcheck`` (module and functions).

``gradcheck(func, inputs)`` compares, for every differentiable output and every input
that requires grad, the Jacobian built from central differences (each input element
moved by ``±eps``) with the one autograd computes (one ``ember.autograd.grad`` per output
element, run twice to check that backward is deterministic). ``gradgradcheck`` does the
same for the gradient itself (second derivatives). The defaults are meant for float64
inputs: other dtypes get PyTorch's warning.

>>> import ember
>>> from ember.autograd import gradcheck
>>> x = ember.randn(3, dtype=ember.float64, requires_grad=True)
>>> gradcheck(lambda x: x.sin() * x, (x,))
True
"""
from __future__ import annotations

import warnings
from itertools import product
from typing import Any, Callable, Sequence

import numpy as np

from ember import autograd, dtypes

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck"]

_TensorOrTensors = Any   # an ember Tensor, or a sequence of them


class GradcheckError(RuntimeError):
    """Raised by ``gradcheck`` and ``gradgradcheck`` when a check fails."""


FAILED_NONDET_MSG = """\n
NOTE: If your op relies on non-deterministic operations, this failure might be expected:
call gradcheck/gradgradcheck with `nondet_tol=<tol>` as a keyword argument.
"""

FAST_FAIL_SLOW_OK_MSG = """
Fast gradcheck failed but element-wise differences are small. This means that the
test might've passed in slow_mode! Call gradcheck/gradgradcheck with `fast_mode=False`
as a keyword argument.
""".strip()


# ---- small helpers ----------------------------------------------------------------------

def _tensor_cls():
    from ember.tensor import Tensor
    return Tensor


def _as_tuple(x) -> tuple:
    if isinstance(x, tuple):
        return x
    if isinstance(x, list):
        return tuple(x)
    return (x,)


def _differentiable_outputs(x) -> tuple:
    return tuple(o for o in _as_tuple(x) if o.requires_grad)


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def _as_ember(a: np.ndarray):
    from ember.tensor import tensor
    return tensor(a)


def _diff_inputs(inputs: tuple) -> tuple[list[int], list]:
    """Indices and tensors of the inputs that require grad (top level, as PyTorch)."""
    Tensor = _tensor_cls()
    idx = [i for i, a in enumerate(inputs) if isinstance(a, Tensor) and a.requires_grad]
    return idx, [inputs[i] for i in idx]


def _check_inputs(inputs: tuple) -> None:
    Tensor = _tensor_cls()
    any_requires_grad = False
    for idx, inp in enumerate(inputs):
        if isinstance(inp, Tensor) and inp.requires_grad:
            if inp.is_complex():
                raise NotImplementedError("ember's gradcheck does not support complex inputs")
            if inp.dtype != dtypes.float64:
                warnings.warn(f"Input #{idx} requires gradient and is not a double precision "
                              "floating point or complex. This check will likely fail if all "
                              "the inputs are not of double precision floating point or "
                              "complex. ", stacklevel=4)
            if not all(st > 0 or sz <= 1 for st, sz in zip(inp.stride(), inp.shape)):
                # moving one element would move all those sharing its memory
                raise RuntimeError(
                    f"The {idx}th input has a dimension with stride 0. gradcheck only "
                    "supports inputs that are non-overlapping to be able to compute the "
                    "numerical gradients correctly. You should call .contiguous on the "
                    "input before passing it to gradcheck.")
            any_requires_grad = True
    if not any_requires_grad:
        raise ValueError("gradcheck expects at least one input tensor to require gradient, "
                         "but none of them have requires_grad=True.")


def _check_same_dtype_and_shape(a, b, eps, idx=None) -> None:
    on_index = f"on index {idx} " if idx is not None else ""
    if a.shape != b.shape:
        raise AssertionError(f"Expected `func` to return outputs with the same shape when "
                             f"inputs are perturbed {on_index}by {eps}, but got: shapes "
                             f"{a.shape} and {b.shape}.")
    if a.dtype != b.dtype:
        raise AssertionError(f"Expected `func` to return outputs with the same dtype when "
                             f"inputs are perturbed {on_index}by {eps}, but got: dtypes "
                             f"{a.dtype} and {b.dtype}.")


def _allclose(a: np.ndarray, n: np.ndarray, rtol: float, atol: float) -> bool:
    dt = np.promote_types(a.dtype, n.dtype)
    return bool(np.allclose(a.astype(dt), n.astype(dt), rtol=rtol, atol=atol))


def _notallclose_msg(analytical, numerical, output_idx: int, input_idx: int) -> str:
    return (f"Jacobian mismatch for output {output_idx:d} with respect to input "
            f"{input_idx:d},\nnumerical:{numerical}\nanalytical:{analytical}\n")


# ---- numerical Jacobians (central differences) ----------------------------------------

def _eval(func: Callable, inputs: tuple) -> tuple:
    return tuple(o.clone() for o in _as_tuple(func(*inputs)))


def _central_difference(func, inputs, set_minus, set_plus, restore, eps,
                        norm, idx=None) -> list[np.ndarray]:
    """(f(x + v) - f(x - v)) / (2 * norm) for each output, flattened. The setters
    write the input's ``.data`` (its memory, hidden from autograd, as PyTorch's), so
    ``func`` sees the very tensors it was given; ``restore`` puts x back."""
    set_minus()
    outa = _eval(func, inputs)
    set_plus()
    outb = _eval(func, inputs)
    restore()
    cols = []
    for a, b in zip(outa, outb):
        _check_same_dtype_and_shape(a, b, eps, idx)
        cols.append(((_np(b) - _np(a)) / (2 * norm)).reshape(-1))
    return cols


def _numerical_jacobian(func, inputs: tuple, outputs: tuple, eps: float,
                        input_idx: int) -> list[np.ndarray]:
    """One (input.numel(), output.numel()) Jacobian per output of ``func``, for the
    input at ``input_idx``: column ``k`` of row ``d`` is d out[k] / d in[d]."""
    inp = inputs[input_idx]
    entry = inp.data
    jac = [np.zeros((inp.numel(), o.numel()),
                    dtype=_np(o).dtype if _np(o).dtype.kind in "fc" else np.float64)
           for o in outputs]
    for d_idx, idx in enumerate(product(*[range(m) for m in inp.shape])):
        orig = entry[idx].clone()

        def set_to(v, idx=idx):
            entry[idx] = v
        cols = _central_difference(func, inputs, lambda: set_to(orig - eps),
                                   lambda: set_to(orig + eps), lambda: set_to(orig),
                                   eps, eps, idx)
        for j, col in zip(jac, cols):
            j[d_idx] = col
    return jac


def _numerical_jvp(func, inputs: tuple, input_idx: int, u: np.ndarray,
                   eps: float) -> list[np.ndarray]:
    """J u for each output (fast mode): the input moved along ``eps * u`` at once."""
    inp = inputs[input_idx]
    entry = inp.data
    orig = entry.clone()
    delta = _as_ember((u * eps).reshape(tuple(inp.shape))).to(dtype=inp.dtype,
                                                               device=inp.device)
    return _central_difference(func, inputs, lambda: entry.copy_(orig - delta),
                               lambda: entry.copy_(orig + delta),
                               lambda: entry.copy_(orig), eps, eps)


# ---- analytical Jacobians (reverse mode) ----------------------------------------------

def _vjps(output, diff_inputs: list, grad_output) -> list:
    return list(autograd.grad(output, diff_inputs, grad_output, retain_graph=True,
                              allow_unused=True))


def _stack_rows(rows: list[list], diff_inputs: list, numel_out: int,
                check_grad_dtypes: bool) -> list[np.ndarray]:
    """rows[k][i]: the vJ for cotangent k and input i -> one (numel_in, numel_out)
    matrix per input (zeros where autograd gave None), after checking sizes/dtypes."""
    jacs = [np.zeros((inp.numel(), numel_out), dtype=_np(inp).dtype) for inp in diff_inputs]
    for k, row in enumerate(rows):
        for i, (g, inp) in enumerate(zip(row, diff_inputs)):
            if g is None:
                continue
            if g.shape != inp.shape:
                raise GradcheckError("Analytical gradient has incorrect size")
            if g.dtype != inp.dtype and check_grad_dtypes:
                raise GradcheckError("Gradient has dtype mismatch")
            jacs[i][:, k] = _np(g).reshape(-1)
    return jacs


def _analytical(output, diff_inputs: list, cotangents: list, nondet_tol: float,
                check_grad_dtypes: bool) -> list[np.ndarray]:
    """Each cotangent's vJ, computed twice: backward must give the same values again
    (within ``nondet_tol``)."""
    runs = []
    for _ in range(2):
        rows = [[None if g is None else g.clone() for g in _vjps(output, diff_inputs, c)]
                for c in cotangents]
        runs.append(_stack_rows(rows, diff_inputs, len(cotangents), check_grad_dtypes))
    for j1, j2 in zip(*runs):
        if j1.size and np.abs(j1 - j2).max() > nondet_tol:
            raise GradcheckError(
                "Backward is not reentrant, i.e., running backward with same input and "
                "grad_output multiple times gives different values, although analytical "
                "gradient matches numerical gradient."
                f"The tolerance for nondeterminism was {nondet_tol}." + FAILED_NONDET_MSG)
    return runs[0]


def _one_hot_cotangents(output) -> list:
    from ember.tensor import zeros_like
    out = []
    for k in range(output.numel()):
        c = zeros_like(output)
        c.view(-1)[k] = 1.0
        out.append(c)
    return out


def _analytical_jacobian(output, diff_inputs, nondet_tol, check_grad_dtypes):
    return _analytical(output, diff_inputs, _one_hot_cotangents(output), nondet_tol,
                       check_grad_dtypes)


# ---- the checks ----------------------------------------------------------------------

def _slow_gradcheck(func, func_out: tuple, inputs: tuple, outputs: tuple, eps, rtol, atol,
                    check_grad_dtypes, nondet_tol) -> bool:
    input_idx, diff_inputs = _diff_inputs(inputs)
    numerical = [_numerical_jacobian(func, inputs, func_out, eps, i) for i in input_idx]
    if not outputs:
        # nothing differentiable comes out: the function must not depend on the inputs
        for per_input in numerical:
            for jac in per_input:
                if np.count_nonzero(jac) > 0:
                    raise GradcheckError("Numerical gradient for function expected to be zero")
        return True
    keep = [k for k, o in enumerate(func_out) if o.requires_grad]
    for i, o in enumerate(outputs):
        analytical = _analytical_jacobian(o, diff_inputs, nondet_tol, check_grad_dtypes)
        for j, a in enumerate(analytical):
            n = numerical[j][keep[i]]
            if not _allclose(a, n, rtol, atol):
                raise GradcheckError(_notallclose_msg(_as_ember(a), _as_ember(n), i, j))
    return True


def _random_unit(rng: np.random.Generator, n: int, dtype) -> np.ndarray:
    v = rng.random(n)
    norm = np.linalg.norm(v)
    return (v / norm if norm > 0 else v).astype(dtype)


def _fast_gradcheck(func, func_out: tuple, inputs: tuple, outputs: tuple, eps, rtol, atol,
                    check_grad_dtypes, nondet_tol) -> bool:
    """PyTorch's fast mode: compare v^T J u (random unit u per input, v per output)
    computed both ways, instead of whole Jacobians; the tolerance ``atol`` is scaled by
    sum(u) * sum(v) (what v^T (atol everywhere) u is)."""
    input_idx, diff_inputs = _diff_inputs(inputs)
    rng = np.random.default_rng(0)   # its own generator: ember's RNG state is untouched
    all_u = [_random_unit(rng, inp.numel(), _np(inp).dtype) for inp in diff_inputs]
    all_v = [_random_unit(rng, o.numel(), _np(o).dtype) for o in outputs]
    all_ju = [_numerical_jvp(func, inputs, i, u, eps) for i, u in zip(input_idx, all_u)]
    if not outputs:
        for jus in all_ju:
            for ju in jus:
                if ju.size and np.abs(ju).max() > nondet_tol:
                    raise GradcheckError("Numerical gradient for function expected to be zero")
        return True
    keep = [k for k, o in enumerate(func_out) if o.requires_grad]
    for j, (o, v) in enumerate(zip(outputs, all_v)):
        cot = _as_ember(v.reshape(tuple(o.shape))).to(dtype=o.dtype, device=o.device)
        vj = _analytical(o, diff_inputs, [cot], nondet_tol, check_grad_dtypes)
        for i, u in enumerate(all_u):
            a = np.asarray(vj[i][:, 0] @ u)
            n = np.asarray(v @ all_ju[i][keep[j]])
            tol = atol * float(u.sum()) * float(v.sum())
            if not _allclose(a, n, rtol, tol):
                raise GradcheckError(
                    _notallclose_msg(_as_ember(a), _as_ember(n), j, i)
                    + _slow_mode_error(func, inputs, o, func_out, keep[j], i, input_idx,
                                       diff_inputs, rtol, atol, eps))
    return True


def _slow_mode_error(func, inputs, output, func_out, out_pos, i, input_idx, diff_inputs,
                     rtol, atol, eps) -> str:
    """Fast mode failed: the whole Jacobians of that pair, for the message."""
    n = _numerical_jacobian(func, inputs, func_out, eps, input_idx[i])[out_pos]
    a = _analytical_jacobian(output, diff_inputs, float("inf"), False)[i]
    msg = ("\nThe above quantities relating the numerical and analytical jacobians are "
           "computed \nin fast mode. Below, we recompute numerical and analytical "
           "jacobians in slow mode:\n\n"
           f"Numerical:\n {_as_ember(n)}\nAnalytical:\n{_as_ember(a)}\n\n"
           f"The max per-element difference (slow mode) is: "
           f"{np.abs(n - a).max() if n.size else 0.0}.\n")
    if _allclose(a, n, rtol, atol):
        msg += FAST_FAIL_SLOW_OK_MSG
    return msg


def _test_backward_mul_by_grad_output(outputs: tuple, inputs: tuple) -> bool:
    """Zero cotangents must give zero gradients of the inputs' dtype, device and size."""
    from ember.tensor import zeros_like
    _, diff_inputs = _diff_inputs(inputs)
    grads = autograd.grad(outputs, diff_inputs, [zeros_like(o) for o in outputs],
                          allow_unused=True)
    for gi, di in zip(grads, diff_inputs):
        if gi is None:
            continue
        if not bool((gi == 0).all()):
            raise GradcheckError("backward not multiplied by grad_output")
        if gi.dtype != di.dtype:
            raise GradcheckError("grad is incorrect type")
        if gi.device != di.device:
            raise GradcheckError("grad is incorrect device")
        if gi.shape != di.shape:
            raise GradcheckError("grad is incorrect size")
    return True


def _test_undefined_backward_mode(func, inputs: tuple) -> bool:
    """PyTorch sends undefined output gradients; ember has no such thing (a missing
    gradient is materialized as zeros), so this checks that backward, run again on a
    fresh graph with all-zero output gradients, succeeds and gives zeros."""
    from ember.tensor import zeros_like
    _, diff_inputs = _diff_inputs(inputs)
    outputs = _differentiable_outputs(func(*inputs))
    if not outputs:
        return True
    try:
        grads = autograd.grad(outputs, diff_inputs, [zeros_like(o) for o in outputs],
                              allow_unused=True)
    except RuntimeError as e:
        raise GradcheckError("Expected backward function to handle undefined output "
                             "grads (ember passes them as zeros).") from e
    for gi in grads:
        if gi is not None and not bool((gi == 0).all()):
            raise GradcheckError("Expected all input grads to be undefined or zero when all "
                                 "output grads are undefined or zero.")
    return True


def gradcheck(func: Callable[..., _TensorOrTensors], inputs: _TensorOrTensors, *,
              eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, nondet_tol: float = 0.0,
              check_undefined_grad: bool = True, check_grad_dtypes: bool = False,
              check_batched_grad: bool = False, check_batched_forward_grad: bool = False,
              check_forward_ad: bool = False, check_backward_ad: bool = True,
              fast_mode: bool = False, masked: bool | None = None) -> bool:
    """Check ``func``'s gradients at ``inputs`` against central differences, as
    ``torch.autograd.gradcheck``: True, or a ``GradcheckError`` naming the output and
    input whose Jacobians differ (False instead with ``raise_exception=False``).

    Numerical and analytical entries must satisfy ``|a - n| <= atol + rtol * |n|``.
    ``fast_mode`` compares random projections ``v^T J u`` instead of whole Jacobians.
    Real-valued dense tensors only; ember has no forward-mode AD and no batched
    gradients, so ``check_forward_ad``, ``check_batched_grad`` and
    ``check_batched_forward_grad`` raise NotImplementedError when set.

    >>> x = ember.randn(2, 3, dtype=ember.float64, requires_grad=True)
    >>> w = ember.randn(3, 2, dtype=ember.float64, requires_grad=True)
    >>> gradcheck(ember.matmul, (x, w))
    True
    """
    if not (check_forward_ad or check_backward_ad):
        raise AssertionError("Expected at least one of check_forward_ad or "
                             "check_backward_ad to be True")
    if check_batched_grad and not check_backward_ad:
        raise AssertionError("Setting check_batched_grad=True requires check_backward_ad "
                             "to be True")
    if check_batched_forward_grad and not check_forward_ad:
        raise AssertionError("Setting check_batched_forward_grad=True requires "
                             "check_forward_ad to be True")
    if check_forward_ad or check_batched_forward_grad:
        raise NotImplementedError("gradcheck(check_forward_ad=True): ember has no "
                                  "forward-mode AD")
    if check_batched_grad:
        raise NotImplementedError("gradcheck(check_batched_grad=True): ember's autograd.grad "
                                  "has no batched (vmapped) gradients")
    try:
        return _gradcheck_helper(func, inputs, eps, atol, rtol, nondet_tol,
                                 check_undefined_grad, check_grad_dtypes, fast_mode)
    except GradcheckError:
        if raise_exception:
            raise
        return False


def _gradcheck_helper(func, inputs, eps, atol, rtol, nondet_tol, check_undefined_grad,
                      check_grad_dtypes, fast_mode) -> bool:
    tupled_inputs = _as_tuple(inputs)
    _check_inputs(tupled_inputs)
    func_out = _as_tuple(func(*tupled_inputs))
    outputs = _differentiable_outputs(func_out)
    if any(o.is_complex() for o in func_out):
        raise NotImplementedError("ember's gradcheck does not support complex outputs")
    check = _fast_gradcheck if fast_mode else _slow_gradcheck
    check(func, func_out, tupled_inputs, outputs, eps, rtol, atol, check_grad_dtypes,
          nondet_tol)
    if outputs:
        _test_backward_mul_by_grad_output(outputs, tupled_inputs)
        if check_undefined_grad:
            _test_undefined_backward_mode(func, tupled_inputs)
    return True


def gradgradcheck(func: Callable[..., _TensorOrTensors], inputs: _TensorOrTensors,
                  grad_outputs: _TensorOrTensors | Sequence[Any] | None = None, *,
                  eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                  gen_non_contig_grad_outputs: bool = False, raise_exception: bool = True,
                  nondet_tol: float = 0.0, check_undefined_grad: bool = True,
                  check_grad_dtypes: bool = False, check_batched_grad: bool = False,
                  check_fwd_over_rev: bool = False, check_rev_over_rev: bool = True,
                  fast_mode: bool = False, masked: bool = False) -> bool:
    """Check second derivatives, as ``torch.autograd.gradgradcheck``: ``gradcheck`` of
    the map (inputs, grad_outputs) -> gradients of ``func`` (computed with
    ``create_graph=True``). Without ``grad_outputs``, random ones in [-1, 1) are used.

    >>> x = ember.randn(3, dtype=ember.float64, requires_grad=True)
    >>> gradgradcheck(lambda x: (x.sin() * x).exp(), (x,))
    True
    """
    from ember.tensor import tensor

    if not (check_fwd_over_rev or check_rev_over_rev):
        raise AssertionError("Expected at least one of check_fwd_over_rev or "
                             "check_rev_over_rev to be True")
    if check_undefined_grad and not check_rev_over_rev:
        raise AssertionError("Setting check_undefined_grad=True requires check_rev_over_rev "
                             "to be True")
    if check_batched_grad and not check_rev_over_rev:
        raise AssertionError("Setting check_batched_grad=True requires check_rev_over_rev "
                             "to be True")
    tupled_inputs = _as_tuple(inputs)
    if grad_outputs is None:
        rng = np.random.default_rng(0)   # its own generator, as above
        made = []
        for o in _differentiable_outputs(func(*tupled_inputs)):
            dt = o.dtype if o.is_floating_point() else dtypes.float64
            shape = tuple(o.shape)
            if gen_non_contig_grad_outputs and len(shape) > 0:
                # every other element of a wider tensor: a non-contiguous view
                wide = rng.uniform(-1, 1, shape[:-1] + (2 * shape[-1],))
                g = tensor(wide, dtype=dt, device=o.device)[..., ::2]
            else:
                g = tensor(rng.uniform(-1, 1, shape), dtype=dt, device=o.device)
            made.append(g.requires_grad_(True))
        tupled_grad_outputs = tuple(made)
    else:
        tupled_grad_outputs = _as_tuple(grad_outputs)
    num_outputs = len(tupled_grad_outputs)
    Tensor = _tensor_cls()
    # gradcheck's perturbations go through .data: the requires_grad flags stay, but
    # are recorded here so new_func can restore them as PyTorch's does
    diff_input_args = {i for i, x in enumerate(tupled_inputs)
                       if isinstance(x, Tensor) and x.requires_grad}
    diff_grad_outputs = {i for i, x in enumerate(tupled_grad_outputs) if x.requires_grad}

    def new_func(*args):
        input_args = tuple(x.requires_grad_() if i in diff_input_args else x
                           for i, x in enumerate(args[:-num_outputs]))
        outputs = _differentiable_outputs(func(*input_args))
        grad_outs = tuple(x.requires_grad_() if i in diff_grad_outputs else x
                          for i, x in enumerate(args[-num_outputs:]))
        diff_args = tuple(x for i, x in enumerate(input_args) if i in diff_input_args)
        grads = autograd.grad(outputs, diff_args, grad_outs, create_graph=True,
                              allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(new_func, tupled_inputs + tupled_grad_outputs, eps=eps, atol=atol,
                     rtol=rtol, raise_exception=raise_exception, nondet_tol=nondet_tol,
                     check_undefined_grad=check_undefined_grad,
                     check_grad_dtypes=check_grad_dtypes,
                     check_batched_grad=check_batched_grad, fast_mode=fast_mode,
                     check_forward_ad=check_fwd_over_rev,
                     check_backward_ad=check_rev_over_rev, masked=masked)
