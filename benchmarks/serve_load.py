"""Serving under load: `thrifty serve` against a careful FastAPI + `transformers.pipeline` server, Infinity (a real
serving system) and the naive pipeline server.

    python benchmarks/serve_load.py --seeds 20,21,22,23,24 --systems thrifty,thrifty-torch,careful-server,careful-server-bf16,infinity-torch,thrifty-onnx-int8,infinity-optimum-int8

One fine-tuned model folder serves every system (benchmarks/inference.py's: all-MiniLM-L6-v2, 2 epochs on SST-2's
6,920 training sentences). Each system is a fresh server process per round, the order alternated, bound to 127.0.0.1, with
the same torch threads (--threads) and max_length (the model's). The load: --clients (50) concurrent keep-alive
connections from one asyncio process for --seconds (60); each request carries 1-16 SST-2 test sentences (seeded
per client and round, so every system gets the same requests). Traffic only to 127.0.0.1, bounded in time.

- thrifty: `thrifty serve` with its defaults (dynamic batching: 512 texts or 5 ms, passes of 32 texts sorted by
  length on one lane per thread; `--backend auto`: bf16 weights on a CPU with AMX or AVX512-BF16 when the model's
  recorded bf16 label agreement is >= 99.5%, fp32 otherwise) and the prediction log in SQLite;
- thrifty-torch: the same with `--backend torch` (fp32 weights): to compare with the fp32 servers;
- thrifty-nobatch: the same with `--no-batching` (one forward pass per request);
- thrifty-onnx, thrifty-onnx-int8: the same with `--backend onnx` / `onnx-int8` (graphs made once by `thrifty export`);
- thrifty-torch-bf16: the same with `--backend torch-bf16` (bf16 weights; a CPU with AMX or AVX512-BF16 only);
- careful-server, careful-server-bf16: benchmarks/careful_server.py, what a careful user writes by hand (the
  pipeline called with `batch_size` = the request's texts, an `async` endpoint handing one forward pass at a time
  to one worker thread, torch threads = --threads; fp32 weights, or bf16 (`dtype=torch.bfloat16`); no log);
- infinity-torch: Infinity (`infinity_emb v2 --engine torch`, its defaults: dynamic batching up to 32 texts, its
  BetterTransformer path where it applies, texts cut at the model's 512 positions: SST-2 test sentences are at most
  70 tokens, 1 of 1,821 above the others' 64) serving the same model folder, POST /classify; in its own virtual environment (INFINITY_VENV, default ../infinity-venv):
      python -m venv ../infinity-venv && ../infinity-venv/bin/pip install torch==2.13.0 \
          "infinity-emb[server,torch,optimum]==0.0.78"
- infinity-optimum-int8: Infinity's `--engine optimum` (ONNX Runtime) on an int8 graph made the way optimum makes one
  (`optimum-cli export onnx`, then `optimum-cli onnxruntime quantize --avx512_vnni`: dynamic int8 quantisation);
  Infinity picks the quantised file itself on a CPU. Its optimum classifier calls the pipeline without
  `batch_size`, so each text of a dynamic batch is a forward pass of its own (Infinity 0.0.78's code, as shipped).
  The graph it optimises on start is cached in a folder of the round's own (HF_HUB_CACHE), never reused from another
  model or round. Started with `--no-model-warmup`: its warm-up sends a
  514-token text, which this engine's pipeline does not truncate and the graph (512 positions) refuses, so the
  server does not start otherwise; for the same reason it runs each text at its full length (SST-2 test sentences
  are at most 70 tokens; the others cut at the model's max_length, 64);
- model-alone: no server: the model `thrifty serve` loads by default (the same backend, lanes and threads) predicting
  batches of serve.max_batch_texts random SST-2 test sentences, passes of serve.forward_batch_size, back to back for
  --seconds in one process: the ceiling of a server of this model with thrifty's batch settings on this machine at
  this hour (HTTP, the log and the load generator share the same cores; full batches sort better than the ~425
  texts in flight under 50 clients allow). No latency: nothing waits.
- pipeline-server: benchmarks/pipeline_server.py, the naive floor (a `def` endpoint calling the pipeline per
  request without batch_size, many passes at once in FastAPI's thread pool; no log).

Reported per system: texts/s (texts answered / time until the last answer), requests, p50/p95/p99 latency,
errors (a non-200 answer, a wrong number of predictions, a broken connection), and for thrifty the rows in its
prediction log against the predictions answered (after SIGTERM, which flushes the log). What differs by design:
thrifty writes every prediction to its log and the others write nothing; thrifty's default backend is bf16 on a bf16
CPU (compare it with careful-server-bf16; thrifty-torch with the fp32 servers; the int8 backends with each other).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from common import REPO, by_cpu, compare, head_by_cpu, ratio_line, read_sst2, spread, table_by_cpu
from inference import MODEL, make_model

SYSTEMS = ("thrifty", "thrifty-nobatch", "pipeline-server", "thrifty-onnx", "thrifty-onnx-int8", "thrifty-torch-bf16",
           "thrifty-torch", "careful-server", "careful-server-bf16", "infinity-torch", "infinity-optimum-int8",
           "model-alone")
BACKEND_SYSTEMS = ("thrifty-onnx", "thrifty-onnx-int8", "thrifty-torch-bf16", "thrifty-torch")  # --backend BACKEND
INFINITY_VENV = Path(os.environ.get("INFINITY_VENV", REPO.parent / "infinity-venv"))
INFINITY_NAME = "sst2"  # the name Infinity serves the model under


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A request maker: rng -> (path, JSON body, answered(payload) -> texts answered, or None when the answer is wrong)
NextRequest = Callable[[random.Random], tuple[str, dict, Callable[[dict], Optional[int]]]]


def text_requests(texts: list[str], path: str, body: Callable[[list[str]], dict], answers: str) -> NextRequest:
    """POST `path` with 1-16 of `texts` (`body` wraps them in the server's JSON); answered when the answer's list
    `answers` has one entry per text."""
    def next_request(rng: random.Random):
        n = rng.randint(1, 16)
        return path, body(rng.sample(texts, n)), lambda answer: n if len(answer.get(answers, [])) == n else None
    return next_request


def predict_requests(texts: list[str]) -> NextRequest:
    """thrifty's (and the pipeline servers') POST /v1/predict: one prediction per text."""
    return text_requests(texts, "/v1/predict", lambda sample: {"texts": sample}, "predictions")


def classify_requests(texts: list[str]) -> NextRequest:
    """Infinity's POST /classify: one list of label scores per text."""
    return text_requests(texts, "/classify", lambda sample: {"input": sample, "model": INFINITY_NAME}, "data")


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


def wait_ready(port: int, server: subprocess.Popen, log: Path, timeout: float = 300, path: str = "/readyz") -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become ready")


def measure(command: list[str], port: int, scratch: Path, next_request: NextRequest, args: argparse.Namespace,
            seed: int, ready_path: str = "/readyz", env: Optional[dict] = None, cwd: Path = REPO) -> dict:
    """Start the server (`command`, listening on `port`), load it with --clients clients for --seconds, stop it with
    SIGTERM (thrifty finishes what is in flight and flushes its log); throughput, latency percentiles, errors."""
    # The server's output goes to a file: an unread pipe fills up (64 KiB of access-log lines) and blocks the server
    output = open(scratch / "server.log", "w")
    server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env)
    try:
        wait_ready(port, server, scratch / "server.log", path=ready_path)
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


def infinity_int8_folder(folder: Path) -> Path:
    """The model folder as ONNX with optimum's dynamic int8 quantisation (AVX512-VNNI), made once with Infinity's own
    environment's optimum: what an Infinity user runs before `--engine optimum`."""
    out = folder.parent / "infinity-int8"
    if (out / "model_quantized.onnx").exists():
        return out
    fp32 = folder.parent / "infinity-onnx"
    cli = str(INFINITY_VENV / "bin" / "optimum-cli")
    subprocess.run([cli, "export", "onnx", "--model", str(folder), "--task", "text-classification", str(fp32)],
                   check=True, capture_output=True)
    subprocess.run([cli, "onnxruntime", "quantize", "--onnx_model", str(fp32), "--avx512_vnni", "-o", str(out)],
                   check=True, capture_output=True)
    for f in fp32.iterdir():  # tokenizer and config beside the graph, as Infinity loads them from the same folder
        if f.suffix != ".onnx" and not (out / f.name).exists():
            (out / f.name).write_bytes(f.read_bytes())
    return out


def model_alone(seed: int, args: argparse.Namespace) -> dict:
    """The served model's own texts/s: loaded as `thrifty serve` loads it, in full batches of serve.max_batch_texts
    (under 50 clients only about 425 texts are ever in flight, so the server's batches are smaller and more uneven),
    no HTTP, no log, no clients."""
    import torch

    from thrifty.config import ServeConfig
    from thrifty.inference.predictor import Predictor

    serve = ServeConfig()
    torch.set_num_threads(args.threads)  # as serving.app.ServedModel does
    model = Predictor.load(MODEL, backend=serve.backend, lanes=serve.lanes, threads=args.threads)
    texts, _ = read_sst2("stsa.binary.test")
    rng = random.Random(seed)
    model.predict(texts[:64], batch_size=serve.forward_batch_size)  # the server warms up before it is ready too
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < args.seconds:
        batch = rng.sample(texts, serve.max_batch_texts)
        model.predict(batch, batch_size=serve.forward_batch_size)
        done += len(batch)
    elapsed = time.perf_counter() - started
    return {"texts_per_second": round(done / elapsed, 1), "texts": done, "requests": None, "errors": 0,
            "p50_ms": None, "p95_ms": None, "p99_ms": None, "seconds": round(elapsed, 1), "backend": model.backend,
            "max_length": model.max_length}


def run_system(system: str, seed: int, args: argparse.Namespace) -> dict:
    from thrifty.inference.predictor import Predictor

    if system == "model-alone":
        return model_alone(seed, args)

    texts, _ = read_sst2("stsa.binary.test")
    loaded = Predictor.load(MODEL)
    max_length, default_backend = loaded.max_length, loaded.backend  # what `thrifty serve` resolves `auto` to here
    del loaded
    port, scratch = free_port(), Path(tempfile.mkdtemp(prefix="serve-load-"))
    db = scratch / "predictions.db"
    requests, ready_path, env, cwd = predict_requests(texts), "/readyz", None, REPO
    if system.startswith("thrifty"):
        command = [sys.executable, "-m", "thrifty", "serve", str(MODEL), "--port", str(port), "--db", str(db),
                   "--serve.threads", str(args.threads)] + (["--no-batching"] if system == "thrifty-nobatch" else [])
        if system in BACKEND_SYSTEMS:
            command += ["--backend", system.split("-", 1)[1]]
    elif system.startswith("careful-server"):
        command = [sys.executable, str(REPO / "benchmarks" / "careful_server.py"), str(MODEL / "model"), str(port),
                   str(max_length), str(args.threads), "bf16" if system.endswith("-bf16") else "fp32"]
    elif system.startswith("infinity"):
        int8 = system == "infinity-optimum-int8"
        folder = infinity_int8_folder(MODEL / "model") if int8 else MODEL / "model"
        # Started in the folder as "." : its optimum engine passes the ONNX file's path as found under --model-id to
        # optimum, which wants it relative to the folder (an absolute --model-id fails to start)
        cwd = folder
        command = [str(INFINITY_VENV / "bin" / "infinity_emb"), "v2", "--model-id", ".", "--served-model-name",
                   INFINITY_NAME, "--engine", "optimum" if int8 else "torch", "--device", "cpu", "--host", "127.0.0.1",
                   "--port", str(port)] + (["--no-model-warmup"] if int8 else [])
        requests, ready_path = classify_requests(texts), "/health"
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(scratch),
               "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
    else:
        command = [sys.executable, str(REPO / "benchmarks" / "pipeline_server.py"), str(MODEL / "model"), str(port),
                   str(max_length), str(args.threads)]
    result = {**measure(command, port, scratch, requests, args, seed, ready_path, env, cwd), "max_length": max_length}
    if system.startswith("thrifty"):
        result["log_rows"] = sqlite3.connect(db).execute("SELECT count(*) FROM predictions").fetchone()[0]
        result["backend"] = default_backend if system in ("thrifty", "thrifty-nobatch") else system.split("-", 1)[1]
    return result


def summarise(saved: dict, args: argparse.Namespace) -> list[str]:
    """One table per CPU the rounds ran on: figures from different machines are not pooled."""
    columns = ["system", "rounds", "texts/s", "p50 ms", "p95 ms", "p99 ms", "errors", "log rows = answered"]
    lines = head_by_cpu("Serving under load: thrifty serve vs a careful FastAPI + pipeline server, Infinity and the naive "
                        "pipeline server",
                        "python benchmarks/serve_load.py --seeds 20,21,22,23,24 --systems thrifty,thrifty-torch,"
                        "careful-server,careful-server-bf16,infinity-torch,thrifty-onnx-int8,infinity-optimum-int8", saved,
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
            logged = ("yes" if all(r["log_rows"] == r["texts"] for r in rs) else "no") if "log_rows" in rs[0] else \
                ("no server" if system == "model-alone" else "no log")
            lines.append(f"| {system} | {len(rs)} | {spread([r['texts_per_second'] for r in rs])} | "
                         f"{spread([r['p50_ms'] for r in rs])} | {spread([r['p95_ms'] for r in rs])} | "
                         f"{spread([r['p99_ms'] for r in rs])} | {sum(r['errors'] for r in rs)} | {logged} |")
        for a, b in [("thrifty", "careful-server-bf16"), ("thrifty", "careful-server"), ("thrifty-torch", "careful-server"),
                     ("thrifty-torch", "infinity-torch"), ("thrifty", "infinity-torch"),
                     ("thrifty-onnx-int8", "infinity-optimum-int8")] + \
                [(a, "pipeline-server") for a in ("thrifty", "thrifty-nobatch") + BACKEND_SYSTEMS] + \
                [("thrifty", "thrifty-nobatch"), ("thrifty-onnx-int8", "thrifty"), ("thrifty-torch-bf16", "thrifty"),
                 ("thrifty", "model-alone")]:
            line = ratio_line(runs, a, b, "texts_per_second", "texts/s")
            if line:
                lines.append(line)
        alone = [r["texts_per_second"] for r in runs if r["system"] == "model-alone"]
        served = [r for r in runs if r["system"] == "thrifty"]
        if alone and served:  # Little's law: a closed loop of N clients waits N / (requests/s) on average
            per_request = sum(r["texts"] for r in served) / sum(r["requests"] for r in served)
            best = statistics.median(alone)
            lines.append(f"\nThe arithmetic of the p99: {args.clients} clients, each waiting for its answer before it "
                         f"sends again, {per_request:.1f} texts per request on average: a server answering X texts/s "
                         f"keeps each waiting {args.clients} x {per_request:.1f} / X s on average (Little's law). At the "
                         f"model's own speed here ({best:.0f} texts/s, nothing else on the cores) that is "
                         f"{args.clients * per_request / best * 1000:.0f} ms: the mean latency of a server of this "
                         f"model and backend that cost nothing, with thrifty's batch settings and clients that send "
                         f"again at once, under this load on this machine; p99 is above the mean.")
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    compare(__file__, "serve_load", SYSTEMS, run_system, summarise, parser,
            {"clients": 50, "seconds": 60, "texts_per_request": "1-16", "model": str(MODEL.relative_to(REPO))},
            worker_args=lambda a: ["--clients", str(a.clients), "--seconds", str(a.seconds)], prepare=make_model)
