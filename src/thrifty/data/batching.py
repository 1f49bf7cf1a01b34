"""Batches without wasted padding.

Training batches are length-grouped: a seeded shuffle, then sorting inside large windows and shuffling the
resulting batches, so each batch holds texts of similar length while the epoch stays random. A training set of one
window or less is batched at random instead: on 200 CoNLL-2003 sentences grouping cost 2-4 points of dev F1, and
smaller windows that cut other batches every epoch still cost 0.3-2.7 (benchmarks/ner_small_data_ablation.py); at that
size the padding grouping saves is seconds. The order of
epoch ``e`` depends only on (seed, e), which is what makes a resumed run see exactly the same batches.
Evaluation and prediction batches are sorted by length; callers put results back in input order.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

GROUP_WINDOW_BATCHES = 50  # sort within windows of this many batches: enough to group, still random; grouping
#                            starts above one window (below it, batches of similar lengths cost accuracy)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed * 100_003 + epoch)
    return g


def training_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    g = epoch_generator(seed, epoch)
    order = torch.randperm(len(lengths), generator=g).tolist()
    if not group_by_length or len(order) <= batch_size * GROUP_WINDOW_BATCHES:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return length_grouped(order, lengths, batch_size, GROUP_WINDOW_BATCHES, g)


def length_grouped(order: list[int], lengths: Sequence[int], batch_size: int, window_batches: int,
                   g: torch.Generator) -> list[list[int]]:
    """`order` (already shuffled) sorted by length inside windows of `window_batches` batches, cut into batches, the
    batches shuffled with `g`. benchmarks/ner_small_data_ablation.py calls it with other windows."""
    window = batch_size * window_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    shuffled = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in shuffled]


def sorted_batches(lengths: Sequence[int], batch_size: int, min_fill: float = 0.0) -> list[list[int]]:
    """Longest first, so an out-of-memory problem shows up on the first batch, not the last. With `min_fill`, a
    batch also ends before a row shorter than `min_fill` x its longest row: a few texts of mixed lengths (a server's
    batch of unrelated requests) go through in passes of similar lengths, not one pass padded to the longest."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    if min_fill <= 0:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    for i in order:
        if not batches or len(batches[-1]) >= batch_size or lengths[i] < min_fill * lengths[batches[-1][0]]:
            batches.append([])
        batches[-1].append(i)
    return batches


def collate(
    input_ids: Sequence[Sequence[int]], indices: Sequence[int], pad_id: int, labels: Optional[Sequence[int]] = None
) -> dict[str, torch.Tensor]:
    """Right-pad the selected examples to the longest one in this batch."""
    width = max(len(input_ids[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        seq = input_ids[i]
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if labels is not None:
        batch["labels"] = torch.as_tensor([labels[i] for i in indices], dtype=torch.long)
    return batch
