"""Cleaning and splitting: every dropped or changed row is counted, nothing disappears silently."""

from collections import Counter

import pytest

from thrifty.config import DataConfig
from thrifty.data.prepare import prepare_data, stratified_pick
from thrifty.errors import DataError

from tests.conftest import shared_file


def write_csv(path, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


def base_rows(n=20):
    return [(f"positive example {i}", "pos") for i in range(n)] + [(f"negative example {i}", "neg") for i in range(n)]


def test_cleaning_counts_every_change(tmp_path):
    rows = base_rows() + [
        ("  spaced   out\ttext  ", "pos"),          # whitespace normalised
        ("Cafe\u0301", "neg"),                      # NFC turns e + combining accent into é
        ("", "pos"), ("   ", "neg"),                # empty texts
        ("no label here", ""),                      # missing label
        ("positive example 1", "pos"),              # exact duplicate
        ("same text", "pos"), ("same text", "neg"),  # conflicting duplicates
    ]
    config = DataConfig(train=write_csv(tmp_path / "t.csv", rows), validation_fraction=0.2)
    data = prepare_data(config, seed=0)
    counts = data.report["splits"]["train"]
    assert counts["rows_read"] == len(rows)
    assert counts["texts_normalised"] == 3  # the two above and "   " (stripped to empty)
    assert counts["dropped_empty_text"] == 2
    assert counts["dropped_missing_label"] == 1
    assert counts["dropped_duplicates"] == 1
    assert counts["conflicting_texts"] == 1 and counts["dropped_conflicting_rows"] == 2
    kept = counts["rows_read"] - 2 - 1 - 1 - 2
    assert len(data.train) + len(data.validation) == kept  # the books balance
    assert "spaced out text" in data.train.texts + data.validation.texts
    assert "Café" in data.train.texts + data.validation.texts


def test_conflicts_majority_policy(tmp_path):
    rows = base_rows() + [("same text", "pos")] * 2 + [("same text", "neg")]
    config = DataConfig(train=write_csv(tmp_path / "t.csv", rows), conflicts="majority", duplicates="keep")
    data = prepare_data(config, seed=0)
    all_texts = data.train.texts + data.validation.texts
    assert all_texts.count("same text") == 2
    assert data.report["splits"]["train"]["dropped_conflicting_rows"] == 1


def test_stratified_split_keeps_class_shares(tmp_path):
    rows = [(f"a {i}", "a") for i in range(90)] + [(f"b {i}", "b") for i in range(10)]
    data = prepare_data(DataConfig(train=write_csv(tmp_path / "t.csv", rows), validation_fraction=0.2), seed=1)
    assert Counter(data.validation.labels) == {0: 18, 1: 2}
    again = prepare_data(DataConfig(train=write_csv(tmp_path / "t.csv", rows), validation_fraction=0.2), seed=1)
    assert again.validation.texts == data.validation.texts  # seeded
    assert not set(data.validation.texts) & set(data.train.texts)


def test_stratified_subsample_exact_size():
    labels = [0] * 70 + [1] * 20 + [2] * 10
    picked = stratified_pick(labels, None, 10, seed=0)
    assert len(picked) == 10
    assert Counter(labels[i] for i in picked) == {0: 7, 1: 2, 2: 1}


def test_leakage_dropped_from_train_by_default(tmp_path):
    train = write_csv(tmp_path / "t.csv", base_rows())
    val = write_csv(tmp_path / "v.csv", [("positive example 3", "pos"), ("brand new", "neg"), ("other new", "pos")])
    data = prepare_data(DataConfig(train=train, validation=val), seed=0)
    assert "positive example 3" not in data.train.texts
    assert len(data.validation) == 3  # the evaluation set stays as published
    assert data.report["splits"]["train"]["dropped_leaked_into_validation"] == 1
    data = prepare_data(DataConfig(train=train, validation=val, leakage="drop_from_eval"), seed=0)
    assert len(data.validation) == 2 and "positive example 3" in data.train.texts
    with pytest.raises(DataError, match="leakage"):
        prepare_data(DataConfig(train=train, validation=val, leakage="error"), seed=0)


def test_unknown_validation_label_is_an_error_or_dropped(tmp_path):
    train = write_csv(tmp_path / "t.csv", base_rows())
    val = write_csv(tmp_path / "v.csv", [("fresh one", "pos"), ("what is this", "neutral")])
    with pytest.raises(DataError, match=r"validation has labels never seen in training: 'neutral' \(1 rows\)"):
        prepare_data(DataConfig(train=train, validation=val), seed=0)
    data = prepare_data(DataConfig(train=train, validation=val, unknown_labels="drop"), seed=0)
    assert len(data.validation) == 1 and data.report["splits"]["validation"]["dropped_unknown_label"] == 1


def test_one_class_only_is_an_error(tmp_path):
    train = write_csv(tmp_path / "t.csv", [(f"text {i}", "pos") for i in range(10)])
    with pytest.raises(DataError, match="only one class"):
        prepare_data(DataConfig(train=train), seed=0)


def test_all_rows_unusable_is_an_error(tmp_path):
    train = write_csv(tmp_path / "t.csv", [("", "pos"), ("  ", "neg")])
    with pytest.raises(DataError, match="no usable training rows"):
        prepare_data(DataConfig(train=train), seed=0)


def test_megabyte_text_is_cut_and_counted(tmp_path):
    huge = "word " * 400_000  # 2 MB in one cell
    train = write_csv(tmp_path / "t.csv", base_rows() + [(huge, "pos")])
    data = prepare_data(DataConfig(train=train, max_chars=10_000), seed=0)
    assert data.report["splits"]["train"]["texts_truncated_to_max_chars"] == 1
    assert max(len(t) for t in data.train.texts + data.validation.texts) <= 10_000
    assert any("max chars" in w for w in data.report["warnings"])


def test_imbalance_is_reported(tmp_path):
    rows = [(f"a {i}", "a") for i in range(300)] + [(f"b {i}", "b") for i in range(12)]
    data = prepare_data(DataConfig(train=write_csv(tmp_path / "t.csv", rows)), seed=0)
    assert data.report["imbalance_ratio"] > 10
    assert any("imbalance" in w for w in data.report["warnings"])


def test_integer_labels_sorted_numerically(tmp_path):
    rows = [(f"t {i}", str(i % 11)) for i in range(110)]
    data = prepare_data(DataConfig(train=write_csv(tmp_path / "t.csv", rows)), seed=0)
    assert data.label_names == [str(i) for i in range(11)]


def test_sst2_published_splits():
    config = DataConfig(train=str(shared_file("sst2", "stsa.binary.train")),
                        validation=str(shared_file("sst2", "stsa.binary.dev")),
                        test=str(shared_file("sst2", "stsa.binary.test")))
    data = prepare_data(config, seed=0)
    assert data.label_names == ["0", "1"]
    assert len(data.validation) == 872 and len(data.test) == 1821  # evaluation splits untouched
    assert data.report["splits"]["test"]["overlap_with_train"] == 2  # as SOURCE.md says
    assert data.report["splits"]["train"]["dropped_leaked_into_test"] >= 2


def test_examples_per_class_draws_exactly_n_of_each_class_with_the_seed(tmp_path):
    rows = base_rows(30) + [(f"neutral example {i}", "neu") for i in range(12)]
    path = write_csv(tmp_path / "t.csv", rows)
    data = prepare_data(DataConfig(train=path, validation_fraction=0.2, examples_per_class=8), seed=3)
    assert Counter(data.train.labels) == {0: 8, 1: 8, 2: 8}
    counts = data.report["splits"]["train"]
    assert counts["examples_per_class"] == 8 and counts["sampled_from"] > 24  # recorded in data_report.json
    assert len(data.validation) >= 3  # validation stays whole: carved before the sample, never sampled
    again = prepare_data(DataConfig(train=path, validation_fraction=0.2, examples_per_class=8), seed=3)
    other = prepare_data(DataConfig(train=path, validation_fraction=0.2, examples_per_class=8), seed=4)
    assert again.train.texts == data.train.texts  # the same seed, the same few-shot rows
    assert other.train.texts != data.train.texts
    assert not set(data.train.texts) & set(data.validation.texts)


def test_examples_per_class_larger_than_a_class_names_the_class_and_its_count(tmp_path):
    rows = base_rows(30) + [(f"neutral example {i}", "neu") for i in range(6)]
    config = DataConfig(train=write_csv(tmp_path / "t.csv", rows), validation=write_csv(tmp_path / "v.csv", base_rows(3)),
                        examples_per_class=8)
    with pytest.raises(DataError, match=r"examples_per_class=8 but class 'neu' has only 6 training examples; lower it to 6"
                                        r", add examples, or set data.short_classes: keep"):
        prepare_data(config, seed=0)


def test_short_classes_keep_takes_a_short_class_whole_and_says_so(tmp_path):
    rows = base_rows(30) + [(f"neutral example {i}", "neu") for i in range(6)]
    train, validation = write_csv(tmp_path / "t.csv", rows), write_csv(tmp_path / "v.csv", base_rows(3))
    data = prepare_data(DataConfig(train=train, validation=validation, examples_per_class=8, short_classes="keep"), seed=0)
    counts = Counter(data.train.labels)
    neutral = data.label_names.index("neu")
    assert counts[neutral] == 6 and all(n == 8 for label, n in counts.items() if label != neutral)
    assert data.report["splits"]["train"]["short_classes_kept_whole"] == {"neu": 6}  # said in data_report.json
    again = prepare_data(DataConfig(train=train, validation=validation, examples_per_class=8, short_classes="keep"), seed=0)
    assert again.train.texts == data.train.texts  # seeded as ever
