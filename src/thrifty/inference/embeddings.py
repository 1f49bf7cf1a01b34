"""Sentence embeddings of a model: unit-length mean-pooled encoder states, for a served/fine-tuned model folder (the
drift monitor's embedding check, the audit's association tests) and for a pre-trained encoder before any
fine-tuning (`thrifty audit --model NAME`). Mean pooling is how sentence-transformers models such as the default
all-MiniLM-L6-v2 were trained to embed sentences, and what a fewshot model's head reads."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def predictor_embeddings(predictor, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length mean-pooled encoder states of a loaded Predictor's model (a fewshot model's own embedding)."""
    import torch

    from thrifty.console import passes
    from thrifty.data.batching import collate, sorted_batches
    from thrifty.data.tokenize import encode
    from thrifty.models import first_token
    from thrifty.models.sentence import mean_pool

    model = predictor.model
    first_token.disable(model)  # every position of the last layer is needed for the mean
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    encoder = getattr(inner, inner.base_model_prefix, inner)
    ids = encode(predictor.tokenizer, list(texts), predictor.max_length)
    pad = predictor.tokenizer.pad_token_id or 0
    out = np.zeros((len(ids), encoder.config.hidden_size), dtype=np.float32)
    try:
        with torch.inference_mode(), passes("embed", len(ids), "text") as shown:
            for idx in sorted_batches([len(x) for x in ids], batch_size):
                batch = collate(ids, idx, pad)
                hidden = encoder(**batch).last_hidden_state
                out[idx] = torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1).numpy()
                shown.update(len(idx))
    finally:
        first_token.enable(model)
    return out


class EncoderEmbedder:
    """A pre-trained sentence encoder (a hub id, a local folder, an offline model name) as an embedding function."""

    def __init__(self, name: str, max_length: int = 128, trust_remote_code: bool = False) -> None:
        from thrifty.errors import ModelError
        from thrifty.models.loading import load_tokenizer, quiet_transformers, resolve_model
        from thrifty.models.sentence import SentenceClassifier

        quiet_transformers()
        self.path = resolve_model(name)
        try:
            self.model = SentenceClassifier.from_pretrained(self.path, ["a", "b"], trust_remote_code=trust_remote_code)
        except ModelError as exc:
            if "decoder" in str(exc):
                raise ModelError(f"{name} is a decoder: its left-to-right states are not sentence embeddings; give a "
                                 "sentence encoder (BERT, RoBERTa, MPNet or MiniLM style, e.g. all-MiniLM-L6-v2)") from None
            raise
        self.tokenizer = load_tokenizer(self.path, trust_remote_code)
        self.max_length = max_length

    def __call__(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        from thrifty.tasks.fewshot import embed

        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        return embed(self.model, ids, self.tokenizer.pad_token_id or 0, batch_size, torch.device("cpu"))
