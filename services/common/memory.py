"""Give memory back after a burst: glibc keeps freed heap pages (per-thread arenas) for reuse, so a process that
decoded many large images at once stays at its peak while idle. malloc_trim(0) returns the free pages to the OS.

Why malloc_trim and not jemalloc or mimalloc: it needs no new dependency and no LD_PRELOAD in every launcher
(embedded, Ray Serve, Kubernetes), and loadtests/drill_memory.py measures what it gives back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return getattr(libc, "malloc_trim", None)
    except OSError:
        return None


def trim_heap() -> bool:
    """Return the heap's free pages to the OS (blocking, milliseconds on a large heap: call it off the event
    loop); False where the C library has no malloc_trim (not glibc), where nothing is done."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
