"""Instruction data for supervised fine-tuning of decoders (task causal_lm) and for seq2seq: reading, cleaning,
splitting, tokenising with the answer marked, and packing.

Three shapes of rows, TRL's conventions (docs/generation.md):
- prompt/completion (JSONL `prompt`, `completion`): the prompt and its answer as plain strings, joined as written,
  the tokenizer's end-of-sequence token after the answer so the model learns to stop;
- chat (JSONL `messages`: [{role, content}, ...]): rendered by the tokenizer's chat template; every assistant turn
  is an answer;
- a labelled table (CSV/TSV/'label text'/...) with `data.prompt_template` ("Text: {text}\\nEmotion:") and
  `data.completion_template` (" {label}"): classification data as prompts and answers.
seq2seq reads `source`/`target` columns of a JSONL file or a table.

The loss is on answer tokens only (`data.loss_on: completion`, TRL's default for prompt/completion) or on every
token. Texts keep their line breaks (a prompt's layout is part of it); Unicode is normalised and exact repeats are
dropped, counted as for classification. An example longer than max_length is cut or dropped (`data.overlong`),
never silently. Packing (`data.packing`) puts short training examples together into rows of up to max_length
tokens (best fit, longest first), each example keeping its own positions, so attention stays inside it.
"""

from __future__ import annotations

import bisect
import json
import unicodedata
from pathlib import Path
from typing import Any, Optional

from thrifty.config import DataConfig
from thrifty.errors import DataError, ModelError

PROMPT_COMPLETION, CHAT, SEQ2SEQ = "prompt_completion", "chat", "seq2seq"
# The data settings that say how rows become prompts and answers: kept in a generative model's manifest, so that
# `thrifty evaluate` reads a file as training read its rows
FORMAT_KEYS = ("prompt_column", "completion_column", "messages_column", "prompt_template", "completion_template",
               "source_column", "target_column", "loss_on", "overlong")


def _clean(text: Any, config: DataConfig) -> str:
    text = "" if text is None else str(text)
    if config.unicode_normalization != "none":
        text = unicodedata.normalize(config.unicode_normalization, text)
    return text[: config.max_chars]


def instruction_kind(path: str, config: DataConfig) -> Optional[str]:
    """prompt_completion or chat when `path` holds such rows (or a prompt_template is set), None for plain text."""
    if config.prompt_template is not None:
        return PROMPT_COMPLETION
    file = Path(path).expanduser()
    if not file.is_file() or file.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        return None  # a folder, a table, or a missing file (named by the plain-text reader)
    with open(file, encoding="utf-8-sig", errors="replace") as f:  # a byte-order mark is not part of the first row
        for line in f:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return None
                if isinstance(row, dict) and config.messages_column in row:
                    return CHAT
                if isinstance(row, dict) and config.prompt_column in row:
                    return PROMPT_COMPLETION
                return None
    return None


def read_rows(path: str, config: DataConfig, kind: str, role: str) -> tuple[list[dict], str, dict[str, int]]:
    """The examples of one file as dicts ({prompt, completion}, {messages} or {source, target}), its source and counts.
    A JSONL row without the fields its shape needs is refused, naming the line and the fix."""
    from thrifty.data.readers import check_file, decode, json_lines, read_bytes, read_table, resolve_data_path

    file = resolve_data_path(path)
    if kind == PROMPT_COMPLETION and config.prompt_template is not None:
        table = read_table(path, role=role, fmt=config.format, text_column=config.text_column,
                           label_column=config.label_column, encoding_errors=config.encoding_errors,
                           delimiter=config.delimiter)
        rows = []
        for text, label in zip(table.texts, table.labels or [None] * len(table.texts)):
            try:
                rows.append({"prompt": config.prompt_template.format(text=text, label=label),
                             "completion": config.completion_template.format(text=text, label=label)})
            except (KeyError, IndexError) as exc:
                raise DataError(f"data.prompt_template/completion_template name {exc}, which a table row does not "
                                "have; use {text} and {label}") from None
        return rows, table.source, dict(table.notes)
    needs = {PROMPT_COMPLETION: (config.prompt_column, config.completion_column), CHAT: (config.messages_column,),
             SEQ2SEQ: (config.source_column, config.target_column)}[kind]
    if file.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        if kind != SEQ2SEQ:
            raise DataError(f"{file}: {kind.replace('_', '/')} rows are read from JSONL (one JSON object per line); give "
                            "a .jsonl file, or a labelled table with data.prompt_template")
        table = read_table(path, role=role, fmt=config.format, text_column=needs[0], label_column=needs[1],
                           encoding_errors=config.encoding_errors, delimiter=config.delimiter)
        return ([{"source": s, "target": t} for s, t in zip(table.texts, table.labels)], table.source,
                dict(table.notes))
    check_file(file, role)
    text, replaced = decode(read_bytes(file, role), str(file), config.encoding_errors)
    rows = []
    for number, row in json_lines(text, str(file)):
        missing = [k for k in needs if not isinstance(row, dict) or k not in row]
        if missing:
            raise DataError(f"{file}, line {number}: the row has no {' or '.join(repr(k) for k in missing)}; every row "
                            f"needs {' and '.join(repr(k) for k in needs)} (or set data.{_setting(kind)} to your "
                            "field names)")
        if kind == CHAT:
            rows.append({"messages": _messages(row[needs[0]], file, number)})
        else:
            rows.append({k: row[name] for k, name in zip(("prompt", "completion") if kind == PROMPT_COMPLETION
                                                          else ("source", "target"), needs)})
    blank = sum(1 for line in text.splitlines() if not line.strip())
    return rows, str(file.resolve()), {"blank_lines_skipped": blank, "lines_with_replaced_bytes": replaced}


def _setting(kind: str) -> str:
    return {PROMPT_COMPLETION: "prompt_column/completion_column", CHAT: "messages_column",
            SEQ2SEQ: "source_column/target_column"}[kind]


def _messages(value: Any, file: Path, number: int) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value):
        raise DataError(f"{file}, line {number}: messages must be a list of {{\"role\": ..., \"content\": ...}} "
                        "objects with string values")
    if not any(m["role"] == "assistant" for m in value):
        raise DataError(f"{file}, line {number}: the conversation has no assistant message, so nothing to learn; "
                        "end each conversation with the assistant's answer")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _key(row: dict) -> str:
    return json.dumps(row, sort_keys=True, ensure_ascii=False)


def _no_answer(row: dict) -> bool:
    """Nothing to learn or score: no assistant turn with text, or an empty completion/target."""
    if "messages" in row:
        return not any(m["content"].strip() for m in row["messages"] if m["role"] == "assistant")
    return not str(list(row.values())[-1]).strip()


def read_examples(path: str, config: DataConfig, kind: str, role: str) -> tuple[list[dict], str, dict[str, int]]:
    """One file's examples cleaned (Unicode, max_chars), without rows that have no answer and, per data.duplicates,
    without exact repeats; its source and the counts of what was dropped."""
    from thrifty.data.prepare import keep_distinct

    rows, source, counts = read_rows(path, config, kind, role)
    counts.update(rows_read=len(rows), dropped_empty=0, dropped_duplicates=0)
    if kind == CHAT:
        cleaned = [{"messages": [{"role": m["role"], "content": _clean(m["content"], config)} for m in row["messages"]]}
                   for row in rows]
    else:
        cleaned = [{k: _clean(v, config) for k, v in row.items()} for row in rows]
    kept = keep_distinct(cleaned, _key, _no_answer, config.duplicates, counts, "dropped_empty")
    if not kept:
        raise DataError(f"{source} has no example with an answer (rows read: {len(rows)})")
    return kept, source, counts


def prepare_examples(config: DataConfig, seed: int, kind: str):
    """Read, clean, de-duplicate and split instruction rows, with a report of every change; returns PreparedData
    whose splits hold the example dicts in `.texts`."""
    from thrifty.data.prepare import PreparedData, Split, carve_validation, seeded_subsample

    report: dict[str, Any] = {"files": {}, "splits": {}, "warnings": [], "format": kind}

    def load(path: str, role: str) -> list[dict]:
        kept, source, counts = read_examples(path, config, kind, role)
        report["files"][role], report["splits"][role] = source, counts
        return kept

    train = load(config.train, "train")
    if config.validation:
        validation = load(config.validation, "validation")
    else:
        train, validation = carve_validation(train, seed, config.validation_fraction, report, "example")
    test = load(config.test, "test") if config.test else None
    held_out = {_key(r) for r in validation} | ({_key(r) for r in test} if test else set())
    leaked = [r for r in train if _key(r) in held_out]
    if leaked:  # the same example in training and evaluation would flatter the model
        train = [r for r in train if _key(r) not in held_out]
        report["splits"]["train"]["dropped_leaked_into_evaluation"] = len(leaked)
        if not train:
            raise DataError(f"every training example is also in validation or test ({len(leaked)}); give evaluation "
                            "files that hold other examples")
    train = seeded_subsample(train, config.max_train_examples, seed, report["splits"]["train"])
    validation = seeded_subsample(validation, config.max_eval_examples, seed, report["splits"]["validation"])
    report["labels"] = []
    report["sizes"] = {"train": len(train), "validation": len(validation), "test": len(test) if test else 0}
    return PreparedData(Split(train, []), Split(validation, []), Split(test, []) if test else None, [], report)


# --------------------------------------------------------------------------------------------------
# Tokenising: ids, the answer marked, the prompt kept for generation


def require_chat_template(tokenizer, model: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(f"'{model}' has no chat template, so chat rows (messages) cannot be rendered; give "
                         "prompt/completion rows instead, or a model whose tokenizer ships a chat template (e.g. "
                         "SmolLM2-135M-Instruct)")


def chat_text(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def encode_example(tokenizer, example: dict, prefix: list[int], loss_on: str) -> tuple[list[int], list[int], list[int], str]:
    """(ids, labels with -100 where nothing is learned, the prompt's ids for generation, the reference answer).
    `prefix`: the special tokens the tokenizer puts before a text (a BOS token), for prompt/completion rows."""
    eos = tokenizer.eos_token_id
    if "messages" in example:
        messages = example["messages"]
        text = chat_text(tokenizer, messages, False)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before, through = chat_text(tokenizer, messages[:i], True) if i else "", chat_text(tokenizer, messages[: i + 1], False)
            if not (text.startswith(before) and text.startswith(through)):
                raise ModelError("this chat template does not render a conversation as its turns one after another, so "
                                 "the assistant's tokens cannot be found; set data.loss_on: all")
            spans.append((len(before), len(through)))
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoding["input_ids"])
        answer = [any(start <= s < end for start, end in spans) for s, _ in encoding["offset_mapping"]]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompt_ids = tokenizer(chat_text(tokenizer, messages[:last], True), add_special_tokens=False)["input_ids"]
        reference = messages[last]["content"]
    else:
        prompt, completion = example["prompt"], example["completion"]
        prompt_ids = prefix + tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = prefix + tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        shared = next((k for k, (a, b) in enumerate(zip(prompt_ids, ids)) if a != b), min(len(prompt_ids), len(ids)))
        answer = [k >= shared for k in range(len(ids))]  # joined text may merge the last prompt token: the boundary
        reference = completion
    labels = [i if (a or loss_on == "all") else -100 for i, a in zip(ids, answer)]
    return ids, labels, list(prompt_ids), reference.strip()


def fit_to_length(ids: list[int], labels: list[int], max_length: int, overlong: str) -> tuple[Optional[tuple], str]:
    """The example cut to max_length, or None with the reason it is dropped; the second value names what happened."""
    if len(ids) <= max_length:
        return (ids, labels), "kept"
    if overlong == "drop":
        return None, "dropped_longer_than_max_length"
    ids, labels = ids[:max_length], labels[:max_length]
    if all(l == -100 for l in labels[1:]):  # the prompt alone fills max_length: no answer token is left to learn
        return None, "dropped_prompt_longer_than_max_length"
    return (ids, labels), "truncated_to_max_length"


def pack(lengths: list[int], max_length: int) -> list[list[int]]:
    """Rows of example indices whose lengths add up to at most max_length: best fit, longest first (TRL's "bfd").
    Deterministic; the rows are shuffled each epoch like any examples."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    room: list[tuple[int, int]] = []  # (space left, row), sorted: the tightest row that still fits comes first
    for i in order:
        k = bisect.bisect_left(room, (lengths[i], -1))
        if k < len(room):
            space, row = room.pop(k)
        else:
            space, row = max_length, len(rows)
            rows.append([])
        rows[row].append(i)
        bisect.insort(room, (space - lengths[i], row))
    return rows
