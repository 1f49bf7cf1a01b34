"""Tasks: what is learned. Each module supplies data, model head, batches, loss, metrics and predictions for the
one training loop (see tasks/base.py for the protocol)."""

from __future__ import annotations

from thrifty.errors import ConfigError
from thrifty.tasks.base import Encoded, Task
from thrifty.tasks.classification import SequenceClassification
from thrifty.tasks.fewshot import FewShotClassification
from thrifty.tasks.language_modeling import CausalLanguageModeling, MaskedLanguageModeling
from thrifty.tasks.seq2seq import SequenceToSequence
from thrifty.tasks.token_classification import TokenClassification

TASKS: dict[str, type] = {"classification": SequenceClassification, "token_classification": TokenClassification,
                          "masked_lm": MaskedLanguageModeling, "causal_lm": CausalLanguageModeling,
                          "seq2seq": SequenceToSequence}


def get_task(name: str, strategy=None, adapt=None, generate=None) -> Task:
    """The task of `task: name`; `strategy` (a StrategyConfig) picks a strategy's own objective (fewshot), `adapt`
    (an AdaptConfig) sets the masking of masked_lm, `generate` (a GenerateConfig) how causal_lm and seq2seq write
    answers in evaluations."""
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'; choose one of: {', '.join(TASKS)}")
    if strategy is not None and strategy.name == "fewshot":
        return FewShotClassification(strategy.fewshot)
    if name == "masked_lm":
        return TASKS[name](adapt)
    if name == "causal_lm":
        return TASKS[name](adapt, generate)
    if name == "seq2seq":
        return TASKS[name](generate)
    return TASKS[name]()


__all__ = ["Encoded", "Task", "TASKS", "get_task"]
