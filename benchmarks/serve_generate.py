"""POST /v1/generate under concurrent clients: generation requests written together (thrifty serve's default) or one
after another (`--no-batching`, how /v1/generate ran before).

    python benchmarks/serve_generate.py --seeds 0,1,2        # 3 rounds x 2 systems x 60 s, ~8 min on 2 cores

The model: SmolLM2-135M-Instruct fine-tuned by thrifty (LoRA, examples/sft_smollm2.yaml's recipe on 480 Emotion
training tweets; made once in benchmarks/runs/sft_serve_model), served from its adapter. The load: --clients (8)
concurrent keep-alive connections for --seconds (60), each request one Emotion test tweet as "Text: ...\\nEmotion:"
with max_new_tokens 8 (seeded per client and round: both systems get the same requests), traffic only to
127.0.0.1. Each system a fresh server process per round, order alternated, 2 threads. Reported: answers/s, p50/p95/
p99 latency, errors, and the exact match of the answers with the tweet's emotion (batching must not change them:
greedy decoding, left-padded batches).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import REPO, by_cpu, compare, head_by_cpu, ratio_line, spread, table_by_cpu
from serve_load import NextRequest, free_port, measure

SYSTEMS = ("thrifty", "thrifty-nobatch")
MODEL = REPO / "benchmarks" / "runs" / "sft_serve_model"
EMOTION = (REPO / ".." / "shared" / "data" / "emotion").resolve()
PROMPT = "Text: {text}\nEmotion:"


def make_model(args: argparse.Namespace) -> None:
    if not (MODEL / "model" / "thrifty.json").exists():
        import thrifty

        thrifty.train(str(REPO / "examples" / "sft_smollm2.yaml"), output=MODEL, progress=False, overwrite=True,
                      overrides=["--data.train", str(EMOTION / "train.txt"), "--data.validation", str(EMOTION / "val.txt"),
                                 "--data.max_train_examples", "480", "--data.max_eval_examples", "64",
                                 "--data.test", "null", "--generate.eval_examples", "0",
                                 "--train.evaluations_per_epoch", "1", "--train.num_threads", str(args.threads),
                                 "--tracking.tensorboard", "false"])


def emotion_test() -> tuple[list[str], list[str]]:
    """Emotion's test tweets as prompts, and their emotion words."""
    rows = [line.rpartition(";") for line in (EMOTION / "test.txt").read_text(encoding="utf-8").splitlines()[1:] if line]
    return [PROMPT.format(text=r[0]) for r in rows], [r[2] for r in rows]


def generate_requests(prompts: list[str], references: list[str], matches: list[bool]) -> NextRequest:
    """POST /v1/generate with one prompt; answered when one text comes back (its match with the reference kept)."""
    from thrifty.models.generation import answer_matches

    def next_request(rng):
        i = rng.randrange(len(prompts))

        def answered(body: dict):
            written = body.get("generations", [])
            if len(written) != 1:
                return None
            matches.append(answer_matches(written[0]["text"], references[i]))
            return 1
        return "/v1/generate", {"prompt": prompts[i], "max_new_tokens": 8}, answered
    return next_request


def run_system(system: str, seed: int, args: argparse.Namespace) -> dict:
    prompts, references = emotion_test()
    port, scratch = free_port(), Path(tempfile.mkdtemp(prefix="serve-generate-"))
    command = [sys.executable, "-m", "thrifty", "serve", str(MODEL), "--port", str(port), "--serve.threads",
               str(args.threads), "--no-log"] + (["--no-batching"] if system == "thrifty-nobatch" else [])
    matches: list[bool] = []
    result = measure(command, port, scratch, generate_requests(prompts, references, matches), args, seed)
    return {**result, "answers_per_second": result.pop("texts_per_second"),
            "exact_match": round(sum(matches) / max(1, len(matches)), 4)}


def summarise(saved: dict, args: argparse.Namespace) -> list[str]:
    columns = ["system", "rounds", "answers/s", "p50 ms", "p95 ms", "p99 ms", "errors", "exact match"]
    lines = head_by_cpu("POST /v1/generate under concurrent clients: batched vs one request at a time",
                        "python benchmarks/serve_generate.py --seeds 0,1,2", saved,
                        f"{args.clients} concurrent clients for {args.seconds:g} s, one Emotion test tweet per request, "
                        "max_new_tokens 8, SmolLM2-135M-Instruct with a thrifty LoRA adapter; median (min-max) over rounds.")
    for cpu, runs in by_cpu(saved).items():
        lines += table_by_cpu(cpu, runs, columns)
        for system in SYSTEMS:
            rs = [r for r in runs if r["system"] == system]
            if rs:
                lines.append(f"| {system} | {len(rs)} | {spread([r['answers_per_second'] for r in rs], '{:.1f}')} | "
                             f"{spread([r['p50_ms'] for r in rs])} | {spread([r['p95_ms'] for r in rs])} | "
                             f"{spread([r['p99_ms'] for r in rs])} | {sum(r['errors'] for r in rs)} | "
                             f"{spread([r['exact_match'] for r in rs], '{:.3f}')} |")
        line = ratio_line(runs, "thrifty", "thrifty-nobatch", "answers_per_second", "answers/s")
        if line:
            lines.append(line)
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    compare(__file__, "serve_generate", SYSTEMS, run_system, summarise, parser,
            {"clients": 8, "seconds": 60, "max_new_tokens": 8, "model": str(MODEL.relative_to(REPO))},
            worker_args=lambda a: ["--clients", str(a.clients), "--seconds", str(a.seconds)], prepare=make_model)
