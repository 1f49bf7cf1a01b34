"""`thrifty generate`: one prompt streamed, several as JSON lines, a file in and a JSONL file out with exact match
when rows carry a completion, and one-line errors (exit 2) for the wrong model or input."""

import json

import pytest

from thrifty.cli import main


def test_one_prompt_streams_its_answer(sft_run, capsys):
    assert main(["generate", str(sft_run), "--prompt", "item 2 is gamma. name:"]) == 0
    assert capsys.readouterr().out.strip() == "gamma"


def test_several_prompts_and_a_file_in_and_out(sft_run, tmp_path, capsys):
    assert main(["generate", str(sft_run), "--prompt", "item 2 is gamma. name:", "--prompt", "item 4 is beta. name:"]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [l["generated"] for l in lines] == ["gamma", "beta"]
    rows = [{"prompt": "item 6 is delta. name:", "completion": " delta"}, {"prompt": "item 9 is alpha. name:",
                                                                            "completion": " beta"}]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    assert main(["generate", str(sft_run), "--input", str(source), "--output", str(out)]) == 0
    assert "exact match 0.5000 (1 of 2 rows with a completion)" in capsys.readouterr().err
    assert [json.loads(l)["generated"] for l in out.read_text().splitlines()] == ["delta", "alpha"]
    assert main(["generate", str(sft_run), "--input", str(source), "--output", str(out)]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err


def test_stop_strings_and_sampling_settings(sft_run, capsys):
    assert main(["generate", str(sft_run), "--prompt", "item 2 is gamma. name:", "--prompt", "x", "--stop", "mm"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["generated"] == "ga"
    assert main(["generate", str(sft_run), "--prompt", "a", "--temperature", "-1"]) == 2
    assert "temperature" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["classifier", "bad_row"])
def test_bad_input_is_one_line_and_exit_2(case, sft_run, tiny_run, tmp_path, capsys):
    if case == "classifier":
        args, fragment = ["generate", str(tiny_run), "--prompt", "a"], "does not write text; use thrifty predict"
    else:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"prompt": "a"}) + "\n" + json.dumps({"text": "b"}) + "\n")
        args, fragment = ["generate", str(sft_run), "--input", str(bad)], "line 2"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1
