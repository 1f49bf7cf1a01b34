"""Continued pre-training on unlabelled text (`thrifty adapt`): masked LM for encoders, causal LM for decoders.

Data: a text file (one document per line), a folder of `.txt` files (one document per file), or the text column
of a table (CSV/TSV/JSONL/Parquet). Texts are normalised and de-duplicated like labelled data (counted in the
report); a document longer than max_length is cut into consecutive windows, not truncated, so no text is lost.
Validation: `data.validation`, or a seeded `data.validation_fraction` of the documents.

Masked LM (Devlin et al.; the DAPT/TAPT recipe of Gururangan et al. 2020): `adapt.mask_probability` (15%) of
the tokens are chosen afresh for every batch (dynamic masking: a different choice each epoch), 80% of them
replaced by the mask token, 10% by a random token, 10% kept; `adapt.whole_word_masking` chooses whole words.
The masks come from torch's random state, which checkpoints save: a resumed run masks exactly as the
uninterrupted one. Validation masks with a fixed seed, so its loss is comparable from one evaluation to the next.

Causal LM: next-token prediction on every real token. Metrics for both: loss (primary), perplexity and accuracy
of the predicted tokens.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from thrifty.console import passes
from thrifty.config import AdaptConfig, DataConfig, GenerateConfig
from thrifty.data.prepare import PreparedData, Split, carve_validation, keep_distinct, normalise_text, seeded_subsample
from thrifty.data.tokenize import token_lengths
from thrifty.errors import DataError
from thrifty.evaluation.sharding import my_share, summed
from thrifty.tasks.base import AnswerAllowance, Encoded, TaskDefaults, answers_counted, written_answers
from thrifty.traits import TASKS

EVAL_LOGIT_ELEMENTS = 2**25  # evaluation splits batches so that [batch, length, vocab] logits stay ~128 MiB


def read_documents(path: str, config: DataConfig, role: str) -> tuple[list[str], str, dict[str, int]]:
    """The raw documents of a file or a folder of .txt files, with its source and counts."""
    from thrifty.data.readers import decode, read_bytes, read_table, resolve_data_path

    folder = Path(path).expanduser()
    if folder.is_dir():
        files = sorted(p for p in folder.rglob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"{folder} holds no .txt files; give a folder of .txt files (one document each), a text "
                            "file (one document per line) or a table with a text column")
        docs, bad = [], 0
        for file in files:
            text, replaced = decode(read_bytes(file, role), str(file), config.encoding_errors)
            docs.append(text)
            bad += replaced
        return docs, str(folder.resolve()), {"files_read": len(files), "lines_with_replaced_bytes": bad}
    resolve_data_path(path)  # a missing file is named with the fix
    # A .txt file is one document per line; `data.format: label_text` reads 'label text' lines (SST-2 style) and
    # keeps the texts: the task's own texts, without labels (task-adaptive pre-training).
    labelled = config.format == "label_text"
    table = read_table(path, role=role, fmt=config.format, text_column=config.text_column,
                       label_column=config.label_column if labelled else None, encoding_errors=config.encoding_errors,
                       plain_lines=not labelled, delimiter=config.delimiter)
    return table.texts, table.source, dict(table.notes)


def _check_text(docs: list[str], source: str) -> None:
    sample = "".join(docs[:200])[:100_000]
    if "\x00" in sample or (sample and sum(ch.isprintable() or ch.isspace() for ch in sample) / len(sample) < 0.9):
        raise DataError(f"{source} does not look like text (control or NUL characters); give plain UTF-8 text, one "
                        "document per line, or a table with a text column")


def load_documents(path: str, config: DataConfig, role: str, report: dict[str, Any]) -> list[str]:
    """The cleaned documents of `path` (text checked, cut to max_chars, normalised, empty and repeated ones dropped),
    its source and counts recorded in `report` under `role`."""
    docs, source, counts = read_documents(path, config, role)
    _check_text(docs, source)
    report["files"][role] = source
    counts.update(rows_read=len(docs), dropped_empty_text=0, dropped_duplicates=0, texts_truncated_to_max_chars=0)
    counts["texts_truncated_to_max_chars"] = sum(len(doc) > config.max_chars for doc in docs)
    cleaned = [normalise_text(doc[: config.max_chars], config) for doc in docs]
    kept = keep_distinct(cleaned, lambda doc: doc, lambda doc: not doc, config.duplicates, counts, "dropped_empty_text")
    report["splits"][role] = counts
    if not kept:
        raise DataError(f"{source} has no text to learn from (rows read: {len(docs)}, all empty); give a file with "
                        "one document per line, or a table whose data.text_column holds text")
    return kept


def prepare_unlabelled(config: DataConfig, seed: int) -> PreparedData:
    report: dict[str, Any] = {"files": {}, "splits": {}, "warnings": []}

    def load(path: str, role: str) -> list[str]:
        return load_documents(path, config, role, report)

    train = load(config.train, "train")
    if config.validation:
        validation = load(config.validation, "validation")
        overlap = set(train) & set(validation)
        if overlap:
            train = [t for t in train if t not in overlap]
            report["splits"]["train"]["dropped_leaked_into_validation"] = len(overlap)
    else:
        train, validation = carve_validation(train, seed, config.validation_fraction, report, "document")
    train = seeded_subsample(train, config.max_train_examples, seed, report["splits"]["train"])
    report["labels"] = []
    report["sizes"] = {"train": len(train), "validation": len(validation), "test": 0}
    return PreparedData(Split(train, []), Split(validation, []), None, [], report)  # no labels: empty lists


def special_wrapping(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text ([CLS] ... [SEP]; <s> ...; none)."""
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    for k in range(len(full) - len(bare) + 1):
        if full[k : k + len(bare)] == bare:
            return list(full[:k]), list(full[k + len(bare) :])
    return [], []


def windows(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
    """Each text's tokens in consecutive windows of max_length (special tokens included): (ids, windows added)."""
    prefix, suffix = special_wrapping(tokenizer)
    room = max(1, max_length - len(prefix) - len(suffix))
    out, extra = [], 0
    if not texts:
        return out, 0
    for ids in tokenizer(texts, add_special_tokens=False, truncation=False, return_attention_mask=False)["input_ids"]:
        pieces = [ids[i : i + room] for i in range(0, max(1, len(ids)), room)]
        extra += len(pieces) - 1
        out.extend(prefix + list(p) + suffix for p in pieces)
    return out, extra


def word_starts(tokenizer, input_ids: list[list[int]]) -> list[list[bool]]:
    """Whether each token begins a word: WordPiece marks continuations with '##'; byte-level BPE and SentencePiece
    mark word starts with 'Ġ' / '▁'."""
    vocab_tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    wordpiece = any(t.startswith("##") for t in vocab_tokens[:5000] if t)
    specials = set(tokenizer.all_special_ids)
    starts = []
    for ids in input_ids:
        row = []
        for position, i in enumerate(ids):
            token = vocab_tokens[i] if i < len(vocab_tokens) else ""
            if i in specials or position == 0:
                row.append(True)
            elif wordpiece:
                row.append(not token.startswith("##"))
            else:
                row.append(token.startswith(("Ġ", "▁")) or ids[position - 1] in specials)
        starts.append(row)
    return starts


class LanguageModelingBase(TaskDefaults):
    peft_task_type = "CAUSAL_LM"
    caches_frozen_layers = False
    prunes_last_layer = False
    evaluates_full_length = False
    answers_kept: Optional[int] = 5  # generated answers kept in metrics (thrifty evaluate keeps them all: None)
    generate: Optional[GenerateConfig] = None  # tasks that write answers (causal_lm SFT, seq2seq)
    answer_allowance: Optional[AnswerAllowance] = None  # in training only (plan_answers); thrifty evaluate: no cap

    def answer_every_row(self, rows: int) -> None:
        """`thrifty evaluate` of a file: an answer written for each of its `rows`, and each kept (training's
        evaluations write a sample of generate.eval_examples and keep a few)."""
        self.generate = dataclasses.replace(self.generate or GenerateConfig(), eval_examples=rows)
        self.answers_kept = None

    def plan_answers(self, training_seconds: float, evaluations: int, count: Optional[int]) -> None:
        if self.generate is None:
            return
        if self.answer_allowance is None:
            self.answer_allowance = AnswerAllowance(self.generate.eval_time_share)
        self.answer_allowance.plan(training_seconds, evaluations, count)

    def __init__(self, config: Optional[AdaptConfig] = None):
        self.config = config or AdaptConfig()

    @classmethod
    def for_config(cls, config) -> "LanguageModelingBase":
        return cls(config.adapt)

    def prepare_data(self, config, seed: int) -> PreparedData:
        return prepare_unlabelled(config, seed)

    def token_lengths(self, tokenizer, split: Split, tokens) -> np.ndarray:
        return tokens.lengths(split.texts, token_lengths)

    def encode(self, tokenizer, split: Split, max_length: int, tokens) -> Encoded:
        ids, extra = windows(tokenizer, split.texts, max_length)
        return Encoded(ids, [None] * len(ids), {"windows_added": extra, **self.encode_extra(tokenizer, ids)})

    def encode_extra(self, tokenizer, ids: list[list[int]]) -> dict[str, Any]:
        return {}

    def fit_loss(self, train: Encoded, batch_size: int) -> None:
        """The loss is a mean over predicted tokens already."""

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=-100)

    def evaluate(self, model, encoded: Encoded, split, label_names: list[str], pad_id: int, batch_size: int, device,
                 autocast_dtype=None, forward: Optional[Callable] = None) -> dict[str, Any]:
        """Loss, perplexity and accuracy over the predicted tokens, with masks drawn from a fixed seed."""
        from thrifty.data.batching import sorted_batches

        was_training = model.training
        model.eval()
        generator = torch.Generator().manual_seed(0)
        total, correct, count = 0.0, 0, 0
        vocab = model.get_output_embeddings().weight.shape[0]
        with torch.inference_mode(), passes("loss", len(encoded), "example") as shown:
            for idx in my_share(sorted_batches(encoded.lengths, batch_size)):  # a multi-process evaluation: a share
                positions = max(self.logit_positions(encoded, i) for i in idx)
                step = max(1, EVAL_LOGIT_ELEMENTS // (positions * vocab))
                for start in range(0, len(idx), step):
                    part = idx[start : start + step]
                    batch = self.make_batch(encoded, part, pad_id, generator)
                    labels = batch.pop("labels").to(device)
                    with torch.autocast(device_type=device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
                    logits, labels = self.aligned(logits.float(), labels)
                    scored = labels != -100
                    total += float(torch.nn.functional.cross_entropy(logits[scored], labels[scored], reduction="sum"))
                    correct += int((logits[scored].argmax(-1) == labels[scored]).sum())
                    count += int(scored.sum())
                shown.update(len(idx))
        model.train(was_training)
        total, correct, count = summed(total), summed(correct), summed(count)
        loss = total / max(1, count)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "accuracy": correct / max(1, count),
                "tokens_scored": count, "examples": len(encoded)}

    def aligned(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return logits, labels

    def logit_positions(self, encoded: Encoded, i: int) -> int:
        """How many vocabulary logits example i's pass computes: one per token (an evaluation pass is sized by it)."""
        return len(encoded.input_ids[i])

    def collate(self, encoded: Encoded, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        return self.make_batch(encoded, indices, pad_id, None)

    def make_batch(self, encoded: Encoded, indices: Sequence[int], pad_id: int, generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def summary(self, metrics: dict[str, Any]) -> str:
        return (f"loss {metrics['loss']:.4f}, perplexity {metrics['perplexity']:.2f}, token accuracy "
                f"{metrics['accuracy']:.4f} on {metrics['tokens_scored']:,} predicted tokens")

    def history_keys(self) -> tuple[str, ...]:
        return ("loss", "perplexity", "accuracy")

    def baseline(self, split, label_names: list[str]) -> Optional[float]:
        return None  # no trivial predictor to measure a gain in loss against

    def plots(self, metrics: dict[str, Any], label_names: list[str], path, title: str) -> None:
        return None


class MaskedLanguageModeling(LanguageModelingBase):
    traits = TASKS["masked_lm"]
    head = "masked_lm"
    peft_task_type = "FEATURE_EXTRACTION"
    windows_long_texts = True  # continued pre-training on documents

    def encode_extra(self, tokenizer, ids: list[list[int]]) -> dict[str, Any]:
        if tokenizer.mask_token_id is None:
            from thrifty.errors import ModelError

            raise ModelError("this tokenizer has no mask token, so masked-LM adaptation cannot mask; for a decoder use "
                             "task causal_lm (thrifty adapt picks it for decoders)")
        extra = {"mask_id": tokenizer.mask_token_id, "special_ids": sorted(tokenizer.all_special_ids),
                 "vocab_size": len(tokenizer)}
        if self.config.whole_word_masking:
            extra["word_starts"] = word_starts(tokenizer, ids)
        return extra

    def make_batch(self, encoded: Encoded, indices: Sequence[int], pad_id: int, generator) -> dict[str, torch.Tensor]:
        """Pad, then mask: `mask_probability` of the real, non-special tokens (or of the words), 80/10/10."""
        from thrifty.data.batching import collate

        batch = collate(encoded.input_ids, indices, pad_id)
        ids, extra = batch["input_ids"], encoded.extra
        candidates = batch["attention_mask"].bool() & ~torch.isin(ids, torch.tensor(extra["special_ids"]))
        p = self.config.mask_probability
        if "word_starts" in extra:
            starts = torch.zeros_like(ids, dtype=torch.bool)
            for row, i in enumerate(indices):
                starts[row, : len(extra["word_starts"][i])] = torch.tensor(extra["word_starts"][i])
            word = torch.cumsum(starts.long(), dim=1)  # the word each token belongs to, numbered per row
            chosen_words = torch.rand((word.shape[0], word.shape[1] + 1), generator=generator) < p
            chosen = torch.gather(chosen_words, 1, word) & candidates
        else:
            chosen = (torch.rand(ids.shape, generator=generator) < p) & candidates
        if not chosen.any() and candidates.any():  # a batch with nothing to predict would give no loss
            chosen[tuple(candidates.nonzero()[0])] = True
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        action = torch.rand(ids.shape, generator=generator)
        masked = ids.clone()
        masked[chosen & (action < 0.8)] = extra["mask_id"]
        random_tokens = torch.randint(extra["vocab_size"], ids.shape, generator=generator)
        swap = chosen & (action >= 0.8) & (action < 0.9)
        masked[swap] = random_tokens[swap]
        batch["input_ids"], batch["labels"] = masked, labels
        return batch


class CausalLanguageModeling(LanguageModelingBase):
    """Next-token prediction: on plain text (continued pre-training, windows), or supervised fine-tuning on prompts
    and answers (prompt/completion or chat rows, data/instructions.py) with the loss on the answers, optional
    packing, and exact match of generated answers."""

    traits = TASKS["causal_lm"]
    head = "causal_lm"

    def __init__(self, config: Optional[AdaptConfig] = None, generate: Optional[GenerateConfig] = None):
        super().__init__(config)
        self.generate = generate or GenerateConfig()
        self.kind: Optional[str] = None  # None: plain text; prompt_completion or chat: instruction data
        self.data_config: Optional[DataConfig] = None
        self.prepared: Optional[PreparedData] = None
        self._examples: dict[int, list] = {}  # id(split) -> its examples tokenised (once: lengths, then encode)
        self.tokenizer: Any = None
        self.scored_logits_only = False  # the head computes only the positions the loss reads (attach)

    @classmethod
    def for_config(cls, config) -> "CausalLanguageModeling":
        return cls(config.adapt, config.generate)

    @property
    def prompt_format(self) -> str:
        return self.kind or "text"

    @property
    def windows_long_texts(self) -> bool:
        return self.kind is None  # plain text (continued pre-training); prompts and answers are truncated

    def attach(self, model) -> None:
        """A head that takes transformers' `logits_to_keep` computes the vocabulary logits only where a next token is
        scored: an answer's few positions, not every prompt and padding position (SmolLM2's head is a fifth of a
        forward pass; its cross-entropy over 49,152 classes per position more)."""
        import inspect

        self.scored_logits_only = "logits_to_keep" in inspect.signature(model.forward).parameters

    def prepare_data(self, config, seed: int) -> PreparedData:
        from thrifty.data.instructions import instruction_kind, prepare_examples

        self.data_config, self.kind = config, instruction_kind(config.train, config)
        self.prepared = prepare_unlabelled(config, seed) if self.kind is None else prepare_examples(config, seed, self.kind)
        return self.prepared

    def read_labelled(self, path: str, config: DataConfig, label_names: Optional[list[str]] = None,
                      role: str = "evaluation") -> tuple[Split, dict[str, int], str]:
        """One file of prompts and answers read as prepare_data reads training rows (JSONL prompt/completion or chat
        rows, else a table through config.prompt_template), for an evaluation: its split, counts and source."""
        from thrifty.data.instructions import instruction_kind, read_examples

        if config.prompt_template is not None and instruction_kind(path, dataclasses.replace(config, prompt_template=None)):
            config = dataclasses.replace(config, prompt_template=None)  # JSONL rows already hold prompts and answers
        kind = instruction_kind(path, config)
        if kind is None:
            raise DataError(f"{path}: a model that writes text is evaluated on prompts with their answers: JSONL rows "
                            f"of {{\"{config.prompt_column}\": ..., \"{config.completion_column}\": ...}} or "
                            f"{{\"{config.messages_column}\": [...]}}")
        self.data_config, self.kind = config, kind
        rows, source, counts = read_examples(path, config, kind, role)
        return Split(rows, []), counts, source

    def _tokenised(self, tokenizer, split: Split) -> list:
        from thrifty.data.instructions import CHAT, encode_example, require_chat_template

        self.tokenizer = tokenizer  # generation in evaluations writes and reads with it
        if id(split) not in self._examples:
            if self.kind == CHAT:
                require_chat_template(tokenizer, tokenizer.name_or_path)
            prefix, _ = special_wrapping(tokenizer)
            self._examples[id(split)] = [encode_example(tokenizer, example, prefix, self.data_config.loss_on)
                                         for example in split.texts]
        return self._examples[id(split)]

    def token_lengths(self, tokenizer, split: Split, tokens) -> np.ndarray:
        if self.kind is None:
            return super().token_lengths(tokenizer, split, tokens)
        return np.array([len(ids) for ids, _, _, _ in self._tokenised(tokenizer, split)])

    def encode(self, tokenizer, split: Split, max_length: int, tokens) -> Encoded:
        """Plain text: windows. Instructions: ids with the answer marked, cut or dropped at max_length (counted), the
        training split packed when data.packing is on; evaluation splits keep each prompt and reference."""
        from thrifty.data.instructions import fit_to_length, pack

        if self.kind is None:
            return super().encode(tokenizer, split, max_length, tokens)
        ids, labels, prompts, references = [], [], [], []
        counts = {"kept": 0, "truncated_to_max_length": 0, "dropped_longer_than_max_length": 0,
                  "dropped_prompt_longer_than_max_length": 0}
        for example_ids, example_labels, prompt_ids, reference in self._tokenised(tokenizer, split):
            fitted, what = fit_to_length(example_ids, example_labels, max_length, self.data_config.overlong)
            counts[what] += 1
            if fitted is not None:
                ids.append(fitted[0])
                labels.append(fitted[1])
                prompts.append(prompt_ids)
                references.append(reference)
        if not ids:
            raise DataError(f"every example is longer than max_length={max_length} with no answer token left; raise "
                            "data.max_length or shorten the prompts")
        report = {k: v for k, v in counts.items() if v and k != "kept"}
        report["tokens"] = sum(len(x) for x in ids)
        report["tokens_trained_on"] = sum(sum(1 for t in row[1:] if t != -100) for row in labels)  # position 0 predicts nothing
        training = self.prepared is not None and split is self.prepared.train
        if training and self.data_config.packing:
            rows = pack([len(x) for x in ids], max_length)
            report["packed_rows"] = len(rows)
            return Encoded([[t for i in row for t in ids[i]] for row in rows],
                           [[t for i in row for t in labels[i]] for row in rows],
                           {"report": report, "segments": [[len(ids[i]) for i in row] for row in rows]})
        return Encoded(ids, labels, {"report": report, "prompts": prompts, "references": references})

    def make_batch(self, encoded: Encoded, indices: Sequence[int], pad_id: int, generator) -> dict[str, torch.Tensor]:
        from thrifty.data.batching import collate

        batch = collate(encoded.input_ids, indices, pad_id)
        if encoded.targets[0] is None:  # plain text: every real token is predicted
            batch["labels"] = torch.where(batch["attention_mask"].bool(), batch["input_ids"], -100)
            return self.scored_positions_only(batch)
        labels = torch.full_like(batch["input_ids"], -100)
        for row, i in enumerate(indices):
            labels[row, : len(encoded.targets[i])] = torch.as_tensor(encoded.targets[i])
        batch["labels"] = labels
        if "segments" in encoded.extra:
            # Packed rows: positions restart with each example and there is no attention mask, from which transformers
            # builds a block-diagonal causal mask: no example attends to another. Each example's first token is
            # never a target (it would be predicted from the example before it).
            positions = torch.zeros_like(batch["input_ids"])
            for row, i in enumerate(indices):
                start = 0
                for length in encoded.extra["segments"][i]:
                    positions[row, start : start + length] = torch.arange(length)
                    labels[row, start] = -100
                    start += length
                positions[row, start:] = torch.arange(positions.shape[1] - start)  # the padding: a segment of its own
            del batch["attention_mask"]
            batch["position_ids"] = positions
        return self.scored_positions_only(batch)

    def logit_positions(self, encoded: Encoded, i: int) -> int:
        if self.scored_logits_only and encoded.targets[i] is not None:  # the answer's positions only
            return max(1, sum(1 for t in encoded.targets[i] if t != -100))
        return len(encoded.input_ids[i])

    def scored_positions_only(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Where the head can (attach): logits only at the positions whose next token is scored (a boolean
        `logits_to_keep`; transformers returns them flattened), and `labels` as those next tokens, in the same order."""
        if not self.scored_logits_only:
            return batch
        labels = batch["labels"]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != -100  # position t predicts token t+1
        batch["logits_to_keep"], batch["labels"] = keep, labels[:, 1:][keep[:, :-1]]
        return batch

    def aligned(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if logits.dim() == 2:  # the scored positions only: already paired with their next tokens
            return logits, labels
        return logits[:, :-1], labels[:, 1:]  # position t predicts token t+1

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return super().loss(*self.aligned(logits, labels))

    def evaluate(self, model, encoded: Encoded, split, label_names: list[str], pad_id: int, batch_size: int, device,
                 autocast_dtype=None, forward: Optional[Callable] = None) -> dict[str, Any]:
        metrics = super().evaluate(model, encoded, split, label_names, pad_id, batch_size, device, autocast_dtype, forward)
        if self.generate.eval_examples > 0 and "prompts" in encoded.extra:
            metrics.update(self.generated_metrics(model, encoded, split, device))
        return metrics

    def generated_metrics(self, model, encoded: Encoded, split, device) -> dict[str, Any]:
        """Answers written for a seeded sample of validation (all of test) and compared with the references."""
        whole = self.prepared is not None and split is self.prepared.test
        return written_answers(model, self.tokenizer, encoded.extra["prompts"], encoded.extra["references"],
                               self.generate, whole, device, keep=self.answers_kept, allowance=self.answer_allowance)

    def summary(self, metrics: dict[str, Any]) -> str:
        line = super().summary(metrics)
        if "exact_match" in metrics:
            line += f"; exact match {metrics['exact_match']:.4f} on {answers_counted(metrics)}"
        return line

    def history_keys(self) -> tuple[str, ...]:
        return ("loss", "perplexity", "accuracy") + (("exact_match",) if self.generate.eval_examples > 0 else ())


def lm_task_for(model_type: str) -> str:
    """masked_lm for an encoder (a family with a masked-LM head in transformers), causal_lm otherwise."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return "masked_lm" if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "causal_lm"

