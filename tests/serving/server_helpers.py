"""Start the real app under uvicorn on 127.0.0.1 in a thread, and talk to it over HTTP with the standard library."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Optional

from tests.postgres import free_port


def call(base: str, method: str, path: str, body: Any = None, headers: Optional[dict] = None, raw: Optional[bytes] = None,
         timeout: float = 30.0) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one HTTP request; error statuses are returned, not raised."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode()


@contextlib.contextmanager
def running_server(settings, ready_timeout: float = 120.0):
    """The app of `settings` (AppSettings) served on a free port; yields (base URL, app state)."""
    import uvicorn

    from thrifty.serving.app import create_app

    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    try:
        while True:
            try:
                status, _ = call(base, "GET", "/readyz", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the server did not become ready: {app.state.thrifty.load_error}")
            time.sleep(0.05)
        yield base, app.state.thrifty
    finally:
        server.should_exit = True
        thread.join(60)


def wait_ready(base: str, process, timeout: float = 120.0) -> bool:
    """Until the server process at `base` answers /readyz with 200 (True), or exits or runs out of time (False)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if call(base, "GET", "/readyz", timeout=2)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def serve_process(model_dir, *args: str, env: Optional[dict] = None, ready_timeout: float = 120.0):
    """`thrifty serve MODEL_DIR ARGS` as a real process on 127.0.0.1 and a free port; yields the base URL once /readyz
    answers 200, and stops the server (SIGTERM) after. Its output goes to a file (a pipe could fill and block it)."""
    import os
    import subprocess
    import sys
    import tempfile

    port = free_port()
    with tempfile.TemporaryFile("w+", encoding="utf-8") as output:
        process = subprocess.Popen([sys.executable, "-m", "thrifty", "serve", str(model_dir), "--host", "127.0.0.1",
                                    "--port", str(port), "--serve.threads", "2", *args],
                                   env={**os.environ, "OMP_NUM_THREADS": "2", **(env or {})},
                                   stdout=output, stderr=subprocess.STDOUT, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            if not wait_ready(base, process, ready_timeout):
                process.kill()
                process.wait()
                output.seek(0)
                raise RuntimeError(f"thrifty serve did not become ready:\n{output.read()}")
            yield base
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
