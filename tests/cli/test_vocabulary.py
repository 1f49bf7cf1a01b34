"""One vocabulary across commands (docs/cli.md): --output a folder, --output-file a file, --resume a run folder, --model
the model to use, --section.key overrides on every command with a config; the old spellings still work for one
release, each with a one-line notice on stderr."""

import json

import pytest

from thrifty.cli import main


def notices(err):
    return [line for line in err.splitlines() if line.startswith("thrifty: deprecated: ")]


def one_line_error(code, err, fragment):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("thrifty: error: ") and fragment in lines[0], err


@pytest.fixture
def captured(monkeypatch):
    """Replace a command's worker with a recorder: `captured("thrifty.tuning.search.tune", returns)`."""
    calls = []

    def install(target, returns=None):
        def record(*args, **kwargs):
            calls.append((args, kwargs))
            return returns(*args, **kwargs) if callable(returns) else returns

        monkeypatch.setattr(target, record)
        return calls

    return install


def test_predict_output_is_a_folder_and_output_file_a_file(tiny_run, tmp_path, capsys):
    assert main(["predict", str(tiny_run), "--text", "I loved it", "--output", str(tmp_path / "preds")]) == 0
    err = capsys.readouterr().err
    assert notices(err) == [] and (tmp_path / "preds" / "predictions.jsonl").exists()
    assert main(["predict", str(tiny_run), "--text", "I loved it", "--output-file", str(tmp_path / "p.csv")]) == 0
    assert notices(capsys.readouterr().err) == [] and (tmp_path / "p.csv").read_text().startswith("text,label")


def test_predict_output_as_a_file_still_works_with_one_notice(tiny_run, tmp_path, capsys):
    out = tmp_path / "old.jsonl"
    assert main(["predict", str(tiny_run), "--text", "I loved it", "--output", str(out)]) == 0
    assert json.loads(out.read_text())["text"] == "I loved it"
    (notice,) = notices(capsys.readouterr().err)
    assert f"--output-file {out}" in notice


def test_output_and_output_file_together_is_one_line(tiny_run, tmp_path, capsys):
    code = main(["predict", str(tiny_run), "--text", "x", "--output", str(tmp_path / "a"), "--output-file",
                 str(tmp_path / "b.jsonl")])
    one_line_error(code, capsys.readouterr().err, "not both")


def test_generate_output_and_its_overrides(captured, monkeypatch, tmp_path, capsys):
    class Fake:
        def __init__(self):
            self.settings = []

        def generate(self, prompts, **kwargs):
            self.settings.append(kwargs)
            return ["an answer" for _ in prompts]

    fake = Fake()
    monkeypatch.setattr("thrifty.inference.generation.Generator.load", lambda *a, **k: fake)
    config = tmp_path / "generate.yaml"
    config.write_text("generate:\n  top_p: 0.5\n  max_new_tokens: 9\n")
    argv = ["generate", "base", "--prompt", "a", "--prompt", "b", "--config", str(config), "--generate.temperature",
            "0.7", "--max-new-tokens", "4", "--output", str(tmp_path / "answers")]
    assert main(argv) == 0
    assert [json.loads(line)["generated"] for line in (tmp_path / "answers" / "answers.jsonl").read_text().splitlines()] \
        == ["an answer", "an answer"]
    settings = fake.settings[-1]
    assert (settings["max_new_tokens"], settings["top_p"], settings["temperature"]) == (4, 0.5, 0.7)  # the option wins
    assert main(["generate", "base", "--prompt", "a", "--output", str(tmp_path / "old.jsonl")]) == 0
    assert len(notices(capsys.readouterr().err)) == 1 and (tmp_path / "old.jsonl").exists()


def test_estimate_and_recommend_output(captured, tmp_path, capsys):
    from thrifty.config import load_config

    captured("thrifty.cost.estimate.estimate", {"minutes": 1})
    assert main(["estimate", "--json", "--output", str(tmp_path / "est")]) == 0
    assert json.loads((tmp_path / "est" / "estimate.json").read_text()) == {"minutes": 1}
    assert main(["estimate", "--json", "--output", str(tmp_path / "old.json")]) == 0
    assert len(notices(capsys.readouterr().err)) == 1 and (tmp_path / "old.json").exists()
    captured("thrifty.planning.recommend.recommend", lambda base, *a, **k: {"config": load_config(), "choice": {}})
    assert main(["recommend", "--json", "--output", str(tmp_path / "rec")]) == 0
    assert load_config(tmp_path / "rec" / "config.yaml").train.epochs == 3
    assert main(["recommend", "--json", "--output", str(tmp_path / "old.yaml")]) == 0
    assert len(notices(capsys.readouterr().err)) == 1 and (tmp_path / "old.yaml").exists()


def test_tune_resume_is_the_search_folder_and_the_old_flag_still_works(captured, tmp_path, capsys):
    calls = captured("thrifty.tuning.search.tune")
    assert main(["tune", "--resume", str(tmp_path / "search"), "--trials", "4"]) == 0
    assert calls[-1][1]["resume"] is True and calls[-1][1]["output"] == str(tmp_path / "search")
    assert notices(capsys.readouterr().err) == []
    assert main(["tune", "--output", str(tmp_path / "old"), "--resume"]) == 0
    assert calls[-1][1]["resume"] is True and calls[-1][1]["output"] == str(tmp_path / "old")
    (notice,) = notices(capsys.readouterr().err)
    assert f"tune --resume {tmp_path / 'old'}" in notice
    assert main(["tune", "--model", "tiny", "--train.epochs", "1"]) == 0
    assert calls[-1][1]["overrides"] == ["--model.name", "tiny", "--train.epochs", "1"] and not calls[-1][1]["resume"]
    code = main(["tune", "--resume", str(tmp_path / "a"), "--output", str(tmp_path / "b")])
    one_line_error(code, capsys.readouterr().err, "is the search folder")


def test_retrain_name_and_the_old_model_spelling(captured, capsys):
    calls = captured("thrifty.retrain.challenger.retrain")
    assert main(["retrain", "--name", "banking"]) == 0
    assert calls[-1][1]["overrides"][:2] == ["--retrain.model", "banking"] and notices(capsys.readouterr().err) == []
    assert main(["retrain", "--model", "banking"]) == 0
    assert calls[-1][1]["overrides"][:2] == ["--retrain.model", "banking"]
    (notice,) = notices(capsys.readouterr().err)
    assert "retrain --name banking" in notice


def test_audit_model_is_the_model_to_use_and_takes_overrides(captured, tiny_run, tmp_path, capsys):
    calls = captured("thrifty.audit.run.audit", {"output_dir": "x", "failed": []})
    assert main(["audit", "--model", str(tiny_run), "--audit.fail_on", "max_gap>0.5"]) == 0
    args, kwargs = calls[-1]
    assert args == (str(tiny_run),) and kwargs["model"] is None and kwargs["fail_on"] == "max_gap>0.5"
    assert main(["audit", "--model", "all-MiniLM-L6-v2", "--fail-on", "max_gap>0.1", "--audit.fail_on", "max_gap>0.9"]) == 0
    args, kwargs = calls[-1]
    assert args == (None,) and kwargs["model"] == "all-MiniLM-L6-v2" and kwargs["fail_on"] == "max_gap>0.1"


def test_overrides_on_a_command_without_a_config_are_one_line(capsys):
    code = main(["predict", "runs/x", "--text", "t", "--train.epochs", "1"])
    one_line_error(code, capsys.readouterr().err, "only apply to the commands with a config")


def test_a_dotted_folder_is_a_folder_not_an_old_file_spelling(tiny_run, tmp_path, capsys):
    out = tmp_path / "v1.2"
    assert main(["predict", str(tiny_run), "--text", "I loved it", "--output", str(out)]) == 0
    assert notices(capsys.readouterr().err) == [] and (out / "predictions.jsonl").exists()


def test_a_finished_models_command_refuses_another_sections_override(capsys):
    code = main(["generate", "/nonexistent", "--prompt", "hi", "--train.epochs", "3"])
    one_line_error(code, capsys.readouterr().err, "--train.epochs: this command takes only --generate.KEY overrides")


def test_model_and_model_name_together_are_refused(capsys):
    code = main(["estimate", "--model", "a", "--model.name", "b"])
    one_line_error(code, capsys.readouterr().err, "--model and --model.name name the same setting")
