"""Python numbers that vary between calls become run-time inputs (tracer/symbolic.py).

Each test compares the compiled function with the same function run eagerly, call by
call, and counts entries and compiles; a seeded random-program fuzzer at the end mixes
Python arithmetic on the number with tensor ops (``python tests/test_symbolic_numbers.py
SEED N`` for a large run).
"""
from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest

import ember
from ember.tracer import symbolic


def _calls(fn, calls, compiled=None, **options):
    """Run ``fn`` compiled and eagerly on each argument tuple of ``calls``; the results
    must agree (values and dtypes). Returns the compiled function."""
    c = compiled or ember.compile(fn, **options)
    for args in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = c(*args)
        want = fn(*args)
        _same(got, want, args)
    return c


def _same(got, want, where, loose: float = 0.0) -> None:
    """Equal dtypes and values: to 1e-6 relative, or (``loose``, the largest factor a
    program scales by) within float tolerance of fused sums, which add in another order
    than eager (1e-5, and 1e-6 of the largest value times that factor absolute)."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), where
        for g, w in zip(got, want):
            _same(g, w, where, loose)
        return
    if isinstance(want, ember.Tensor):
        assert got.dtype == want.dtype, (where, got.dtype, want.dtype)
        w = want.detach().numpy()
        big = np.max(np.abs(w), initial=0.0, where=np.isfinite(w))
        np.testing.assert_allclose(got.detach().numpy(), w, rtol=1e-5 if loose else 1e-6,
                                   atol=1e-6 * (1 + big) * loose if loose else 0,
                                   equal_nan=True,
                                   err_msg=str(where))
    else:
        assert type(got) is type(want) and got == want, (where, got, want)


def _ones():
    return ember.ones(3)


def test_an_int_argument_becomes_one_entry_for_every_value():
    c = _calls(lambda x, t: x * t + 1, [(_ones(), t) for t in range(12)])
    s = c.stats()
    # t=0; t=1 traced with the plain number and watched; t=2 on: one symbolic entry
    assert s["cache_entries"] == 1 and s["compiles"] == 3
    assert s["cache_hits"] == 8   # (t=3 traces once more: the check of a second call)
    assert any("read as run-time values" in n for n in s["notes"])


def test_dynamic_false_keeps_one_entry_per_value():
    c = _calls(lambda x, t: x * t + 1, [(_ones(), t) for t in range(5)], dynamic=False)
    assert c.stats()["cache_entries"] == 5


def test_python_arithmetic_on_the_number_is_exact():
    def f(x, t, s=0.5):
        u = t * 2 + 1
        return x * u - s * t / 4 + (t // 3) * x + (t % 5) - abs(-t) + (-s) * 3.0

    calls = [(ember.randn(4), t, s) for t in (3, 7, 11, -4, 100, 2 ** 20, -2 ** 30)
             for s in (0.5, 0.25, 1e10, -3.75)]
    c = _calls(f, calls)
    assert c.stats()["cache_entries"] == 1


def test_a_float_argument_in_float64_is_not_rounded_through_float32():
    calls = [(ember.ones(2, dtype=ember.float64), v) for v in (0.1, 1 / 3, 2.0 ** -40, 1e300)]
    c = _calls(lambda x, t: x * t, calls)
    for x, v in calls:
        assert c(x, v).numpy()[0] == v


def test_integer_and_half_tensors_take_the_number_as_a_python_number():
    def f(i32, h, t):
        return i32 * t + 3, h * t, i32 // 2 + t

    calls = [(ember.arange(4, dtype=ember.int32), ember.ones(3, dtype=ember.float16), t)
             for t in (1, 5, 700, -7, 2 ** 20)]
    with np.errstate(over="ignore"):
        c = _calls(f, calls)
    assert c.stats()["cache_entries"] == 1


def test_a_training_step_with_a_varying_scale_and_timestep_equals_eager():
    ember.manual_seed(0)
    nets = [ember.nn.Linear(4, 2) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [ember.optim.SGD(n.parameters(), lr=0.1, momentum=0.9) for n in nets]

    def step(net, opt, x, y, scale, t):
        opt.zero_grad()
        loss = ((net(x) * scale + t / 1000 - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    c = ember.compile(step)
    for i in range(10):
        x, y = ember.randn(8, 4), ember.randn(8, 2)
        a = c(nets[0], opts[0], x, y, 0.5 + i / 10, 7 * i)
        b = step(nets[1], opts[1], x, y, 0.5 + i / 10, 7 * i)
        np.testing.assert_allclose(a.item(), b.item(), rtol=1e-6)
        np.testing.assert_allclose(nets[0].weight.detach().numpy(),
                                   nets[1].weight.detach().numpy(), rtol=1e-6, atol=1e-7)
    s = c.stats()
    assert s["cache_entries"] == 1 and s["compiles"] <= 4 and s["cache_hits"] >= 6


def test_the_gradient_scaled_by_the_number_is_right_at_every_value():
    lin = ember.nn.Linear(3, 3)
    c = ember.compile(lambda x, t: (lin(x) * t).sum())
    for t in (1.0, 2.0, 3.0, -4.5, 0.0):
        lin.zero_grad()
        c(ember.ones(2, 3), t).backward()
        got = lin.weight.grad.numpy().copy()
        lin.zero_grad()
        (lin(ember.ones(2, 3)) * t).sum().backward()
        np.testing.assert_allclose(got, lin.weight.grad.numpy(), rtol=1e-6)
    assert c.stats()["cache_entries"] == 1


def test_keyword_numbers_become_symbolic_too():
    def f(x, temperature=1.0):
        return (x / temperature).softmax(0)

    c = ember.compile(f)
    for temp in (1.0, 0.7, 0.5, 2.0, 0.9):
        x = ember.randn(5)
        _same(c(x, temperature=temp), f(x, temperature=temp), temp)
    assert c.stats()["cache_entries"] == 1


@pytest.mark.parametrize("body, why", [
    ("return x * round(t / 3)", "round()"),
    ("return x.reshape(t, -1)", "of the symbolic argument args[1]"),
    ("return x.sum() * float(t)", "float()"),
    ("return x[:t] * 2", "index or size"),
])
def test_a_value_used_as_a_python_number_compiles_per_value(body, why):
    ns = {}
    exec(f"def f(x, t):\n    {body}\n", ns)
    f = ns["f"]
    c = _calls(f, [(ember.arange(12.0), t) for t in (1, 2, 3, 4, 6, 4, 2)])
    s = c.stats()
    assert any(why in n and "compiled once per value" in n for n in s["notes"]), s["notes"]
    assert c.symbols.positions == [] and c.symbols.static == {"args[1]"}


def test_a_branch_on_the_number_guards_the_entry_with_its_outcome():
    def f(x, t):
        y = x * 2 if t > 3 else x * t
        if t:   # (bool of the number)
            y = y + min(t, 5)
        return y

    c = _calls(f, [(_ones(), t) for t in (1, 2, 5, 6, 3, 7, 0, 9, 4, 0, 2, 8, 11, 1, 0)])
    s = c.stats()
    # t=1; t=2 probes; then one entry per outcome of (t > 3, bool(t), t < 5)
    assert s["cache_entries"] == 4 and s["cache_hits"] >= 3, s
    assert c.symbols.positions != []


def test_a_diffusion_sampling_step_compiles_once_per_branch():
    # denoising-diffusion-pytorch's p_sample(x, t: int): the timestep as a tensor, noise
    # only while t > 0
    def p_sample(x, t):
        times = ember.full((x.shape[0],), t, dtype=ember.long)
        noise = ember.ones_like(x) if t > 0 else 0.0
        return x * times[:, None] + noise + ember.tensor(t) + ember.tensor(t * 0.5), times

    times = (999, 998, 997, 500, 3, 1, 0, 0, 5, 0, 7)
    c = _calls(p_sample, [(ember.randn(3, 2), t) for t in times])
    s = c.stats()
    assert s["cache_entries"] == 2 and s["cache_hits"] >= 5, s


def test_a_number_in_the_result_comes_back_as_the_number():
    c = _calls(lambda x, t: (x * t, t + 1, t / 2), [(_ones(), t) for t in range(5)])
    assert any("result holds" in n for n in c.stats()["notes"])
    out = c(_ones(), 9)
    assert type(out[1]) is int and out[1] == 10 and type(out[2]) is float


def test_a_number_kept_by_the_function_is_given_back_as_the_number():
    # (where guards see it, a store makes the entry unstable first: a tensor's attribute
    # is not guarded, so the symbol itself would stay there)
    def f(x, t):
        x.tag = t
        x.tags = [t, {"t": t}]
        return x * t

    c = ember.compile(f)
    for t in range(5):
        x = _ones()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c(x, t)
        assert type(x.tag) is int and x.tag == t
        assert type(x.tags[0]) is int and type(x.tags[1]["t"]) is int
    assert any("kept after the call" in n for n in c.stats()["notes"])


def test_a_type_test_in_the_user_code_keeps_the_number_plain():
    def f(x, t):
        if type(t) is int:
            return x * t
        return x.double() * t

    c = _calls(f, [(_ones(), t) for t in range(6)])
    assert any("tests type()" in n for n in c.stats()["notes"])
    assert c.symbols.positions == []


def _backend_of(tensor):   # (as einops' get_backend: the type of a tensor, not a number)
    return type(tensor).__name__


def test_a_type_test_of_other_values_leaves_the_number_symbolic():
    def f(x, t):
        assert _backend_of(x) == "Tensor"
        return x * t

    c = _calls(f, [(_ones(), t) for t in range(6)])
    assert c.symbols.positions != [] and c.stats()["cache_entries"] == 1


def test_a_trace_that_ran_other_ops_is_not_kept(monkeypatch):
    # The backstop behind the type() check: were the check to miss a test of type(),
    # the first symbolic trace is compared with the probing call's trace and dropped.
    monkeypatch.setattr(symbolic, "_type_uses", lambda code, globals_: None)

    def f(x, t):
        if type(t) is int:
            return x * t
        return x.double() * t

    c = ember.compile(f)
    for t in range(6):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = c(_ones(), t)
        if t != 2:   # (the symbolic trace's own call, t=2, ran the other branch)
            assert out.dtype == ember.float32
    assert any("other tensor ops" in n for n in c.stats()["notes"])
    assert c.symbols.positions == []


def test_the_standard_library_gets_the_plain_number():
    def f(x, t):
        json.dumps(t)   # (json wants an exact int: it gets it, and t turns plain)
        return x * t

    c = _calls(f, [(_ones(), t) for t in range(5)])
    assert c.symbols.positions == [] and c.symbols.static == {"args[1]"}
    assert any("passed to dumps" in n for n in c.stats()["notes"])


def _helper_tests_type(x, t):   # (a helper on a branch the probing call did not take)
    return x * (1 if type(t) is int else 100)


def test_a_type_test_on_a_branch_not_probed_gets_the_plain_number():
    def f(x, t):
        return _helper_tests_type(x, t) if t > 5 else x * t

    c = _calls(f, [(_ones(), t) for t in (1, 2, 3, 4, 6, 7, 8, 9, 2, 7)])
    assert c.symbols.static == {"args[1]"}


T = type   # (a module alias of the builtin)


def test_type_reached_through_builtins_or_an_alias_counts():
    import builtins

    def f(x, t):
        return x * (1 if builtins.type(t) is int else 100)

    def g(x, t):
        return x * (1 if T(t) is int else 100)

    for fn in (f, g):
        c = _calls(fn, [(_ones(), t) for t in range(8)])
        assert c.symbols.positions == []


def test_a_stand_in_kept_from_an_earlier_trace_acts_as_its_number():
    import collections
    best = collections.defaultdict(float)
    recent = collections.deque(maxlen=3)

    def f(x):
        v = x.sum().item()
        recent.append(v)
        if "loss" not in best:
            best["loss"] = v
        return x * (best["loss"] - v)

    c = ember.compile(f)
    for i in range(10):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = c(ember.ones(2) * i)
        assert got.tolist() == [-(i * 2.0) * i] * 2
        assert all(type(v) is float for v in recent) and type(best["loss"]) is float


def test_an_item_in_a_dict_given_to_json_is_the_plain_float():
    net = ember.nn.Linear(3, 1)
    opt = ember.optim.SGD(net.parameters(), lr=0.01)

    def step(x, y):
        loss = ((net(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return json.dumps({"loss": loss.item()})

    c = ember.compile(step)
    for _ in range(8):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = json.loads(c(ember.randn(4, 3), ember.randn(4, 1)))
        assert type(out["loss"]) is float


def _all_ints(*vals):   # (type() of a generator's loop variable over the varargs)
    return all(type(v) is int for v in vals)


def _is_int(v, _type=type):   # (the builtin through a default argument)
    return _type(v) is int


class _Frozen(dict):
    def __setitem__(self, key, value):
        raise TypeError("frozen")


def test_stand_ins_reaching_type_tests_by_other_roads_are_plain():
    import pickle

    def f(x, t):
        if t > 5:   # (a branch the probing call does not take)
            frozen = _Frozen(t=t)
            key = pickle.dumps({"t": t})
            same = key == pickle.dumps({"t": int(str(t))})
            return x * (1 if _all_ints(t, 2) and _is_int(t) and same else 100) + len(
                json.dumps(frozen))
        return x + t

    c = _calls(f, [(_ones(), t) for t in (1, 2, 3, 4, 7, 9, 12, 5, 6, 11)])
    assert c.symbols.static == {"args[1]"}


def test_an_error_a_stand_in_may_cause_is_raised_with_a_note():
    import decimal

    def f(x, t):
        decimal.Decimal(t)   # (a C type wanting an exact int: a stand-in is not one)
        return x * t

    c = ember.compile(f)
    raised = []
    for t in range(6):
        try:
            _same(c(_ones(), t), f(_ones(), t), t)
        except TypeError as e:
            raised.append(t)
            assert "stand-ins" in " ".join(getattr(e, "__notes__", []))
    assert raised == [2] and c.symbols.positions == []


def test_narrow_integer_tensors_guard_the_range_and_huge_ints_stay_keys():
    # uint8 + t: symbolic while t fits uint8 (a predicate); 300 wraps as in eager
    u8 = _calls(lambda x, t: x + t, [(ember.zeros(3, dtype=ember.uint8), t)
                                     for t in (1, 2, 3, 4, 300, 5)])
    assert u8.symbols.static == {"args[1]"} or u8.stats()["cache_hits"] >= 1
    big = _calls(lambda x, t: x * t, [(ember.ones(2, dtype=ember.float64), t)
                                      for t in (1, 2, 2 ** 40, 3, 2 ** 41)])
    assert big.stats()["cache_entries"] == 3   # the symbolic one, 2**40's and 2**41's
    # t*t*t is exact at 3 and would wrap int64 at 2**31: a predicate keeps the entry to
    # the values where it is exact; 2**31 traces anew and the number turns plain
    values = (3, 5, 7, 11, 12, 2 ** 31, 13)
    cube = _calls(lambda x, t: x * (t * t * t),
                  [(ember.ones(2, dtype=ember.float64), t) for t in values])
    assert any("within the range of 2**53" in r for r in cube.stats()["recompile_reasons"])


def test_bool_arguments_stay_keys():
    c = _calls(lambda x, flag: x * 2 if flag else x, [(_ones(), b) for b in
                                                      (True, False, True, False)])
    assert c.stats()["cache_entries"] == 2 and c.symbols.positions == []


# ---- fuzz: random programs mixing Python arithmetic on numbers with tensor ops ----------
_SCALAR_OPS = ["{a} + {c}", "{a} - {c}", "{c} - {a}", "{a} * {c}", "{a} / {cn}", "-{a}",
               "abs({a})", "{a} + {b}", "{a} * {b}", "{a} - {b}", "min({a}, {c})",
               "max({a}, {b})"]
_INT_OPS = ["{a} // {cn}", "{a} % {cn}"]
_TENSOR_OPS = ["{y} * {e}", "{y} + {e}", "{e} - {y}", "{y} / ({e} + 0.5)",
               "ember.where({y} > 0, {y}, {e})", "{y}.masked_fill({y} < 0, {e})",
               "({y} * {e}).tanh()", "{y}.exp() * {e}", "({y} - {e}).relu()",
               "{y}.sum() * {e} + {y}", "({y} * {e}).softmax(-1)", "{y}.clamp(min={e})",
               "{y}.clamp(max={e})", "{y} * ember.full((4,), {e})", "{y} ** 2 * {e}",
               "ember.maximum({y}, ember.zeros(4) + {e})"]
_SPECIAL = ["if {e} > 3:\n        y = y * 2", "y = y.reshape(2, -1).sum(0).repeat(2) "
            "if abs({e}) > 100 else y", "if {e}:\n        y = y + 1",
            "if {e} == 0:\n        y = y * 0", "y = y * int({e})"]


def random_program(rng) -> str:
    """Source of ``f(x, t, s)``: x a float tensor of 4, t an int, s a float."""
    lines, scalars, tensors = [], ["t", "s"], ["x"]
    for k in range(int(rng.integers(2, 8))):
        if rng.random() < 0.4:
            ops = _SCALAR_OPS + (_INT_OPS if rng.random() < 0.5 else [])
            op = str(rng.choice(ops))
            a = str(rng.choice(scalars))
            if op in _INT_OPS:
                a = "t"   # (an int, and never a float: // and % of floats specialize)
            c = float(rng.choice([2, 3, -1, 0.5, 7])) if rng.random() < 0.5 else int(
                rng.choice([2, 3, -1, 7]))
            cn = int(rng.choice([2, 3, -2, 5])) if op in _INT_OPS else c
            name = f"e{k}"
            lines.append(f"{name} = " + op.format(a=a, b=rng.choice(scalars), c=c, cn=cn))
            scalars.append(name)
        else:
            op = str(rng.choice(_TENSOR_OPS))
            name = f"y{k}"
            lines.append(f"{name} = " + op.format(y=rng.choice(tensors),
                                                  e=rng.choice(scalars)))
            tensors.append(name)
    lines.append(f"y = {tensors[-1]}")
    if rng.random() < 0.3:
        lines.append(str(rng.choice(_SPECIAL)).format(e=rng.choice(scalars)))
    return "def f(x, t, s):\n    " + "\n    ".join(lines) + "\n    return y\n"


def fuzz(seed: int, n: int, calls: int = 8) -> dict:
    """Run ``n`` random programs from ``seed`` compiled and eagerly at ``calls`` random
    values each; counts of programs, mismatches and how many became symbolic."""
    stats = {"programs": 0, "mismatches": 0, "symbolic": 0, "per_value": 0, "failures": []}
    for k in range(seed, seed + n):
        rng = np.random.default_rng(k)
        src = random_program(rng)
        ns = {"ember": ember}
        exec(src, ns)
        f, c = ns["f"], ember.compile(ns["f"])
        stats["programs"] += 1
        for _ in range(calls):
            x = ember.tensor(rng.standard_normal(4).astype(np.float32))
            t = int(rng.integers(-60, 60))
            s = float(rng.choice([0.5, -1.25, 3.0, 1e-3, 250.0]))
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                try:
                    want = f(x, t, s)
                except Exception as e:   # eager raises: the compiled call must too
                    with pytest.raises(type(e)):
                        c(x, t, s)
                    continue
                got = c(x, t, s)
            try:
                # (a sum times s carries its rounding times s: y.sum() * s + y)
                _same(got, want, (k, t, s), loose=1 + abs(s) + abs(t))
            except AssertionError as e:
                stats["mismatches"] += 1
                stats["failures"].append((k, src, str(e)[:300]))
                break
        stats["symbolic" if c.symbols.positions else "per_value"] += 1
    return stats


def test_fuzz_symbolic_numbers_against_eager():
    stats = fuzz(0, 40)
    assert stats["mismatches"] == 0, stats["failures"]
    assert stats["symbolic"] >= 10   # (the fuzzer exercises the symbolic path)


if __name__ == "__main__":   # a large run: python tests/test_symbolic_numbers.py 1000 2000
    start, count = (int(a) for a in sys.argv[1:3])
    result = fuzz(start, count)
    print({k: v for k, v in result.items() if k != "failures"})
    for failure in result["failures"][:5]:
        print(*failure, sep="\n")


# ---- item(): a float read from a tensor, split on only when Python needs it -------------
def _twin_steps():
    ember.manual_seed(1)
    nets = [ember.nn.Sequential(ember.nn.Linear(6, 8), ember.nn.ReLU(), ember.nn.Linear(8, 2))
            for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [ember.optim.SGD(n.parameters(), lr=0.05, momentum=0.9) for n in nets]

    def make(net, opt):
        def step(x, y):
            opt.zero_grad()
            out = net(x)
            loss = ((out - y) ** 2).mean()
            loss.backward()
            opt.step()
            total = 0.0
            total += loss.item()
            return {"loss": total, "scaled": loss.item() * 2 - 1,
                    "first": out[0, 0].item()}
        return step

    return nets, make(nets[0], opts[0]), make(nets[1], opts[1])


def test_a_training_step_returning_loss_item_compiles_once():
    nets, step, twin = _twin_steps()
    c = ember.compile(step)
    for i in range(12):
        x, y = ember.randn(5, 6), ember.randn(5, 2)
        got, want = c(x, y), twin(x, y)
        assert all(type(got[k]) is float for k in got)
        for k in got:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    s = c.stats()
    # (before: a split at each item(), a new path per value, then eager past four)
    # call 1 splits at item(); call 2 is watched for type() tests; from call 3 on the
    # proxies: one more compile, then hits
    assert s["compiles"] == 2 and s["cache_hits"] >= 7 and s["eager_calls"] == 0, s
    assert c.symbols.items is True


def test_an_item_used_by_python_splits_where_it_is_used():
    def f(x):
        v = x.sum().item()
        y = x * v          # (a tensor operand: no split)
        x.mul_(0)          # (the value read before this write is the one used)
        if v > 0:          # the split: a path per value, as item() had
            return y + 1
        return y - 1

    c = ember.compile(f)
    for data in ([1.0, 2.0], [-1.0, 0.5], [1.0, 2.0], [3.0, -5.0], [1.0, 2.0], [1.0, 2.0]):
        a, b = ember.tensor(data), ember.tensor(data)
        _same(c(a), f(b), data)
        _same(a, b, data)
    assert c.stats()["breaks"], c.stats()


def test_an_item_kept_by_the_function_is_a_plain_float():
    seen = []

    def f(x):
        v = x.sum().item()
        x.meta = v          # (a tensor's attribute: no guard sees it)
        seen.append(type(v).__name__)
        return x * 2

    c = ember.compile(f)
    for i in range(4):
        x = ember.ones(3) * i
        c(x)
        assert type(x.meta) is float and x.meta == 3.0 * i


def test_integer_items_are_read_at_once():
    def f(x):
        n = (x > 0).sum().item()
        return x * n

    c = _calls(f, [(ember.tensor([1.0, -2.0, 3.0]),), (ember.tensor([1.0, 2.0, 3.0]),),
                   (ember.tensor([1.0, -2.0, 3.0]),)])
    assert c.stats()["breaks"]


def test_a_step_taking_a_number_and_returning_an_item_compiles_once():
    # train_step(..., lr) -> loss.item(): the probing trace reads item() at once, the
    # symbolic one makes a stand-in of it; the check compares the ops before either.
    net = ember.nn.Linear(3, 1)
    twin = ember.nn.Linear(3, 1)
    twin.load_state_dict(net.state_dict())

    def make(model):
        def step(x, y, lr):
            model.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            with ember.no_grad():
                for p in model.parameters():
                    p.add_(p.grad, alpha=-lr)
            return loss.item()
        return step

    c, eager = ember.compile(make(net)), make(twin)
    for i in range(12):
        x, y = ember.randn(4, 3), ember.randn(4, 1)
        np.testing.assert_allclose(c(x, y, 0.1 / (i + 1)), eager(x, y, 0.1 / (i + 1)),
                                   rtol=1e-5)
    s = c.stats()
    assert s["cache_hits"] >= 6 and s["eager_calls"] == 0, s
    np.testing.assert_allclose(net.weight.detach().numpy(), twin.weight.detach().numpy(),
                               rtol=1e-5, atol=1e-6)
