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
    torch_logits = Predictor.load(run_copy, backend="torch").logits(TEXTS)
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


def test_int8_close_calls_go_to_the_fp32_graph(run_copy):
    report = export_onnx(run_copy, quantize="int8", force=True)
    int8 = report["int8"]
    assert int8["fallback_margin"] >= 0 and 0 <= int8["fallback_share"] <= 1 and "label_agreement" in int8["without_fallback"]
    folder = run_copy / "model" / "onnx"
    fp32 = Predictor.load(run_copy, backend="onnx").logits(TEXTS)
    alone = onnx_backend.OnnxClassifier(folder / "model.int8.onnx", 2)
    everything = onnx_backend.OnnxClassifier(folder / "model.int8.onnx", 2, fallback=folder / "model.onnx",
                                             fallback_margin=1e9)  # every call is close: all rows in fp32
    predictor = Predictor.load(run_copy, backend="onnx-int8")
    assert predictor.model.fallback_margin == int8["fallback_margin"]  # as export measured it
    predictor.model = everything
    np.testing.assert_allclose(predictor.logits(TEXTS), fp32, atol=1e-5)
    assert everything.rows_recomputed == everything.rows == len(TEXTS)
    predictor.model = alone
    assert predictor.logits(TEXTS).shape == fp32.shape and alone.rows_recomputed == 0
    lanes = Predictor.load(run_copy, backend="onnx-int8", lanes=2, threads=2)  # passes and close calls on 2 lanes
    lanes.model = onnx_backend.OnnxClassifier(folder / "model.int8.onnx", 2, 1, fallback=folder / "model.onnx",
                                              fallback_margin=1e9)
    np.testing.assert_allclose(lanes.logits(TEXTS * 5, batch_size=2), np.concatenate([fp32] * 5), atol=1e-5)
    assert lanes.model.rows_recomputed == lanes.model.rows == 5 * len(TEXTS)


def test_the_fallback_margin_is_a_quantile_of_how_far_int8_moved_the_lead():
    reference = np.array([[0.0, 1.0], [0.0, 2.0], [3.0, 0.0], [0.0, 0.5]])
    quantised = reference + np.array([[0.0, 0.1], [0.0, -0.4], [0.2, 0.0], [0.0, 0.0]])
    margin = onnx_backend.fallback_margin(reference, quantised)
    assert margin == pytest.approx(np.quantile([0.1, 0.4, 0.2, 0.0], onnx_backend.FALLBACK_QUANTILE))
    assert onnx_backend.fallback_margin(reference, reference) == 0.0


def test_export_on_a_labelled_file_and_from_the_cli(run_copy, tmp_path, capsys):
    data = tmp_path / "check.csv"
    data.write_text("text,label\nI loved it,pos\nI hated it,neg\n", encoding="utf-8")
    assert main(["export", str(run_copy), "--format", "onnx", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "parity on 2 texts" in out and "thrifty serve" in out
    assert main(["predict", str(run_copy), "--backend", "onnx", "--text", "I loved it"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["label"] in ("neg", "pos")
    assert main(["export", str(run_copy), "--format", "onnx", "--quantize", "int8", "--force"]) == 0
    out = capsys.readouterr().out
    assert "int8: accuracy" in out and "recomputed in fp32" in out and "--backend onnx-int8" in out


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
                               Predictor.load(tmp_path / "few", backend="torch").logits(texts), atol=1e-4)


@pytest.mark.slow  # a server start and an int8 export: the fallback itself is tested above in the fast tier
def test_the_server_runs_int8_with_its_fallback_and_counts_it(run_copy, tmp_path):
    from thrifty.config import ServeConfig
    from thrifty.serving.app import AppSettings

    from tests.serving.server_helpers import call, running_server

    export_onnx(run_copy, quantize="int8", force=True)
    parity = run_copy / "model" / "onnx" / "parity.json"
    report = json.loads(parity.read_text())
    report["int8"]["fallback_margin"] = 1e9  # every call close: each text also goes through the fp32 graph
    parity.write_text(json.dumps(report))
    serve = ServeConfig(backend="onnx-int8", threads=1, log_predictions=False)
    with running_server(AppSettings(str(run_copy), serve, None)) as (base, _):
        status, body = call(base, "POST", "/v1/predict", {"texts": TEXTS})
        assert status == 200 and len(body["predictions"]) == len(TEXTS)
        _, metrics = call(base, "GET", "/metrics")
    recomputed = next(float(line.split()[-1]) for line in metrics.splitlines()
                      if line.startswith("thrifty_int8_fallback_texts_total"))
    assert recomputed >= len(TEXTS)  # the request's texts, and the warm-up's
