"""Keep freed memory in the process instead of handing it back to the OS after every tensor (Linux, glibc).

Why: glibc serves an allocation above its mmap threshold (128 KiB at first, at most 32 MiB as it adapts) with a fresh
mmap and returns it to the kernel on free, so the next tensor of that size starts on untouched pages: the kernel
zeroes and maps each 4 KiB page on first touch. A training step frees and reallocates the same large tensors every
time (the word-embedding gradient of all-MiniLM-L6-v2 alone is 30,522 x 384 fp32, 47 MB): on the project's 2-core
AMD EPYC, `torch.zeros` of that shape took 10 ms inside a training step and 1.5 ms once the freed block was reused,
and the whole SST-2 recipe's training steps took 8% less time. PyTorch's CPU tensors come from malloc, so two glibc
settings do it: serve large blocks from the heap (mmap threshold 256 MiB) and keep up to 512 MiB of freed heap
(trim threshold) rather than giving it back. This is what Intel's PyTorch CPU tuning guides get from preloading
jemalloc or tcmalloc, without a library to install or an environment variable to set before the process starts.

The cost: up to 512 MiB of freed memory stays with the process (its peak is unchanged). Where the C library is not
glibc (macOS, musl, Windows) nothing changes. `THRIFTY_KEEP_FREED_MEMORY=0` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

MMAP_THRESHOLD = 256 << 20  # allocations up to this size come from the heap, and their freed memory is reused...
TRIM_THRESHOLD = 512 << 20  # ...and freed heap up to this size is kept rather than returned to the kernel
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's thresholds once per process; True where they are set (glibc on Linux, not turned off)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("THRIFTY_KEEP_FREED_MEMORY", "1") == "0" or platform.system() != "Linux":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):  # no C library to speak to: the default allocator, as before
        _applied = False
    return _applied
