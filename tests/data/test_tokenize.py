"""Tokenisation: the real model tokenizer, length statistics and the automatic max_length."""

import numpy as np

from thrifty.data.tokenize import choose_max_length, encode, length_stats, resolve_max_length
from thrifty.models.loading import load_tokenizer


def test_choose_max_length_covers_the_percentile():
    lengths = np.array([10] * 98 + [60, 300])
    assert choose_max_length(lengths, 98.0, 512) == 16  # multiple of 8 above the 98th percentile
    assert choose_max_length(lengths, 100.0, 128) == 128  # never past the model's limit


def test_stats_count_truncations():
    stats = length_stats(np.array([5, 10, 20, 40]), max_length=16)
    assert stats["truncated"] == 2 and stats["max"] == 40 and stats["truncated_fraction"] == 0.5


def test_real_tokenizer_truncates_but_keeps_special_tokens(minilm_dir):
    tokenizer = load_tokenizer(str(minilm_dir))
    texts = ["short one", "word " * 200]
    max_length, stats, how = resolve_max_length(tokenizer, None, texts, configured=None, percentile=50.0)
    ids = encode(tokenizer, texts, 16)
    assert ids[0][0] == tokenizer.cls_token_id and ids[0][-1] == tokenizer.sep_token_id
    assert len(ids[1]) == 16 and ids[1][-1] == tokenizer.sep_token_id
    assert stats["max"] == 202 and "auto" in how
    assert len(ids[0]) == 4  # no padding at encoding time


def test_model_limit_is_the_smaller_of_tokenizer_and_positions(minilm_dir):
    from types import SimpleNamespace

    from thrifty.data.tokenize import model_length_limit

    tokenizer = load_tokenizer(str(minilm_dir))  # says 512
    assert model_length_limit(tokenizer, SimpleNamespace(max_position_embeddings=128)) == 128
    assert model_length_limit(tokenizer, SimpleNamespace(max_position_embeddings=514)) == 512


def test_automatic_length_is_raised_until_every_split_is_cut_at_most_5_percent():
    from types import SimpleNamespace

    from thrifty.data.tokenize import covering_length, cut_warnings

    tokenizer = SimpleNamespace(model_max_length=512)
    train = np.array([10] * 100)  # p99.9 of training: 16
    validation = np.array([10] * 70 + [40] * 30)  # 30% longer than 16: like fewshot SST-2 (16 short training texts)
    assert covering_length(validation) == 40 and covering_length(np.array([10] * 95 + [99] * 5)) == 10
    max_length, _, how = resolve_max_length(tokenizer, None, [], None, 99.9, lengths=train,
                                            cut_too={"validation": validation, "test": np.array([10] * 20)})
    assert max_length == 40 and "raised to 40 so that at most 5% of validation is cut" in how
    assert np.mean(validation > max_length) <= 0.05
    capped, _, _ = resolve_max_length(tokenizer, SimpleNamespace(max_position_embeddings=32), [], None, 99.9,
                                      lengths=train, cut_too={"validation": validation})
    assert capped == 32  # never past the model's limit...
    limit_warning = cut_warnings({"validation": validation}, {"validation": 32}, 32)
    assert limit_warning == ["validation: 30 of 100 texts (30.0%) are longer than max_length 32 tokens and are cut at "
                             "the model's limit of 32 tokens; a model that reads longer texts would keep more whole"]
    configured, _, how = resolve_max_length(tokenizer, None, [], 16, 99.9, lengths=train, cut_too={"validation": validation})
    assert configured == 16 and how == "configured"  # a configured length is kept, and warned about instead
    assert cut_warnings({"train": train, "validation": validation}, {"train": 16, "validation": 16}, 512) == [
        "validation: 30 of 100 texts (30.0%) are longer than max_length 16 tokens and are cut; --data.max_length 40 "
        "keeps 95% of them whole"]
    assert cut_warnings({"validation": np.array([10] * 95 + [99] * 5)}, {"validation": 16}, 512) == []  # 5%: quiet


def test_a_short_training_set_does_not_cut_its_evaluation_texts(tmp_path, tiny_bert):
    """Sixteen short training texts (the few-shot case) and validation/test texts of which 30% are long: the automatic
    max_length covers 95% of validation (and so of a test split like it), and a configured short one is a console
    warning naming the setting."""
    from thrifty.data.prepare import format_report
    from thrifty.inputs import as_config, prepare_inputs

    def write(name, rows):
        (tmp_path / name).write_text("text,label\n" + "".join(f"{t},{'ab'[i % 2]}\n" for i, t in enumerate(rows)))

    write("train.csv", [f"good film {i}" for i in range(16)])
    long = " ".join(f"word{j}" for j in range(20))  # about 60 tokens
    write("val.csv", [f"{long} {i}" if i % 10 < 3 else f"short {i}" for i in range(40)])
    write("test.csv", [f"{long} {i}" if i % 10 < 3 else f"short {i}" for i in range(100, 140)])
    config = {"model": {"name": str(tiny_bert)}, "data": {"train": str(tmp_path / "train.csv"), "cache_tokens": False,
              "validation": str(tmp_path / "val.csv"), "test": str(tmp_path / "test.csv")}}
    inputs = prepare_inputs(as_config(config), str(tiny_bert))
    tokens = inputs.data.report["tokens"]
    assert tokens["train"]["p99"] < 16 < inputs.max_length <= 128
    assert tokens["validation"]["truncated_fraction"] <= 0.05 and tokens["test"]["truncated_fraction"] <= 0.05
    # raised for validation; the test split, never looked at to choose, is covered here because it is alike
    assert "so that at most 5% of validation is cut" in inputs.max_length_how and not tokens["cut_warnings"]

    automatic = inputs.max_length
    config["data"]["max_length"] = 16
    inputs = prepare_inputs(as_config(config), str(tiny_bert))
    shown = format_report(inputs.data.report)  # what `thrifty train` prints before training
    for role in ("validation", "test"):  # the length it names is the one the automatic choice took
        assert f"warning: {role}: 12 of 40 texts (30.0%) are longer than max_length 16 tokens and are cut; " \
               f"--data.max_length {automatic} keeps 95% of them whole" in shown
    assert inputs.data.report["tokens"]["cut_warnings"] == [w for w in inputs.data.report["warnings"] if "max_length" in w]
