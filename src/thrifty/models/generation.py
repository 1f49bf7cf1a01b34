"""Writing text with a decoder or an encoder-decoder: batched generation (transformers' `generate`), left-padded
prompts sorted by length, greedy or sampled, stop strings; and how a written answer is compared with a reference.

Shared by training's evaluations (exact match on a validation sample), `thrifty generate` and the server's
/v1/generate, so an answer is written and scored the same way everywhere.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from thrifty.console import passes

def answer_matches(generated: str, reference: str) -> bool:
    """Exact match after normalisation: case, runs of whitespace and surrounding punctuation do not count; a one-line
    reference is compared with the first line written (a base model goes on after its answer)."""
    return normalise_answer(first_line(generated) if "\n" not in reference.strip() else generated) == \
        normalise_answer(reference)


def first_line(text: str) -> str:
    return next((line for line in text.strip().splitlines() if line.strip()), "")


def normalise_answer(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .!?,;:\"'")


def cut_at_stop(text: str, stop: list[str]) -> str:
    """The text before the first stop string."""
    if not stop:
        return text
    hits = [text.find(s) for s in stop if s and s in text]
    return text[: min(hits)] if hits else text


def generate_texts(model, tokenizer, prompts: list[list[int]], *, max_new_tokens: int, temperature: float = 0.0,
                   top_p: float = 1.0, stop: Optional[list[str]] = None, batch_size: int = 16, device=None,
                   streamer: Any = None) -> list[str]:
    """The text written after each prompt (token ids), in the prompts' order. Prompts go in batches of similar length,
    padded on the left so every row's next token follows its prompt directly."""
    device = device or next(model.parameters()).device
    stop = [s for s in (stop or []) if s]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    settings: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad, "use_cache": True}
    if temperature > 0:
        settings.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=None)
    else:  # greedy; the model's own sampling defaults (generation_config.json) are switched off, not warned about
        settings.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if stop:
        settings.update(stop_strings=stop, tokenizer=tokenizer)
    if model.generation_config.eos_token_id is None and tokenizer.eos_token_id is not None:
        settings["eos_token_id"] = tokenizer.eos_token_id
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with passes("write answers", len(prompts), "answer") as shown:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                width = max(len(prompts[i]) for i in idx)
                ids = torch.full((len(idx), width), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    if encoder_decoder:  # an encoder reads the whole text at once: right padding, as in training
                        ids[row, : len(prompts[i])], mask[row, : len(prompts[i])] = torch.tensor(prompts[i]), 1
                    else:
                        ids[row, width - len(prompts[i]):], mask[row, width - len(prompts[i]):] = torch.tensor(prompts[i]), 1
                with torch.inference_mode():
                    written = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), streamer=streamer,
                                             **settings)
                for row, i in enumerate(idx):
                    new = written[row] if encoder_decoder else written[row, width:]
                    out[i] = cut_at_stop(tokenizer.decode(new, skip_special_tokens=True), stop)
                shown.update(len(idx))
    finally:
        model.train(was_training)
    return out


def rouge_l(generated: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (Google's rouge-score package, with its stemmer)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(r, g)["rougeL"].fmeasure for g, r in zip(generated, references)]
    return sum(scores) / max(1, len(scores))

