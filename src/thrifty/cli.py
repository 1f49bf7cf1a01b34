"""The `thrifty` command line: train, adapt, zeroshot, evaluate, predict, serve, migrate, export, monitor, audit,
registry, retrain, estimate, tune, recommend, models, hardware, config.

Bad input ends with exit code 2 and one line on stderr naming the problem and the fix; ``--debug`` shows
the traceback instead. Ctrl-C during training stops at a step boundary with a resumable checkpoint
(exit code 130).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Optional

from thrifty.config import BACKENDS
from thrifty.errors import Interrupted, ThriftyError

EPILOG_TRAIN = """config overrides: any key as --section.key VALUE, e.g.
  --data.max_train_examples 500 --data.max_length 64 --train.epochs 2 --train.batch_size 16
  --train.learning_rate 5e-5 --train.seed 1 --strategy.name lora
`thrifty config` prints every key with its default."""


BACKEND_HELP = ("torch (fp32); torch-bf16 (bf16 weights: CPUs with AMX or AVX512-BF16, GPUs with bf16); onnx or onnx-int8: "
                "ONNX Runtime on the graph `thrifty export` wrote (classification)")
LANES_HELP = ("classification passes run at once, each on threads / N CPU threads (default: one per thread on a CPU, "
              "the most texts/s for small models; 1 for the lowest latency of a lone request on many cores)")
EPILOG_SERVE = """POST /v1/predict {"texts": [...]} -> one result per text; POST /v1/feedback {"id", "label"};
GET /v1/model, /healthz, /readyz, /metrics (Prometheus), /docs (OpenAPI).
serve settings: --serve.KEY VALUE, e.g. --serve.max_wait_ms 10 --serve.max_batch_texts 32 --serve.log_text hash
(`thrifty config` lists them all)."""


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate `--section.key value` pairs (config overrides) from the command's own arguments."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg.startswith("--") and ("." in name or name == "--task") and not arg[2:3].isdigit():
            if "=" in arg:
                overrides.append(arg)
                i += 1
            else:
                overrides.extend(argv[i : i + 2])
                i += 2
            continue
        rest.append(arg)
        i += 1
    return rest, overrides


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thrifty", description="Fine-tune transformers (classification, NER, decoder SFT, seq2seq), cheaply.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors, and libraries' warnings and logs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or progress lines (results and errors "
                                                             "are still printed)")
    common = argparse.ArgumentParser(add_help=False)  # so `thrifty train ... --debug` works as well
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks for errors, and libraries' warnings and logs")
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars or progress lines (results and errors are still printed)")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", parents=[common], help="fine-tune a model from a YAML config", epilog=EPILOG_TRAIN,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="YAML config (default: built-in defaults on the bundled Banking77 sample)")
    p.add_argument("--output", help="run folder (default: output.dir of the config)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--processes", type=int, metavar="N",
                   help="data-parallel training in N processes on this machine (one per GPU; on a CPU the cores split "
                        "between them), PyTorch DDP; train.batch_size is the batch over all N. Several machines: "
                        "torchrun or accelerate launch (docs/distributed.md)")

    p = sub.add_parser("adapt", parents=[common], epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="continued pre-training on unlabelled in-domain text (masked LM; causal LM for decoders)")
    p.add_argument("config", nargs="?", help="YAML config (model, data, train, adapt sections; default: built-in defaults)")
    p.add_argument("--data", help="unlabelled text: a .txt file (one document per line), a folder of .txt files, or a "
                                  "table with a text column (same as --data.train)")
    p.add_argument("--output", help="run folder; RUN_DIR/model is the adapted model for --model.name of later runs")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted adaptation from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("zeroshot", parents=[common], help="a classifier from label names alone, before any labelled "
                                                          "example (each text gets the nearest label description)")
    p.add_argument("--labels", required=True, help="comma-separated labels, e.g. negative,positive; or a .txt file, one "
                                                   "label per line")
    p.add_argument("--describe", action="append", metavar="LABEL=WORDS", default=[],
                   help="words for a label that is a code (repeatable), e.g. --describe 0=negative --describe 1=positive")
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="a sentence encoder: hub id, local folder or thrifty model "
                                                               "folder (default: all-MiniLM-L6-v2)")
    p.add_argument("--output", default="runs/zeroshot", help="the model folder to write (default: runs/zeroshot)")
    p.add_argument("--max-length", type=int, default=256, help="tokens of a text read when predicting (default: 256)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    p.add_argument("--trust-remote-code", action="store_true", help="run the model repository's own code (off: only "
                                                                    "for models you trust)")

    p = sub.add_parser("evaluate", parents=[common], help="metrics and a plot of a model on a labelled (or tagged) file; "
                                                          "a model that writes text: on prompts and their answers")
    p.add_argument("run_dir", metavar="MODEL_DIR", help="a finished run folder, or its model/ folder copied anywhere (a "
                                                        "decoder's own folder too, to compare with its fine-tuned runs)")
    p.add_argument("--data", required=True, help="labelled file (any supported format); for a model that writes text, "
                                                 "prompt/completion or chat JSONL (source/target for seq2seq)")
    p.add_argument("--output", help="folder for metrics.json and confusion_matrix.png, or answers.jsonl (default: "
                                    "RUN_DIR/evaluations/FILE)")
    p.add_argument("--text-column")
    p.add_argument("--label-column")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--backend", default="torch", choices=BACKENDS, help=BACKEND_HELP)
    p.add_argument("--lanes", type=int, help=LANES_HELP)

    p = sub.add_parser("predict", parents=[common], help="labels (or entities) for new texts")
    p.add_argument("run_dir", metavar="MODEL_DIR", help="a finished run folder, or its model/ folder copied anywhere")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="a text to classify (repeatable); results go to stdout as JSON lines")
    src.add_argument("--input", help="file of texts: .txt (one per line) or CSV/TSV/JSONL/Parquet; "
                                     "NER also takes pre-tokenised JSONL ({\"tokens\": [...]})")
    p.add_argument("--output", help="where to write results: .jsonl or .csv (default: stdout as JSON lines)")
    p.add_argument("--text-column", help="text column of a table input (default: the one used in training)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--backend", default="torch", choices=BACKENDS, help=BACKEND_HELP)
    p.add_argument("--lanes", type=int, help=LANES_HELP)

    p = sub.add_parser("generate", parents=[common], help="text from a fine-tuned decoder or seq2seq model (or a base "
                                                          "model by name): greedy or sampled, batched (docs/generation.md)")
    p.add_argument("run_dir", metavar="MODEL_DIR", help="a finished causal_lm/seq2seq run folder or its model/ folder; or a "
                                                        "base model (smollm2-135m, a local folder, a hub id)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", help="a prompt (repeatable); one prompt streams its answer to the "
                                                       "terminal, several give JSON lines")
    src.add_argument("--input", help="prompts: .txt (one per line) or JSONL with a prompt or messages field per row")
    p.add_argument("--output", help="JSONL to write (default: stdout as JSON lines)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--max-new-tokens", type=int, help="tokens to write at most (default: the run's generate: setting, 32)")
    p.add_argument("--temperature", type=float, help="0 = greedy (default); above 0 samples")
    p.add_argument("--top-p", type=float, help="sampling: nucleus probability mass (default 1.0)")
    p.add_argument("--stop", action="append", help="the answer ends before this string (repeatable)")
    p.add_argument("--batch-size", type=int, help="prompts written together, left-padded (default 16)")
    p.add_argument("--seed", type=int, default=0, help="the random seed of sampling")
    chat = p.add_mutually_exclusive_group()
    chat.add_argument("--chat", dest="chat", action="store_true", default=None,
                      help="apply the tokenizer's chat template to text prompts")
    chat.add_argument("--no-chat", dest="chat", action="store_false", help="give text prompts as written")
    p.add_argument("--trust-remote-code", action="store_true", help="run the model repository's own code")

    p = sub.add_parser("serve", parents=[common], help="answer predictions over HTTP: dynamic batching, a prediction log, "
                                                       "metrics (docs/serving.md)", epilog=EPILOG_SERVE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="MODEL_DIR", help="a finished run folder, or its model/ folder copied anywhere; or "
                                                        "models:/NAME@champion (follows the alias: hot swaps) or "
                                                        "models:/NAME/VERSION from the registry")
    p.add_argument("--config", help="YAML with a serve: section (other sections are ignored)")
    p.add_argument("--registry", metavar="URI", help="the registry store for models:/ (default: $THRIFTY_REGISTRY_URI, "
                                                     "else $MLFLOW_TRACKING_URI, else SQLite at ./runs/mlflow.db)")
    p.add_argument("--host", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--workers", type=int, help="server processes, each with its own copy of the model (default 1)")
    p.add_argument("--api-key", help="require this key on /v1/* and /metrics (better: set THRIFTY_API_KEY, which "
                                     "`ps` does not show)")
    p.add_argument("--db", help="prediction log: a SQLite path or postgresql://user:password@host/db "
                                "(default: SQLite in RUN_DIR/serve/)")
    p.add_argument("--no-log", action="store_true", help="do not log predictions")
    p.add_argument("--no-batching", action="store_true", help="one forward pass (or generate call) per request")
    p.add_argument("--name", help="the model name in answers and the log (default: the run folder's name)")
    p.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP + " (default torch)")
    p.add_argument("--lanes", type=int, help=LANES_HELP)

    p = sub.add_parser("export", parents=[common], help="an ONNX graph of a classifier (optionally int8), with a parity "
                                                        "report against PyTorch")
    p.add_argument("run_dir", metavar="MODEL_DIR", help="a finished run folder, or its model/ folder")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="the graph format (onnx)")
    p.add_argument("--quantize", choices=["int8"], help="also write a dynamically quantised int8 graph")
    p.add_argument("--data", help="labelled texts to check parity on (default: the run's validation split)")
    p.add_argument("--text-column")
    p.add_argument("--label-column")
    p.add_argument("--force", action="store_true", help="keep an int8 graph that agrees with PyTorch on under 99%% "
                                                        "of labels")

    p = sub.add_parser("monitor", parents=[common], help="recent traffic (the prediction log) against the training data: "
                                                         "drift and accuracy reports; exit code 1 when drift is flagged")
    p.add_argument("run_dir", metavar="MODEL_DIR", help="the run folder (or model/ folder) being served, or "
                                                        "models:/NAME@champion from the registry")
    p.add_argument("--db", help="the prediction log thrifty serve wrote (default: SQLite in RUN_DIR/serve/; for "
                                "models:/NAME@..., the log serve models:/NAME@... writes)")
    p.add_argument("--registry", metavar="URI", help="the MLflow store for models:/... (default: $THRIFTY_REGISTRY_URI, "
                                                     "else $MLFLOW_TRACKING_URI, else SQLite at ./runs/mlflow.db)")
    p.add_argument("--since", help="only predictions since: a span (30m, 24h, 7d, 2w) or a date (2026-11-28)")
    p.add_argument("--reference", help="labelled reference texts, for a model folder without its run (default: the run's "
                                       "training texts and validation split)")
    p.add_argument("--output", help="folder for report.json and report.html (default: RUN_DIR/monitor/TIME)")
    p.add_argument("--max-texts", type=int, default=2000, help="texts per side for the text checks (default 2000)")
    p.add_argument("--min-feedback", type=int, default=30, metavar="N",
                   help="accuracy is reported (and judged) only from N feedback rows; fewer: the count, no verdict "
                        "(default 30)")

    p = sub.add_parser("audit", parents=[common], help="bias audit: counterfactual identity terms, group metrics, "
                                                       "association tests (docs/audit.md); exit 1 when --fail-on trips")
    p.add_argument("run_dir", metavar="MODEL_DIR", nargs="?", help="a fine-tuned classifier: run folder or model folder")
    p.add_argument("--model", help="instead: a pre-trained encoder before fine-tuning (association tests only)")
    p.add_argument("--corpus", help="a ready corpus, CSV in the Equity Evaluation Corpus's layout (Sentence, Template, "
                                    "Person, Gender, Race, Emotion)")
    p.add_argument("--templates", help="templates file: one per line, each with {person}")
    p.add_argument("--terms", help="terms file: YAML (attribute: {group: [terms]}) or CSV (attribute, group, term)")
    p.add_argument("--attributes", help="only these attributes of the terms, comma-separated (e.g. gender,religion)")
    p.add_argument("--data", help="labelled data with a group column: group metrics, and Jigsaw AUCs for binary tasks")
    p.add_argument("--group-column", help="the column of --data naming each text's group (identity); for the Jigsaw "
                                          "sentence templates (template, toxicity, phrase) derived: identity "
                                          "(default) or identity_type")
    p.add_argument("--text-column")
    p.add_argument("--label-column")
    p.add_argument("--positive-label", help="the class the binary figures are about (default: the second label)")
    p.add_argument("--fail-on", help='thresholds, e.g. "max_gap>0.05,significant_gaps>0": exit 1 when one is exceeded')
    p.add_argument("--no-association", action="store_true", help="skip the association tests (SEAT)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance after Holm's correction (default 0.05)")
    p.add_argument("--min-gap", type=float, default=0.05, help="practical threshold: a pair of groups is flagged only "
                                                               "when significant and its gap in probability is at "
                                                               "least this (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap and permutation seed")
    p.add_argument("--output", help="folder for audit.json and report.html (default: RUN_DIR/audit/TIME)")

    p = sub.add_parser("registry", parents=[common], help="registered model versions and the champion alias "
                                                          "(MLflow Model Registry; docs/registry.md)")
    registry = p.add_subparsers(dest="registry_command", required=True)
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--registry", metavar="URI", help="the MLflow store (default: $THRIFTY_REGISTRY_URI, else "
                                                         "$MLFLOW_TRACKING_URI, else SQLite at ./runs/mlflow.db)")
    store.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    r = registry.add_parser("register", parents=[store], help="add a finished run's model as a new version of NAME")
    r.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder, or its model/ folder")
    r.add_argument("--name", required=True, help="the registered model's name, e.g. sst2-sentiment")
    r.add_argument("--description", help="the version's description (default: task, strategy, data and metrics)")
    r.add_argument("--promote", action="store_true", help="also make it the champion")
    r.add_argument("--reason", default="", help="why (recorded with the alias move when --promote)")
    r = registry.add_parser("list", parents=[store], help="registered models, their versions and aliases")
    r.add_argument("--json", action="store_true", help="print JSON")
    r = registry.add_parser("show", parents=[store], help="a registered model's versions and every alias move")
    r.add_argument("name", metavar="NAME")
    r.add_argument("--json", action="store_true", help="print JSON")
    r = registry.add_parser("promote", parents=[store], help="point the champion alias (or --alias) at VERSION")
    r.add_argument("name", metavar="NAME")
    r.add_argument("version", metavar="VERSION", type=int)
    r.add_argument("--alias", default="champion", help="the alias to move (default champion)")
    r.add_argument("--reason", default="", help="why; recorded with the move, with who moved it")
    r = registry.add_parser("rollback", parents=[store], help="move the champion back to the version before")
    r.add_argument("name", metavar="NAME")
    r.add_argument("--alias", default="champion", help="the alias to move back (default champion)")
    r.add_argument("--reason", default="", help="why; recorded with the move")

    p = sub.add_parser("retrain", parents=[common], help="train a challenger on new labelled data (feedback, files) and "
                                                         "promote it only if it is better (docs/registry.md)",
                       epilog="retrain settings: --retrain.KEY VALUE (margin, significance, tolerance, holdout_fraction, "
                              "replay_ratio, min_new_examples; `thrifty config` lists them); --train.* and --budget.* "
                              "override the champion's recipe", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="YAML with a retrain: section (and train:/budget: keys over the champion's)")
    p.add_argument("--model", help="the registered model to retrain (retrain.model)")
    p.add_argument("--data", action="append", default=[], help="a labelled file of new data (repeatable; besides the "
                                                              "prediction log's feedback)")
    p.add_argument("--db", help="the prediction log with the feedback (default: serve models:/NAME@champion's log)")
    p.add_argument("--registry", metavar="URI", help="the registry store (default: as thrifty registry)")
    p.add_argument("--output", help="the retrain's folder (default: runs/retrain/NAME-TIME)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="when another retrain of the model runs, wait this long for it (default: exit at once)")
    p.add_argument("--every", metavar="SPAN", help="run again every SPAN (30m, 6h, 1d) until stopped")
    p.add_argument("--cron", action="store_true", help="print a crontab line that runs this retrain every --every, "
                                                       "instead of running it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("migrate", parents=[common], help="create or upgrade a prediction log database's schema")
    p.add_argument("--db", required=True, help="a SQLite path or postgresql://user:password@host/db")

    p = sub.add_parser("estimate", parents=[common], help="parameters, tokens, FLOPs, memory and time of a run, before it starts")
    p.add_argument("config", nargs="?", help="YAML config (default: built-in defaults)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    p.add_argument("--output", help="also save the estimate as JSON to this file")
    p.add_argument("--hardware", help="predict time and price on this profile instead of this machine (same as --cost.hardware; "
                                      "`thrifty hardware` lists them)")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="predict `thrifty train --processes N` (each process its share of every batch)")

    p = sub.add_parser("tune", parents=[common], help="hyperparameter search (Optuna TPE, pruning, budget; SQLite, or PostgreSQL across machines)",
                       epilog="the config's budget section is the budget of the whole search, e.g. --budget.max_minutes 30",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="YAML config to start from (default: built-in defaults)")
    p.add_argument("--trials", type=int, default=10, help="number of trials (with --resume: the total, done ones included)")
    p.add_argument("--output", default="runs/tune", help="search folder: study.db, trials/, tune.json, best_config.yaml")
    p.add_argument("--space", help="YAML of config keys to ranges, e.g. 'train.learning_rate: {low: 1e-5, high: 1e-3, log: true}'; "
                                   "merged into the default space of the strategy (a key set to null is left out)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted search in --output")
    p.add_argument("--storage", help="a shared study for workers on several machines: a database URL Optuna accepts, e.g. "
                                     "postgresql://user:password@host:5432/db (default: OUT/study.db, SQLite, one machine); "
                                     "every worker runs the same command and --trials counts over all of them")
    p.add_argument("--study", help="the study's name in --storage (default: the --output folder's name)")
    p.add_argument("--heartbeat", type=int, default=60, metavar="SECONDS",
                   help="with --storage: each worker beats this often; a trial silent for 3 beats is failed and re-run "
                        "by another worker (default 60)")
    p.add_argument("--multi-objective", action="store_true", help="search accuracy against cost; plots the Pareto front")
    p.add_argument("--pruner", default="median", choices=["median", "asha", "none"],
                   help="stop poor trials early (from their 2nd evaluation, i.e. one epoch): below the median of earlier "
                        "trials (default), successive halving (cheaper, harsher), or never")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("recommend", parents=[common], help="model, strategy, epochs and max length that fit a budget and your data")
    p.add_argument("config", nargs="?", help="YAML config to start from (default: built-in defaults)")
    p.add_argument("--data", help="labelled training file (same as --data.train)")
    p.add_argument("--budget", type=float, metavar="MINUTES", help="time budget of the run (same as --budget.max_minutes; "
                                                                 "--budget.max_cost and --budget.max_flops work too)")
    p.add_argument("--hardware", help="plan for this hardware profile instead of this machine (`thrifty hardware`)")
    p.add_argument("--models", help="comma-separated candidates (default: the catalog's models available offline)")
    p.add_argument("--output", help="write the recommended config as YAML (ready for `thrifty train`)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")

    p = sub.add_parser("models", parents=[common], help="the model catalog: size, license, languages, published scores, offline here?")
    p.add_argument("--json", action="store_true", help="print JSON (with every score's source)")
    p.add_argument("--offline", action="store_true", help="only models whose weights are on this machine")

    p = sub.add_parser("hardware", parents=[common], help="the hardware profiles: peak FLOP/s, memory, price and its source")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sub.add_parser("config", parents=[common], help="print the resolved config (defaults <- CONFIG <- overrides) as YAML").add_argument(
        "config", nargs="?")
    return parser


def _cmd_serve(args, overrides: list[str]) -> int:
    from thrifty.config import load_config

    config = load_config(args.config, overrides + [item for flag, key in (("host", "host"), ("port", "port"),
                                                                         ("workers", "workers"), ("backend", "backend"),
                                                                         ("lanes", "lanes"))
                                                   if getattr(args, flag) is not None
                                                   for item in (f"--serve.{key}", str(getattr(args, flag)))])
    if args.no_batching:
        config.serve.batching = False
    from thrifty.serving.server import serve

    serve(args.run_dir, config.serve, db=args.db, log=not args.no_log, name=args.name, api_key=args.api_key,
          registry=args.registry)
    return 0


def _cmd_export(args) -> int:
    from thrifty.inference.onnx_backend import export_onnx

    report = export_onnx(args.run_dir, quantize=args.quantize, data=args.data, force=args.force,
                         text_column=args.text_column, label_column=args.label_column)
    print(f"wrote {report['folder']} ({report['export_seconds']} s); parity on {report['texts']} texts of "
          f"{report['source']}: PyTorch accuracy {report['pytorch']['accuracy']:.4f}")
    for kind in ("fp32", "int8"):
        if kind in report:
            r = report[kind]
            print(f"  {kind}: accuracy {r['accuracy']:.4f}, same label as PyTorch {r['label_agreement']:.2%}, largest "
                  f"probability difference {r['max_probability_difference']:.2g}, {r['bytes'] / 1e6:.1f} MB")
            if "fallback_margin" in r:
                print(f"    close calls (leading labels within {r['fallback_margin']:.3g}) recomputed in fp32: "
                      f"{r['fallback_share']:.1%} of texts; int8 alone: same label {r['without_fallback']['label_agreement']:.2%}")
    print(f"use it: thrifty serve {args.run_dir} --backend {'onnx-int8' if 'int8' in report else 'onnx'}")
    return 0


def _cmd_audit(args) -> int:
    from thrifty.audit.run import audit

    report = audit(args.run_dir, model=args.model, corpus=args.corpus, templates=args.templates, terms=args.terms,
                   attributes=[a.strip() for a in args.attributes.split(",")] if args.attributes else None,
                   data=args.data, group_column=args.group_column, text_column=args.text_column,
                   label_column=args.label_column, positive_label=args.positive_label, output=args.output,
                   fail_on=args.fail_on, association=not args.no_association, alpha=args.alpha,
                   min_gap=args.min_gap, seed=args.seed)
    from thrifty.audit.report import format_p

    cf = report.get("counterfactual", {})
    if "summary" in cf:
        s = cf["summary"]
        print(f"counterfactual: {s['sentences']} sentences; largest gap {s['max_gap']:.4f} "
              f"({s['max_gap_attribute']}: {' vs '.join(s['max_gap_between'] or [])}), label changes up to "
              f"{s['max_label_change_rate']:.4f} ({s['max_label_change_group']}), {s['significant_gaps']} of "
              f"{s['comparisons']} gaps flagged (Holm, Wilcoxon p < {args.alpha} and gap >= {args.min_gap}; "
              f"{s['statistically_significant_gaps']} by p alone)")
        for name, attribute in cf["attributes"].items():
            top = max(attribute["pairs"], key=lambda p: abs(p["mean_difference"]), default=None)
            print(f"  {name:<20} gap {attribute['max_gap']:.4f}"
                  + (f" (Holm p {format_p(top['wilcoxon_p_holm'])})" if top else "")
                  + f"  flagged {attribute['significant_gaps']:>2}  "
                  f"({attribute['sentences']} sentences, {attribute['templates']} templates)")
    if "groups" in report:
        g = report["groups"]
        figures = {k: g.get(k) for k in ("demographic_parity_difference", "equalized_odds_difference")
                   if g.get(k) is not None}
        print(f"groups ({g['group_column']}, {g['texts']} texts): accuracy difference "
              f"{g['differences'].get('accuracy')}" + "".join(f", {k} {v}" for k, v in figures.items()))
    if "jigsaw" in report:
        j = report["jigsaw"]
        print(f"jigsaw: {len(j['subgroups'])} subgroups, overall AUC {j['overall_auc']}, worst subgroup AUC "
              f"{j['min_subgroup_auc']} ({j['worst_subgroup']}), final score {j['final_score']}")
    for name, test in report.get("association", {}).get("tests", {}).items():
        print(f"association {name}: effect size {test['effect_size']:+.3f} ({test['targets'][0]} ~ "
              f"{test['attributes'][0]}), p = {format_p(test['p_value'])} ({test['sentences']} sentences)")
    print(f"wrote {report['output_dir']}/audit.json and report.html")
    if report["failed"]:
        print("FAILED: " + "; ".join(report["failed"]))
        return 1
    return 0


def _cmd_monitor(args) -> int:
    from thrifty.monitoring.monitor import console_lines, monitor

    report = monitor(args.run_dir, db=args.db, since=args.since, reference=args.reference, output=args.output,
                     max_texts=args.max_texts, registry=args.registry, min_feedback=args.min_feedback)
    print("\n".join(console_lines(report)))
    return 1 if report["drift"] else 0


def _cmd_registry(args) -> int:
    from thrifty.registry.store import Registry

    command = args.registry_command
    registry = Registry(args.registry, create=command == "register")
    if command == "register":
        version, new = registry.register(args.run_dir, args.name, description=args.description)
        print(f"{'registered' if new else 'already registered:'} {version.uri} ({version.task}, "
              f"{len(version.labels)} labels{_metric_text(version.metrics)}) in {registry.uri}")
        if args.promote:
            move = registry.promote(args.name, version.version, reason=args.reason or "registered with --promote")
            print(f"{args.name}@{move.alias}: version {move.previous or '-'} -> {move.version}")
        elif new:
            print(f"make it live: thrifty registry promote {args.name} {version.version}")
        return 0
    if command == "list":
        models = registry.names()
        if args.json:
            print(json.dumps(models, indent=2))
            return 0
        if not models:
            print(f"no registered models in {registry.uri}")
            return 0
        print(f"{'name':<28} {'task':<20} {'labels':>6} {'versions':>8}  aliases")
        for m in models:
            aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(m["aliases"].items())) or "-"
            print(f"{m['name']:<28} {m['task'] or '?':<20} {len(m['labels']):>6} {m['versions']:>8}  {aliases}")
        return 0
    if command == "show":
        shown = registry.show(args.name)
        if args.json:
            print(json.dumps(shown, indent=2))
            return 0
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(shown["aliases"].items())) or "none"
        print(f"{shown['name']}: {shown['task']}, labels {', '.join(map(str, shown['labels'][:10]))}"
              f"{' ...' if len(shown['labels']) > 10 else ''}; aliases: {aliases}  ({shown['store']})")
        for v in shown["versions"]:
            tags = f" [{', '.join(v['aliases'])}]" if v["aliases"] else ""
            parent = f", parent v{v['parent_version']}" if v["parent_version"] else ""
            print(f"  v{v['version']}{tags} {v['created'][:19]}: {v['strategy']} from {v['base_model']}, "
                  f"{v['train_examples'] or 0} examples (data {(v['data_fingerprint'] or '-')[:12]}){parent}"
                  f"{_metric_text(v['metrics'])}")
        for m in shown["moves"]:
            print(f"  move {m['at'][:19]} {m['alias']}: {'v' + str(m['from']) if m['from'] else '-'} -> v{m['to']} by {m['by']}"
                  f"{': ' + m['reason'] if m['reason'] else ''}")
        return 0
    if command == "promote":
        move = registry.promote(args.name, args.version, alias=args.alias, reason=args.reason)
    else:
        move = registry.rollback(args.name, alias=args.alias, reason=args.reason)
    print(f"{args.name}@{move.alias}: version {move.previous or '-'} -> {move.version} (by {move.by}"
          f"{'; ' + move.reason if move.reason else ''})")
    return 0


def _metric_text(metrics: dict) -> str:
    validation = (metrics or {}).get("validation") or {}
    shown = [f"{k} {v:.4f}" for k, v in validation.items() if k in ("accuracy", "macro_f1", "f1") and isinstance(v, float)]
    return f"; validation {', '.join(shown)}" if shown else ""


def _span_seconds(value: str) -> float:
    import re

    match = re.match(r"^(\d+(?:\.\d+)?)([mhd])$", value.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ThriftyError(f"--every {value!r} is not a span; use minutes, hours or days, e.g. 30m, 6h, 1d")
    return float(match.group(1)) * {"m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _cron_line(every: str, argv: list[str]) -> str:
    """A crontab line running the same command (without --every/--cron) every SPAN, from this folder."""
    import os
    import shlex

    seconds = _span_seconds(every)
    minutes = int(round(seconds / 60))
    if minutes < 60 and 60 % minutes == 0:
        when = f"*/{minutes} * * * *"
    elif minutes % 60 == 0 and minutes < 1440 and 24 % (minutes // 60) == 0:
        when = f"0 */{minutes // 60} * * *"
    elif minutes % 1440 == 0:
        when = f"0 0 */{minutes // 1440} * *"
    else:
        raise ThriftyError(f"--every {every} does not fit cron's calendar; use a divisor of an hour (30m), of a day "
                           "(6h) or whole days (1d), or run with --every instead of --cron")
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--cron",):
            continue
        if arg == "--every":
            skip = True
            continue
        if arg.startswith("--every="):
            continue
        kept.append(arg)
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "thrifty", *kept])
    return f"{when} cd {shlex.quote(os.getcwd())} && {command} >> runs/retrain.log 2>&1"


def _cmd_retrain(args, overrides: list[str], argv: list[str]) -> int:
    from thrifty.retrain.challenger import retrain

    extra = []
    if args.model:
        extra += ["--retrain.model", args.model]
    if args.db:
        extra += ["--retrain.db", args.db]
    if args.registry:
        extra += ["--retrain.registry", args.registry]
    if args.data:
        extra += ["--retrain.new_data", json.dumps(args.data)]
    if args.cron:
        if not args.every:
            raise ThriftyError("--cron needs --every SPAN (how often), e.g. --every 6h --cron")
        print(_cron_line(args.every, argv))
        return 0
    period = _span_seconds(args.every) if args.every else None
    while True:
        started = time.monotonic()
        retrain(args.config, overrides=overrides + extra, output=args.output, wait_seconds=args.wait,
                progress=not args.no_progress)
        if period is None:
            return 0
        pause = max(0.0, period - (time.monotonic() - started))
        print(f"thrifty retrain: next run in {pause / 60:.0f} min (--every {args.every}); Ctrl-C stops", flush=True)
        time.sleep(pause)


def _cmd_migrate(args) -> int:
    from thrifty.serving.server import migrate_command, shown_url
    from thrifty.serving.predlog import database_url

    revision = migrate_command(args.db)
    print(f"prediction log at {shown_url(database_url(args.db))}: schema at revision {revision}")
    return 0


def _version() -> str:
    from thrifty.version import __version__

    return f"thrifty {__version__}"


def _cmd_train(args, overrides: list[str], argv: Optional[list[str]]) -> int:
    if args.resume and (args.config or args.output):
        raise ThriftyError("--resume takes the run folder only; drop the config and --output (the saved config is used)")
    if args.processes is not None and args.processes != 1:
        from thrifty.training.distributed import launch, launched

        if launched()[1] > 1:
            raise ThriftyError("--processes starts the processes itself: drop it under torchrun or accelerate launch")
        given = list(sys.argv[1:] if argv is None else argv)
        return launch(_without_option(given, "--processes"), args.processes)
    from thrifty.training.recipe import train

    result = train(args.config, output=args.output, overrides=overrides, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.no_progress, clock_start=args.started)  # the budget counts imports too
    failed = (result.metrics.get("audit") or {}).get("failed")
    if failed:  # the run is complete and its model saved; the gate (audit.fail_on) says it should not ship
        print("audit FAILED: " + "; ".join(failed))
        return 1
    return 0


def _without_option(argv: list[str], option: str) -> list[str]:
    """ARGV less `option VALUE` / `option=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def _cmd_adapt(args, overrides: list[str]) -> int:
    from thrifty.training.adapt import adapt

    if args.resume and (args.config or args.output or args.data):
        raise ThriftyError("--resume takes the run folder only; drop the config, --data and --output (the saved config is used)")
    if not args.resume and args.data is None and not any(o.startswith("--data.train") for o in overrides):
        raise ThriftyError("thrifty adapt needs unlabelled text: --data FILE (a .txt file, a folder of .txt files, or a "
                           "table with a text column)")
    adapt(args.config, data=args.data, output=args.output, overrides=overrides, resume=args.resume,
          overwrite=args.overwrite, progress=not args.no_progress, clock_start=args.started)
    return 0


def _cmd_zeroshot(args) -> int:
    from thrifty.inference.zeroshot import zeroshot

    given = Path(args.labels).expanduser()
    if given.suffix == ".txt" or given.is_file():
        try:
            labels = [line.strip() for line in given.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ThriftyError(f"cannot read labels from {given}: {exc}; give a UTF-8 .txt file, one label per line") from None
    else:
        labels = [label.strip() for label in args.labels.split(",")]
    descriptions = {}
    for item in args.describe:
        label, sep, words = item.partition("=")
        if not sep or not label.strip() or not words.strip():
            raise ThriftyError(f"--describe {item!r} must be LABEL=WORDS, e.g. --describe 0=negative")
        descriptions[label.strip()] = words.strip()
    folder = zeroshot(labels, args.output, descriptions=descriptions or None, model=args.model,
                      max_length=args.max_length, overwrite=args.overwrite, trust_remote_code=args.trust_remote_code)
    print(f"wrote a zero-shot classifier for {len(labels)} labels to {folder}; nothing was trained: each text gets the "
          f"label whose description is nearest. Try: thrifty predict {folder} --text \"...\"")
    return 0


def _cmd_evaluate(args) -> int:
    from thrifty.api import evaluate

    metrics = evaluate(args.run_dir, args.data, output=args.output, text_column=args.text_column,
                       label_column=args.label_column, batch_size=args.batch_size, backend=args.backend,
                       lanes=args.lanes)
    print(f"{Path(args.data).name}: {metrics['summary']}")
    if "per_type" in metrics:  # token classification: the table a person reads first
        print(f"  {'type':<16} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}")
        for name, row in sorted(metrics["per_type"].items()):
            print(f"  {name:<16} {row['precision']:>9.4f} {row['recall']:>9.4f} {row['f1']:>9.4f} {row['support']:>8}")
    print(f"wrote {metrics['output_dir']}/metrics.json and {metrics['plot'] or metrics['answers']}")
    return 0


def _cmd_predict(args) -> int:
    from thrifty.data.readers import read_table
    from thrifty.inference.predictor import Predictor
    from thrifty.runs.run_dir import atomic_write_text

    out_path = Path(args.output) if args.output else None
    if out_path is not None:
        if out_path.suffix.lower() not in (".jsonl", ".csv"):
            raise ThriftyError(f"--output {out_path} must end in .jsonl or .csv")
        if out_path.exists() and not args.overwrite:
            raise ThriftyError(f"{out_path} already exists; choose another --output or add --overwrite")
    predictor = Predictor.load(args.run_dir, backend=args.backend, lanes=args.lanes)
    if predictor.task == "token_classification":
        return _predict_entities(args, predictor, out_path)
    if args.text is not None:
        texts = args.text
    else:
        table = read_table(args.input, role="input", text_column=args.text_column or predictor.text_column,
                           label_column=None, plain_lines=True)
        texts = table.texts
    results = predictor.predict(texts, args.batch_size)
    if out_path is None:
        for text, result in zip(texts, results):
            print(json.dumps({"text": text, **result}, ensure_ascii=False))
        return 0
    buffer = io.StringIO()
    if out_path.suffix.lower() == ".jsonl":
        for text, result in zip(texts, results):
            buffer.write(json.dumps({"text": text, **result}, ensure_ascii=False) + "\n")
    else:
        writer = csv.writer(buffer)
        writer.writerow(["text", "label", "score"] + [f"p_{name}" for name in predictor.label_names])
        for text, result in zip(texts, results):
            writer.writerow([text, result["label"], f"{result['score']:.6f}"]
                            + [f"{result['probabilities'][n]:.6f}" for n in predictor.label_names])
    atomic_write_text(out_path, buffer.getvalue())  # a crash mid-write never leaves half a results file
    print(f"wrote {len(results)} predictions to {out_path}", file=sys.stderr)
    return 0


def _cmd_generate(args) -> int:
    """Prompts in, answers out: one prompt streamed to the terminal, several (or a file) as JSON lines."""
    from thrifty.data.readers import check_file, decode, json_lines, read_bytes, read_table
    from thrifty.errors import DataError
    from thrifty.inference.generation import Generator
    from thrifty.models.generation import answer_matches
    from thrifty.runs.run_dir import atomic_write_text

    out_path = Path(args.output) if args.output else None
    if out_path is not None:
        if out_path.suffix.lower() != ".jsonl":
            raise ThriftyError(f"--output {out_path} must end in .jsonl")
        if out_path.exists() and not args.overwrite:
            raise ThriftyError(f"{out_path} already exists; choose another --output or add --overwrite")
    rows: list[dict] = []
    if args.prompt is not None:
        rows = [{"prompt": p} for p in args.prompt]
    elif Path(args.input).suffix.lower() in (".jsonl", ".ndjson", ".json"):
        path = Path(args.input)
        check_file(path, "input")
        for number, record in json_lines(decode(read_bytes(path, "input"), str(path), "error")[0], str(path)):
            if not isinstance(record, dict) or not (isinstance(record.get("prompt"), str)
                                                    or isinstance(record.get("messages"), list)):
                raise DataError(f"line {number} of {path} has no 'prompt' text or 'messages' list; a row looks like "
                                '{"prompt": "..."} or {"messages": [{"role": "user", "content": "..."}]}')
            rows.append(record)
    else:
        rows = [{"prompt": t} for t in read_table(args.input, role="input", label_column=None, plain_lines=True).texts]
    generator = Generator.load(args.run_dir, trust_remote_code=args.trust_remote_code)
    import torch

    torch.manual_seed(args.seed)
    prompts = [r["messages"][:_last_user(r["messages"])] if "messages" in r else r["prompt"] for r in rows]
    stream = args.prompt is not None and len(rows) == 1 and out_path is None
    written = generator.generate(prompts, chat=args.chat, stream=stream, max_new_tokens=args.max_new_tokens,
                                 temperature=args.temperature, top_p=args.top_p, stop=args.stop,
                                 batch_size=args.batch_size)
    if stream:
        return 0  # the answer went to the terminal as it was written
    lines = "".join(json.dumps({**row, "generated": text}, ensure_ascii=False) + "\n" for row, text in zip(rows, written))
    scored = [(text, row["completion"]) for row, text in zip(rows, written) if isinstance(row.get("completion"), str)]
    if scored:  # rows with a reference answer: how many the model wrote
        hits = sum(answer_matches(text, reference) for text, reference in scored)
        print(f"exact match {hits / len(scored):.4f} ({hits} of {len(scored)} rows with a completion)", file=sys.stderr)
    if out_path is None:
        print(lines, end="")
        return 0
    atomic_write_text(out_path, lines)
    print(f"wrote {len(written)} answers to {out_path}", file=sys.stderr)
    return 0


def _last_user(messages: list) -> int:
    """A conversation that ends with the assistant's answer is prompted with what comes before it."""
    return len(messages) - 1 if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant" \
        else len(messages)


def _predict_entities(args, predictor, out_path: Optional[Path]) -> int:
    """NER: raw text lines (or --text) -> entities with character offsets; JSONL with a tokens list -> the same
    for pre-tokenised input. One JSON line per input, or one CSV row per entity."""
    from thrifty.data.readers import read_table
    from thrifty.runs.run_dir import atomic_write_text

    column = predictor.data_config.tokens_column
    if args.text is not None:
        results = predictor.entities(args.text, batch_size=args.batch_size)
    elif Path(args.input).suffix.lower() in (".jsonl", ".ndjson", ".json"):
        from thrifty.data.readers import check_file, decode, json_lines, read_bytes
        from thrifty.errors import DataError

        path = Path(args.input)
        check_file(path, "input")
        sentences = []
        for number, record in json_lines(decode(read_bytes(path, "input"), str(path), "error")[0], str(path)):
            if not isinstance(record, dict) or not isinstance(record.get(column), list):
                raise DataError(f"line {number} of {path} has no '{column}' list of words; pre-tokenised input looks "
                                f"like {{\"{column}\": [\"EU\", \"rejects\", ...]}} (or give plain text lines in a .txt)")
            sentences.append([str(w) for w in record[column]])
        results = predictor.entities(tokens=sentences, batch_size=args.batch_size)
    else:
        texts = read_table(args.input, role="input", text_column=args.text_column or predictor.text_column,
                           label_column=None, plain_lines=True).texts
        results = predictor.entities(texts, batch_size=args.batch_size)
    if out_path is None or out_path.suffix.lower() == ".jsonl":
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
        if out_path is None:
            print(lines, end="")
            return 0
        atomic_write_text(out_path, lines)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["input", "type", "text", "start", "end", "score"])
        for n, r in enumerate(results):
            for e in r["entities"]:
                writer.writerow([n, e["type"], e["text"], e["start"], e["end"], f"{e['score']:.4f}"])
        atomic_write_text(out_path, buffer.getvalue())
    print(f"wrote entities of {len(results)} inputs to {out_path}", file=sys.stderr)
    return 0


def _cmd_estimate(args, overrides: list[str]) -> int:
    from thrifty.cost.estimate import estimate, format_estimate
    from thrifty.runs.run_dir import atomic_write_text

    if args.hardware:
        overrides = overrides + ["--cost.hardware", args.hardware]
    if args.processes < 1:
        raise ThriftyError(f"--processes {args.processes}: give 1 or more")
    result = estimate(args.config, overrides, processes=args.processes)
    text = json.dumps(result, indent=2)
    if args.output:
        atomic_write_text(Path(args.output), text + "\n")
    print(text if args.json else format_estimate(result))
    return 0


def _cmd_tune(args, overrides: list[str]) -> int:
    from thrifty.tuning.search import tune

    if args.resume and args.config:
        raise ThriftyError("--resume continues the search saved in --output; drop the config argument")
    tune(args.config, trials=args.trials, output=args.output, overrides=overrides, space=args.space, resume=args.resume,
         multi_objective=args.multi_objective, pruner=args.pruner, progress=not args.no_progress, storage=args.storage,
         study_name=args.study, heartbeat_seconds=args.heartbeat)
    return 0


def _cmd_recommend(args, overrides: list[str]) -> int:
    from thrifty.config import load_config
    from thrifty.planning.recommend import format_recommendation, recommend, save_recommendation

    extra = (["--data.train", args.data] if args.data else []) + (
        ["--budget.max_minutes", str(args.budget)] if args.budget is not None else []) + (
        ["--cost.hardware", args.hardware] if args.hardware else [])
    base = load_config(args.config, extra + overrides)
    if args.output and Path(args.output).exists():
        raise ThriftyError(f"{args.output} already exists; choose another --output")
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    result = recommend(base, models, log=lambda m: print(m, file=sys.stderr))
    if args.output:
        save_recommendation(result, Path(args.output))
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2, default=str))
    else:
        print(format_recommendation(result))
        if args.output:
            print(f"wrote {args.output}; train it with: thrifty train {args.output}")
    return 0


def _cmd_models(args) -> int:
    from thrifty.models.catalog import catalog, format_catalog

    models = [m.as_dict() for m in catalog()]
    if args.offline:
        models = [m for m in models if m["offline"]]
    print(json.dumps(models, indent=2) if args.json else format_catalog(models))
    return 0


def _cmd_hardware(args) -> int:
    from thrifty.cost.hardware import get_hardware, profile_names

    profiles = [get_hardware(name).as_dict() for name in profile_names()]
    if args.json:
        print(json.dumps(profiles, indent=2))
        return 0
    print(f"{'name':<6} {'kind':<4} {'peak TFLOP/s':>12} {'memory GiB':>10} {'USD/hour':>9}  {'instance':<14} as of    source")
    for p in profiles:
        peak = "-" if p["peak_tflops"] is None else f"{p['peak_tflops']:g}"
        mem = "-" if p["memory_gib"] is None else f"{p['memory_gib']:g}"
        cost = "unknown" if p["price_per_hour"] is None else f"{p['price_per_hour']:.4g}"
        print(f"{p['name']:<6} {p['kind']:<4} {peak:>12} {mem:>10} {cost:>9}  {p['instance']:<14} {p['as_of']:<8} {p['source']}")
    print("cpu is priced for this machine's cores; edit thrifty/resources/hardware.yaml or set cost.price_per_hour")
    return 0


def _cmd_config(args, overrides: list[str]) -> int:
    import yaml

    from thrifty.config import load_config

    print(yaml.safe_dump(load_config(args.config, overrides).to_dict(), sort_keys=False), end="")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    started = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides = _split_overrides(argv)
    args = _parser().parse_args(rest)
    args.started = started
    if args.quiet and hasattr(args, "no_progress"):
        args.no_progress = True
    from thrifty.console import session

    with session(quiet=args.quiet, debug=args.debug):  # progress on stderr only on a terminal; libraries quiet
        return _run(args, overrides, argv)


def _run(args, overrides: list[str], argv: list[str]) -> int:
    """The command, with its errors as one line and an exit code (the traceback with --debug)."""
    try:
        if overrides and args.command not in ("train", "adapt", "config", "estimate", "tune", "recommend", "serve",
                                              "retrain"):
            raise ThriftyError(f"config overrides like {overrides[0]} only apply to `thrifty train`, `adapt`, `tune`, "
                               "`estimate`, `recommend`, `serve`, `retrain` and `config`")
        if args.command in SHOWS_PASSES:
            from thrifty.console import showing

            with showing():  # these commands' work is loops over passes: each shows its progress and ETA
                return _dispatch(args, overrides, argv)
        return _dispatch(args, overrides, argv)
    except ThriftyError as exc:
        if args.debug:
            raise
        prefix = "" if isinstance(exc, Interrupted) else "error: "
        print(f"thrifty: {prefix}{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("thrifty: interrupted", file=sys.stderr)
        return 130


# Commands whose work is prediction, evaluation, embedding or writing answers: their loops show progress (training
# commands have their own bar, and their evaluations stay out of the log).
SHOWS_PASSES = ("predict", "evaluate", "generate", "export", "audit", "monitor", "zeroshot")


def _dispatch(args, overrides: list[str], argv: list[str]) -> int:
    """The handler of `args.command` (each reads its own arguments; those with a config take the overrides)."""
    handlers = {
        "train": lambda: _cmd_train(args, overrides, argv),
        "adapt": lambda: _cmd_adapt(args, overrides),
        "estimate": lambda: _cmd_estimate(args, overrides),
        "zeroshot": lambda: _cmd_zeroshot(args),
        "evaluate": lambda: _cmd_evaluate(args),
        "predict": lambda: _cmd_predict(args),
        "generate": lambda: _cmd_generate(args),
        "serve": lambda: _cmd_serve(args, overrides),
        "migrate": lambda: _cmd_migrate(args),
        "registry": lambda: _cmd_registry(args),
        "retrain": lambda: _cmd_retrain(args, overrides, argv),
        "export": lambda: _cmd_export(args),
        "monitor": lambda: _cmd_monitor(args),
        "audit": lambda: _cmd_audit(args),
        "tune": lambda: _cmd_tune(args, overrides),
        "recommend": lambda: _cmd_recommend(args, overrides),
        "models": lambda: _cmd_models(args),
        "hardware": lambda: _cmd_hardware(args),
        "config": lambda: _cmd_config(args, overrides),
    }
    return handlers[args.command]()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
