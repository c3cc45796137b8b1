"""Edge values of dtypes, eager against NumPy formulas (and torch where installed), and
compiled against eager: each case the dtype adversary of session 20 found. Compiled
functions are called first on ordinary data, then on the edge data: the first call's
check against eager only sees the first call's values."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import ember
from conftest import to_np

NEG0 = np.float32(-0.0)


def _compiled_on_edges(fn, ordinary, edge):
    """fn compiled, warmed up on ``ordinary`` inputs, then run on ``edge`` ones."""
    cf = ember.compile(fn)
    for _ in range(3):
        cf(*ordinary)
    for _ in range(2):
        out = cf(*edge)
    assert not cf.stats()["fallbacks"], cf.stats()["fallbacks"]
    return out


def _same_bits(a, b):
    a, b = to_np(a), to_np(b)
    np.testing.assert_array_equal(a, b)
    if a.dtype.kind == "f":
        keep = ~np.isnan(a)
        np.testing.assert_array_equal(np.signbit(a[keep]), np.signbit(b[keep]))


@pytest.mark.parametrize("dt", ["bfloat16", "float16"])
def test_half_sums_accumulate_in_float32(dt):
    """bfloat16 sums added up in bfloat16: 1000 halves summed to 128 (torch: 500)."""
    half = ml_dtypes.bfloat16 if dt == "bfloat16" else np.float16
    x = ember.full((1000,), 0.5).to(getattr(ember, dt))
    assert x.sum().item() == 500 and x.mean().item() == 0.5
    assert x.cumsum(0)[-1].item() == 500
    v = ember.ones(5000).to(getattr(ember, dt))
    assert v.dot(v).item() == float(half(5000))
    r = np.random.default_rng(0).standard_normal((64, 300)).astype(np.float32)
    h = r.astype(half)
    want = h.astype(np.float32).sum(1).astype(half).astype(np.float32)
    got = ember.tensor(r).to(getattr(ember, dt)).sum(1)
    np.testing.assert_array_equal(to_np(got.float()), want)
    out = _compiled_on_edges(lambda a: a.sum(1), [ember.tensor(r[:, :10]).to(got.dtype)],
                             [ember.tensor(r).to(got.dtype)])
    np.testing.assert_allclose(to_np(out.float()), want, rtol=float(ember.finfo(got.dtype).eps))


@pytest.mark.parametrize("dt,values,low,at", [
    ("uint8", [5, 0, 3], 0, 1), ("int8", [5, -128, 3], -128, 1),
    ("int64", [5, -2 ** 63, 3], -2 ** 63, 1), ("int32", [7, 2 ** 31 - 1, -3], -3, 2)])
def test_min_and_argmin_of_integers_do_not_negate(dt, values, low, at):
    """amin, min and argmin were -amax(-x): -x wraps uint8 and INT_MIN (uint8 [5, 0, 3]
    gave 3)."""
    x = ember.tensor(values, dtype=getattr(ember, dt))

    def fn(a):
        return a.amin(), a.min(), a.argmin(), a.reshape(1, 3).min(1)[0], a.reshape(1, 3).min(1)[1]

    for res in (fn(x), _compiled_on_edges(fn, [ember.tensor([1, 2, 3], dtype=x.dtype)], [x])):
        assert [int(r.reshape(-1)[0].item()) for r in res] == [low, low, at, low, at]


def test_division_by_a_row_value_is_a_division_in_compiled_code():
    """x / x.amax(-1, keepdim=True) was x * (1 / amax) in compiled kernels: 1 ulp off, so
    == 1 failed at the row maximum and (.. * 255).long() gave 254."""
    def fn(x):
        y = x / x.amax(-1, keepdim=True)
        return y, y == 1, (y * 255).long(), x / 3.0

    x = ember.tensor(np.arange(1, 200, dtype=np.float32).reshape(1, -1))
    out = _compiled_on_edges(fn, [ember.rand(4, 199)], [x])
    for a, b in zip(out, fn(x)):
        _same_bits(a, b)
    assert out[1][0, -1].item() and out[2][0, -1].item() == 255


def test_adding_zero_is_not_folded_away_for_floats():
    """x + 0 was simplified to x: -0.0 + 0 is +0.0, so 1 / (x + 0) turned inf into -inf."""
    edge = [ember.tensor([NEG0, 2.0, NEG0])]
    for fn in (lambda x: 1 / (x + 0), lambda x: 1 / (0 + x), lambda x: 1 / x.add(0.0),
               lambda x: 1 / (x - (-0.0)), lambda x: 1 / (x - 0.0), lambda x: 1 / (x + -0.0)):
        _same_bits(_compiled_on_edges(fn, [ember.tensor([1.0, 2.0, 3.0])], edge), fn(*edge))
    xi = ember.tensor([3, -4])
    _same_bits(_compiled_on_edges(lambda x: x + 0, [ember.tensor([1, 2])], [xi]), xi)


@pytest.mark.parametrize("p", [0.5, -0.5, -1.0, -2.0, 2.0, 3.0])
def test_special_powers_as_torch_at_signed_zero_and_inf(p):
    """x ** 0.5 is sqrt in eager and torch (sqrt(-0.0) = -0.0, sqrt(-inf) = nan); the
    compiled kernel called pow (+0.0, inf). -0.5 is 1/sqrt, -1 is 1/x, -2 is 1/(x*x)."""
    x = np.array([-np.inf, NEG0, 0.0, 1e-30, 2.0, 3.7, np.inf, -2.5], dtype=np.float32)
    with np.errstate(all="ignore"):
        want = {0.5: np.sqrt(x), -0.5: 1 / np.sqrt(x), -1.0: 1 / x, -2.0: 1 / (x * x),
                2.0: x * x, 3.0: x * x * x}[p]
    _same_bits(ember.tensor(x) ** p, want)
    _same_bits(_compiled_on_edges(lambda a: a ** p, [ember.rand(8) + 1], [ember.tensor(x)]),
               want)
    torch = pytest.importorskip("torch")
    _same_bits(ember.tensor(x) ** p, (torch.tensor(x) ** p).numpy())


def test_sum_of_negative_zeros_is_positive_zero_in_compiled_code():
    """'nsz' on the accumulating adds let LLVM drop the +0.0 a sum starts from."""
    edge = [ember.tensor(np.full((3, 40), NEG0))]
    for fn in (lambda x: x.sum(1), lambda x: x.sum(0), lambda x: x.sum(), lambda x: 1 / x.sum(1)):
        _same_bits(_compiled_on_edges(fn, [ember.rand(3, 40)], edge), fn(*edge))
        assert not np.signbit(to_np(fn(*edge))).any()


def test_remainder_of_floats_keeps_fmods_zero_sign():
    """0 % -2.5 was -0.0 (NumPy gives a zero the divisor's sign); torch: +0.0."""
    a = np.array([0.0, 5.0, -5.0, 7.5, NEG0, 3.3, -3.3, np.inf], dtype=np.float32)
    for b in (-2.5, 2.5, 1.1, -np.inf):
        with np.errstate(all="ignore"):
            m = np.fmod(a, np.float32(b))
            want = np.where((m != 0) & ((b < 0) != (m < 0)), m + np.float32(b), m)
        _same_bits(ember.tensor(a) % b, want)
    torch = pytest.importorskip("torch")
    for b in (-2.5, 2.5):
        _same_bits(ember.tensor(a) % b, (torch.tensor(a) % b).numpy())


def test_shifts_as_torch():
    x = ember.tensor([3, -8, 1, -1], dtype=ember.int32)
    counts = ember.tensor([31, 32, 40, -1], dtype=ember.int32)
    assert (x << 2).tolist() == [12, -32, 4, -4] and (x >> 1).tolist() == [1, -4, 0, -1]
    assert (x << counts).tolist() == [-2 ** 31, 0, 0, 0]
    assert (x >> counts).tolist() == [0, -1, 0, -1]
    assert (ember.tensor([200, 3], dtype=ember.uint8) << 1).tolist() == [144, 6]
    assert ember.bitwise_left_shift(x, 2).tolist() == (2 ** 2 * x).tolist()
    assert ember.bitwise_right_shift(x, 1).dtype is ember.int32
    y = x.clone()
    y <<= 1
    assert y.tolist() == [6, -16, 2, -2]
    with pytest.raises(NotImplementedError, match="not implemented for 'Float'"):
        ember.tensor([1.5]) << 1


def test_integer_sums_and_products_keep_an_asked_dtype():
    """sum(dtype=int32) came back int64, unwrapped; torch keeps int32 and wraps."""
    x = ember.tensor([2 ** 31 - 1, 5], dtype=ember.int32)
    s = x.sum(dtype=ember.int32)
    assert s.dtype is ember.int32 and s.item() == -2 ** 31 + 4
    assert x.sum().dtype is ember.int64 and x.sum().item() == 2 ** 31 + 4
    p = ember.tensor([[100000, 100000], [3, 4]], dtype=ember.int32)
    assert p.prod(dtype=ember.int32).dtype is ember.int32
    assert p.prod(1, dtype=ember.int16).tolist() == [-7168, 12]


def test_reductions_over_non_empty_dims_of_empty_tensors_as_torch():
    """A batch of 0 rows: amax(1), max(1), softmax, log_softmax and cross_entropy raised
    'Expected reduction dim to be specified'; torch returns empty results (nan loss)."""
    F = ember.nn.functional
    x = ember.ones(0, 7)
    assert x.amax(1).shape == (0,) and x.max(1).values.shape == (0,)
    assert x.min(1).values.shape == (0,) and x.softmax(1).shape == (0, 7)
    assert F.log_softmax(x, 1).shape == (0, 7) and ember.ones(4, 0).softmax(1).shape == (4, 0)
    assert np.isnan(F.cross_entropy(x, ember.zeros(0, dtype=ember.int64)).item())
    with pytest.raises(ember.OpError, match="reduction dim 0 to have non-zero size"):
        x.amax(0)
    with pytest.raises(ember.OpError, match="reduction dim to be specified"):
        x.amax()


def test_half_means_and_norms_round_once_as_torch():
    """mean/var/std/norm of float16 rounded the float32 sum to float16 first: 70000 ones
    had an inf mean; round(decimals=2) of 1234.5678 overflowed to inf."""
    x = ember.ones(70000).half()
    assert [x.mean().item(), x.var().item(), x.std().item()] == [1.0, 0.0, 0.0]
    big = ember.tensor([60000.0, 1, 2, 3]).half()
    assert big.norm().item() == 60000.0 and big.std().item() == 30000.0
    assert ember.tensor([1234.5678]).half().round(decimals=2).item() == 1235.0
    torch = pytest.importorskip("torch")
    v = [0.33, 0.79, 0.3]
    assert ember.tensor(v).bfloat16().mean().item() == torch.tensor(v).bfloat16().mean().item()


@pytest.mark.parametrize("dt,sqrt_rules", [("float16", False), ("bfloat16", True),
                                           ("float32", True)])
def test_special_powers_by_dtype_as_torch_cpu(dt, sqrt_rules):
    """torch's CPU float16 takes pow for x ** 0.5 and x ** -0.5 ((-inf) ** 0.5 = inf);
    bfloat16 and float32 take sqrt and 1/sqrt (nan)."""
    x = ember.tensor([NEG0, -np.inf]).to(getattr(ember, dt))
    half, neg = (x ** 0.5).float().numpy(), (x ** -0.5).float().numpy()
    if sqrt_rules:
        assert np.signbit(half[0]) and np.isnan(half[1])
        assert neg[0] == -np.inf and np.isnan(neg[1])
    else:
        assert not np.signbit(half[0]) and half[1] == np.inf
        assert neg[0] == np.inf and neg[1] == 0


def test_a_run_time_exponent_takes_the_special_forms_in_compiled_code():
    """x ** s with s a symbolic Python number: the size-generic kernel called pow, where
    eager takes 1/sqrt at s = -0.5 ((-0.0) ** -0.5: inf for -inf)."""
    f = ember.compile(lambda x, s: x ** s)
    ordinary = ember.rand(8) + 1
    for s in (1.5, 0.25, 3.5, 2.5, 4.5, 1.25):
        f(ordinary, s)
    edge = ember.tensor([NEG0, -np.inf, 4.0, 0.0])
    for s in (-0.5, 0.5, -1.0, -2.0, 2.0, 3.0):
        _same_bits(f(edge, s), edge ** s)


def test_integers_to_negative_integer_powers_raise_as_torch():
    """uint8 ** -2 cast the exponent to uint8 first (254) and returned garbage."""
    for dt in ("uint8", "int32", "int64"):
        with pytest.raises(ember.OpError, match="negative integer powers"):
            ember.tensor([3, 5], dtype=getattr(ember, dt)) ** -2


def test_sign_of_a_bfloat16_nan_is_zero_as_torch():
    """bfloat16's NumPy kind is 'V', so sign took NumPy's (NaN stays NaN, -0.0 stays);
    torch's is (0 < x) - (x < 0). Dtype fuzzer seed 32414."""
    x = ember.tensor([np.nan, NEG0, 2.0, -5.0]).bfloat16()
    _same_bits(x.sign().float(), np.array([0.0, 0.0, 1.0, -1.0], np.float32))


def test_bfloat16_sorts_and_running_maxima_put_nan_as_torch():
    """ml_dtypes' sort left bfloat16 NaNs where they were: [1, nan, 9, nan, 3].sort() came
    back unchanged, topk(2) gave 1 and nan, cummax never reached nan (torch: NaN sorts
    last ascending, first descending, and a running max is NaN once it met one)."""
    x = ember.tensor([1.0, np.nan, 9.0, np.nan, 3.0]).bfloat16()

    def vals(t):
        return t.float().numpy()

    nan = np.nan
    np.testing.assert_array_equal(vals(x.sort().values), [1, 3, 9, nan, nan])
    np.testing.assert_array_equal(vals(x.sort(descending=True).values), [nan, nan, 9, 3, 1])
    np.testing.assert_array_equal(vals(x.topk(2).values), [nan, nan])
    np.testing.assert_array_equal(vals(x.cummax(0).values), [1, nan, nan, nan, nan])
    np.testing.assert_array_equal(vals(x.cummin(0).values), [1, nan, nan, nan, nan])
