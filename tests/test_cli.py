"""The command line: each kind of bad input gets exit code 2, one line on stderr, and leaves nothing behind."""

import json
import subprocess
import sys

import pytest
import yaml

from thrifty.cli import main

from tests.conftest import shared_file, tiny_config


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def good_rows(n=12):
    return "".join(f"great movie {i},pos\nawful movie {i},neg\n" for i in range(n))


def run_main(capsys, args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def config_file(tmp_path, tiny_bert, train_file, **sections):
    config = tiny_config(tiny_bert, train_file, epochs=1)
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return write(tmp_path / "config.yaml", yaml.safe_dump(config))


def assert_clean_failure(code, err, fragment, run_dir=None):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("thrifty: error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in err
    if run_dir is not None:
        assert not run_dir.exists(), "a failed run must not leave a run folder behind"


@pytest.mark.parametrize("case", [
    "missing_file", "folder", "wrong_column", "empty", "one_class", "unseen_label", "non_utf8",
    "bad_yaml", "unknown_key", "missing_model", "hub_model_offline", "not_a_transformer", "strategy_misfit",
    "unwritable_output", "fp16_on_cpu",
])
def test_bad_input(case, tmp_path, tiny_bert, capsys):
    data = write(tmp_path / "train.csv", "text,label\n" + good_rows())
    run_dir = tmp_path / "run"
    expected = {
        "missing_file": "train file not found",
        "folder": "is a folder",
        "wrong_column": "column 'text' not found",
        "empty": "has no rows",
        "one_class": "only one class",
        "unseen_label": "labels never seen in training: 'maybe'",
        "non_utf8": "not valid UTF-8 (1 bad line(s): 3)",
        "bad_yaml": "malformed YAML",
        "unknown_key": "unknown config key 'train.epochz'",
        "missing_model": "model folder not found",
        "hub_model_offline": "not in the Hugging Face cache, and the hub is unreachable",
        "fp16_on_cpu": "train.precision=fp16 needs a GPU",
        "not_a_transformer": "not a transformer model folder",
        "strategy_misfit": "leaves no transformer layer to train",
        "unwritable_output": "is not a writable folder",
    }[case]
    sections: dict = {}
    if case == "missing_file":
        sections["data"] = {"train": str(tmp_path / "nope.csv")}
    elif case == "folder":
        sections["data"] = {"train": str(tmp_path)}
    elif case == "wrong_column":
        write(data, "sentence,label\n" + good_rows())
    elif case == "empty":
        write(data, "text,label\n")
    elif case == "one_class":
        write(data, "text,label\n" + "".join(f"ok {i},pos\n" for i in range(20)))
    elif case == "unseen_label":
        val = write(tmp_path / "val.csv", "text,label\nfresh,pos\nunsure,maybe\n")
        sections["data"] = {"validation": str(val)}
    elif case == "non_utf8":
        write(data, b"text,label\nfine,pos\ngr\xe9at,neg\n" + good_rows().encode())  # latin-1 byte on line 3
    elif case == "unknown_key":
        sections["train"] = {"epochz": 3}
    elif case == "missing_model":
        sections["model"] = {"name": "./no/such/model"}
    elif case == "hub_model_offline":
        sections["model"] = {"name": "someone/not-cached-model"}
    elif case == "fp16_on_cpu":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU, where fp16 is valid")
        sections["train"] = {"precision": "fp16"}
    elif case == "not_a_transformer":
        (tmp_path / "plain").mkdir()
        sections["model"] = {"name": str(tmp_path / "plain")}
    elif case == "strategy_misfit":
        sections["strategy"] = {"name": "freeze", "frozen_layers": 2}
    elif case == "unwritable_output":
        blocker = write(tmp_path / "a-file", "x")
        run_dir = blocker / "run"
    path = config_file(tmp_path, tiny_bert, data, **sections)
    if case == "bad_yaml":
        write(path, "train:\n  epochs: [1,\n")
    code, out, err = run_main(capsys, ["train", path, "--output", run_dir, "--no-progress"])
    assert_clean_failure(code, err, expected, run_dir if case != "unwritable_output" else None)


def test_real_process_exit_code_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "thrifty", "train", "--train.epochs", "zero"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "thrifty: error: train.epochs must be an integer, got 'zero'"


@pytest.mark.parametrize("args", [["--debug", "train", "--train.epochs", "zero"],
                                  ["train", "--train.epochs", "zero", "--debug"]])
def test_debug_flag_shows_the_traceback(args):
    with pytest.raises(Exception, match="must be an integer"):
        main(args)


def test_megabyte_text_trains_with_the_cut_reported(tmp_path, tiny_bert, capsys):
    huge = "very long review " * 200_000  # 3.4 MB in one row
    data = write(tmp_path / "train.csv", "text,label\n" + good_rows() + f"{huge},pos\n")
    path = config_file(tmp_path, tiny_bert, data)
    code, out, err = run_main(capsys, ["train", path, "--output", tmp_path / "run", "--no-progress"])
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["splits"]["train"]["texts_truncated_to_max_chars"] == 1
    assert "texts_truncated_to_max_chars=1" in out


def test_predict_writes_jsonl_in_input_order_and_never_overwrites(tmp_path, tiny_bert, small_csv, capsys):
    import thrifty

    thrifty.train(tiny_config(tiny_bert, small_csv, epochs=3, learning_rate=3e-3), output=tmp_path / "run", progress=False)
    texts = ["I loved this wonderful film", "x", "I hated this terrible film " * 20, "", "I loved it"]
    inp = write(tmp_path / "in.txt", "\n".join(texts) + "\n")
    out_file = tmp_path / "out.jsonl"
    code, _, err = run_main(capsys, ["predict", tmp_path / "run", "--input", inp, "--output-file", out_file])
    assert code == 0, err
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [r["text"] for r in rows] == texts  # input order, even though batches are sorted by length
    direct = thrifty.predict(tmp_path / "run", texts)
    assert [r["label"] for r in rows] == [d["label"] for d in direct]
    code, _, err = run_main(capsys, ["predict", tmp_path / "run", "--input", inp, "--output-file", out_file])
    assert_clean_failure(code, err, "already exists")
    code, _, err = run_main(capsys, ["predict", tmp_path / "run", "--input", inp, "--output-file", tmp_path / "out.csv"])
    assert code == 0 and (tmp_path / "out.csv").read_text().startswith("text,label,score,p_neg,p_pos")
    code, _, err = run_main(capsys, ["predict", tmp_path / "run", "--input", tmp_path / "missing.txt"])
    assert_clean_failure(code, err, "input file not found")
    assert "check --input" in err and "data.input" not in err  # the flag the user gave, not a setting that is none


def test_predict_on_an_unfinished_run(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    write(tmp_path / "run" / "run.json", '{"status": "interrupted"}')
    code, _, err = run_main(capsys, ["predict", tmp_path / "run", "--text", "hello"])
    assert_clean_failure(code, err, "thrifty train --resume")


def test_evaluate_writes_metrics_and_plot(tmp_path, tiny_bert, small_csv, capsys):
    import thrifty

    thrifty.train(tiny_config(tiny_bert, small_csv, epochs=1), output=tmp_path / "run", progress=False)
    code, out, err = run_main(capsys, ["evaluate", tmp_path / "run", "--data", small_csv, "--output", tmp_path / "ev"])
    assert code == 0, err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["examples"] == 80 and 0.0 <= metrics["accuracy"] <= 1.0
    assert (tmp_path / "ev" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = run_main(capsys, ["evaluate", tmp_path / "run", "--data", small_csv, "--output", tmp_path / "ev"])
    assert_clean_failure(code, err, "already exists")  # earlier results are not overwritten
    for expected in ("small.csv", "small.csv-2"):
        code, _, _ = run_main(capsys, ["evaluate", tmp_path / "run", "--data", small_csv])
        assert code == 0 and (tmp_path / "run" / "evaluations" / expected / "metrics.json").exists()
    bad = write(tmp_path / "bad.csv", "text,label\nsomething,neutral\n")
    code, _, err = run_main(capsys, ["evaluate", tmp_path / "run", "--data", bad])
    assert_clean_failure(code, err, "labels the model was not trained on")


def test_config_command_prints_the_resolved_config(capsys):
    code, out, _ = run_main(capsys, ["config", "--train.epochs", "7"])
    assert code == 0 and yaml.safe_load(out)["train"]["epochs"] == 7


def test_sst2_example_config_resolves(capsys):
    shared_file("sst2", "stsa.binary.train")
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    code, out, _ = run_main(capsys, ["config", repo / "examples" / "sst2.yaml"])
    assert code == 0 and yaml.safe_load(out)["data"]["test"].endswith("stsa.binary.test")
