"""Elementwise math with no composition of other primitives: the inverse trig functions,
atan2, gcd and lcm. They run on NumPy/CuPy (an EXTERN op: a compiled plan calls them as
a step of their own, they do not join fused kernels); their gradients are compositions.
"""
from __future__ import annotations

from ember.ops.registry import EXTERN, defop


defop("atan", EXTERN, lambda xp, a: xp.arctan(a), lambda g, out, a: (g / (1 + a * a),))
defop("asin", EXTERN, lambda xp, a: xp.arcsin(a), lambda g, out, a: (g / (1 - a * a).sqrt(),))
defop("acos", EXTERN, lambda xp, a: xp.arccos(a), lambda g, out, a: (-g / (1 - a * a).sqrt(),))
# (y, x) broadcast to one shape by the caller, so each gradient has its input's shape.
defop("atan2", EXTERN, lambda xp, y, x: xp.arctan2(y, x),
      lambda g, out, y, x: (g * x / (x * x + y * y), -g * y / (x * x + y * y)))
defop("gcd", EXTERN, lambda xp, a, b: xp.gcd(a, b))
defop("lcm", EXTERN, lambda xp, a, b: xp.lcm(a, b))
