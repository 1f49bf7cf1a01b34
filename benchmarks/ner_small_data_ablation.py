"""Why thrifty fell behind the Trainer on 200 NER training sentences: thrifty with one change at a time.

    python benchmarks/ner_small_data_ablation.py                     # seeds 1,3, every variant, CoNLL-2003
    python benchmarks/ner_small_data_ablation.py --variants grouped-as-before,shipped --seeds 0,1,2

Each run: thrifty on the seed's 200-sentence draw of the training file (the same draw as
`ner_vs_trainer.py --train-sentences 200`), 10 epochs, batch 16, learning rate 1e-4, the data set's tag set, dev F1 on
1,000 dev sentences drawn by the seed (evaluated each epoch, the best kept), no test. Two runs at a time, 1 thread
each: what is compared is F1, not time. Variants:
- grouped-as-before: length-grouped batches as thrifty cut them before small sets were batched at random (the whole
  set sorted inside one window: the same 13 batches every epoch), bf16 autocast where the CPU has it, the per-token
  loss weighting, thrifty's dropout masks;
- fp32 / batch-mean-loss / torch-dropout / random-batches: grouped-as-before with one change
  (`train.precision: fp32`; each batch's mean loss; `train.fast_dropout: false`; `train.group_by_length: false`);
- windows-2 / windows-4: grouped-as-before, but sorted inside random windows of 2 or 4 batches (other batches every
  epoch, padding between random batches' and one window's);
- shipped: thrifty as it is now.
Results: benchmarks/results/ner_small_data_ablation.{json,md} (appended; the .md is rewritten).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, RESULTS, machine

VARIANTS = ("grouped-as-before", "fp32", "batch-mean-loss", "torch-dropout", "random-batches", "windows-2", "windows-4",
            "shipped")
CHANGES = {"grouped-as-before": "length-grouped batches cut as before (one window: the same batches every epoch)",
           "fp32": "grouped-as-before, `--train.precision fp32`",
           "batch-mean-loss": "grouped-as-before, each batch's mean loss (the per-token weighting off)",
           "torch-dropout": "grouped-as-before, `--train.fast_dropout false` (PyTorch's dropout)",
           "random-batches": "`--train.group_by_length false`",
           "windows-2": "sorted inside random windows of 2 batches (other batches every epoch, less padding)",
           "windows-4": "sorted inside random windows of 4 batches",
           "shipped": "thrifty as shipped (at 200 sentences: the very batches of random-batches)"}


def grouped_as_before(lengths, batch_size, seed, epoch, group_by_length, window_batches=None):
    """data/batching.training_batches before small sets were batched at random: sorted inside windows of 50 batches
    whatever the set's size (or of `window_batches`)."""
    import torch

    from thrifty.data.batching import GROUP_WINDOW_BATCHES, epoch_generator, length_grouped

    g = epoch_generator(seed, epoch)
    order = torch.randperm(len(lengths), generator=g).tolist()
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return length_grouped(order, lengths, batch_size, window_batches or GROUP_WINDOW_BATCHES, g)


def run_one(data: str, seed: int, variant: str) -> dict:
    import torch

    torch.set_num_threads(1)
    import ner_vs_trainer as nv

    import thrifty
    import thrifty.data.batching

    extra = {"fp32": ["--train.precision", "fp32"], "torch-dropout": ["--train.fast_dropout", "false"],
             "random-batches": ["--train.group_by_length", "false"]}.get(variant, [])
    if variant in ("grouped-as-before", "fp32", "batch-mean-loss", "torch-dropout"):
        thrifty.data.batching.training_batches = grouped_as_before
    if variant == "batch-mean-loss":
        from thrifty.tasks.token_classification import TokenClassification

        TokenClassification.fit_loss = lambda self, train, batch_size: None
    if variant.startswith("windows-"):
        import functools

        thrifty.data.batching.training_batches = functools.partial(grouped_as_before,
                                                                   window_batches=int(variant.split("-")[1]))
    args = argparse.Namespace(data=data, train_sentences=200, epochs=None, batch_size=None, lr=None)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train = nv.training_file(args, seed, Path(tmp))
        result = thrifty.train(REPO / "examples" / f"{data}.yaml", output=Path(tmp) / "run", progress=False, overrides=[
            "--train.seed", str(seed), "--train.num_threads", "1", "--data.train", str(train),
            "--data.labels", json.dumps(nv.tag_set(args)), "--train.epochs", "10", "--train.batch_size", "16",
            "--train.learning_rate", "1e-4", "--data.max_eval_examples", "1000", "--data.test", "null",
            "--tracking.tensorboard", "false", "--tracking.energy", "false", *extra])
    m = result.metrics
    return {"variant": variant, "seed": seed, "dev_f1": round(m["validation"]["f1"], 4),
            "curve": [round(h["f1"], 3) for h in m["history"]], "precision": m["model"]["precision"],
            "padding": round(m["train"]["padding_fraction"], 3),
            "s": round(time.perf_counter() - started)}


def summary(saved: dict) -> list[str]:
    seeds = sorted({r["seed"] for r in saved["runs"]})
    lines = ["# Why thrifty fell behind on 200 NER sentences: one change at a time", "",
             f"`python benchmarks/ner_small_data_ablation.py` (settings: the script's docstring). {saved['note']}", "",
             "| variant | what changes | " + " | ".join(f"dev F1 seed {s}" for s in seeds) + " |",
             "| --- | --- | " + " --- |" * len(seeds)]
    for v in VARIANTS:
        mine = {r["seed"]: r for r in saved["runs"] if r["variant"] == v}
        if mine:
            lines.append(f"| {v} | {CHANGES[v]} | " + " | ".join(
                f"{mine[s]['dev_f1']:.4f}" if s in mine else "-" for s in seeds) + " |")
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="conll2003", choices=("conll2003", "wnut17"))
    parser.add_argument("--seeds", default="1,3")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: "seed,variant" in this process
    args = parser.parse_args()
    if args.one:
        seed, variant = args.one.split(",")
        print("RESULT " + json.dumps(run_one(args.data, int(seed), variant)), flush=True)
        sys.exit(0)
    out = RESULTS / f"ner_small_data_ablation{'' if args.data == 'conll2003' else '_' + args.data}.json"
    here = machine(1)
    saved = json.loads(out.read_text()) if out.exists() else {"machine": here, "runs": [], "note": (
        f"{here['cpu']} (flags {', '.join(here.get('cpu_flags') or []) or 'no bf16/int8 flags'}), torch {here['torch']}, "
        f"transformers {here['transformers']}. Two runs at a time, 1 thread each; dev F1 on 1,000 dev sentences drawn "
        "by the seed, best of 10 epochs.")}
    for variant in args.variants.split(","):
        procs = [subprocess.Popen([sys.executable, __file__, "--data", args.data, "--one", f"{seed},{variant}"],
                                  cwd=REPO, stdout=subprocess.PIPE, text=True) for seed in args.seeds.split(",")]
        for p in procs:
            line = next(l for l in p.communicate()[0].splitlines() if l.startswith("RESULT "))
            saved["runs"].append({**json.loads(line[7:]), "date": time.strftime("%Y-%m-%d %H:%M")})
        out.write_text(json.dumps(saved, indent=2) + "\n")
    lines = summary(saved)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
