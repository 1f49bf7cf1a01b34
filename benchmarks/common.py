"""Shared by the benchmark scripts: paths, the machine a result was measured on, SST-2 files, result files, and the
harness every side-by-side comparison runs on (`compare`)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
SST2 = (REPO / ".." / "shared" / "data" / "sst2").resolve()
RESULTS = Path(os.environ.get("THRIFTY_BENCHMARK_RESULTS", REPO / "benchmarks" / "results"))  # tests point it elsewhere


def machine(threads: int) -> dict:
    """CPU model, cores, threads used and library versions: recorded with every result."""
    import torch
    import transformers

    from thrifty.cost.calibration_cache import cpu_name

    return {"cpu": cpu_name(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "threads": threads,
            "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()}


MATRIX_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")


def cpu_flags() -> list[str]:
    """The CPU's instructions that decide bf16 and int8 speed (AMX, AVX512-BF16, VNNI), as /proc/cpuinfo lists them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in MATRIX_FLAGS if f in have]
    except OSError:
        pass
    return []


def read_sst2(name: str) -> tuple[list[str], list[int]]:
    """Texts and integer labels of one SST-2 file ('label text' lines)."""
    rows = [line.partition(" ") for line in (SST2 / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r[2] for r in rows], [int(r[0]) for r in rows]


def write_results(stem: str, data: dict, markdown: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text("\n".join(markdown) + "\n")
    print("\n".join(markdown))


class WorkerFailed(RuntimeError):
    """A benchmark worker process ended without printing its RESULT line."""


def run_worker(script: str, args: list[str], threads: int) -> dict:
    """Run `script --worker ...` in a fresh process with `threads` threads; its `RESULT {json}` line, parsed."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, script, *args, "--threads", str(threads)], capture_output=True, text=True,
                         env=env, cwd=REPO)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise WorkerFailed((out.stderr.strip().splitlines() or ["no output"])[-1][:300] + "\n" + out.stderr[-3000:])
    return json.loads(line[len("RESULT "):])


# ------------------------------------------------------------------------------------------------ the harness
# Every comparison in the README runs through `compare`: each system in a fresh process per seed, the order
# alternated from one seed to the next (and across invocations), every run appended to the results JSON as it
# ends, summaries as median (min-max). A second reader reruns the script's one command and gets the same table.

PROCESS_START = time.perf_counter()  # a worker's process clock starts when it imports this module


def spread(values: Sequence[float], fmt: str = "{:.0f}") -> str:
    """'median (min-max)' of the values, or 'n/a'."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def per_seed(runs: list[dict], key: str, fmt: str = "{:.3f}") -> str:
    """'median (one value per seed, in run order)': for accuracies, where each seed's value matters."""
    values = [r[key] for r in runs]
    return f"{statistics.median(values):.4f} ({', '.join(fmt.format(v) for v in values)})"


def machine_line(m: dict) -> str:
    return f"{m['cpu']}, {m['threads']} threads, torch {m['torch']}, transformers {m['transformers']}."


def table_head(title: str, command: str, saved: dict, text: str, columns: Sequence[str]) -> list[str]:
    """The top of a results .md: title, the command that regenerates it, the machine, the settings, a table header."""
    return [f"# {title}", "", f"`{command}` (settings: the script's docstring). {machine_line(saved['machine'])} {text}",
            "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]


def head_by_cpu(title: str, command: str, saved: dict, text: str) -> list[str]:
    """The top of a results .md whose tables are one per CPU (table_by_cpu): title, command, libraries, settings."""
    m = saved["machine"]
    return [f"# {title}", "", f"`{command}` (settings: the script's docstring). {m['threads']} threads, torch "
            f"{m['torch']}, transformers {m['transformers']}. {text} One table per CPU: figures from different machines "
            "are not pooled."]


def table_by_cpu(cpu: str, runs: list[dict], columns: Sequence[str]) -> list[str]:
    flags = next((r["cpu_flags"] for r in runs if r.get("cpu_flags") is not None), None)
    shown = f"; flags {', '.join(flags) or 'none of ' + '/'.join(MATRIX_FLAGS)}" if flags is not None else ""
    return ["", f"## {cpu}{shown} (rounds of seeds {', '.join(map(str, sorted({r['seed'] for r in runs})))})", "",
            "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]


def by_cpu(saved: dict) -> dict[str, list[dict]]:
    """The runs of a results file per CPU model, in the order first run (runs from before runs named their CPU ran on
    the file's first machine): figures from different machines are never pooled."""
    groups: dict[str, list[dict]] = {}
    for r in saved["runs"]:
        groups.setdefault(r.get("cpu") or saved["machine"]["cpu"], []).append(r)
    return groups


def median_of(runs: list[dict], system: str, key: str) -> Optional[float]:
    values = [r[key] for r in runs if r["system"] == system and r.get(key) is not None]
    return statistics.median(values) if values else None


def paired_ratios(runs: list[dict], a: str, b: str, value: Callable[[dict], Optional[float]]) -> list[float]:
    """value(a's run) / value(b's run) for each seed (or round) both systems ran: the spread of a ratio."""
    by_seed: dict[int, dict[str, dict]] = {}
    for r in runs:
        by_seed.setdefault(r["seed"], {})[r["system"]] = r
    pairs = [(value(v[a]), value(v[b])) for _, v in sorted(by_seed.items()) if a in v and b in v]
    return [x / y for x, y in pairs if x and y]


def ratio_line(runs: list[dict], a: str, b: str, key: str, unit: str) -> Optional[str]:
    """'a / b unit: median ratio (round by round ...)' over the rounds both ran, or None."""
    ratios = paired_ratios(runs, a, b, lambda r: r[key])
    if not ratios:
        return None
    return f"\n{a} / {b} {unit}: {statistics.median(ratios):.2f}x (round by round {', '.join(f'{x:.2f}x' for x in ratios)})"


def compare(script: str, stem: str, systems: Sequence[str], run_system: Callable[[str, int, argparse.Namespace], dict],
            summarise: Callable[[dict, argparse.Namespace], list[str]], parser: argparse.ArgumentParser, settings: dict,
            worker_args: Callable[[argparse.Namespace], list[str]] = lambda args: [], default_seeds: str = "0,1,2",
            prepare: Optional[Callable[[argparse.Namespace], None]] = None,
            default_systems: Optional[Sequence[str]] = None) -> None:
    """The command line of a comparison script. Without --worker: run every chosen system once per seed, each in a
    fresh process with --threads threads, appending to results/<stem>.json; then write results/<stem>.md from
    `summarise(saved, args)`. `prepare(args)` runs once before the first run (e.g. to train the model that all
    systems then serve). With --worker (internal): run one system once and print its RESULT line."""
    parser.add_argument("--seeds", default=default_seeds, help="comma-separated seeds; one run per system per seed")
    parser.add_argument("--systems", default=",".join(default_systems or systems),
                        help="which sides to run (e.g. only thrifty after a change to thrifty: the others' runs stay)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--summary-only", action="store_true", help="rewrite the .md from the saved runs; run nothing")
    parser.add_argument("--worker", choices=systems, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    stem = stem.format(**vars(args))
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        result = run_system(args.worker, args.seed, args)
        result["process_wall_seconds"] = round(time.perf_counter() - PROCESS_START, 1)
        print("RESULT " + json.dumps(result), flush=True)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{stem}.json"
    saved = json.loads(out.read_text()) if out.exists() else {"machine": machine(args.threads), "settings": settings,
                                                              "runs": []}
    chosen = [s for s in args.systems.split(",") if s]
    unknown = sorted(set(chosen) - set(systems))
    if unknown:
        raise SystemExit(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(systems)}")
    seeds = [] if args.summary_only else [int(s) for s in args.seeds.split(",") if s.strip()]
    done = len({r["seed"] for r in saved["runs"] if r["system"] in chosen})  # alternation goes on across invocations
    total, started, finished = len(seeds) * len(chosen), time.perf_counter(), 0
    if seeds and prepare is not None:
        prepare(args)
    here = machine(args.threads) if seeds else {}  # per run: a results file may gather more than one machine
    cpu, flags = here.get("cpu"), here.get("cpu_flags")
    for n, seed in enumerate(seeds, start=done):
        for system in (chosen if n % 2 == 0 else chosen[::-1]):
            result = run_worker(script, ["--worker", system, "--seed", str(seed), *worker_args(args)], args.threads)
            saved["runs"].append({"system": system, "seed": seed, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu,
                                  "cpu_flags": flags, **result})
            out.write_text(json.dumps(saved, indent=2) + "\n")  # kept as each run ends
            finished += 1
            elapsed = time.perf_counter() - started
            print(f"[{finished}/{total}] seed {seed} {system}: process {result['process_wall_seconds']:.0f} s; "
                  f"elapsed {elapsed / 60:.1f} min, about {elapsed / finished * (total - finished) / 60:.1f} min left",
                  file=sys.stderr, flush=True)
    lines = summarise(saved, args)
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# ------------------------------------------------------------------------------------------------ the two sides
# Sentence classification, once for each side, so that every comparison gives both the same rows and recipe.

def sst2_sample_file(n: int, folder: Path) -> Path:
    """A seeded sample of `n` SST-2 training lines ('label text'), the same file for every system and seed."""
    import random

    lines = [line for line in (SST2 / "stsa.binary.train").read_text(encoding="utf-8").splitlines() if line.strip()]
    path = folder / f"sst2_train_{n}.txt"
    path.write_text("\n".join(random.Random(0).sample(lines, n)) + "\n", encoding="utf-8")
    return path


def thrifty_classification(config, seed: int, overrides: Sequence[str] = ()) -> dict:
    """thrifty.train on `config` with `--train.seed seed`: its evaluation history and clocks."""
    import tempfile

    import thrifty

    called = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = thrifty.train(config, output=Path(tmp) / "run", progress=False, overrides=[
            "--train.seed", str(seed), "--data.test", "null", "--tracking.tensorboard", "false",
            "--tracking.energy", "false", *overrides])
        sizes = json.loads((result.run_dir / "data_report.json").read_text())["sizes"]
    m, train = result.metrics, result.metrics["train"]
    return {"history": [{k: h[k] for k in ("step", "epoch", "accuracy", "wall_seconds")} for h in m["history"]],
            "best_dev_accuracy": m["validation"]["accuracy"], "steps": train["steps"],
            "loop_wall_seconds": train["loop_wall_seconds"],
            "setup_seconds": round(called - PROCESS_START + train["setup_seconds"], 2),  # process start to first step
            "real_tokens": train["tokens"], "padded_tokens": round(train["tokens"] / (1 - train["padding_fraction"])),
            "train_rows": sizes["train"], "precision": m["model"]["precision"]}  # examples seen / epochs would be wrong for a run stopped early


def trainer_classification(config, seed: int, *, max_length: int, epochs: int, grouped: bool,
                           eval_steps: Optional[int] = None, target: Optional[float] = None, bf16: bool = False) -> dict:
    """Hugging Face Trainer on the very rows thrifty trains on for `config` (thrifty's cleaning, read through
    `prepare_data`), with thrifty's recipe: its learning rate and batch size, warmup 6% then linear decay, weight
    decay 0.01 (not on biases/LayerNorm), clipping at 1.0, evaluation batch 128; evaluation and a checkpoint every
    `eval_steps` steps (or each epoch), the best model loaded at the end; stops at the first evaluation reaching
    `target`. The stopwatch starts at the first step (`on_step_begin`); a history entry reads it at the end of its
    evaluation (earlier checkpoints counted), the loop's total after the last checkpoint: the same points at which
    thrifty reads its `wall_seconds` and `loop_wall_seconds`. `bf16`: TrainingArguments(bf16=True), the Trainer's bf16
    autocast (fp32 master weights), training and evaluation alike, as thrifty's train.precision bf16."""
    import tempfile

    import numpy as np
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainerCallback, TrainingArguments, set_seed)

    from thrifty.data.prepare import prepare_data
    from thrifty.inputs import as_config
    from thrifty.models.loading import default_model_dir, quiet_transformers

    quiet_transformers()
    set_seed(seed)
    config = as_config(config)
    data = prepare_data(config.data, seed)  # the rows thrifty trains on
    path = default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(data.label_names))

    def dataset(split):
        enc = tokenizer(split.texts, truncation=True, max_length=max_length)
        return [{"input_ids": i, "attention_mask": m, "labels": y}
                for i, m, y in zip(enc["input_ids"], enc["attention_mask"], split.labels)]

    train, dev = dataset(data.train), dataset(data.validation)
    history: list[dict] = []
    counts = {"real": 0, "padded": 0}

    def count_tokens(module, args, kwargs):  # the tokens each training forward computes on, padding included
        if module.training:
            counts["real"] += int(kwargs["attention_mask"].sum())
            counts["padded"] += kwargs["attention_mask"].numel()

    model.register_forward_pre_hook(count_tokens, with_kwargs=True)

    class Stopwatch(TrainerCallback):
        start: Optional[float] = None
        last: float = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            if self.start is None:
                self.start = time.perf_counter()

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            self.last = time.perf_counter() - self.start
            history.append({"step": state.global_step, "epoch": round(state.epoch, 3),
                            "accuracy": metrics["eval_accuracy"], "wall_seconds": round(self.last, 2)})
            if target is not None and metrics["eval_accuracy"] >= target:
                control.should_training_stop = True

        def on_save(self, args, state, control, **kwargs):  # the last checkpoint ends the loop's clock
            self.last = time.perf_counter() - self.start

    def accuracy(prediction):
        return {"accuracy": float(np.mean(np.argmax(prediction.predictions, axis=1) == prediction.label_ids))}

    stopwatch = Stopwatch()
    schedule = {"eval_strategy": "steps", "eval_steps": eval_steps, "save_strategy": "steps", "save_steps": eval_steps} \
        if eval_steps else {"eval_strategy": "epoch", "save_strategy": "epoch"}
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, learning_rate=config.train.learning_rate, per_device_train_batch_size=config.train.batch_size,
            per_device_eval_batch_size=128, num_train_epochs=epochs, warmup_steps=0.06, weight_decay=0.01,
            max_grad_norm=1.0, lr_scheduler_type="linear", save_total_limit=1, load_best_model_at_end=True,
            metric_for_best_model="accuracy", logging_strategy="no", report_to=[], disable_tqdm=True, seed=seed,
            use_cpu=True, dataloader_num_workers=0, bf16=bf16, **schedule,
            **({"train_sampling_strategy": "group_by_length"} if grouped else {}))
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=dev, data_collator=DataCollatorWithPadding(tokenizer),
                          compute_metrics=accuracy, callbacks=[stopwatch])
        output = trainer.train()
    return {"history": history, "best_dev_accuracy": max(h["accuracy"] for h in history),
            "steps": output.global_step, "loop_wall_seconds": round(stopwatch.last, 2),
            "setup_seconds": round(stopwatch.start - PROCESS_START, 2),  # process start to first step
            "real_tokens": counts["real"], "padded_tokens": counts["padded"],
            "train_rows": len(train), "precision": "bf16" if bf16 else "fp32"}
