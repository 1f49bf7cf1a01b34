"""The Python API: the same verbs as the CLI, as plain functions.

    import thrifty
    result = thrifty.train("examples/sst2.yaml", output="runs/sst2", overrides=["--train.epochs", "1"])
    metrics = thrifty.evaluate("runs/sst2", "../shared/data/sst2/stsa.binary.test")
    thrifty.predict("runs/sst2", ["a gripping, funny film"])  # -> [{"label": "1", "score": ..., ...}]
    thrifty.zeroshot(["negative", "positive"], "runs/zeroshot")  # a classifier from label names alone

`evaluate` and `predict` take a finished run folder or its `model/` folder, copied anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from thrifty.inference.zeroshot import zeroshot  # noqa: F401  (re-exported)
from thrifty.training.adapt import adapt  # noqa: F401  (re-exported)
from thrifty.training.recipe import RunResult, train  # noqa: F401  (re-exported)


def predict(model_dir: str | Path, texts: Sequence[str], batch_size: int = 128, backend: str = "auto",
            lanes: Optional[int] = None) -> list[dict[str, Any]]:
    """One result per text; `backend` and `lanes` as in `thrifty predict` (inference.predictor.Predictor.load)."""
    from thrifty.inference.predictor import Predictor

    return Predictor.load(model_dir, backend=backend, lanes=lanes).predict(list(texts), batch_size)


def evaluate(
    model_dir: str | Path, data: str, *, output: Optional[str | Path] = None, text_column: Optional[str] = None,
    label_column: Optional[str] = None, batch_size: int = 128, backend: str = "auto", lanes: Optional[int] = None,
) -> dict[str, Any]:
    """Metrics of a model on a labelled (or tagged) file; writes metrics.json and a plot (confusion matrix, or
    per-type F1) to `output` or MODEL_DIR/evaluations/FILE. `backend`: as in predict and serve (config.BACKENDS), so
    that a bf16 or int8 backend's accuracy can be checked before it serves. A model that writes text (causal_lm,
    seq2seq, or a base decoder's folder) is scored on prompts and answers instead: `evaluate_written`."""
    from thrifty.errors import DataError
    from thrifty.inference.predictor import Predictor, labelled_split
    from thrifty.runs.run_dir import write_json, writing
    from thrifty.tasks import get_task

    if _writes_text(model_dir):
        if backend not in ("auto", "torch"):
            from thrifty.errors import ConfigError

            raise ConfigError(f"--backend {backend} serves classifiers; a model that writes text is evaluated with the "
                              "PyTorch backend (leave --backend out)")
        return evaluate_written(model_dir, data, output=output, text_column=text_column, label_column=label_column,
                                batch_size=batch_size)
    predictor = Predictor.load(model_dir, backend=backend, lanes=lanes)
    task = get_task(predictor.task)
    split, counts, source = labelled_split(predictor, data, text_column, label_column, role="evaluation")
    if len(split) == 0:
        raise DataError(f"{data} has no usable labelled rows (counts: {counts})")
    out_dir = _evaluation_dir(predictor.folder, source, output)  # refused before the work
    from thrifty.data.token_cache import TokenCache

    encoded = task.encode(predictor.tokenizer, split, predictor.max_length, TokenCache(None, predictor.tokenizer))
    metrics = task.evaluate(predictor.model, encoded, split, predictor.label_names, predictor.tokenizer.pad_token_id,
                            batch_size, predictor.device)
    metrics["data"] = {"file": source, **counts}
    metrics["backend"], metrics["backend_reason"] = predictor.backend, predictor.backend_reason
    with writing(out_dir, "evaluation results"):
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "metrics.json", metrics)
        plot = f"{task.plot_name}.png" if task.plot_name else None
        if plot is not None:
            task.plots(metrics, predictor.label_names, out_dir / plot, f"{Path(source).name} ({predictor.folder.name})")
    metrics["output_dir"] = str(out_dir)
    metrics["plot"] = plot
    metrics["summary"] = task.summary(metrics)
    return metrics


def _writes_text(model_dir: str | Path) -> bool:
    """A thrifty model of a generative task, or a base model's own folder (or the packaged decoder's name): the
    classifier path keeps everything else, and its messages for a missing folder."""
    from thrifty.models.loading import SMOLLM2_ALIASES
    from thrifty.traits import task_traits
    from thrifty.runs.manifest import is_thrifty_model, model_folder, read_manifest

    path = Path(model_dir).expanduser()
    if is_thrifty_model(path):
        return task_traits(read_manifest(model_folder(path))["task"]).writes_text
    return str(model_dir) in SMOLLM2_ALIASES or (path / "config.json").is_file()


def evaluate_written(model_dir: str | Path, data: str, *, output: Optional[str | Path] = None,
                     text_column: Optional[str] = None, label_column: Optional[str] = None,
                     batch_size: int = 128) -> dict[str, Any]:
    """A model that writes text, on a file of prompts and answers read as its training read them (the manifest's
    data settings: JSONL prompt/completion or chat rows, a table through its prompt_template; source/target for
    seq2seq): teacher-forced loss, perplexity and token accuracy on the answers, then an answer written for every
    prompt with the model's generate settings, scored by exact match (and ROUGE-L for seq2seq). Writes metrics.json
    and answers.jsonl (prompt, reference, written answer, match) to `output` or MODEL_DIR/evaluations/FILE (a base
    model's: ./evaluations/FILE)."""

    from thrifty.config import Config, DataConfig
    from thrifty.data.results import as_json_lines
    from thrifty.inference.generation import Generator
    from thrifty.runs.run_dir import atomic_write_text, write_json, writing
    from thrifty.tasks import get_task

    generator = Generator.load(model_dir)
    manifest = generator.manifest or {}
    pre = manifest.get("preprocessing") or {}
    settings = {k: pre[k] for k in ("unicode_normalization", "max_chars", "text_column", "label_column") if k in pre}
    settings.update((manifest.get("generation") or {}).get("data") or {})
    settings.update({k: v for k, v in (("text_column", text_column), ("label_column", label_column)) if v})
    task = get_task(generator.task, Config(task=generator.task, generate=generator.settings))
    split, counts, source = task.read_labelled(data, DataConfig(**settings))
    out_dir = _evaluation_dir(Path(generator.folder) if manifest else Path.cwd(), source, output)  # refused before the work
    task.answer_every_row(len(split))
    model, tokenizer = generator.model, generator.tokenizer
    task.attach(model)
    max_length = int(pre.get("max_length") or _context_length(model, tokenizer))
    encoded = task.encode(tokenizer, split, max_length, None)
    model.config.use_cache = False  # teacher forcing reads no cache; generation turns it on for itself
    metrics = task.evaluate(model, encoded, split, [], tokenizer.pad_token_id, batch_size,
                            next(model.parameters()).device)
    answers = metrics.pop("samples")
    metrics.update(samples=answers[:5], data={"file": source, **counts, **encoded.extra["report"]},
                   model=generator.folder, max_length=max_length, generate=task.generate.writing())
    with writing(out_dir, "evaluation results"):
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "metrics.json", metrics)
        atomic_write_text(out_dir / "answers.jsonl", as_json_lines(answers))
    metrics.update(output_dir=str(out_dir), plot=None, answers="answers.jsonl", summary=task.summary(metrics))
    return metrics


def _context_length(model, tokenizer) -> int:
    """A base model's longest input, capped at 2,048 tokens (evaluation rows are prompts and answers, not books)."""
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(tokenizer, "model_max_length", 2048)
    return min(int(limit), 2048)


def _evaluation_dir(model: Path, source: str, output: Optional[str | Path]) -> Path:
    """Earlier results are never overwritten: a new default folder gets a suffix, a named one must be new. The
    default is beside the model: RUN_DIR/evaluations for a run's model, MODEL_DIR/evaluations for a copied one."""
    from thrifty.errors import RunDirError

    if output is not None:
        out = Path(output)
        if out.exists() and any(out.iterdir()):
            raise RunDirError(f"evaluation output {out} already exists and is not empty; choose another --output")
        return out
    home = model.parent if model.name == "model" and (model.parent / "run.json").exists() else model
    base = home / "evaluations" / Path(source).name
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out
