"""The sentence classifier: length-chunked encoding gives the embeddings of one padded batch, with less padding."""

import torch

from thrifty.models.sentence import CHUNK_ROWS, SentenceClassifier, length_chunks


def test_length_chunks_sort_rows_and_are_skipped_when_they_save_little():
    lengths = torch.tensor([40, 3, 5, 38, 4, 6, 39, 5, 4, 41, 3, 6, 5, 37, 4, 36])
    chunks = length_chunks(lengths)
    assert chunks is not None and sorted(torch.cat([rows for rows, _ in chunks]).tolist()) == list(range(16))
    assert all(len(rows) <= CHUNK_ROWS and length == int(lengths[rows].max()) for rows, length in chunks)
    assert chunks[0][1] == 5 and chunks[1][1] == 41  # the short rows no longer pad to 41 tokens
    assert length_chunks(torch.tensor([20, 21, 19, 20, 22, 20, 21, 19, 20, 22])) is None


def test_chunked_embeddings_match_the_padded_batch_and_carry_gradients(tiny_bert):
    model = SentenceClassifier.from_pretrained(tiny_bert, ["a", "b"])
    model.eval()
    torch.manual_seed(0)
    lengths = [30, 3, 4, 28, 5, 3, 29, 4, 6, 27, 3, 5]
    input_ids = torch.zeros(len(lengths), 30, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, n in enumerate(lengths):
        input_ids[row, :n] = torch.randint(1000, 2000, (n,))
        mask[row, :n] = 1
    assert length_chunks(mask.sum(1)) is not None  # this batch is chunked
    chunked = model.embed(input_ids, mask)
    one_batch = model._embed(input_ids, mask, None)
    torch.testing.assert_close(chunked, one_batch, atol=1e-5, rtol=1e-4)
    model.train()
    model.embed(input_ids, mask).sum().backward()
    assert model.encoder.get_input_embeddings().weight.grad.abs().sum() > 0
