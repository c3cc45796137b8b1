"""``ember.einsum``: Einstein summation, composed from permute, diagonal, sum and matmul.

Two operands contract as one batched matmul (batch letters, then the letters only one
side keeps, then the summed ones); more operands contract left to right. So einsum
traces, runs on CUDA and has its gradient like any composition.
"""
from __future__ import annotations

import math
import string

from ember.errors import OpError
from ember.tensor import Tensor

__all__ = ["einsum"]


def einsum(equation: str, *operands) -> Tensor:
    """Sum of products of ``operands`` over the letters of ``equation`` missing from its
    output (``"ij,jk->ik"`` is a matrix product; without ``->`` the output is every letter
    seen once, sorted). ``...`` stands for broadcast dims.

    >>> a, b = ember.ones(2, 3), ember.ones(3, 4)
    >>> ember.einsum("ij,jk->ik", a, b).shape
    ember.Size([2, 4])
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    for i, t in enumerate(operands):
        if not isinstance(t, Tensor):
            raise TypeError(f"einsum(): argument 'operands' must be tuple of Tensors, but found "
                            f"element of type {type(t).__name__} at pos {i}")
    inputs, output = _parse(equation.replace(" ", ""), operands)
    ops = [_prepare(t, letters) for t, letters in zip(operands, inputs)]
    # Letters summed as early as possible: a letter that no later operand and not the
    # output names is summed in the contraction that last sees it.
    x, xl = ops[0]
    for k in range(1, len(ops)):
        y, yl = ops[k]
        later = set(output).union(*[set(l) for _, l in ops[k + 1:]])
        x, xl = _contract(x, xl, y, yl, later)
    # One operand, or letters left after the last contraction.
    gone = [c for c in xl if c not in output]
    if gone:
        x = x.sum(tuple(xl.index(c) for c in gone))
        xl = [c for c in xl if c in output]
    if xl != list(output):
        x = x.permute(tuple(xl.index(c) for c in output))
    return x


def _parse(eq: str, operands) -> tuple[list[list[str]], list[str]]:
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise OpError("einsum", f"einsum(): more operands were provided than specified in the "
                      f"equation" if len(operands) > len(terms) else "einsum(): fewer operands "
                      "were provided than specified in the equation", operands)
    free = [c for c in string.ascii_letters if c not in eq]
    ell_nd = 0
    for term, t in zip(terms, operands):
        if "..." in term:
            ell_nd = max(ell_nd, t.ndim - (len(term) - 3))
    ell = free[:ell_nd]   # letters standing for the broadcast dims of "..."
    inputs = []
    for term, t in zip(terms, operands):
        if "..." in term:
            n = t.ndim - (len(term) - 3)
            letters = list(term.replace("...", "\0"))
            i = letters.index("\0")
            letters[i:i + 1] = ell[ell_nd - n:] if n else []
        else:
            letters = list(term)
        if any(c not in string.ascii_letters for c in letters):
            raise OpError("einsum", "einsum(): invalid subscript given in the equation string, "
                          "subscripts must be in [a-zA-Z]", operands)
        if len(letters) != t.ndim:
            raise OpError("einsum", f"einsum(): the number of subscripts in the equation "
                          f"({len(letters)}) does not match the number of dimensions "
                          f"({t.ndim}) for operand {len(inputs)}"
                          f"{'' if '...' in term else ' and no ellipsis was given'}", operands)
        inputs.append(letters)
    if arrow:
        out = list(rhs.replace("...", "".join(ell)))
        for c in out:
            if c not in string.ascii_letters or out.count(c) > 1:
                raise OpError("einsum", f"einsum(): output subscript {c} appears more than once "
                              "in the output" if out.count(c) > 1 else "einsum(): invalid "
                              "subscript given in the equation string", operands)
            if not any(c in l for l in inputs):
                raise OpError("einsum", f"einsum(): output subscript {c} does not appear in the "
                              "equation for any input operand", operands)
    else:
        counts: dict[str, int] = {}
        for l in inputs:
            for c in l:
                counts[c] = counts.get(c, 0) + 1
        out = ell + sorted(c for c, n in counts.items() if n == 1 and c not in ell)
    sizes: dict[str, int] = {}
    for l, t in zip(inputs, operands):
        for c, s in zip(l, t.shape):
            if s != 1 and sizes.get(c, 1) not in (1, s):
                raise OpError("einsum", f"einsum(): operands do not broadcast with remapped "
                              f"shapes (original->remapped): subscript {c} has size {s} and "
                              f"{sizes[c]}", operands)
            if s != 1 or c not in sizes:
                sizes[c] = s
    return inputs, out


def _prepare(t: Tensor, letters: list[str]) -> tuple[Tensor, list[str]]:
    """Repeated letters of one operand (``"ii->i"``) become its diagonal."""
    letters = list(letters)
    while len(set(letters)) != len(letters):
        c = next(c for c in letters if letters.count(c) > 1)
        i = letters.index(c)
        j = letters.index(c, i + 1)
        t = t.diagonal(0, i, j)
        letters = [l for k, l in enumerate(letters) if k not in (i, j)] + [c]
    return t, letters


def _contract(x: Tensor, xl: list[str], y: Tensor, yl: list[str], keep: set[str]):
    """x and y contracted over their shared letters not in ``keep``, by one matmul."""
    # Letters only one side has and nobody needs later: summed away first.
    x, xl = _sum_away(x, xl, set(yl) | keep)
    y, yl = _sum_away(y, yl, set(xl) | keep)
    batch = [c for c in xl if c in yl and c in keep]
    summed = [c for c in xl if c in yl and c not in keep]
    left = [c for c in xl if c not in yl]
    right = [c for c in yl if c not in xl]
    size = {}
    for t, l in ((x, xl), (y, yl)):
        for c, s in zip(l, t.shape):
            size[c] = max(size.get(c, 1), s)
    # Size-1 dims broadcast: expand them to the other side's size (batch and summed).
    x = _expand_to(x, xl, size, batch + summed)
    y = _expand_to(y, yl, size, batch + summed)
    xs = x.permute(tuple(xl.index(c) for c in batch + left + summed))
    ys = y.permute(tuple(yl.index(c) for c in batch + summed + right))
    nb = [size[c] for c in batch]
    nl, ns, nr = (math.prod(size[c] for c in g) for g in (left, summed, right))
    out = xs.reshape(tuple(nb) + (nl, ns)) @ ys.reshape(tuple(nb) + (ns, nr))
    return out.reshape(tuple(nb) + tuple(size[c] for c in left + right)), batch + left + right


def _sum_away(t: Tensor, letters: list[str], needed: set[str]):
    gone = [i for i, c in enumerate(letters) if c not in needed]
    if not gone:
        return t, letters
    return t.sum(tuple(gone)), [c for c in letters if c in needed]


def _expand_to(t: Tensor, letters: list[str], size: dict, which: list[str]) -> Tensor:
    shape = tuple(size[c] if c in which else s for c, s in zip(letters, t.shape))
    return t.expand(shape) if shape != tuple(t.shape) else t
