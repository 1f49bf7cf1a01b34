"""Batching: length-grouped training batches and sorted evaluation batches."""

import random

import torch

from thrifty.data.batching import collate, sorted_batches, training_batches


def lengths(n=1000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(3, 120) for _ in range(n)]


def test_grouped_batches_cover_every_example_once_per_epoch():
    lens = lengths()
    for epoch in range(3):
        batches = training_batches(lens, 32, seed=1, epoch=epoch, group_by_length=True)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lens)))
        assert all(1 <= len(b) <= 32 for b in batches)


def test_order_depends_only_on_seed_and_epoch():
    lens = lengths()
    a = training_batches(lens, 32, seed=1, epoch=2, group_by_length=True)
    assert a == training_batches(lens, 32, seed=1, epoch=2, group_by_length=True)
    assert a != training_batches(lens, 32, seed=1, epoch=3, group_by_length=True)
    assert a != training_batches(lens, 32, seed=2, epoch=2, group_by_length=True)


def padded_tokens(batches, lens):
    return sum(max(lens[i] for i in b) * len(b) for b in batches)


def test_grouping_cuts_padding_but_stays_random():
    lens = lengths(4000)
    grouped = training_batches(lens, 32, seed=0, epoch=0, group_by_length=True)
    plain = training_batches(lens, 32, seed=0, epoch=0, group_by_length=False)
    real = sum(lens)
    assert padded_tokens(grouped, lens) - real < 0.2 * (padded_tokens(plain, lens) - real)
    first_lengths = [max(lens[i] for i in b) for b in grouped[:20]]
    assert first_lengths != sorted(first_lengths, reverse=True)  # batches are shuffled, not longest-first


def test_a_set_of_one_window_or_less_is_batched_at_random_so_batches_change_between_epochs():
    """200 sentences sorted whole would make the same 13 batches every epoch (2-4 points of NER dev F1 lost on 200
    CoNLL-2003 sentences); at or below one window (50 batches) they are drawn at random, above it grouped."""
    small = lengths(200)
    batches = [training_batches(small, 16, seed=0, epoch=e, group_by_length=True) for e in range(2)]
    assert batches[0] == training_batches(small, 16, seed=0, epoch=0, group_by_length=False)
    assert {frozenset(b) for b in batches[0]} != {frozenset(b) for b in batches[1]}
    large = lengths(16 * 50 + 1)  # one row more than a window: grouped
    grouped = training_batches(large, 16, seed=0, epoch=0, group_by_length=True)
    plain = training_batches(large, 16, seed=0, epoch=0, group_by_length=False)
    assert padded_tokens(grouped, large) < padded_tokens(plain, large)


def test_sorted_batches_for_evaluation():
    lens = lengths(100)
    batches = sorted_batches(lens, 16)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(100))
    assert [lens[i] for i in flat] == sorted(lens, reverse=True)


def test_sorted_batches_with_min_fill_end_a_pass_before_a_much_shorter_text():
    lens = [60, 8, 40, 9, 33, 10, 7, 31]  # one server batch: long and short requests mixed
    assert sorted_batches(lens, 64) == [[0, 2, 4, 7, 5, 3, 1, 6]]  # one pass, padded to 60
    batches = sorted_batches(lens, 64, min_fill=0.5)
    assert [[lens[i] for i in b] for b in batches] == [[60, 40, 33, 31], [10, 9, 8, 7]]
    assert sorted_batches(lens, 3, min_fill=0.5) == [[0, 2, 4], [7], [5, 3, 1], [6]]  # batch_size still holds
    for fill in (0.3, 0.7, 1.0):
        padded = sum(len(b) * lens[b[0]] for b in sorted_batches(lens, 64, fill))
        assert sorted(i for b in sorted_batches(lens, 64, fill) for i in b) == list(range(8))
        assert padded <= len(lens) * max(lens)


def test_collate_pads_to_the_batch_not_the_data_set():
    ids = [[101, 5, 102], [101, 5, 6, 7, 8, 102], [101, 102]]
    batch = collate(ids, [0, 2], pad_id=0, labels=[1, 0, 1])
    assert batch["input_ids"].shape == (2, 3)
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [1, 1]
    assert batch["input_ids"].dtype == torch.long
