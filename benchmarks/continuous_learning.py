"""A real stream, end to end: a champion trained on book reviews is served; kitchen reviews arrive in batches with
their labels sent as feedback; the monitor checks drift; `thrifty retrain` trains challengers and promotes the ones
that win; one batch's labels are shuffled on purpose and must not get through. (Blitzer et al. 2007 multi-domain
reviews, ../shared/data/blitzer_mds.)

    python benchmarks/continuous_learning.py                       # 8 batches of 200, batch 5 shuffled
    python benchmarks/continuous_learning.py --batches 2 --batch-size 60 --books 300 --smoke   # mechanics only

Data, split once (seed 0, stratified): books' 2,000 reviews -> 1,200 train the first champion, 400 are the retrain's
reference set of the original distribution (`retrain.reference`: the "not worse on the original data" check), 400
held out for this report; kitchen's 2,000 -> 400 held out (never sent to the server), 1,600 streamed as `--batches`
batches of `--batch-size`.
- The champion: `thrifty train` full fine-tuning of all-MiniLM-L6-v2 (max_length 128, 2 epochs, batch 32, lr 1e-4, a
  seeded 10% of its data as validation), registered and promoted (`thrifty registry register --promote`).
- The server: `thrifty serve models:/reviews@champion` (1 thread, prediction log in SQLite, the alias checked every 2 s)
  in its own process, with a background client sending a request of 4 kitchen texts every 0.25 s the whole time.
- Per batch: its texts sent to /v1/predict (10 per request), each answer's id sent to /v1/feedback with the review's
  label (shuffled among the batch for `--shuffled-batch`); `thrifty monitor models:/reviews@champion` for the
  batch's traffic (exit 1 = drift flagged, recorded); then `thrifty retrain` (as a schedule would run it; defaults:
  feedback since the champion, so rejected rounds' feedback adds up until a challenger wins, less a refused round's
  newest feedback when its labels agree with the champion no better than chance (quarantined); 30% held out, replay
  1:1, margin 0.01, one-sided McNemar p < 0.05, tolerance 0.01; the champion's recipe with 1 thread); then the live
  champion's accuracy on the kitchen and books held-out reviews (offline, `Predictor` from the registry).
Every request's status is counted (predict, feedback, background): the floor is zero failures.
Floors (issue 13): kitchen accuracy ends >= 3 points above the first champion's; books accuracy within 1 point of it;
the shuffled batch's challenger not promoted; zero failed requests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import REPO, RESULTS, machine, write_results  # noqa: E402
from domain_adaptation import reviews  # noqa: E402
from serve_load import free_port, wait_ready  # noqa: E402

NAME = "reviews"
TRAIN = ["--data.max_length", "128", "--train.epochs", "2", "--train.batch_size", "32", "--train.learning_rate", "1e-4"]


def call(base: str, path: str, body: dict, timeout: float = 120.0) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read().decode(errors="replace")[:300]}
    except OSError as exc:
        return -1, {"error": str(exc)}


def thrifty(*args: str, threads: int = 1, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, "-m", "thrifty", *args], capture_output=True, text=True, env=env,
                            cwd=REPO)
    if check and result.returncode != 0:
        raise RuntimeError(f"thrifty {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def split(rows: list[tuple[str, str]], held: int, seed: int = 0):
    """Stratified: `held` rows (half per label) held out, the rest shuffled (seeded)."""
    rng = random.Random(seed)
    by = {lab: [r for r in rows if r[0] == lab] for lab in sorted({r[0] for r in rows})}
    kept, rest = [], []
    for lab in by:
        rng.shuffle(by[lab])
        kept += by[lab][: held // len(by)]
        rest += by[lab][held // len(by):]
    rng.shuffle(rest)
    return kept, rest


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("label\ttext\n" + "".join(f"{lab}\t{text}\n" for lab, text in rows), encoding="utf-8")
    return path


def accuracy(predictor, rows: list[tuple[str, str]]) -> float:
    answers = predictor.predict([t for _, t in rows])
    return sum(a["label"] == lab for a, (lab, _) in zip(answers, rows)) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--shuffled-batch", type=int, default=5, help="1-based; 0 for none")
    parser.add_argument("--books", type=int, default=2000, help="book reviews used (smoke runs use fewer)")
    parser.add_argument("--held-out", type=int, default=400)
    parser.add_argument("--retrain-epochs", type=int, default=None, help="the challenger's epochs (default: the "
                        "champion's recipe, 2)")
    parser.add_argument("--seed", type=int, default=0, help="training and retrain seed (the data splits stay fixed); "
                        "each seed's run is kept in the results, one per seed")
    parser.add_argument("--smoke", action="store_true", help="a mechanics check: results go to benchmarks/runs only")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import torch

    torch.set_num_threads(1)
    from thrifty.inference.predictor import Predictor
    from thrifty.registry.store import Registry

    folder = REPO / "benchmarks" / "runs" / "stream"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    store = f"sqlite:///{folder / 'mlflow.db'}"
    db = folder / "predictions.db"
    books = reviews("books")
    books = random.Random(0).sample(books, args.books) if args.books < len(books) else books
    held = args.held_out if args.books >= 2000 else args.books // 5
    books_held, books_rest = split(books, held)
    books_reference, books_train = split(books_rest, held, seed=1)
    reference = write_tsv(folder / "books_reference.tsv", books_reference)
    kitchen_held, kitchen_stream = split(reviews("kitchen"), args.held_out)
    kitchen_stream = kitchen_stream[: args.batches * args.batch_size]
    started = time.perf_counter()

    # the first champion
    t0 = time.perf_counter()
    thrifty("train", "--data.train", str(write_tsv(folder / "books_train.tsv", books_train)), "--output",
            str(folder / "champion"), "--no-progress", "--train.num_threads", "2", "--train.seed", str(args.seed),
            *TRAIN, threads=2)
    thrifty("registry", "register", str(folder / "champion"), "--name", NAME, "--promote", "--reason",
            "trained on books", "--registry", store)
    champion_seconds = time.perf_counter() - t0
    registry = Registry(store)

    def live_figures() -> dict:
        version = registry.resolve(NAME)
        predictor = Predictor.load(registry.local_model(version), lanes=1, threads=1)
        return {"version": version.version, "kitchen": round(accuracy(predictor, kitchen_held), 4),
                "books": round(accuracy(predictor, books_held), 4), "run_dir": version.tags.get("thrifty.run_dir")}

    first = live_figures()
    print(f"champion v1: kitchen {first['kitchen']:.4f}, books {first['books']:.4f} ({champion_seconds:.0f} s)", flush=True)

    # the server and its background traffic
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_log = open(folder / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "thrifty", "serve", f"models:/{NAME}@champion", "--registry", store,
                               "--port", str(port), "--db", str(db), "--serve.threads", "1",
                               "--serve.registry_poll_seconds", "2"], stdout=server_log, stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": "1",
                                   "PYTHONPATH": str(REPO / "src")}, cwd=REPO)
    requests = {"sent": 0, "failed": 0, "failures": []}
    lock = threading.Lock()

    def count(status: int, body: dict, what: str) -> None:
        with lock:
            requests["sent"] += 1
            if status != 200:
                requests["failed"] += 1
                requests["failures"].append(f"{what}: {status} {str(body)[:200]}")

    wait_ready(port, server, folder / "server.log")
    stop = threading.Event()

    def background() -> None:
        rng = random.Random(1)
        while not stop.wait(0.25):
            texts = [t for _, t in rng.sample(kitchen_stream, 4)]
            status, body = call(base, "/v1/predict", {"texts": texts})
            count(status, body, "background predict")

    client = threading.Thread(target=background, daemon=True)
    client.start()

    rounds = []
    try:
        for k in range(args.batches):
            batch = kitchen_stream[k * args.batch_size: (k + 1) * args.batch_size]
            shuffled = k + 1 == args.shuffled_batch
            labels = [lab for lab, _ in batch]
            if shuffled:
                random.Random(100 + k).shuffle(labels)
            since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            ids = []
            for i in range(0, len(batch), 10):
                status, body = call(base, "/v1/predict", {"texts": [t for _, t in batch[i: i + 10]]})
                count(status, body, "predict")
                ids += [p["id"] for p in body.get("predictions", [])] if status == 200 else [None] * len(batch[i: i + 10])
            for prediction_id, label in zip(ids, labels):
                if prediction_id is not None:
                    status, body = call(base, "/v1/feedback", {"id": prediction_id, "label": label})
                    count(status, body, "feedback")
            t0 = time.perf_counter()
            monitored = thrifty("monitor", f"models:/{NAME}@champion", "--registry", store, "--db", str(db), "--since",
                                since, "--output", str(folder / f"monitor-{k + 1}"), check=False)
            monitor_seconds = time.perf_counter() - t0
            if monitored.returncode not in (0, 1):
                raise RuntimeError(f"thrifty monitor failed: {monitored.stderr[-2000:]}")
            t0 = time.perf_counter()
            thrifty("retrain", "--name", NAME, "--registry", store, "--db", str(db), "--output",
                    str(folder / f"retrain-{k + 1}"), "--no-progress", "--retrain.reference", str(reference),
                    "--train.num_threads", "1", "--train.seed", str(args.seed), "--retrain.seed", str(args.seed),
                    *(["--train.epochs", str(args.retrain_epochs)] if args.retrain_epochs else []), threads=1)
            retrain_seconds = time.perf_counter() - t0
            report = json.loads((folder / f"retrain-{k + 1}" / "retrain.json").read_text())
            time.sleep(3)  # the server's next look at the alias (every 2 s)
            live = live_figures()
            status, info = 0, {}
            try:
                with urllib.request.urlopen(base + "/v1/model", timeout=10) as answer:
                    info = json.loads(answer.read())
            except OSError:
                pass
            row = {"batch": k + 1, "labels": "shuffled" if shuffled else "true", "drift_flagged": monitored.returncode == 1,
                   "decision": report["status"], "challenger": report.get("challenger"),
                   "new_slice": report.get("figures", {}).get("new_slice"),
                   "reference": report.get("figures", {}).get("reference"), "reasons": report.get("decision", {}).get("reasons"),
                   "newest_window": report.get("data", {}).get("newest_window"),
                   "quarantined": bool(report.get("data", {}).get("quarantined")),
                   "feedback_quarantined": report.get("data", {}).get("feedback_quarantined",
                                                                     report.get("feedback_quarantined", 0)),
                   "champion": live["version"], "served_version": info.get("version"),
                   "kitchen": live["kitchen"], "books": live["books"], "monitor_seconds": round(monitor_seconds, 1),
                   "retrain_seconds": round(retrain_seconds, 1)}
            rounds.append(row)
            print(f"batch {k + 1} ({row['labels']}): drift {'flagged' if row['drift_flagged'] else 'not flagged'}; "
                  f"{row['decision']} (v{row['challenger']}); live v{row['champion']} (served {row['served_version']}): "
                  f"kitchen {row['kitchen']:.4f}, books {row['books']:.4f}; retrain {retrain_seconds:.0f} s", flush=True)
    finally:
        stop.set()
        client.join(10)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        server_log.close()

    last = rounds[-1] if rounds else {"kitchen": first["kitchen"], "books": first["books"]}
    shuffled_rounds = [r for r in rounds if r["labels"] == "shuffled"]
    floors = {"kitchen_gain_points": round(100 * (last["kitchen"] - first["kitchen"]), 1),
              "books_change_points": round(100 * (last["books"] - first["books"]), 1),
              "shuffled_batch_promoted": any(r["decision"] == "promoted" for r in shuffled_rounds),
              "failed_requests": requests["failed"]}
    floors["held"] = (floors["kitchen_gain_points"] >= 3 and floors["books_change_points"] >= -1
                      and not floors["shuffled_batch_promoted"] and requests["failed"] == 0)
    data = {"machine": machine(2), "settings": vars(args), "first_champion": first,
            "champion_seconds": round(champion_seconds, 1), "rounds": rounds, "requests": requests, "floors": floors,
            "seconds": round(time.perf_counter() - started, 1)}
    if args.smoke:
        (folder / "result.json").write_text(json.dumps(data, indent=2) + "\n")
        print("\n".join(summarise({"runs": [data]})))
        return
    results = RESULTS / "continuous_learning.json"
    runs = json.loads(results.read_text()).get("runs", []) if results.exists() else []  # one run per seed
    runs = sorted([r for r in runs if r["settings"].get("seed") != args.seed] + [data], key=lambda r: r["settings"]["seed"])
    plot(runs, RESULTS / "continuous_learning.png")
    write_results("continuous_learning", {"runs": runs}, summarise({"runs": runs}))


def summarise(results: dict) -> list[str]:
    """One table per seed, then the floors over the seeds (median and range)."""
    import statistics

    from common import machine_line

    runs = results["runs"]
    lines = ["# Continuous learning: books champion, kitchen stream, retraining with a gate", "",
             f"`python benchmarks/continuous_learning.py --seed N` (settings: the script's docstring); seeds "
             f"{', '.join(str(r['settings']['seed']) for r in runs)}. {machine_line(runs[-1]['machine'])}", ""]
    gains = [r["floors"]["kitchen_gain_points"] for r in runs]
    books = [r["floors"]["books_change_points"] for r in runs]
    spread = lambda xs: f"{statistics.median(xs):+.1f} ({min(xs):+.1f} to {max(xs):+.1f})"  # noqa: E731
    lines += [f"Over {len(runs)} seed(s): kitchen {spread(gains)} points (floor >= +3), books {spread(books)} points "
              f"(floor >= -1), shuffled batch promoted in {sum(r['floors']['shuffled_batch_promoted'] for r in runs)}, "
              f"failed requests {sum(r['floors']['failed_requests'] for r in runs)} of "
              f"{sum(r['requests']['sent'] for r in runs)}; floors held in {sum(r['floors']['held'] for r in runs)} of "
              f"{len(runs)} runs.", ""]
    for data in runs:
        first, floors = data["first_champion"], data["floors"]
        epochs = data["settings"].get("retrain_epochs")
        lines += [f"## Seed {data['settings']['seed']}", "",
                  f"Challengers: {f'{epochs} epochs' if epochs else 'the champion recipe (2 epochs)'}. "
                  f"First champion (books, {data['champion_seconds']:.0f} s to train): kitchen {first['kitchen']:.4f}, "
                  f"books {first['books']:.4f} on the held-out reviews. Newest labels vs champion: Cohen's kappa of the "
                  "batch's labels against the champion's answers (q: refused and no better than chance, quarantined).", "",
                  "| batch | labels | drift flagged | retrain | new slice champion -> challenger (p) | reference | "
                  "newest labels vs champion | live version | kitchen | books | retrain s |", "|" + " --- |" * 11]
        for r in data["rounds"]:
            new, ref = r.get("new_slice") or {}, r.get("reference") or {}
            slice_text = (f"{new['champion_accuracy']:.3f} -> {new['challenger_accuracy']:.3f} "
                          f"({new['test']['p_value']:.3g})" if new else "-")
            ref_text = f"{ref['champion_accuracy']:.3f} -> {ref['challenger_accuracy']:.3f}" if ref else "-"
            window = r.get("newest_window")
            window_text = (f"{window['kappa']:.2f} (p {window['p_value']:.2g}){' q' if r.get('quarantined') else ''}"
                           if window else "-")
            decision = r["decision"] + (f", {r['feedback_quarantined']} left out" if r.get("feedback_quarantined") else "")
            lines.append(f"| {r['batch']} | {r['labels']} | {'yes' if r['drift_flagged'] else 'no'} | {decision} | "
                         f"{slice_text} | {ref_text} | {window_text} | v{r['champion']} | {r['kitchen']:.4f} | "
                         f"{r['books']:.4f} | {r['retrain_seconds']:.0f} |")
        lines += ["", f"Floors: kitchen {floors['kitchen_gain_points']:+.1f} points (>= +3), books "
                  f"{floors['books_change_points']:+.1f} points (>= -1), shuffled batch promoted: "
                  f"{'yes' if floors['shuffled_batch_promoted'] else 'no'}, failed requests {floors['failed_requests']} "
                  f"of {data['requests']['sent']}: {'held' if floors['held'] else 'NOT held'}. Whole run "
                  f"{data['seconds'] / 60:.0f} min.", ""]
    return lines


def plot(runs: list[dict], path: Path) -> None:
    """Live accuracy per batch, one line per seed and domain; promotions (green) and the shuffled batch (red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, data in enumerate(runs):
        rounds = data["rounds"]
        xs = [0] + [r["batch"] for r in rounds]
        for key, colour in (("kitchen", "tab:orange"), ("books", "tab:blue")):
            ax.plot(xs, [100 * data["first_champion"][key]] + [100 * r[key] for r in rounds], marker="o^sDv"[i % 5], color=colour, alpha=0.85, label=f"{key} (held out)" if i == 0 else None)
        for r in rounds:
            if r["decision"] == "promoted":
                ax.axvline(r["batch"], color="tab:green", alpha=0.25)
    shuffled = {r["batch"] for data in runs for r in data["rounds"] if r["labels"] == "shuffled"}
    for batch in shuffled:
        ax.axvspan(batch - 0.4, batch + 0.4, color="tab:red", alpha=0.15)
    ax.set_xlabel("kitchen batch (green: a challenger promoted; red: labels shuffled)")
    ax.set_ylabel("live model accuracy, %")
    ax.set_title(f"{len(runs)} seed(s), one marker per seed", fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
