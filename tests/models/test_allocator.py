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
    assert _in_fresh_process("1") == "True True"  # set, then the same answer without setting again


def test_turned_off_by_the_environment_variable():
    assert _in_fresh_process("0") == "False False"


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_the_thresholds_cover_a_training_steps_largest_tensors():
    # the word-embedding gradient of all-MiniLM-L6-v2 (30,522 x 384 fp32) must come from the reused heap, and a freed
    # block that size must not be trimmed away
    embedding_gradient = 30522 * 384 * 4
    assert allocator.MMAP_THRESHOLD > embedding_gradient
    assert allocator.TRIM_THRESHOLD >= 2 * allocator.MMAP_THRESHOLD
