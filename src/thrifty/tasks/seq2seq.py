"""Sequence to sequence (task seq2seq): an encoder-decoder (T5, BART, ...) learns to write a target text for each
source text.

Data: `source`/`target` columns of a JSONL file or a table (data.source_column, data.target_column), cleaned,
de-duplicated and split like instructions (data/instructions.py). Training is teacher-forced: the decoder reads
the target shifted right by one (from the model's decoder start token) and the loss is the cross-entropy of each
target token. Sources and targets longer than max_length are cut (counted). Evaluations give the loss and
perplexity; with generate.eval_examples > 0 they also write answers (transformers' `generate`, greedy unless told)
for a seeded validation sample, all of test at the end, and score exact match and ROUGE-L (Google's rouge-score).

No pre-trained seq2seq weights are available offline on this project's machines: the path is tested on a tiny
randomly initialised T5 (tests/tasks/test_seq2seq.py); any T5/BART folder or hub id loads the same way.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from thrifty.config import GenerateConfig
from thrifty.data.prepare import PreparedData, Split
from thrifty.tasks.base import Encoded, answers_counted, written_answers
from thrifty.tasks.language_modeling import LanguageModelingBase
from thrifty.traits import TASKS


class SequenceToSequence(LanguageModelingBase):
    """The loss, its evaluation loop (teacher-forced cross-entropy over the target tokens, passes sized to the logits
    they hold) and the flags are language modelling's; the data, batches and generated metrics are its own."""

    traits = TASKS["seq2seq"]
    head = "seq2seq"
    peft_task_type = "SEQ_2_SEQ_LM"

    def __init__(self, generate: Optional[GenerateConfig] = None):
        super().__init__()
        self.generate = generate or GenerateConfig()
        self.prepared: Optional[PreparedData] = None
        self.decoder_start_token_id: Optional[int] = None  # the model's (attach)
        self.tokenizer: Any = None

    @classmethod
    def for_config(cls, config) -> "SequenceToSequence":
        return cls(config.generate)

    def attach(self, model) -> None:
        """Teacher forcing: the decoder's input is the target behind this token."""
        self.decoder_start_token_id = model.config.decoder_start_token_id

    def prepare_data(self, config, seed: int) -> PreparedData:
        from thrifty.data.instructions import SEQ2SEQ, prepare_examples

        self.prepared = prepare_examples(config, seed, SEQ2SEQ)
        return self.prepared

    def read_labelled(self, path: str, config, label_names: Optional[list[str]] = None,
                      role: str = "evaluation") -> tuple[Split, dict[str, int], str]:
        """One file of source/target rows, read as prepare_data reads training rows, for an evaluation."""
        from thrifty.data.instructions import SEQ2SEQ, read_examples

        rows, source, counts = read_examples(path, config, SEQ2SEQ, role)
        return Split(rows, []), counts, source

    def token_lengths(self, tokenizer, split: Split, tokens) -> np.ndarray:
        return np.array([len(ids) for ids in tokenizer([r["source"] for r in split.texts])["input_ids"]])

    def encode(self, tokenizer, split: Split, max_length: int, tokens) -> Encoded:
        self.tokenizer = tokenizer
        sources = tokenizer([r["source"] for r in split.texts])["input_ids"]
        targets = tokenizer(text_target=[r["target"] for r in split.texts])["input_ids"]
        report = {"sources_truncated_to_max_length": sum(len(s) > max_length for s in sources),
                  "targets_truncated_to_max_length": sum(len(t) > max_length for t in targets)}
        report = {k: v for k, v in report.items() if v}
        # A cut keeps the tokenizer's closing token (T5's </s>): the model still sees where a text ends
        cut = lambda ids: ids if len(ids) <= max_length else ids[: max_length - 1] + ids[-1:]
        sources, targets = [cut(s) for s in sources], [cut(t) for t in targets]
        report["target_tokens_trained_on"] = sum(len(t) for t in targets)
        return Encoded(sources, targets, {"report": report, "references": [r["target"].strip() for r in split.texts]})

    def make_batch(self, encoded: Encoded, indices: Sequence[int], pad_id: int, generator) -> dict[str, torch.Tensor]:
        """Right-padded sources, the targets as labels (-100 on padding), and the decoder's input: the targets
        shifted right behind the decoder start token (teacher forcing). Nothing is drawn at random (`generator`)."""
        from thrifty.data.batching import collate

        batch = collate(encoded.input_ids, indices, pad_id)
        width = max(len(encoded.targets[i]) for i in indices)
        labels = torch.full((len(indices), width), -100, dtype=torch.long)
        for row, i in enumerate(indices):
            labels[row, : len(encoded.targets[i])] = torch.as_tensor(encoded.targets[i])
        start = self.decoder_start_token_id if self.decoder_start_token_id is not None else pad_id
        decoder = torch.cat([torch.full((len(indices), 1), start), labels[:, :-1]], dim=1)
        batch["decoder_input_ids"] = decoder.masked_fill(decoder == -100, pad_id)
        batch["labels"] = labels
        return batch

    def logit_positions(self, encoded: Encoded, i: int) -> int:
        return len(encoded.targets[i])  # the decoder's positions

    def evaluate(self, model, encoded: Encoded, split, label_names: list[str], pad_id: int, batch_size: int, device,
                 autocast_dtype=None, forward: Optional[Callable] = None) -> dict[str, Any]:
        """Teacher-forced loss and perplexity over the target tokens; exact match and ROUGE-L of written answers."""
        metrics = super().evaluate(model, encoded, split, label_names, pad_id, batch_size, device, autocast_dtype, forward)
        if self.generate.eval_examples > 0:
            metrics.update(self.generated_metrics(model, encoded, split, device))
        return metrics

    def generated_metrics(self, model, encoded: Encoded, split, device) -> dict[str, Any]:
        """Targets written for a seeded sample of validation sources (all of test): exact match and ROUGE-L."""
        whole = self.prepared is not None and split is self.prepared.test
        return written_answers(model, self.tokenizer, encoded.input_ids, encoded.extra["references"], self.generate,
                               whole, device, rouge=True, keep=self.answers_kept, allowance=self.answer_allowance)

    def summary(self, metrics: dict[str, Any]) -> str:
        line = f"loss {metrics['loss']:.4f}, perplexity {metrics['perplexity']:.2f} on {metrics['tokens_scored']:,} target tokens"
        if "exact_match" in metrics:
            line += (f"; exact match {metrics['exact_match']:.4f}, ROUGE-L {metrics['rouge_l']:.4f} on "
                     f"{answers_counted(metrics)}")
        return line

    def history_keys(self) -> tuple[str, ...]:
        return ("loss", "perplexity") + (("exact_match", "rouge_l") if self.generate.eval_examples > 0 else ())
