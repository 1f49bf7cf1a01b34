"""The run folder: claimed before work starts, never overwritten by accident, marked complete last.

``run.json`` holds the run's status (``running``, ``interrupted``, ``failed``, ``complete``). A folder
whose status is not ``complete`` is never passed off as a finished run: ``metrics.json`` and the final
model are written only at the end, and ``--resume`` continues from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

from thrifty.errors import RunDirError

STATUS_FILE = "run.json"


def check_new_run_dir(path: str | Path, overwrite: bool) -> Path:
    """Fail early (before any data or model work) if the folder cannot become a new run."""
    run_dir = Path(path).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"output {run_dir} exists and is a file; choose a folder path for --output")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunDirError(
                f"run folder {run_dir} already exists; choose another --output, add --overwrite to replace it, or --resume {run_dir} to continue it"
            )
        if not (run_dir / STATUS_FILE).exists():
            raise RunDirError(f"refusing to overwrite {run_dir}: it is not a thrifty run folder (no {STATUS_FILE}); choose another --output")
    ancestor = run_dir.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise RunDirError(f"cannot create the run folder {run_dir}: {ancestor} is not a writable folder; choose another --output")
    return run_dir


def create_run_dir(run_dir: Path, overwrite: bool) -> None:
    with writing(run_dir, "the run folder"):
        if overwrite and run_dir.is_dir() and (run_dir / STATUS_FILE).exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()


@contextlib.contextmanager
def writing(path: str | Path, what: str) -> Iterator[None]:
    """Turn OS write errors into one actionable line (disk full, read-only, permission)."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise RunDirError(f"disk full while writing {what} in {path}; free some space, then rerun (or --resume if a checkpoint was saved)") from None
        reason = exc.strerror or str(exc)
        raise RunDirError(f"cannot write {what} in {path}: {reason}; choose a writable --output folder") from None


def atomic_write_text(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one; two processes writing the same file (a shared
    cache) each write their own temporary file, so neither installs the other's half-written one."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with writing(path.parent, path.name):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def set_status(run_dir: Path, status: str, **extra: Any) -> None:
    current = read_status(run_dir)
    current.update(status=status, updated=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)
    current.setdefault("created", current["updated"])
    write_json(run_dir / STATUS_FILE, current)


def read_status(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / STATUS_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def require_complete_run(run_dir: str | Path) -> Path:
    """For evaluate/predict: the folder must hold a finished run with a saved model."""
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise RunDirError(f"run folder not found: {path}; give the --output folder of a finished `thrifty train`")
    status = read_status(path).get("status")
    if status != "complete" or not (path / "model").is_dir():
        hint = f"; resume it with: thrifty train --resume {path}" if status in ("running", "interrupted", "failed") else ""
        raise RunDirError(f"{path} is not a finished thrifty run (status: {status or 'unknown'}){hint}")
    return path
