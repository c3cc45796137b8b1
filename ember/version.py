"""ember's version, and the PyTorch version whose API it follows (``torch.version``).

Ported programs and libraries gate features on ``torch.__version__`` (vit-pytorch's
flash-attention ViT asserts ``>= 2.0``; einops registers itself with the compiler from
2.0 on). ember follows PyTorch 2.13's API, so ``ember.__version__`` is that version with
ember's own release as the local label, and compares as a version, as torch's does:

>>> ember.__version__
'2.13.0+ember.0.1.0'
>>> ember.__version__ >= "2.0" and ember.__version__ < (3, 0)
True
>>> ember.version.release
'0.1.0'
"""
from __future__ import annotations

import re

__all__ = ["release", "torch_api", "TorchVersion", "__version__", "cuda", "hip", "debug",
           "git_version"]

release = "0.1.0"      # ember's own release (the package's version)
torch_api = "2.13.0"   # the PyTorch API it follows


def _release_tuple(text) -> tuple[int, ...]:
    if isinstance(text, tuple):
        return tuple(int(x) for x in text)
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(text))
    if match is None:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(x) for x in match.group(1).split("."))


class TorchVersion(str):
    """A version string that compares as a version with strings and tuples
    (``"2.13.0+ember.0.1.0" > "2.2"``, where plain strings would say no)."""

    def _key(self, other) -> tuple[tuple[int, ...], tuple[int, ...]]:
        a, b = _release_tuple(self), _release_tuple(other)
        n = max(len(a), len(b))
        return a + (0,) * (n - len(a)), b + (0,) * (n - len(b))

    def __lt__(self, other) -> bool:
        a, b = self._key(other)
        return a < b

    def __le__(self, other) -> bool:
        a, b = self._key(other)
        return a <= b

    def __gt__(self, other) -> bool:
        a, b = self._key(other)
        return a > b

    def __ge__(self, other) -> bool:
        a, b = self._key(other)
        return a >= b

    def __eq__(self, other) -> bool:
        if isinstance(other, str) and str.__eq__(self, other):
            return True
        try:
            a, b = self._key(other)
        except (ValueError, TypeError):
            return False
        return a == b

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__


__version__ = TorchVersion(f"{torch_api}+ember.{release}")
cuda = None         # CUDA comes from CuPy at run time, not a build of ember's
hip = None
debug = False
git_version = "unknown"
