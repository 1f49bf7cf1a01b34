"""What a run starts from, before any training: the config, the prepared data, the model with its strategy, the
tokens. Shared by `train`, `estimate`, the budget planner, `recommend` and `tune`, so that all of them see the
same data and the same model.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from thrifty.config import BUILTIN_DATA, Config, apply_overrides, config_from_dict, load_config
from thrifty.data.token_cache import TokenCache
from thrifty.data.tokenize import cut_warnings, length_stats, model_length_limit, resolve_max_length
from thrifty.models.loading import cache_dir, load_for_task, load_tokenizer
from thrifty.strategies import apply_strategy
from thrifty.tasks import Encoded, Task, get_task


def as_config(config: Config | str | Path | dict | None, overrides: Optional[list[str]] = None) -> Config:
    """Accept a Config, a dict shaped like the YAML, a YAML path, or None (built-in defaults)."""
    if isinstance(config, Config):
        return apply_overrides(copy.deepcopy(config), overrides)
    if isinstance(config, dict):
        return apply_overrides(config_from_dict(config), overrides)
    return load_config(config, overrides)


def resolved_for_saving(config: Config, run_dir: Path) -> Config:
    """Absolute paths, so the saved config (and --resume) works from any folder."""
    saved = copy.deepcopy(config)
    for key in ("train", "validation", "test", "unlabelled"):
        value = getattr(saved.data, key)
        if value and value != BUILTIN_DATA:
            setattr(saved.data, key, str(Path(value).expanduser().resolve()))
    if Path(saved.model.name).expanduser().exists():
        saved.model.name = str(Path(saved.model.name).expanduser().resolve())
    saved.output.dir = str(run_dir.resolve())
    return saved


@dataclass
class Inputs:
    """Everything a run starts from, before any training."""

    task: Task
    data: Any  # the task's prepared data: .train, .validation, .test, .label_names, .report
    tokenizer: Any
    model: Any  # with the strategy applied
    strategy: Any
    tokens: TokenCache
    max_length: int
    max_length_how: str
    train: Encoded
    validation: Encoded
    test: Optional[Encoded]
    eval_max_length: int  # validation, test and prediction: max_length, or the model's limit for some tasks
    warm_start: Optional[dict[str, Any]] = None  # what a warm start kept, added and dropped of the old head
    lengths: Optional[dict[str, Any]] = None  # untruncated token lengths of each split (train, validation, test)

    @property
    def train_ids(self) -> list:
        return self.train.input_ids

    @property
    def val_ids(self) -> list:
        return self.validation.input_ids

    @property
    def test_ids(self) -> Optional[list]:
        return self.test.input_ids if self.test is not None else None


def load_model(config: Config, task: Task, model_path: str, label_names: list[str], pad_token_id: Optional[int]):
    """The task's model for these labels (a warm start keeps what it can of the old head), with the strategy
    applied; returns (model, strategy, warm start report or None)."""
    model, new_keys, warm = load_for_task(
        model_path, label_names, task.name, task.head, dropout=config.train.dropout,
        trust_remote_code=config.model.trust_remote_code, pad_token_id=pad_token_id,
    )
    if task.traits.writes_text:  # training reads every position at once: no key/value cache to keep,
        model.config.use_cache = False  # and packed rows need none (transformers masks them only without one)
    task.attach(model)
    model, strategy = apply_strategy(model, config.strategy, new_keys, task.peft_task_type, task.traits.writes_text)
    if task.traits.learns_unlabelled_text and new_keys:  # e.g. all-MiniLM-L6-v2 ships no masked-LM head: said, not hidden
        strategy.details["new"] = ",".join(sorted({k.rsplit(".", 1)[0] for k in new_keys}))
        output, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
        strategy.details["tied"] = output is not None and output.weight is embeddings.weight
    return model, strategy, warm


def prepare_inputs(config: Config, model_path: str) -> Inputs:
    """Read, clean and split the data (with its report), load the model and tokenizer, tokenise (through the
    on-disk token cache), and apply the strategy."""
    task = get_task(config.task, config)
    data = task.prepare_data(config.data, config.train.seed)
    tokenizer = load_tokenizer(model_path, config.model.trust_remote_code)
    model, strategy, warm = load_model(config, task, model_path, data.label_names, tokenizer.pad_token_id)
    tokens = TokenCache(cache_dir() / "tokens" if config.data.cache_tokens else None, tokenizer)
    lengths = {role: task.token_lengths(tokenizer, split, tokens)
               for role, split in (("train", data.train), ("validation", data.validation), ("test", data.test))
               if split is not None}
    evaluation_cut = not task.evaluates_full_length and not task.windows_long_texts  # evaluation texts cut at max_length
    max_length, train_len_stats, how = resolve_max_length(
        tokenizer, model.config, data.train.texts, config.data.max_length, config.data.length_percentile,
        # raised for validation, never for test: the held-out split decides nothing about training (a test cut more
        # than 5% is a warning)
        lengths=lengths["train"], cut_too={"validation": lengths["validation"]} if evaluation_cut else None,
    )
    eval_max_length = model_length_limit(tokenizer, model.config) if task.evaluates_full_length else max_length
    train = task.encode(tokenizer, data.train, max_length, tokens)
    validation = task.encode(tokenizer, data.validation, eval_max_length, tokens)
    test = task.encode(tokenizer, data.test, eval_max_length, tokens) if data.test is not None else None
    data.report["tokens"] = {
        "max_length": max_length, "chosen": how, "train": train_len_stats,
        "cache": {"folder": str(tokens.folder) if tokens.folder else None, "hits": tokens.hits, "misses": tokens.misses},
    }
    _length_report(data.report, task, lengths, max_length, eval_max_length, model_length_limit(tokenizer, model.config))
    for role, encoded in (("train", train), ("validation", validation), ("test", test)):
        if encoded is not None and "words_without_tokens" in encoded.extra:  # counted, never dropped silently
            data.report["splits"][role].update(words_without_tokens=encoded.extra["words_without_tokens"],
                                               words_truncated=encoded.extra["words_truncated"])
        if encoded is not None and "windows_added" in encoded.extra:  # long documents cut into windows, not truncated
            data.report["splits"][role]["windows_added"] = encoded.extra["windows_added"]
        if encoded is not None and "report" in encoded.extra:  # instructions: cut, dropped, packed; tokens trained on
            data.report["splits"][role].update(encoded.extra["report"])
    if warm is not None:
        data.report["warm_start"] = warm
    return Inputs(task, data, tokenizer, model, strategy, tokens, max_length, how, train, validation, test,
                  eval_max_length, warm, lengths)


def _length_report(report: dict[str, Any], task: Task, lengths: dict[str, Any], max_length: int,
                   eval_max_length: int, limit: int) -> None:
    """Each split's length statistics at the length it is cut to, and a warning for each split of which more than
    5% is cut (data.tokenize.cut_warnings); the warnings of an earlier max_length are replaced."""
    cut_at = {role: max_length if role == "train" else eval_max_length for role in lengths}
    for role in ("validation", "test"):
        if role in lengths:
            report["tokens"][role] = length_stats(lengths[role], cut_at[role])
    old = report["tokens"].get("cut_warnings", [])
    report["warnings"] = [w for w in report.get("warnings", []) if w not in old]
    new = [] if task.windows_long_texts else cut_warnings(lengths, cut_at, limit)  # windows lose nothing
    report["tokens"]["cut_warnings"] = new
    report["warnings"].extend(new)


def cut_warnings_at(inputs: Inputs, max_length: int) -> list[str]:
    """The warnings `reencode(inputs, max_length, ...)` would put in the data report (more than 5% of a split cut),
    counted from the untruncated lengths, without tokenising; the report is left as it is."""
    task = inputs.task
    if inputs.lengths is None:
        return list(inputs.data.report["tokens"].get("cut_warnings", []))
    eval_max_length = inputs.eval_max_length if task.evaluates_full_length else max_length
    cut_at = {role: max_length if role == "train" else eval_max_length for role in inputs.lengths}
    limit = model_length_limit(inputs.tokenizer, inputs.model.config)
    return [] if task.windows_long_texts else cut_warnings(inputs.lengths, cut_at, limit)


def reencode(inputs: Inputs, max_length: int, how: str) -> Inputs:
    """The same data tokenised to another max_length (its length statistics and warnings in the data report
    follow)."""
    task, data, tokens, tokenizer = inputs.task, inputs.data, inputs.tokens, inputs.tokenizer
    data.report["tokens"]["max_length"] = max_length
    data.report["tokens"]["chosen"] = how
    if inputs.lengths is not None:
        data.report["tokens"]["train"] = length_stats(inputs.lengths["train"], max_length)
        eval_max_length = inputs.eval_max_length if task.evaluates_full_length else max_length
        _length_report(data.report, task, inputs.lengths, max_length, eval_max_length,
                       model_length_limit(tokenizer, inputs.model.config))
    if task.evaluates_full_length:  # only training is cut to the new length
        return dataclasses.replace(inputs, max_length=max_length, max_length_how=how,
                                   train=task.encode(tokenizer, data.train, max_length, tokens))
    return dataclasses.replace(
        inputs, max_length=max_length, max_length_how=how, eval_max_length=max_length,
        train=task.encode(tokenizer, data.train, max_length, tokens),
        validation=task.encode(tokenizer, data.validation, max_length, tokens),
        test=task.encode(tokenizer, data.test, max_length, tokens) if data.test is not None else None,
    )
