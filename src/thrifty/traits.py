"""What each task and strategy can do, asked by name: the questions the rest of thrifty has about them.

A run's config, a model folder's manifest and a server all name their task (`task: classification`) and strategy
(`strategy.name: lora`) as strings. Code that needs to know what such a name implies (does this model write text? can
it take feedback labels? may its weights be sharded?) asks its traits here instead of comparing the name: adding a
task or a strategy then means one row here plus its own module (tasks/, strategies/), and nothing else changes.

This module sits in the config layer and imports nothing heavy, so the config checks, the CLI and a server's start can
ask it without loading torch. The task classes in tasks/ read their own row (``Task.traits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from thrifty.errors import ConfigError


@dataclass(frozen=True)
class TaskTraits:
    name: str  # the value of `task:` in a config and of `task` in a model folder's manifest
    metrics: tuple[str, ...]  # what its evaluations report; the first picks the best model unless train.metric says
    strategies: tuple[str, ...]  # the strategies that fit it
    predicts_labels: bool = False  # one class label per text: probabilities, feedback, drift monitor, audit, ONNX export
    tags_words: bool = False  # one tag per word (NER): entities out, CoNLL/JSONL tagged files in
    writes_text: bool = False  # writes answers: `thrifty generate`, POST /v1/generate, exact match / ROUGE-L
    learns_unlabelled_text: bool = False  # learns from plain text: continued pre-training (`thrifty adapt`)
    chats: bool = False  # its prompts may be chat messages (a decoder with a chat template)
    encoder_decoder: bool = False  # an encoder reads the prompt, a decoder writes the answer alone (no prompt echoed)
    serves: bool = True  # a model folder of it answers requests (an adapted masked LM is only a base for later runs)
    plot_name: Optional[str] = None  # the file stem of its evaluation plot (confusion_matrix, per_type_f1)
    label_alignment: Optional[str] = None  # where a word's label sits among its sub-tokens (manifest preprocessing)
    # train.precision auto: bf16 autocast on bf16 hardware (models/precision.py) unless accuracy showed it costs this
    # task more than half a point (benchmarks/bf16_accuracy.py); the note says why it keeps fp32
    trains_in_bf16: bool = True
    bf16_note: str = ""

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    @property
    def learns_text(self) -> bool:
        """Learns from unlabelled text or from prompts and answers, not from labels."""
        return self.learns_unlabelled_text or self.writes_text

    @property
    def agrees_by_label(self) -> bool:
        """Its answers are labels (per text or per word), so bf16 and fp32 weights can be compared label by label."""
        return self.predicts_labels or self.tags_words

    @property
    def parallel_passes(self) -> bool:
        """Its forward passes are independent per text and cheap enough that several at once pay (serving lanes)."""
        return self.predicts_labels

    def fits(self, strategy: str) -> bool:
        return strategy in self.strategies


ALL_STRATEGIES = ("full", "freeze", "head", "lora", "fewshot")

TASKS: dict[str, TaskTraits] = {t.name: t for t in (
    TaskTraits("classification", ("accuracy", "macro_f1", "loss"), ALL_STRATEGIES, predicts_labels=True,
               plot_name="confusion_matrix"),  # one label per text
    TaskTraits("token_classification", ("f1", "precision", "recall", "loss"), ("full", "freeze", "head", "lora"),
               tags_words=True, plot_name="per_type_f1", label_alignment="first_subtoken"),  # entity-level seqeval
    TaskTraits("masked_lm", ("loss", "perplexity", "accuracy"), ("full", "freeze", "lora"), learns_unlabelled_text=True,
               serves=False),  # thrifty adapt, encoders: predict masked tokens
    # decoders: the next token (adapt), or answers to prompts (SFT); exact_match: generated answers (generate.eval_examples)
    TaskTraits("causal_lm", ("loss", "perplexity", "accuracy", "exact_match"), ("full", "freeze", "lora"),
               learns_unlabelled_text=True, writes_text=True, chats=True),
    TaskTraits("seq2seq", ("loss", "perplexity", "exact_match", "rouge_l"), ("full", "freeze", "lora"),
               writes_text=True, encoder_decoder=True),  # encoder-decoders (T5, BART): a target text per source text
)}


@dataclass(frozen=True)
class StrategyTraits:
    name: str  # the value of `strategy.name:`
    learning_rate: float  # the default: adapters and heads need more than whole-model updates
    trains: str  # how much of the model it trains, in words
    shards: bool = False  # its trained weights are most of the model, so FSDP may shard it (train.fsdp)
    caches_frozen_layers: bool = False  # a frozen bottom whose output can be computed once per data set
    trains_pairs: bool = False  # a sentence encoder trained on pairs, its head fitted (strategy.fewshot settings)
    self_trains: bool = False  # may label data.unlabelled itself and train on it
    adapter: bool = False  # trains an adapter beside the frozen base (LoRA): saved alone, or merged into the base
    cheaper: Optional[str] = None  # what a budget plan switches to when not even one epoch fits (planning/budget_plan.py)
    learning_rates: tuple[float, float] = (1e-5, 3e-4)  # the learning rates `thrifty tune` searches by default
    tuned: tuple[str, ...] = ()  # its own settings `thrifty tune` searches by default (strategies.search_space)


STRATEGIES: dict[str, StrategyTraits] = {s.name: s for s in (
    StrategyTraits("full", 1e-4, "every weight", shards=True, cheaper="freeze"),
    StrategyTraits("freeze", 1e-4, "a few layers", caches_frozen_layers=True,
                   tuned=("strategy.frozen_layers",)),
    StrategyTraits("head", 1e-3, "little", caches_frozen_layers=True, learning_rates=(1e-4, 3e-3)),
    StrategyTraits("lora", 1e-3, "little", shards=True, adapter=True, learning_rates=(1e-4, 3e-3),
                   tuned=("strategy.lora_r", "strategy.lora_alpha")),
    StrategyTraits("fewshot", 2e-4, "little", trains_pairs=True, self_trains=True,
                   learning_rates=(2e-5, 5e-4)),
)}


def task_traits(name: str) -> TaskTraits:
    """The traits of task `name`; an unknown name is a one-line ConfigError listing the known ones."""
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'; choose one of: {', '.join(TASKS)}")
    return TASKS[name]


def strategy_traits(name: str) -> StrategyTraits:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{name}'; choose one of: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]
