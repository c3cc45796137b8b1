"""The persistent kernel cache: compiled machine code kept on disk across processes.

Entries are files under ``EMBER_CACHE_DIR`` (default: the user's cache folder from
``platformdirs``, e.g. ``~/.cache/ember``; empty turns the cache off), one per key. A key
is a hash of what the code was made from (the kernel's description) and everything that
could make the same description compile differently: ember's and llvmlite's versions and
the target (CPU triple and features, or GPU architecture). Machine code from a bad entry
must never reach the JIT, so every entry carries its key and a SHA-256 of its payload,
and anything that does not check out (truncated, corrupted, another key's or another
format's file) is removed with a warning and rebuilt. Writers write a temporary file and
rename it, so two processes never leave a half-written entry. The folder is private to
the user (mode 0700); the total size is bounded and the least recently used entries go
first. ``python -m ember cache [info|clear]`` shows and clears it.

Example:
    >>> from ember.diskcache import DiskCache
    >>> cache = DiskCache("/tmp/ember-example-cache")
    >>> key = cache.key("kernel text", "x86_64")
    >>> cache.put(key, b"machine code")
    >>> cache.get(key)
    b'machine code'
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import stat
import tempfile
import threading
import warnings
from dataclasses import dataclass

MAGIC = b"EMBERCACHE1\n"
SUFFIX = ".bin"
DEFAULT_MAX_MB = 512
RESCAN_EVERY = 256   # writes between full scans of the folder (see DiskCache.put)


class CacheWarning(UserWarning):
    """A cache entry was unusable (and was removed) or the folder cannot be used."""


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    rejected: int = 0   # entries that failed their checks and were removed


class DiskCache:
    """A folder of checked, atomically written entries with an LRU size bound."""

    def __init__(self, root: str, max_bytes: int = DEFAULT_MAX_MB << 20) -> None:
        self.root = os.path.abspath(root)
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._ready = False
        # The entries, least recently used first, with their sizes, as of the last scan
        # of the folder plus this process's own writes and reads since. A scan stats
        # every entry (~0.1 s at 40,000): a write rescans only every RESCAN_EVERY writes
        # (other processes write too), and evicts from this order in between.
        self._lru: collections.OrderedDict[str, int] | None = None
        self._total = 0
        self._since_scan = 0

    # ---- keys -----------------------------------------------------------------------
    @staticmethod
    def key(*parts: str) -> str:
        """A key from the parts code depends on, with ember's and llvmlite's versions."""
        from ember import __version__
        try:
            import llvmlite
            llvm_version = llvmlite.__version__
        except ImportError:  # CUDA-only use
            llvm_version = "-"
        h = hashlib.sha256()
        for part in (f"ember {__version__}", f"llvmlite {llvm_version}", *parts):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()

    # ---- reading and writing --------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        """The payload stored under ``key``, or None (missing or failed its checks)."""
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except OSError:
            self.stats.misses += 1
            return None
        payload = _unpack(blob, key)
        if payload is None:
            self.stats.rejected += 1
            self.stats.misses += 1
            warnings.warn(f"ember cache: entry {os.path.basename(path)} failed its checks "
                          f"(truncated, corrupted or not ember's); removed, rebuilding",
                          CacheWarning, stacklevel=2)
            _remove(path)
            return None
        try:
            os.utime(path)  # least recently used goes first
        except OSError:
            pass
        with self._lock:
            if self._lru is not None and path in self._lru:
                self._lru.move_to_end(path)
        self.stats.hits += 1
        return payload

    def put(self, key: str, payload: bytes, kind: str = "") -> None:
        """Store ``payload`` under ``key``: written to a temporary file, then renamed.
        ``kind`` (e.g. "llvm", "cubin") is shown by ``info``."""
        if not self._prepare():
            return
        blob = _pack(key, payload, kind)
        tmp = None
        try:   # (a folder one owns but cannot write: mkstemp raises, as the rename can)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=SUFFIX)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, self._path(key))
        except OSError as e:
            if tmp is not None:
                _remove(tmp)
            warnings.warn(f"ember cache: cannot write to {self.root}: {e}", CacheWarning,
                          stacklevel=2)
            return
        self.stats.writes += 1
        path = self._path(key)
        with self._lock:
            self._since_scan += 1
            if self._lru is not None and self._since_scan < RESCAN_EVERY:
                self._total += len(blob) - self._lru.pop(path, 0)
                self._lru[path] = len(blob)
                self._evict_known()
                return
        self.evict()

    # ---- housekeeping ---------------------------------------------------------------
    def entries(self) -> list[tuple[str, int, float]]:
        """(path, size, last use) of every entry, oldest first."""
        out = []
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        for name in names:
            if name.endswith(SUFFIX) and not name.startswith(".tmp-"):
                path = os.path.join(self.root, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                out.append((path, st.st_size, st.st_mtime))
        return sorted(out, key=lambda e: e[2])

    def evict(self) -> int:
        """Remove the least recently used entries until the total fits; returns how many."""
        with self._lock:
            entries = self.entries()
            self._lru = collections.OrderedDict((path, size) for path, size, _ in entries)
            self._total = sum(size for _, size, _ in entries)
            self._since_scan = 0
            return self._evict_known()

    def _evict_known(self) -> int:
        """Remove the least recently used entries of ``_lru`` until the total fits (the
        lock is held)."""
        removed = 0
        while self._total > self.max_bytes and self._lru:
            path, size = self._lru.popitem(last=False)
            _remove(path)
            self._total -= size
            removed += 1
        return removed

    def clear(self) -> int:
        """Remove every entry (and stale temporary files); returns how many entries."""
        self._lru = None
        entries = self.entries()
        for path, _, _ in entries:
            _remove(path)
        try:
            for name in os.listdir(self.root):
                if name.startswith(".tmp-"):
                    _remove(os.path.join(self.root, name))
        except OSError:
            pass
        return len(entries)

    def info(self) -> dict:
        """Where the cache is, how many entries and bytes it holds, and its bound."""
        entries = self.entries()
        kinds: dict[str, int] = {}
        for path, _, _ in entries:
            kind = _kind_of(path)
            kinds[kind] = kinds.get(kind, 0) + 1
        return {"path": self.root, "entries": len(entries), "kinds": kinds,
                "bytes": sum(size for _, size, _ in entries), "max_bytes": self.max_bytes,
                "hits": self.stats.hits, "misses": self.stats.misses,
                "writes": self.stats.writes, "rejected": self.stats.rejected}

    # ---- internals ------------------------------------------------------------------
    def _path(self, key: str) -> str:
        if not key or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"ember cache: a key is a lowercase hex digest, got {key!r}")
        return os.path.join(self.root, key + SUFFIX)

    def _prepare(self) -> bool:
        """Create the folder private to the user; refuse one others can write to."""
        if self._ready:
            return True
        with self._lock:
            try:
                os.makedirs(self.root, mode=0o700, exist_ok=True)
                st = os.stat(self.root)
                if hasattr(os, "getuid") and st.st_uid != os.getuid():
                    raise OSError("the folder belongs to another user")
                if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                    os.chmod(self.root, 0o700)  # ours: make it private again
            except OSError as e:
                warnings.warn(f"ember cache: not using {self.root}: {e}", CacheWarning,
                              stacklevel=3)
                return False
            self._ready = True
            return True


def _pack(key: str, payload: bytes, kind: str = "") -> bytes:
    meta = json.dumps({"key": key, "size": len(payload), "kind": kind,
                       "sha256": hashlib.sha256(payload).hexdigest()}).encode()
    return MAGIC + meta + b"\n" + payload


def _kind_of(path: str) -> str:
    """The kind an entry's header names ("?" if it has none or cannot be read): for
    ``info`` only, nothing is loaded on its word."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
        meta = json.loads(head[len(MAGIC):].partition(b"\n")[0])
        return str(meta.get("kind") or "?")
    except (OSError, ValueError, AttributeError):
        return "?"


def _unpack(blob: bytes, key: str) -> bytes | None:
    """The payload if ``blob`` is a whole, intact entry for ``key``, else None."""
    if not blob.startswith(MAGIC):
        return None
    head, sep, payload = blob[len(MAGIC):].partition(b"\n")
    if not sep:
        return None
    try:
        meta = json.loads(head)
    except ValueError:
        return None
    if (not isinstance(meta, dict) or meta.get("key") != key
            or meta.get("size") != len(payload)
            or meta.get("sha256") != hashlib.sha256(payload).hexdigest()):
        return None
    return payload


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


_default: DiskCache | None = None
_default_for: tuple | None = None


def default_cache() -> DiskCache | None:
    """The process's cache from ``EMBER_CACHE_DIR`` / ``EMBER_CACHE_MAX_MB``; None when
    ``EMBER_CACHE_DIR`` is set to the empty string (the cache is off)."""
    global _default, _default_for
    setting = (os.environ.get("EMBER_CACHE_DIR"), os.environ.get("EMBER_CACHE_MAX_MB"))
    if _default_for != setting:
        root, max_mb = setting
        if root == "":
            _default = None
        else:
            if root is None:
                import platformdirs
                root = platformdirs.user_cache_dir("ember", appauthor=False)
            root = os.path.expanduser(root)
            try:
                limit = int(max_mb) if max_mb else DEFAULT_MAX_MB
            except ValueError:
                raise ValueError(f"EMBER_CACHE_MAX_MB={max_mb!r}: expected a whole number "
                                 f"of megabytes") from None
            _default = DiskCache(root, limit << 20)
        _default_for = setting
    return _default


def main(argv: list[str]) -> int:
    """``ember cache [info|clear]``."""
    import argparse
    p = argparse.ArgumentParser(prog="ember cache", description="ember's persistent "
                                "kernel cache (EMBER_CACHE_DIR; empty: off)")
    p.add_argument("action", nargs="?", default="info", choices=("info", "clear"))
    args = p.parse_args(argv)
    cache = default_cache()
    if cache is None:
        print("ember cache: off (EMBER_CACHE_DIR is empty)")
        return 0
    if args.action == "clear":
        print(f"ember cache: removed {cache.clear()} entries from {cache.root}")
        return 0
    info = cache.info()
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(info["kinds"].items()))
    print(f"ember cache: {info['path']}\n  entries: {info['entries']}"
          + (f" ({kinds})" if kinds else "") + "\n"
          f"  size:    {info['bytes'] / 1e6:.1f} MB of {info['max_bytes'] / 1e6:.0f} MB")
    return 0
