"""ONNX Runtime as a prediction backend: export a model folder's graph, quantise it, check it against PyTorch.

`thrifty export MODEL_DIR --format onnx [--quantize int8]` writes MODEL_DIR/onnx/: `model.onnx` (the fp32 graph from
torch.onnx), `model.int8.onnx` (onnxruntime's dynamic int8 quantisation of the linear layers' weights, per output
channel, which is where a small encoder spends its time on CPU), and `parity.json`: on the run's validation set (or
--data), the largest difference of any probability from PyTorch's, the share of texts given the same label, and the
accuracy of PyTorch and of each ONNX graph. int8 rounding moves every logit a little, which changes the label of
texts near the decision boundary; the int8 backend therefore sends its close calls (the two leading labels within a
margin measured at export, `fallback_margin` in parity.json) to the fp32 graph, and the parity report measures that
combination (and int8 alone, `without_fallback`). An int8 graph that agrees with PyTorch on fewer than 99% of labels
is refused (nothing is written) unless forced. Files are written to a temporary folder and moved into place at the
end.

`OnnxClassifier` stands where the PyTorch model stood in `Predictor` (`--backend onnx` in predict and serve): it
takes the same padded batches and returns the same logits, so sorting by length, truncation, normalisation and
results in input order are the ones PyTorch prediction uses.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional, Sequence

import numpy as np
import torch

from thrifty.console import quiet_root_logger, stage
from thrifty.errors import ConfigError, ModelError

ONNX_FOLDER = "onnx"
GRAPH_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
PARITY_FILE = "parity.json"
MIN_INT8_AGREEMENT = 0.99  # an int8 graph must give PyTorch's label to at least this share of validation texts
OPSET = 17
# The int8 backend recomputes in fp32 the texts whose two leading labels are closer than this quantile of int8's
# error on that lead (export time, comparison texts). On SST-2 (a model at 88% dev accuracy) the 95th percentile
# recomputed 4.2% of dev texts and gave PyTorch's label to 99.78% of test, against 98.8% for int8 alone, at ~2x
# PyTorch's texts/s with those rows in one fp32 pass per call (1.42x when they were recomputed after each int8 pass;
# docs/serving.md)
FALLBACK_QUANTILE = 0.95


class _LogitsOnly(torch.nn.Module):
    """(input_ids, attention_mask) -> logits: the signature the graph keeps."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "logits_unchunked"):  # a fewshot sentence classifier
            return self.model.logits_unchunked(input_ids, attention_mask)
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _session(path: str | Path, threads: Optional[int]):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("the ONNX backend needs onnxruntime: pip install onnxruntime onnx") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    (logits,) = session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})
    return logits


def top_margin(logits: np.ndarray) -> np.ndarray:
    """The best label's logit minus the runner-up's, per row: how far a row is from changing its label."""
    top2 = np.sort(logits, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


class OnnxClassifier:
    """An onnxruntime session that answers `model(input_ids=..., attention_mask=...).logits` like a PyTorch model.

    With `fallback` (the fp32 graph) and `fallback_margin` > 0 (the int8 backend), `recompute_close_calls` takes the
    rows whose best label leads the runner-up by less than `fallback_margin` through the fp32 graph, so that int8's
    rounding cannot change their label; the rest, most of them, keep int8's answer and speed. predict_logits calls it
    once per prediction call with every close row of that call: one pass sorted by length rather than a few rows
    after each int8 pass (small passes waste most of fp32's time)."""

    training = False

    def __init__(self, path: str | Path, num_labels: int, threads: Optional[int] = None,
                 fallback: Optional[str | Path] = None, fallback_margin: float = 0.0) -> None:
        self.session = _session(path, threads)
        # the fp32 graph, itself without a fallback: predict_logits runs it like any model
        self.fallback = OnnxClassifier(fallback, num_labels, threads) if fallback is not None and fallback_margin > 0 \
            else None
        self.fallback_margin = fallback_margin
        self.path = Path(path)
        self.config = SimpleNamespace(num_labels=num_labels)
        self._count_lock = threading.Lock()
        self.rows, self.rows_recomputed = 0, 0  # since loading: the share the fallback took (parity.json, metrics)

    def eval(self) -> "OnnxClassifier":
        return self

    def train(self, mode: bool = True) -> "OnnxClassifier":
        return self

    def to(self, *_: Any, **__: Any) -> "OnnxClassifier":
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> SimpleNamespace:
        ids = input_ids.cpu().numpy().astype(np.int64)
        mask = attention_mask.cpu().numpy().astype(np.int64)
        logits = _run(self.session, ids, mask)
        with self._count_lock:  # lanes call this from several threads at once
            self.rows += len(logits)
        return SimpleNamespace(logits=torch.from_numpy(logits))

    def recompute_close_calls(self, logits: np.ndarray, input_ids: Sequence[Sequence[int]], pad_id: int,
                              batch_size: int, min_fill: float = 0.0, lanes=None) -> np.ndarray:
        """`logits` (this model's, in input order) with the close calls' rows replaced by the fp32 graph's."""
        if self.fallback is None:
            return logits
        close = np.flatnonzero(top_margin(logits) < self.fallback_margin)
        if len(close):
            from thrifty.evaluation.evaluate import predict_logits

            logits[close] = predict_logits(self.fallback, [input_ids[i] for i in close], pad_id, batch_size,
                                           torch.device("cpu"), min_fill=min_fill, lanes=lanes)
            self.rows_recomputed += len(close)
        return logits


def graph_path(model_dir: str | Path, quantize: Optional[str] = None) -> Path:
    """MODEL_DIR/onnx/model.onnx (or model.int8.onnx); a clear error when it was not exported."""
    from thrifty.runs.manifest import model_folder

    path = model_folder(model_dir) / ONNX_FOLDER / GRAPH_FILES[quantize or "fp32"]
    if not path.exists():
        flag = " --quantize int8" if quantize else ""
        raise ModelError(f"{path} does not exist; export it first: thrifty export {model_dir} --format onnx{flag}")
    return path


def load_onnx_classifier(model_dir: str | Path, quantize: Optional[str], num_labels: int,
                         threads: Optional[int] = None) -> OnnxClassifier:
    """The graph `thrifty export` wrote; for int8, with the fp32 graph for close calls at the margin parity.json
    records (an int8 graph exported before the fallback existed has none: int8 alone)."""
    path = graph_path(model_dir, quantize)
    if quantize != "int8":
        return OnnxClassifier(path, num_labels, threads)
    parity = path.parent / PARITY_FILE
    margin = json.loads(parity.read_text(encoding="utf-8"))["int8"].get("fallback_margin", 0.0) if parity.exists() else 0.0
    fp32 = path.parent / GRAPH_FILES["fp32"]
    return OnnxClassifier(path, num_labels, threads, fallback=fp32 if fp32.exists() else None, fallback_margin=margin)


def _export_graph(predictor, path: Path) -> None:
    module = _LogitsOnly(predictor.model).eval()
    example = predictor.tokenizer(["an example", "a second, longer example text"], padding=True, return_tensors="pt")
    args = (example["input_ids"], example["attention_mask"])
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"}}
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def export_onnx(model_dir: str | Path, *, quantize: Optional[str] = None, data: Optional[str] = None,
                force: bool = False, text_column: Optional[str] = None, label_column: Optional[str] = None) -> dict:
    """Write MODEL_DIR/onnx/ (graphs + parity.json); returns the parity report."""
    from thrifty.inference.predictor import Predictor, labelled_texts, run_splits

    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize {quantize} is not supported; use int8 (dynamic quantisation of the weights)")
    predictor = Predictor.load(model_dir, device="cpu", backend="torch")  # the fp32 reference
    if not predictor.traits.predicts_labels:
        raise ModelError(f"ONNX export covers classification models; this is a {predictor.task} model: serve it with "
                         "the PyTorch backend")
    folder = predictor.folder
    if data is not None:
        texts, labels, _, _ = labelled_texts(predictor, data, text_column, label_column)
        source = str(data)
    else:
        _, texts, labels = run_splits(predictor, "labelled texts to compare on: --data FILE")
        source = "the run's validation split"
    if not texts:
        raise ConfigError(f"no labelled texts to compare on in {source}; give some: --data FILE")

    scratch = Path(tempfile.mkdtemp(prefix=".onnx-", dir=folder))
    try:
        started = time.perf_counter()
        with stage("export: tracing the model into an ONNX graph"):
            _export_graph(predictor, scratch / GRAPH_FILES["fp32"])
        report: dict[str, Any] = {"source": source, "texts": len(texts), "opset": OPSET,
                                  "export_seconds": round(time.perf_counter() - started, 1)}
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # per channel: each output feature's weights get their own scale (one scale per matrix gave PyTorch's
            # label to 96.4% of SST-2 test on a weakly trained model, per channel 98.1%: docs/serving.md)
            with stage("export: quantising the weights to int8"), quiet_root_logger():
                quantize_dynamic(str(scratch / GRAPH_FILES["fp32"]), str(scratch / GRAPH_FILES["int8"]),
                                 weight_type=QuantType.QInt8, per_channel=True)
        reference = predictor.logits(texts)
        report["pytorch"] = {"accuracy": _accuracy(reference, labels)}
        graph_logits = {}
        for kind in (["fp32", "int8"] if quantize == "int8" else ["fp32"]):
            session = OnnxClassifier(scratch / GRAPH_FILES[kind], len(predictor.label_names))
            graph_logits[kind] = _with_model(predictor, session).logits(texts)
            report[kind] = _compare(reference, graph_logits[kind], labels)
            report[kind]["bytes"] = (scratch / GRAPH_FILES[kind]).stat().st_size
        if quantize == "int8":  # the int8 backend as it serves (OnnxClassifier's fallback): close calls take fp32's
            margin = fallback_margin(reference, graph_logits["int8"])
            close = top_margin(graph_logits["int8"]) < margin
            served = np.where(close[:, None], graph_logits["fp32"], graph_logits["int8"])
            report["int8"] = {**_compare(reference, served, labels), "bytes": report["int8"]["bytes"],
                              "fallback_margin": round(margin, 4), "fallback_share": round(float(close.mean()), 4),
                              "without_fallback": report["int8"]}
        if quantize == "int8" and report["int8"]["label_agreement"] < MIN_INT8_AGREEMENT and not force:
            raise ModelError(f"the int8 graph gives PyTorch's label to {report['int8']['label_agreement']:.2%} of "
                             f"{len(texts)} texts, under {MIN_INT8_AGREEMENT:.0%}; nothing was written. Use the fp32 "
                             "graph (no --quantize), or --force to keep int8 anyway")
        (scratch / PARITY_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        target = folder / ONNX_FOLDER
        if target.exists():
            shutil.rmtree(target)
        scratch.rename(target)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    report["folder"] = str(folder / ONNX_FOLDER)
    return report


def fallback_margin(reference: np.ndarray, quantised: np.ndarray) -> float:
    """How close a call must be for the int8 backend to ask the fp32 graph: the FALLBACK_QUANTILE of how far int8
    moved the lead of its best label over its runner-up, on the comparison texts (a label can change only where
    int8 moved the lead by more than the lead). 0 when int8 moved nothing."""
    rows = np.arange(len(quantised))
    order = np.argsort(quantised, axis=1)
    best, second = order[:, -1], order[:, -2]
    moved = np.abs((quantised[rows, best] - quantised[rows, second]) - (reference[rows, best] - reference[rows, second]))
    return float(np.quantile(moved, FALLBACK_QUANTILE)) if len(moved) else 0.0


def _with_model(predictor, model):
    import dataclasses

    return dataclasses.replace(predictor, model=model)


def _accuracy(logits: np.ndarray, labels: Sequence[int]) -> float:
    return round(float((logits.argmax(1) == np.asarray(labels)).mean()), 4)


def _compare(reference: np.ndarray, other: np.ndarray, labels: Sequence[int]) -> dict[str, float]:
    from thrifty.evaluation.evaluate import softmax

    return {"max_probability_difference": round(float(np.abs(softmax(reference) - softmax(other)).max()), 6),
            "label_agreement": round(float((reference.argmax(1) == other.argmax(1)).mean()), 4),
            "accuracy": _accuracy(other, labels)}
