"""The predictor: passes of similar lengths give the logits one padded pass gives, in input order; lanes run
passes in parallel and give the same logits."""

import numpy as np
import pytest

from thrifty.errors import ModelError
from thrifty.inference.predictor import Predictor


def test_passes_split_by_length_give_the_logits_of_one_padded_pass(tiny_run):
    predictor = Predictor.load(tiny_run, device="cpu", backend="torch")  # fp32: bf16 kernels may round by batch shape
    texts = ["short", "I loved this wonderful film number 3 " * 3, "ok", "I hated this terrible film", "a " * 40]
    one_pass = predictor.logits(texts, min_fill=0.0)
    split = predictor.logits(texts, min_fill=0.9)  # nearly one pass per distinct length
    np.testing.assert_allclose(split, one_pass, atol=1e-5)
    np.testing.assert_allclose(predictor.logits(texts[::-1], min_fill=0.9), one_pass[::-1], atol=1e-5)


def test_the_bf16_backend_predicts_with_bf16_weights_close_to_fp32(tiny_run, monkeypatch, tmp_path):
    import json

    import torch

    import thrifty
    from thrifty.inference import predictor as predictor_module

    monkeypatch.setattr(predictor_module, "has_fast_bf16", lambda device: True)  # emulated where the CPU has no bf16
    fp32 = Predictor.load(tiny_run, device="cpu", backend="torch")
    bf16 = Predictor.load(tiny_run, device="cpu", backend="torch-bf16")
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    texts = ["I loved this wonderful film", "I hated this terrible film", "an ordinary film"]
    reference, rounded = fp32.logits(texts), bf16.logits(texts)
    assert rounded.dtype == np.float32 and not np.array_equal(rounded, reference)  # bf16 did round something
    np.testing.assert_allclose(rounded, reference, atol=0.1)
    data = tmp_path / "check.csv"
    data.write_text("text,label\nI loved it,pos\nI hated it,neg\n", encoding="utf-8")
    metrics = thrifty.evaluate(tiny_run, str(data), output=tmp_path / "eval", backend="torch-bf16")
    assert metrics["backend"] == "torch-bf16"
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["backend"] == "torch-bf16"


def test_bf16_is_refused_where_the_hardware_has_none(tiny_run, monkeypatch, capsys):
    import torch

    from thrifty.cli import main

    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for command in (["predict", tiny_run, "--backend", "torch-bf16", "--text", "x"],
                    ["serve", tiny_run, "--backend", "torch-bf16", "--no-log"]):
        assert main([str(a) for a in command]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "no bf16 instructions" in err and "--backend torch" in err


def test_lanes_run_passes_in_parallel_with_the_logits_of_one_lane(tiny_run):
    import torch

    texts = [("I loved this wonderful film " * (i % 7 + 1))[: 10 + 13 * i] for i in range(40)]
    one_lane = Predictor.load(tiny_run, device="cpu", backend="torch").logits(texts, batch_size=4)
    own = torch.get_num_threads()
    lanes = Predictor.load(tiny_run, device="cpu", backend="torch", lanes=3, threads=3)
    assert (lanes.lanes, lanes.lane_threads) == (3, 1)
    np.testing.assert_allclose(lanes.logits(texts, batch_size=4), one_lane, atol=1e-5)  # 10+ passes over 3 lanes
    assert torch.get_num_threads() == own  # the caller's thread count is its own
    assert set(lanes._lane_pool.map(lambda _: torch.get_num_threads(), range(6))) == {1}  # each lane: its share
    alone = Predictor.load(tiny_run, backend="torch").predict(texts[-1:])[0]["label"]
    assert lanes.predict(texts[::-1], batch_size=4)[0]["label"] == alone


def test_lanes_are_refused_below_one(tiny_run, capsys):
    from thrifty.cli import main

    with pytest.raises(ModelError, match="lanes=0"):
        Predictor.load(tiny_run, lanes=0)
    assert main(["predict", str(tiny_run), "--lanes", "0", "--text", "x"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "lanes=0" in err
