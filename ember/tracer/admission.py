"""Which calls at a new size of a dynamic-shape function compile, and which run eagerly.

Each size of a dynamic function is an entry of its own (``dynamic.py``): the machine code
is shared, but a new size is traced and planned again, and its second call traced once
more to check it (about 6x an eager call for a 1,000-op transformer training step). A
program whose sizes rarely repeat (sequence lengths that vary every batch) paid that at
nearly every call: measured 159 ms a step against 23 ms eagerly. So, like a cache
admission policy:

- a call at a size that differs from a compiled entry only in tensor sizes runs eagerly
  (an eager call, counted, never a wrong result) until its eager calls have cost as much
  as compiling a new size of this function costs (measured on the ones compiled: the
  compile and the second-call check, less the time spent generating machine code, which
  the next sizes reuse; until a whole one was measured, the last compile of the function
  alone, its first call's included; before any, a new size compiles on its second call):
  the ski-rental rule, never more than twice the time of the better of always and never
  compiling that size. A size seen once (an epoch's last batch) never costs a compile.
  (Waiting for a new size's own second call to learn the cost let every size seen twice
  meanwhile compile: 5 compiles bought 4 hits on a stream of 120 lengths.)
- when the cache is full, a size that recurs takes the place of the entry hit least often
  (entries not used for ``_IDLE_CALLS`` calls count as never hit) only if it has been seen
  more often than that entry was hit; otherwise it runs eagerly. Plain LRU let 121
  sequence lengths thrash 64 entries: every call compiled.

A new size's second call is still traced and compared with its first (Python state that
changes between calls), though an entry at another size passed that check: skipping it
when the two traces had the same ops was tried and replayed a wrong constant (a module
that scales by 2 on the first call at each size, by 1 after: a set of sizes seen, which
no guard covers). So a new size costs its compile and that check, both measured.

With ``dynamic=False`` every size compiles (code of its own per size, as torch does), and
the first call of a function always compiles. ``EMBER_NEW_SIZES=compile`` (or
``admission.NEW_SIZES = "compile"``) turns the rule off: every new size compiles at once,
into a full cache in place of the least recently used entry (the test suite runs so,
except the tests of this rule).
"""
from __future__ import annotations

import os
from collections import OrderedDict

from ember.tracer.dynamic import _size_changes

_SIGHTINGS_KEPT = 4096   # keys whose sightings are remembered (least recent forgotten)
_IDLE_CALLS = 16         # x the cache limit: an entry unused that long counts as never hit
RENT_FACTOR = 1.0        # compile when eager time paid >= this x the cost (0: on the 2nd call)


def _policy(raw: str | None) -> str:
    word = (raw or "").strip().lower() or "rent"
    if word not in ("rent", "compile"):
        raise ValueError(f"EMBER_NEW_SIZES={raw!r}: expected rent (the default) or compile")
    return word


NEW_SIZES = _policy(os.environ.get("EMBER_NEW_SIZES"))   # "rent" or "compile"


class SizeAdmission:
    """The sightings of keys not (or no longer) compiled, the eager time they cost, and
    what compiling a new size of this function costs."""

    def __init__(self) -> None:
        self.seen: OrderedDict = OrderedDict()   # raw key -> [misses, eager seconds paid]
        self.cost: float | None = None   # seconds a new size's compile took (moving mean)
        self.guess: float | None = None   # the last compile's seconds, until ``cost`` is known
        self.pending: dict = {}   # key -> compile seconds, until its second call

    def sighting(self, key: tuple) -> int:
        """Count one more miss of ``key``; returns the count, this one included."""
        tally = self.seen.pop(key, None) or [0, 0.0]
        tally[0] += 1
        self.seen[key] = tally
        if len(self.seen) > _SIGHTINGS_KEPT:
            self.seen.popitem(last=False)
        return tally[0]

    def worth_compiling(self, key: tuple) -> bool:
        """Ski rental: compile once the eager calls at this size have cost what a compile
        costs (at most twice the cheaper of always and never compiling it); before the
        cost of a new size is known, on its second call."""
        misses, paid = self.seen.get(key, (0, 0.0))
        cost = self.cost if self.cost is not None else self.guess
        return misses >= 2 and (cost is None or paid >= RENT_FACTOR * cost)

    def paid(self, key: tuple, seconds: float) -> None:
        if key in self.seen:
            self.seen[key][1] += seconds

    def compiled(self, key: tuple, seconds: float) -> None:
        """``key`` compiled in ``seconds`` (not counting machine code it generated: the
        first size-generic kernels, which the next sizes reuse); the whole cost is known
        after its second call (``checked``), the compile alone guesses it until then."""
        self.seen.pop(key, None)
        self.guess = seconds
        self.pending[key] = seconds
        if len(self.pending) > _SIGHTINGS_KEPT:
            self.pending.pop(next(iter(self.pending)))

    def checked(self, key: tuple, seconds: float) -> None:
        """The second call of a new size's entry (traced again and compared) took
        ``seconds``: with its compile, what a new size costs (a moving mean)."""
        first = self.pending.pop(key, None)
        if first is not None:
            total = first + seconds
            self.cost = total if self.cost is None else 0.7 * self.cost + 0.3 * total

    def given_up(self, key: tuple, hits: int) -> None:
        """An entry evicted for another: its size may earn its place back, once seen more
        often than the entry it would replace was hit."""
        self.seen[key] = [hits, self.cost or 0.0]

    @staticmethod
    def new_size(key: tuple, known) -> bool:
        """Whether ``key`` differs from one of the ``known`` keys only in tensor sizes."""
        return any(_size_changes(tuple(k), key) for k in known)

    @staticmethod
    def victim(cache: dict, calls: int, limit: int, protect) -> tuple | None:
        """``(score, (key, id), entry)`` of the entry to give up first: the fewest hits,
        then the least recently used; ``protect`` (the fast path's entry) never."""
        best = None
        for i, (k, e) in enumerate(cache.items()):
            if e is protect:
                continue
            hits = e.hits if calls - e.last_used <= _IDLE_CALLS * limit else 0
            score = (hits, e.last_used, i)
            if best is None or score < best[0]:
                best = (score, k, e)
        return best

