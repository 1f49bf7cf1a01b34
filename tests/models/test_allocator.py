"""models/allocator.py: glibc's malloc told once to keep freed memory, and left alone when told not to."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from thrifty.models import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _in_fresh_process(env_value: str) -> str:
    env = {**os.environ, "THRIFTY_KEEP_FREED_MEMORY": env_value}
    code = "from thrifty.models.allocator import keep_freed_memory as k; print(k(), k())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_glibc_takes_the_thresholds_once_per_process():
    # set (256 MiB; 32 MiB on a glibc before 2.35), then the same answer without setting again
    assert _in_fresh_process("1") in (f"{allocator.MMAP_THRESHOLD} {allocator.MMAP_THRESHOLD}",
                                      f"{allocator.OLD_GLIBC_MMAP_THRESHOLD} {allocator.OLD_GLIBC_MMAP_THRESHOLD}")


def test_turned_off_by_the_environment_variable():
    assert _in_fresh_process("0") == "0 0"


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_a_freed_large_block_is_reused_rather_than_mapped_afresh():
    # A 47 MB block (the size of all-MiniLM-L6-v2's word-embedding gradient) comes from the heap, below the program
    # break, where its freed memory is reused; glibc's default maps it afresh above the break (and unmaps it on free)
    code = ("import ctypes, sys\n"
            "from thrifty.models.allocator import keep_freed_memory\n"
            "kept = keep_freed_memory() if sys.argv[1] == '1' else 0\n"
            "libc = ctypes.CDLL(None); libc.malloc.restype = libc.sbrk.restype = ctypes.c_void_p\n"
            "libc.free.argtypes = [ctypes.c_void_p]; libc.sbrk.argtypes = [ctypes.c_long]\n"
            "block = libc.malloc(30522 * 384 * 4)\n"
            "print(kept, block < libc.sbrk(0))\n"
            "libc.free(block)")

    def run(keep: str) -> list[str]:
        return subprocess.run([sys.executable, "-c", code, keep], capture_output=True, text=True,
                              check=True).stdout.split()

    kept, on_heap = run("1")
    if int(kept) < 30522 * 384 * 4:
        pytest.skip("this glibc takes at most 32 MiB: a block this size is still mapped afresh")
    assert on_heap == "True"
    assert run("0")[1] == "False"  # without the setting: mapped afresh (what the setting is for)
