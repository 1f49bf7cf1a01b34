"""Instruction rows (data/instructions.py): the shape read from the file, cleaning and splitting with line-numbered
errors, templates over a labelled table, the answer marked for the loss (prompt/completion and chat), and overlong
examples cut or dropped, counted."""

import json

import pytest

from thrifty.config import DataConfig
from thrifty.data.instructions import CHAT, PROMPT_COMPLETION, encode_example, fit_to_length, instruction_kind, \
    prepare_examples
from thrifty.errors import DataError
from thrifty.models.loading import load_tokenizer

from tests.conftest import naming_rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_kind_of_rows_is_read_from_the_file(tmp_path):
    config = DataConfig()
    assert instruction_kind(str(write_jsonl(tmp_path / "a.jsonl", naming_rows(2))), config) == PROMPT_COMPLETION
    chat = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    assert instruction_kind(str(write_jsonl(tmp_path / "b.jsonl", chat)), config) == CHAT
    assert instruction_kind(str(write_jsonl(tmp_path / "c.jsonl", [{"text": "plain"}])), config) is None
    (tmp_path / "d.txt").write_text("plain text\n")
    assert instruction_kind(str(tmp_path / "d.txt"), config) is None


def test_rows_are_cleaned_split_and_a_bad_row_is_named_by_its_line(tmp_path):
    rows = naming_rows(40) + [naming_rows(1)[0], {"prompt": "no answer", "completion": "  "}]
    data = prepare_examples(DataConfig(train=str(write_jsonl(tmp_path / "t.jsonl", rows)), validation_fraction=0.25),
                            seed=0, kind=PROMPT_COMPLETION)
    counts = data.report["splits"]["train"]
    assert counts["dropped_duplicates"] == 1 and counts["dropped_empty"] == 1
    assert len(data.train) + len(data.validation) == 40 and len(data.validation) == 10
    bad = write_jsonl(tmp_path / "bad.jsonl", naming_rows(3) + [{"prompt": "x", "answer": "y"}])
    with pytest.raises(DataError, match=r"line 4: the row has no 'completion'"):
        prepare_examples(DataConfig(train=str(bad)), seed=0, kind=PROMPT_COMPLETION)
    no_answer = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DataError, match="line 1: the conversation has no assistant message"):
        prepare_examples(DataConfig(train=str(no_answer)), seed=0, kind=CHAT)


def test_a_labelled_table_becomes_prompts_and_answers_through_templates(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("text,label\ni am glad,joy\ni am sad,sadness\ni am so glad,joy\nso sad today,sadness\n")
    config = DataConfig(train=str(table), prompt_template="Text: {text}\nEmotion:", validation_fraction=0.25)
    assert instruction_kind(str(table), config) == PROMPT_COMPLETION
    data = prepare_examples(config, seed=0, kind=PROMPT_COMPLETION)
    rows = data.train.texts + data.validation.texts
    assert {"prompt": "Text: i am glad\nEmotion:", "completion": " joy"} in rows  # the line break is kept
    with pytest.raises(DataError, match=r"use \{text\} and \{label\}"):
        prepare_examples(DataConfig(train=str(table), prompt_template="{question}"), seed=0, kind=PROMPT_COMPLETION)


def test_the_loss_is_on_the_answer_and_its_end_token_only(chat_llama):
    tokenizer = load_tokenizer(str(chat_llama))
    ids, labels, prompt, reference = encode_example(tokenizer, {"prompt": "item 3 is gamma. name:",
                                                                "completion": " gamma"}, [], "completion")
    trained = [i for i, l in zip(ids, labels) if l != -100]
    assert tokenizer.decode(trained) == "gamma [SEP]" and ids[: len(prompt)] == prompt and reference == "gamma"
    _, everything, _, _ = encode_example(tokenizer, {"prompt": "item 3 is gamma. name:", "completion": " gamma"}, [], "all")
    assert all(l != -100 for l in everything)
    chat = {"messages": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "one"},
                         {"role": "user", "content": "second"}, {"role": "assistant", "content": "two"}]}
    ids, labels, prompt, reference = encode_example(tokenizer, chat, [], "completion")
    assert tokenizer.decode([i for i, l in zip(ids, labels) if l != -100]) == "one [SEP] two [SEP]"
    assert tokenizer.decode(prompt).endswith("< assistant >") and reference == "two"


def test_overlong_examples_are_cut_or_dropped_and_counted():
    ids, labels = list(range(10)), [-100] * 6 + [6, 7, 8, 9]
    assert fit_to_length(ids, labels, 8, "truncate") == ((ids[:8], labels[:8]), "truncated_to_max_length")
    assert fit_to_length(ids, labels, 8, "drop") == (None, "dropped_longer_than_max_length")
    assert fit_to_length(ids, labels, 5, "truncate") == (None, "dropped_prompt_longer_than_max_length")
    assert fit_to_length(ids, labels, 10, "drop") == ((ids, labels), "kept")


def test_a_byte_order_mark_blank_lines_and_a_missing_file(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n\n".join(json.dumps(r).encode() for r in naming_rows(4)) + b"\n")
    config = DataConfig(train=str(path), validation_fraction=0.25)
    assert instruction_kind(str(path), config) == PROMPT_COMPLETION
    data = prepare_examples(config, seed=0, kind=PROMPT_COMPLETION)
    assert len(data.train) + len(data.validation) == 4 and data.report["splits"]["train"]["blank_lines_skipped"] == 3
    assert instruction_kind(str(tmp_path / "missing.jsonl"), config) is None  # the plain-text reader names it
