"""ONNX export: the graph answers what PyTorch answers, int8 is checked before it is kept, and the backend plugs
into predict and serve."""

import json
import shutil

import numpy as np
import pytest

from thrifty.cli import main
from thrifty.inference import onnx_backend
from thrifty.inference.onnx_backend import export_onnx
from thrifty.inference.predictor import Predictor

TEXTS = ["I loved this wonderful film", "I hated this terrible film number 3", "short", "a much longer sentence " * 20]


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(tiny_run, target)
    return target


def test_fp32_graph_matches_pytorch_on_the_validation_split(run_copy):
    report = export_onnx(run_copy)
    assert report["source"] == "the run's validation split" and report["texts"] == 16  # a quarter of 60 rows, stratified
    assert report["fp32"]["label_agreement"] == 1.0
    assert report["fp32"]["max_probability_difference"] < 1e-4
    assert report["fp32"]["accuracy"] == report["pytorch"]["accuracy"]
    folder = run_copy / "model" / "onnx"
    assert (folder / "model.onnx").exists() and json.loads((folder / "parity.json").read_text()) == \
        {k: v for k, v in report.items() if k != "folder"}
    torch_logits = Predictor.load(run_copy).logits(TEXTS)
    onnx_logits = Predictor.load(run_copy, backend="onnx").logits(TEXTS)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)
    onnx = Predictor.load(run_copy, backend="onnx")  # one text per batch: no padding, unlike the traced example
    for text, expected in zip(TEXTS, torch_logits):
        np.testing.assert_allclose(onnx.logits([text])[0], expected, atol=1e-4)


def test_int8_is_refused_below_the_agreement_floor_and_nothing_is_written(run_copy, monkeypatch):
    monkeypatch.setattr(onnx_backend, "MIN_INT8_AGREEMENT", 1.01)  # no graph can pass
    with pytest.raises(Exception, match="nothing was written"):
        export_onnx(run_copy, quantize="int8")
    assert not (run_copy / "model" / "onnx").exists()
    assert [p.name for p in (run_copy / "model").iterdir() if p.name.startswith(".onnx-")] == []
    report = export_onnx(run_copy, quantize="int8", force=True)
    assert 0.0 <= report["int8"]["label_agreement"] <= 1.0 and "int8" in json.loads(
        (run_copy / "model" / "onnx" / "parity.json").read_text())
    import onnx

    graph = onnx.load(str(run_copy / "model" / "onnx" / "model.int8.onnx")).graph
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= {node.op_type for node in graph.node}  # int8 matmuls
    predictions = Predictor.load(run_copy, backend="onnx-int8").predict(TEXTS)
    assert len(predictions) == 4 and {p["label"] for p in predictions} <= {"neg", "pos"}


def test_export_on_a_labelled_file_and_from_the_cli(run_copy, tmp_path, capsys):
    data = tmp_path / "check.csv"
    data.write_text("text,label\nI loved it,pos\nI hated it,neg\n", encoding="utf-8")
    assert main(["export", str(run_copy), "--format", "onnx", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "parity on 2 texts" in out and "thrifty serve" in out
    assert main(["predict", str(run_copy), "--backend", "onnx", "--text", "I loved it"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["label"] in ("neg", "pos")


def test_a_missing_graph_is_one_clear_line(run_copy, capsys):
    assert main(["predict", str(run_copy), "--backend", "onnx-int8", "--text", "x"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "thrifty export" in err and "--quantize int8" in err
    assert main(["serve", str(run_copy), "--backend", "onnx", "--no-log"]) == 2
    assert "thrifty export" in capsys.readouterr().err


def test_a_fewshot_model_exports_without_length_chunks(tiny_bert, tmp_path):
    import thrifty

    from tests.conftest import tiny_config

    rows = ["text,label"] + [f"great fun number {i},pos" for i in range(8)] + [f"dull mess number {i},neg" for i in range(8)]
    data = tmp_path / "few.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = tiny_config(tiny_bert, data, epochs=2)
    config["strategy"] = {"name": "fewshot"}
    thrifty.train(config, output=tmp_path / "few", progress=False)
    report = export_onnx(tmp_path / "few", data=str(data))
    assert report["fp32"]["label_agreement"] == 1.0 and report["fp32"]["max_probability_difference"] < 1e-4
    texts = [f"text {'long ' * (i * 7)}" for i in range(12)]  # mixed lengths: PyTorch embeds these in chunks
    np.testing.assert_allclose(Predictor.load(tmp_path / "few", backend="onnx").logits(texts),
                               Predictor.load(tmp_path / "few").logits(texts), atol=1e-4)
