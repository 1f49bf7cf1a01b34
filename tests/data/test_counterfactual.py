"""Counterfactual data augmentation: swapped copies with the case kept, one pass (he <-> she does not undo
itself), never an evaluation text, counted in the data report; bad term files are one line."""

from __future__ import annotations

import json

import pytest

from thrifty.config import DataConfig
from thrifty.data.counterfactual import augment, load_term_map
from thrifty.data.prepare import prepare_data
from thrifty.errors import DataError


def test_swaps_keep_case_and_do_not_undo_each_other():
    mapping = load_term_map()
    texts, labels, counts = augment(["He told her his sister was right.", "A quiet film.", "SHE is a Christian."],
                                    [1, 0, 1], mapping, avoid=set())
    assert texts[3:] == ["She told his her brother was right.", "HE is a Muslim."]
    assert labels[3:] == [1, 1] and counts["texts_with_terms"] == 2 and counts["added"] == 2
    assert counts["most_swapped"]["he"] == 1 and counts["most_swapped"]["she"] == 1
    assert mapping["him"] == "her" and mapping["her"] == "his"  # one_way: "her" has one reading


def test_a_copy_that_is_an_evaluation_or_training_text_is_not_added():
    mapping = load_term_map()
    texts, _, counts = augment(["he is great", "she is great", "his film"], [1, 1, 0], mapping, avoid={"her film"})
    assert texts == ["he is great", "she is great", "his film"]
    assert counts["already_in_train"] == 2 and counts["dropped_as_evaluation_text"] == 1 and counts["added"] == 0


def test_prepare_data_augments_the_training_split_only(tmp_path):
    rows = ["text,label"] + [f"he liked film {i},pos" for i in range(20)] + [f"she hated film {i},neg" for i in range(20)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text("text,label\nshe liked film 3,pos\nhe hated film 4,neg\n")
    config = DataConfig(train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv"), validation_fraction=0.2,
                        counterfactual_augmentation=True)
    plain = prepare_data(DataConfig(train=config.train, test=config.test, validation_fraction=0.2), seed=1)
    data = prepare_data(config, seed=1)
    cda = data.report["counterfactual_augmentation"]
    assert cda["texts_with_terms"] == len(plain.train) and cda["dropped_as_evaluation_text"] == 2
    assert len(data.train) == len(plain.train) + cda["added"] and data.validation.texts == plain.validation.texts
    assert not set(data.train.texts) & (set(data.validation.texts) | set(data.test.texts))
    assert json.dumps(data.report)  # the report stays JSON


@pytest.mark.parametrize("content, fragment", [
    ("pairs: [[he, she, they]]", "must be two words"),
    ("swaps: [[he, she]]", "must be a mapping with pairs, one_way and/or cycles"),
    ("cycles: [[alone]]", "must list two or more words"),
])
def test_bad_term_files(tmp_path, content, fragment):
    path = tmp_path / "terms.yaml"
    path.write_text(content)
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        load_term_map(str(path))
    with pytest.raises(DataError, match="not found"):
        load_term_map(str(tmp_path / "missing.yaml"))
