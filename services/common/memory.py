"""Give memory back after a burst: glibc keeps freed heap pages (per-thread arenas) for reuse, so a process that
decoded many large images at once stays at its peak while idle. malloc_trim(0) returns the free pages to the OS.

Measured on the embedded server after 8 concurrent 16-megapixel inspections (loadtests/drills/memory.py's image):
about 330 MB were still held by reference cycles (a failed or cancelled stage call's exception -> traceback ->
frames -> the request holding the image bytes) until the cyclic collector ran, and 1.7 GB were free but kept by
malloc. So the release collects cycles first, then trims: RSS went from 1.9 GB to 1.4 GB, below its warm level.

Why malloc_trim and not jemalloc or mimalloc: it needs no new dependency and no LD_PRELOAD in every launcher
(embedded, Ray Serve, Kubernetes), and loadtests/drills/memory.py measures what it gives back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os


@functools.cache
def _libc_function(symbol: str) -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """A C library function by name; None where there is no such library or function (not glibc)."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), symbol, None) if name else None
    except OSError:
        return None


def trim_heap() -> bool:
    """Collect reference cycles, then return the heap's free pages to the OS (blocking, up to a few hundred ms on
    a large heap: call it off the event loop, once a burst drains); False where the C library has no malloc_trim
    (not glibc): the cycles are still collected."""
    gc.collect()
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas (threads share them instead of each keeping its own freed pages); False where the
    C library has no mallopt, or `arenas` is 0 (glibc's default), or MALLOC_ARENA_MAX already says."""
    if arenas <= 0 or "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = _libc_function("mallopt")
    return bool(mallopt is not None and mallopt(M_ARENA_MAX, arenas) == 1)


def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
