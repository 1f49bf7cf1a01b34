"""Serving under load: `thrifty serve` (batching on and off) against FastAPI + `transformers.pipeline`.

    python benchmarks/serve_load.py --seeds 0,1,2          # 3 rounds x 3 systems x 60 s, ~12 min on 2 cores

One fine-tuned model folder serves every system (benchmarks/inference.py's: all-MiniLM-L6-v2, 2 epochs on SST-2's
6,920 training sentences). Each system is a fresh server process per round, the order alternated, bound to 127.0.0.1, with
the same torch threads (--threads) and max_length (the model's). The load: --clients (50) concurrent keep-alive
connections from one asyncio process for --seconds (60); each request carries 1-16 SST-2 test sentences (seeded
per client and round, so every system gets the same requests). Traffic only to 127.0.0.1, bounded in time.

- thrifty: `thrifty serve` with its defaults (dynamic batching: 512 texts or 5 ms, passes of 32 texts sorted by
  length on one lane per thread) and the prediction log in SQLite;
- thrifty-nobatch: the same with `--no-batching` (one forward pass per request);
- thrifty-onnx, thrifty-onnx-int8: the same with `--backend onnx` / `onnx-int8` (graphs made once by `thrifty export`);
- thrifty-torch-bf16: the same with `--backend torch-bf16` (bf16 weights; a CPU with AMX or AVX512-BF16 only);
- pipeline-server: benchmarks/pipeline_server.py, the server a user writes by hand (a `def` endpoint calling the
  pipeline per request; no log).

Reported per system: texts/s (texts answered / time until the last answer), requests, p50/p95/p99 latency,
errors (a non-200 answer, a wrong number of predictions, a broken connection), and for thrifty the rows in its
prediction log against the predictions answered (after SIGTERM, which flushes the log). What differs by design:
thrifty writes every prediction to its log and the pipeline server writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from common import REPO, by_cpu, compare, head_by_cpu, ratio_line, read_sst2, spread, table_by_cpu
from inference import MODEL, make_model

SYSTEMS = ("thrifty", "thrifty-nobatch", "pipeline-server", "thrifty-onnx", "thrifty-onnx-int8", "thrifty-torch-bf16")
BACKEND_SYSTEMS = ("thrifty-onnx", "thrifty-onnx-int8", "thrifty-torch-bf16")  # thrifty-BACKEND: --backend BACKEND


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A request maker: rng -> (path, JSON body, answered(payload) -> texts answered, or None when the answer is wrong)
NextRequest = Callable[[random.Random], tuple[str, dict, Callable[[dict], Optional[int]]]]


def predict_requests(texts: list[str]) -> NextRequest:
    """POST /v1/predict with 1-16 of `texts`; answered when there is one prediction per text."""
    def next_request(rng: random.Random):
        n = rng.randint(1, 16)
        return "/v1/predict", {"texts": rng.sample(texts, n)}, \
            lambda answer: n if len(answer.get("predictions", [])) == n else None
    return next_request


async def _one_client(port: int, next_request: NextRequest, rng: random.Random, stop_at: float, stats: dict) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        stats["errors"] += 1
        return
    while time.monotonic() < stop_at:
        path, body, answered = next_request(rng)
        body = json.dumps(body).encode()
        request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        started = time.perf_counter()
        try:
            writer.write(request)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
            stats["errors"] += 1
            return
        stats["latencies"].append(time.perf_counter() - started)
        stats["last_answer"] = time.perf_counter()
        n = answered(json.loads(payload)) if status == 200 else None
        if n is None:
            stats["errors"] += 1
            continue
        stats["requests"] += 1
        stats["texts"] += n
    writer.close()


async def load(port: int, next_request: NextRequest, clients: int, seconds: float, seed: int) -> dict:
    stats = {"latencies": [], "requests": 0, "texts": 0, "errors": 0, "last_answer": None}
    started = time.perf_counter()
    stop_at = time.monotonic() + seconds
    await asyncio.gather(*(_one_client(port, next_request, random.Random(seed * 1000 + c), stop_at, stats)
                           for c in range(clients)))
    stats["elapsed"] = (stats["last_answer"] or time.perf_counter()) - started
    return stats


def wait_ready(port: int, server: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become ready")


def measure(command: list[str], port: int, scratch: Path, next_request: NextRequest, args: argparse.Namespace,
            seed: int) -> dict:
    """Start the server (`command`, listening on `port`), load it with --clients clients for --seconds, stop it with
    SIGTERM (thrifty finishes what is in flight and flushes its log); throughput, latency percentiles, errors."""
    # The server's output goes to a file: an unread pipe fills up (64 KiB of access-log lines) and blocks the server
    output = open(scratch / "server.log", "w")
    server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        wait_ready(port, server, scratch / "server.log")
        stats = asyncio.run(load(port, next_request, args.clients, args.seconds, seed))
        server.send_signal(signal.SIGTERM)
        server.wait(120)
    finally:
        if server.poll() is None:
            server.kill()
        output.close()
    latencies = sorted(stats["latencies"])

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1) if latencies else None

    return {"texts_per_second": round(stats["texts"] / stats["elapsed"], 1), "requests": stats["requests"],
            "texts": stats["texts"], "errors": stats["errors"], "p50_ms": pct(0.50), "p95_ms": pct(0.95),
            "p99_ms": pct(0.99), "seconds": round(stats["elapsed"], 1), "clients": args.clients,
            "exit_code": server.returncode}


def run_system(system: str, seed: int, args: argparse.Namespace) -> dict:
    from thrifty.inference.predictor import Predictor

    texts, _ = read_sst2("stsa.binary.test")
    max_length = Predictor.load(MODEL).max_length
    port, scratch = free_port(), Path(tempfile.mkdtemp(prefix="serve-load-"))
    db = scratch / "predictions.db"
    if system.startswith("thrifty"):
        command = [sys.executable, "-m", "thrifty", "serve", str(MODEL), "--port", str(port), "--db", str(db),
                   "--serve.threads", str(args.threads)] + (["--no-batching"] if system == "thrifty-nobatch" else [])
        if system in BACKEND_SYSTEMS:
            command += ["--backend", system.split("-", 1)[1]]
    else:
        command = [sys.executable, str(REPO / "benchmarks" / "pipeline_server.py"), str(MODEL / "model"), str(port),
                   str(max_length), str(args.threads)]
    result = {**measure(command, port, scratch, predict_requests(texts), args, seed), "max_length": max_length}
    if system.startswith("thrifty"):
        result["log_rows"] = sqlite3.connect(db).execute("SELECT count(*) FROM predictions").fetchone()[0]
    return result


def summarise(saved: dict, args: argparse.Namespace) -> list[str]:
    """One table per CPU the rounds ran on: figures from different machines are not pooled."""
    columns = ["system", "rounds", "texts/s", "p50 ms", "p95 ms", "p99 ms", "errors", "log rows = answered"]
    lines = head_by_cpu("Serving under load: thrifty serve vs FastAPI + transformers.pipeline",
                        "python benchmarks/serve_load.py --seeds 6,7,8,9,10,11 --systems thrifty,thrifty-nobatch,"
                        "pipeline-server,thrifty-onnx,thrifty-onnx-int8,thrifty-torch-bf16", saved,
                        f"{args.clients} concurrent clients for {args.seconds:g} s, 1-16 SST-2 test sentences per request, "
                        "the same fine-tuned all-MiniLM-L6-v2 folder (trained on each machine); median (min-max) over "
                        "rounds. A machine's speed changes by the hour (on the Xeon, the same server: 452-543 texts/s in "
                        "one hour, 591-687 in another), so rounds are taken at more than one time of day.")
    for cpu, runs in by_cpu(saved).items():
        lines += table_by_cpu(cpu, runs, columns)
        for system in SYSTEMS:
            rs = [r for r in runs if r["system"] == system]
            if not rs:
                continue
            logged = ("yes" if all(r["log_rows"] == r["texts"] for r in rs) else "no") if "log_rows" in rs[0] else "no log"
            lines.append(f"| {system} | {len(rs)} | {spread([r['texts_per_second'] for r in rs])} | "
                         f"{spread([r['p50_ms'] for r in rs])} | {spread([r['p95_ms'] for r in rs])} | "
                         f"{spread([r['p99_ms'] for r in rs])} | {sum(r['errors'] for r in rs)} | {logged} |")
        for a, b in [(a, "pipeline-server") for a in ("thrifty", "thrifty-nobatch") + BACKEND_SYSTEMS] + \
                [("thrifty", "thrifty-nobatch"), ("thrifty-onnx-int8", "thrifty"), ("thrifty-torch-bf16", "thrifty")]:
            line = ratio_line(runs, a, b, "texts_per_second", "texts/s")
            if line:
                lines.append(line)
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    compare(__file__, "serve_load", SYSTEMS, run_system, summarise, parser,
            {"clients": 50, "seconds": 60, "texts_per_request": "1-16", "model": str(MODEL.relative_to(REPO))},
            worker_args=lambda a: ["--clients", str(a.clients), "--seconds", str(a.seconds)], prepare=make_model)
