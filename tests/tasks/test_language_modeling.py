"""Unlabelled text for `thrifty adapt`: reading (file, folder, table), windows instead of truncation, dynamic and
whole-word masking."""

import pytest
import torch

from thrifty.config import AdaptConfig, DataConfig
from thrifty.errors import DataError
from thrifty.models.loading import load_tokenizer
from thrifty.tasks.base import Encoded
from thrifty.tasks.language_modeling import MaskedLanguageModeling, prepare_unlabelled, windows


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return load_tokenizer(str(minilm_dir))


def test_a_text_file_is_one_document_per_line_cleaned_and_deduplicated(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("first  review\n\nsecond review\nfirst review\n" + "".join(f"review {i}\n" for i in range(17)))
    data = prepare_unlabelled(DataConfig(train=str(path), validation_fraction=0.1), seed=0)
    counts = data.report["splits"]["train"]
    assert counts["dropped_empty_text"] == 1 and counts["dropped_duplicates"] == 1  # "first  review" normalised
    assert len(data.train) + len(data.validation) == 19 and len(data.validation) == 2
    assert not set(data.train.texts) & set(data.validation.texts)


def test_a_folder_of_txt_files_is_one_document_per_file(tmp_path):
    for i in range(4):
        (tmp_path / f"doc{i}.txt").write_text(f"line one of {i}\nline two of {i}\n")
    (tmp_path / "notes.md").write_text("not read")
    data = prepare_unlabelled(DataConfig(train=str(tmp_path), validation_fraction=0.25), seed=0)
    assert sorted(data.train.texts + data.validation.texts) == [f"line one of {i} line two of {i}" for i in range(4)]
    assert data.report["splits"]["train"]["files_read"] == 4


def test_a_table_column_and_bad_files(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("id,body\n1,hello there\n2,general kenobi\n3,another one\n")
    data = prepare_unlabelled(DataConfig(train=str(table), text_column="body", validation_fraction=0.3), seed=0)
    assert sorted(data.train.texts + data.validation.texts) == ["another one", "general kenobi", "hello there"]
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n")
    with pytest.raises(DataError, match="no text to learn from"):
        prepare_unlabelled(DataConfig(train=str(blank)), seed=0)
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02abc\x00" * 50)
    with pytest.raises(DataError, match="does not look like text"):
        prepare_unlabelled(DataConfig(train=str(binary), encoding_errors="replace"), seed=0)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(DataError, match="no .txt files"):
        prepare_unlabelled(DataConfig(train=str(empty)), seed=0)


def test_long_documents_become_windows_not_truncations(tokenizer):
    text = " ".join(f"word{i}" for i in range(200))
    ids, added = windows(tokenizer, [text, "short"], max_length=32)
    assert added == len(ids) - 2 > 0
    assert all(len(row) <= 32 and row[0] == tokenizer.cls_token_id and row[-1] == tokenizer.sep_token_id for row in ids)
    content = [t for row in ids[:-1] for t in row[1:-1]]
    assert content == tokenizer(text, add_special_tokens=False)["input_ids"]  # nothing lost, nothing repeated


def encoded_for(task, tokenizer, texts, max_length=64):
    ids, _ = windows(tokenizer, texts, max_length)
    return Encoded(ids, [None] * len(ids), task.encode_extra(tokenizer, ids))


def test_dynamic_masking_rates_specials_padding_and_determinism(tokenizer):
    task = MaskedLanguageModeling(AdaptConfig())
    texts = [" ".join(["the quick brown fox jumps over the lazy dog"] * 5)] * 40 + ["short one"]
    encoded = encoded_for(task, tokenizer, texts)
    batch = task.make_batch(encoded, list(range(len(encoded))), tokenizer.pad_token_id, torch.Generator().manual_seed(1))
    original = torch.nn.utils.rnn.pad_sequence([torch.tensor(x) for x in encoded.input_ids], batch_first=True,
                                               padding_value=tokenizer.pad_token_id)
    chosen = batch["labels"] != -100
    real = batch["attention_mask"].bool() & ~torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    assert not (chosen & ~real).any()  # never a special token or padding
    assert 0.12 < chosen.sum() / real.sum() < 0.18  # 15%
    assert torch.equal(batch["labels"][chosen], original[chosen])
    as_mask = (batch["input_ids"] == tokenizer.mask_token_id) & chosen
    assert 0.74 < as_mask.sum() / chosen.sum() < 0.86  # 80% become [MASK]
    again = task.make_batch(encoded, list(range(len(encoded))), tokenizer.pad_token_id, torch.Generator().manual_seed(1))
    assert torch.equal(again["input_ids"], batch["input_ids"])
    other = task.make_batch(encoded, list(range(len(encoded))), tokenizer.pad_token_id, torch.Generator().manual_seed(2))
    assert not torch.equal(other["labels"], batch["labels"])  # re-drawn: another epoch, another mask


def test_whole_word_masking_masks_every_piece_of_a_chosen_word(tokenizer):
    task = MaskedLanguageModeling(AdaptConfig(whole_word_masking=True, mask_probability=0.3))
    texts = ["unbelievably extraordinary antidisestablishmentarianism happenings"] * 30
    encoded = encoded_for(task, tokenizer, texts)
    batch = task.make_batch(encoded, list(range(len(encoded))), tokenizer.pad_token_id, torch.Generator().manual_seed(0))
    chosen = batch["labels"] != -100
    assert chosen.any()
    for row, starts in enumerate(encoded.extra["word_starts"]):
        word, members = 0, {}
        for position, start in enumerate(starts):
            word += start
            members.setdefault(word, []).append(bool(chosen[row, position]))
        for flags in list(members.values())[1:-1]:  # words between [CLS] and [SEP]
            assert all(flags) or not any(flags)
