"""Tokenised data on disk, keyed by a hash of the texts, the tokenizer and the settings.

A second run on the same data (another strategy, a resumed run, a hyperparameter trial) reads the token
ids instead of tokenising again. The key covers everything that changes the ids: every text, the
tokenizer's full definition (vocabulary, normaliser, special tokens), max_length and whether the result is
truncated; any change gives a new entry, so a stale entry is never used. Entries are plain numpy arrays
(loaded with ``allow_pickle=False``), written to a temporary file and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

FORMAT_VERSION = 1


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything in the tokenizer that decides the ids."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = json.loads(backend.to_str())
        # Truncation and padding are per-call settings the tokenizer remembers from its last call, not its definition.
        definition.pop("truncation", None)
        definition.pop("padding", None)
        h.update(json.dumps(definition, sort_keys=True).encode())
    else:
        h.update(repr(tokenizer).encode())
    h.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
    h.update(str(getattr(tokenizer, "model_max_length", "")).encode())
    return h.hexdigest()


def texts_fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha256(str(len(texts)).encode())
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


class TokenCache:
    """`encode` and `lengths` that read from disk when the same work was done before."""

    def __init__(self, folder: Optional[Path], tokenizer):
        self.folder = folder
        self.tokenizer = tokenizer
        self.hits = self.misses = 0
        self._tokenizer_key = tokenizer_fingerprint(tokenizer) if folder is not None else ""

    def encode(self, texts: Sequence[str], max_length: int, compute: Callable) -> list:
        """Unpadded ids truncated to max_length; `compute(tokenizer, texts, max_length)` on a miss."""
        def pack(ids):
            offsets = np.zeros(len(ids) + 1, dtype=np.int64)
            np.cumsum([len(x) for x in ids], out=offsets[1:])
            return {"flat": np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(offsets[-1])),
                    "offsets": offsets}

        def unpack(arrays):
            flat, offsets = arrays["flat"], arrays["offsets"]
            return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]

        return self._get(f"ids-{max_length}", texts, lambda: compute(self.tokenizer, list(texts), max_length), pack, unpack)

    def lengths(self, texts: Sequence[str], compute: Callable) -> np.ndarray:
        """Untruncated lengths; `compute(tokenizer, texts)` on a miss."""
        return self._get("lengths", texts, lambda: np.asarray(compute(self.tokenizer, list(texts)), dtype=np.int64),
                         lambda lengths: {"lengths": lengths}, lambda arrays: arrays["lengths"].astype(np.int64))

    def _get(self, kind: str, texts: Sequence[str], compute: Callable, pack: Callable, unpack: Callable):
        if self.folder is None:
            return compute()
        path = self.folder / f"{self._key(kind, texts)}.npz"
        arrays = self._read(path)
        if arrays is not None:
            try:
                value = unpack(arrays)
                self.hits += 1
                return value
            except (KeyError, IndexError, ValueError):
                pass  # an entry of another layout: recompute and replace it
        self.misses += 1
        value = compute()
        self._write(path, **pack(value))
        return value

    def _key(self, kind: str, texts: Sequence[str]) -> str:
        parts = [str(FORMAT_VERSION), kind, self._tokenizer_key, texts_fingerprint(texts)]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    @staticmethod
    def _read(path: Path) -> Optional[dict]:
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            return None  # a damaged entry is a miss: it is recomputed and replaced

    def _write(self, path: Path, **arrays: np.ndarray) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except OSError:
            # The cache only saves time: a full or read-only disk must not fail the run.
            try:
                os.unlink(tmp)  # noqa: F821 - defined when mkstemp succeeded
            except (OSError, NameError):
                pass
