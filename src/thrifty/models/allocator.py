"""Keep freed memory in the process instead of handing it back to the OS after every tensor (Linux, glibc), for
training and its cost calibration.

Why: glibc serves an allocation above its mmap threshold (128 KiB at first, at most 32 MiB as it adapts) with a fresh
mmap and returns it to the kernel on free, so the next tensor of that size starts on untouched pages: the kernel
zeroes and maps each 4 KiB page on first touch. A training step frees and reallocates the same large tensors every
time (the word-embedding gradient of all-MiniLM-L6-v2 alone is 30,522 x 384 fp32, 47 MB): on the project's 2-core
AMD EPYC, `torch.zeros` of that shape took 10 ms inside a training step and 1.5 ms once the freed block was reused.
PyTorch's CPU tensors come from malloc, so two glibc settings do it: serve blocks up to 256 MiB from the heap (mmap
threshold) and trim the top of the heap only once more than 512 MiB of it is free (trim threshold). This is what
Intel's PyTorch CPU tuning guides get from preloading jemalloc or tcmalloc, without a library to install or an
environment variable to set before the process starts. A glibc older than 2.35 refuses a threshold above 32 MiB:
32 MiB is set there instead (blocks up to that size reused; the embedding gradient above it is not).

The cost: what the process frees stays with it (the top of the heap above 512 MiB excepted; glibc never returned
freed blocks below a live one anyway), so its resident memory after a peak stays near that peak. Set only where a
process trains (`train`, `estimate`'s calibration, `tune`); prediction and serving keep glibc's defaults. Where the
C library is not glibc (macOS, musl, Windows) nothing changes. `THRIFTY_KEEP_FREED_MEMORY=0` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Optional

MMAP_THRESHOLD = 256 << 20  # allocations up to this size come from the heap, and their freed memory is reused...
TRIM_THRESHOLD = 512 << 20  # ...and the heap's top is handed back only beyond this much free memory
OLD_GLIBC_MMAP_THRESHOLD = 32 << 20  # the most a glibc before 2.35 accepts (HEAP_MAX_SIZE / 2 on 64-bit)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_applied: Optional[int] = None  # the mmap threshold set (0: none), once per process


def keep_freed_memory() -> int:
    """Set glibc's thresholds once per process; the mmap threshold now in force (0 where nothing was set: not glibc on
    Linux, turned off, or refused)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = 0
    if os.environ.get("THRIFTY_KEEP_FREED_MEMORY", "1") == "0" or platform.system() != "Linux":
        return 0
    if platform.libc_ver()[0] != "glibc":
        return 0
    try:
        libc = ctypes.CDLL(None)  # the C library the process already runs on
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no C library to speak to: the default allocator, as before
        return 0
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    for threshold in (MMAP_THRESHOLD, OLD_GLIBC_MMAP_THRESHOLD):  # mallopt returns 1 when it takes a value, else 0
        if mallopt(_M_MMAP_THRESHOLD, threshold) == 1:
            mallopt(_M_TRIM_THRESHOLD, max(TRIM_THRESHOLD, 2 * threshold))
            _applied = threshold
            break
    return _applied
