"""The Python API: the same three verbs as the CLI, as plain functions.

    import thrifty
    result = thrifty.train("examples/sst2.yaml", output="runs/sst2", overrides=["--train.epochs", "1"])
    metrics = thrifty.evaluate("runs/sst2", "../shared/data/sst2/stsa.binary.test")
    thrifty.predict("runs/sst2", ["a gripping, funny film"])  # -> [{"label": "1", "score": ..., ...}]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from thrifty.training.recipe import RunResult, train  # noqa: F401  (re-exported)


def predict(run_dir: str | Path, texts: Sequence[str], batch_size: int = 128) -> list[dict[str, Any]]:
    from thrifty.inference.predictor import Predictor

    return Predictor.load(run_dir).predict(list(texts), batch_size)


def evaluate(
    run_dir: str | Path, data: str, *, output: Optional[str | Path] = None, text_column: Optional[str] = None,
    label_column: Optional[str] = None, batch_size: int = 128,
) -> dict[str, Any]:
    """Metrics of a finished run on a labelled file; writes metrics JSON and a confusion-matrix PNG."""
    import numpy as np

    from thrifty.config import config_from_dict, load_yaml
    from thrifty.data.prepare import clean_table
    from thrifty.data.readers import read_table
    from thrifty.errors import DataError
    from thrifty.evaluation.metrics import classification_metrics
    from thrifty.evaluation.plots import plot_confusion_matrix
    from thrifty.inference.predictor import Predictor
    from thrifty.training.run_dir import require_complete_run, write_json, writing

    run = require_complete_run(run_dir)
    saved = config_from_dict(load_yaml(run / "config.yaml")).data
    table = read_table(data, role="evaluation", fmt="auto", text_column=text_column or saved.text_column,
                       label_column=label_column or saved.label_column, encoding_errors=saved.encoding_errors)
    texts, labels, counts = clean_table(table, saved)
    predictor = Predictor.load(run)
    index = {name: i for i, name in enumerate(predictor.label_names)}
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise DataError(f"{data} has labels the model was not trained on: {unknown[:5]}; the model knows: {predictor.label_names[:10]}")
    if not texts:
        raise DataError(f"{data} has no usable labelled rows (counts: {counts})")
    logits = predictor.logits(texts, batch_size)
    y = np.asarray([index[label] for label in labels])
    import torch

    loss = float(torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)))
    metrics = classification_metrics(y, logits.argmax(axis=1), predictor.label_names, loss=loss)
    metrics["data"] = {"file": table.source, **counts}
    out_dir = _evaluation_dir(run, table.source, output)
    with writing(out_dir, "evaluation results"):
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "metrics.json", metrics)
        plot_confusion_matrix(metrics["confusion_matrix"], predictor.label_names, out_dir / "confusion_matrix.png",
                              f"{Path(table.source).name} ({run.name})")
    metrics["output_dir"] = str(out_dir)
    return metrics


def _evaluation_dir(run: Path, source: str, output: Optional[str | Path]) -> Path:
    """Earlier results are never overwritten: a new default folder gets a suffix, a named one must be new."""
    from thrifty.errors import RunDirError

    if output is not None:
        out = Path(output)
        if out.exists() and any(out.iterdir()):
            raise RunDirError(f"evaluation output {out} already exists and is not empty; choose another --output")
        return out
    base = run / "evaluations" / Path(source).name
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out
