"""The last layer computed for the first token only: same logits, same gradients, same parameters."""

import pytest
import torch

from thrifty.models import first_token
from thrifty.models.loading import load_classifier, load_tokenizer

TEXTS = ["a short one", "a much longer sentence with many more words than the first one has", "mid length text here"]


def loaded(path, attn="sdpa"):
    tokenizer = load_tokenizer(str(path))
    model, _ = load_classifier(str(path), ["a", "b", "c"], pad_token_id=tokenizer.pad_token_id)
    model.set_attn_implementation(attn)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")  # padded: the mask matters
    return model, batch


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_same_logits_and_gradients(tiny_bert, attn):
    model, batch = loaded(tiny_bert, attn)
    model.eval()  # no dropout, so both passes are deterministic; gradients still flow
    names = [n for n, _ in model.named_parameters()]

    def run():
        model.zero_grad()
        logits = model(**batch).logits
        logits.sum().backward()
        return logits.detach().clone(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    full_logits, full_grads = run()
    assert first_token.enable(model)
    pruned_logits, pruned_grads = run()
    torch.testing.assert_close(pruned_logits, full_logits, rtol=1e-5, atol=1e-6)
    assert pruned_grads.keys() == full_grads.keys()
    for name in full_grads:
        torch.testing.assert_close(pruned_grads[name], full_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    assert [n for n, _ in model.named_parameters()] == names  # checkpoints and saved models are unchanged
    first_token.disable(model)
    torch.testing.assert_close(run()[0], full_logits)


def test_the_last_layer_really_computes_one_position(tiny_bert):
    model, batch = loaded(tiny_bert)
    seen = []
    model.bert.encoder.layer[-1].intermediate.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    model.eval()
    model(**batch)
    first_token.enable(model)
    model(**batch)
    assert seen == [batch["input_ids"].shape[1], 1]


def test_not_applied_where_the_head_reads_another_position(tiny_llama):
    model, _ = loaded(tiny_llama)  # decoders read the last real token
    assert not first_token.enable(model)
