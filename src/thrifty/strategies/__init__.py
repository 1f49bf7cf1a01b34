"""Fine-tuning strategies: which weights train.

- ``full``: every weight.
- ``freeze``: embeddings and the bottom N transformer layers frozen, the layers above and the head train.
- ``head``: only the classification head (classifier, pooler, anything the checkpoint lacked): a probe.
- ``lora``: PEFT LoRA adapters on the attention projections, found from the architecture, plus the head.
- ``fewshot``: every weight of a sentence encoder, trained on pairs (its own task and model: tasks/fewshot.py).

Each strategy only sets ``requires_grad`` (or wraps the model with PEFT); the training loop then trains
whatever is trainable, so a new strategy never touches the loop.
"""

from __future__ import annotations

import contextlib
import types
import warnings
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from thrifty.config import StrategyConfig
from thrifty.errors import ModelError
from thrifty.models.loading import count_parameters
from thrifty.traits import strategy_traits

# Known attention projection names, most specific first: (architectures, Linear leaf names).
LORA_TARGETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Llama, Mistral, Qwen, Phi-3-style decoders", ("q_proj", "k_proj", "v_proj", "o_proj")),
    ("BERT, RoBERTa, ELECTRA, MiniLM-style encoders", ("query", "key", "value")),
    ("DistilBERT", ("q_lin", "k_lin", "v_lin")),
    ("GPT-2", ("c_attn",)),
    ("BART, OPT, Whisper-style", ("q_proj", "k_proj", "v_proj", "out_proj")),
    ("T5, mT5, Flan-T5", ("q", "k", "v", "o")),
)
# Models that write text (causal_lm, seq2seq) also get adapters on their MLP projections, as TRL's and
# LLaMA-Factory's recipes do: the attention alone learns a new answer format more slowly
LORA_MLP_TARGETS: tuple[tuple[str, ...], ...] = (("gate_proj", "up_proj", "down_proj"), ("fc1", "fc2"),
                                                 ("wi_0", "wi_1", "wo"), ("wi", "wo"), ("c_fc", "c_proj"))
HEAD_NAMES = ("classifier", "score", "pre_classifier")
# A pooler (dense + tanh over the first token) exists only to feed a classifier; in sentence-embedding
# checkpoints it was never trained for one. It belongs to the head, not to the frozen encoder.
POOLER_NAMES = ("pooler",)


@dataclass
class StrategyInfo:
    name: str
    total_parameters: int
    trainable_parameters: int
    details: dict[str, Any]

    def describe(self) -> str:
        pct = 100.0 * self.trainable_parameters / max(1, self.total_parameters)
        extra = ", ".join(f"{k}={v}" for k, v in self.details.items())
        return (f"strategy {self.name}: {self.total_parameters / 1e6:.2f}M parameters, "
                f"{self.trainable_parameters / 1e6:.3f}M trainable ({pct:.2f}%)" + (f"; {extra}" if extra else ""))


def find_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks: the longest ModuleList called layer/layers/h/block."""
    candidates = [
        module for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] in ("layer", "layers", "h", "block") and len(module) > 0
    ]
    if not candidates:
        raise ModelError(f"cannot find the transformer layers of {type(model).__name__}; use strategy full or lora")
    return max(candidates, key=len)


def _embedding_modules(model: nn.Module) -> list[nn.Module]:
    base = getattr(model, "base_model", model)
    found = [getattr(base, "embeddings")] if hasattr(base, "embeddings") else []
    found.append(model.get_input_embeddings())
    for name in ("wpe", "embed_positions"):  # separate position tables in GPT-2 and some decoders
        if hasattr(base, name):
            found.append(getattr(base, name))
    return found


def _head_modules(model: nn.Module, new_keys: set[str]) -> list[str]:
    """Module paths of the task head: classifier, pooler, and any module the checkpoint did not provide."""
    new_modules = {key.rsplit(".", 1)[0] for key in new_keys}
    found: list[str] = []
    for name, _ in model.named_modules():
        if name.split(".")[-1] in HEAD_NAMES + POOLER_NAMES or name in new_modules:
            if not any(name.startswith(f + ".") for f in found):
                found.append(name)
    return found


def _head_parameter_names(model: nn.Module, new_keys: set[str]) -> set[str]:
    prefixes = tuple(m + "." for m in _head_modules(model, new_keys))
    return {n for n, _ in model.named_parameters() if n.startswith(prefixes)}


def _linear_leaf_names(model: nn.Module) -> set[str]:
    out = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            out.add(name.split(".")[-1])
    return out


def lora_target_modules(model: nn.Module, writes_text: bool = False) -> list[str]:
    """The attention projections of a known architecture; with `writes_text`, its MLP projections too."""
    leaves = _linear_leaf_names(model)
    for _, names in LORA_TARGETS:
        if all(n in leaves for n in names):
            mlp = next((m for m in LORA_MLP_TARGETS if all(n in leaves for n in m)), ()) if writes_text else ()
            return list(names) + [n for n in mlp if n not in names]
    known = "; ".join(f"{arch}: {','.join(names)}" for arch, names in LORA_TARGETS)
    shown = ", ".join(sorted(leaves - set(HEAD_NAMES))[:8])
    raise ModelError(
        f"strategy lora does not fit {type(model).__name__}: no known attention projections ({known}); "
        f"set strategy.lora_target_modules to some of its Linear layers: {shown}"
    )


def pin_eval_mode(module: nn.Module) -> None:
    """Keep a frozen module in eval mode (no dropout) even when the model around it is put in train mode.

    Frozen layers are then a fixed function of their input: the same output every epoch, which is what
    makes their output cacheable (models/feature_cache.py) and the cached and recomputed runs identical.
    """
    module.train(False)
    for sub in module.modules():
        sub.train = types.MethodType(lambda self, mode=True: nn.Module.train(self, False), sub)


def _freeze_bottom(model: nn.Module, frozen: int, strategy: str, details: dict[str, Any]) -> None:
    """Embeddings and the bottom `frozen` transformer layers: no gradients, kept in eval mode (cacheable)."""
    layers = find_layers(model)
    if frozen >= len(layers):
        raise ModelError(
            f"strategy {strategy} with frozen_layers={frozen} leaves no transformer layer to train: the model has "
            f"{len(layers)} layers; use strategy.frozen_layers below {len(layers)}, or strategy head"
        )
    for module in _embedding_modules(model) + [layers[i] for i in range(frozen)]:
        for p in module.parameters():
            p.requires_grad_(False)
        pin_eval_mode(module)
    details.update(frozen_layers=frozen, of_layers=len(layers))


def apply_strategy(model: nn.Module, config: StrategyConfig, new_keys: set[str],
                   peft_task_type: str = "SEQ_CLS", writes_text: bool = False) -> tuple[nn.Module, StrategyInfo]:
    """Set which parameters train; may return a wrapped (PEFT) model. `peft_task_type` is the task's (tasks/);
    `writes_text` (the task's trait): LoRA adapts the MLP projections too."""
    details: dict[str, Any] = {}
    if config.name in ("full", "fewshot"):  # fewshot trains the encoder (its head is fitted, models/sentence.py)
        for p in model.parameters():
            p.requires_grad_(True)
        if config.name == "fewshot" and config.fewshot.freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
            details["frozen"] = "token embeddings"
        if config.name == "fewshot" and config.frozen_layers:  # backward stops above them: cheaper steps
            _freeze_bottom(model, config.frozen_layers, "fewshot", details)
    elif config.name == "head":
        head = _head_parameter_names(model, new_keys)
        for n, p in model.named_parameters():
            p.requires_grad_(n in head)
        details["trained"] = sorted({n.rsplit(".", 1)[0] for n in head})
        with contextlib.suppress(ModelError):  # an unusual model keeps dropout in its frozen body
            layers = find_layers(model)
            for module in _embedding_modules(model) + list(layers):
                pin_eval_mode(module)
            details["frozen_layers"] = len(layers)
    elif config.name == "freeze":
        for p in model.parameters():
            p.requires_grad_(True)
        frozen = config.frozen_layers if config.frozen_layers is not None else len(find_layers(model)) // 2
        _freeze_bottom(model, frozen, "freeze", details)
    elif config.name == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        targets = config.lora_target_modules or lora_target_modules(model, writes_text)
        leaves = _linear_leaf_names(model)
        missing = [t for t in targets if t not in leaves]
        if missing:
            raise ModelError(f"strategy.lora_target_modules {missing} are not Linear layers of {type(model).__name__}; choose from: {', '.join(sorted(leaves)[:12])}")
        head = sorted({m.split(".")[-1] for m in _head_modules(model, new_keys)})  # PEFT matches by name suffix
        lora = LoraConfig(
            task_type=TaskType[peft_task_type], r=config.lora_r, lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout, target_modules=targets, modules_to_save=head or None,
        )
        with warnings.catch_warnings():  # peft asks transformers a deprecated question: not the user's concern
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(model, lora)
        details.update(target_modules=",".join(targets), r=config.lora_r, alpha=config.lora_alpha)
    else:  # pragma: no cover - the config only admits the names above
        raise ModelError(f"unknown strategy {config.name}")
    total, trainable = count_parameters(model)
    if trainable == 0:
        raise ModelError(f"strategy {config.name} leaves nothing to train on {type(model).__name__}; choose another strategy")
    return model, StrategyInfo(config.name, total, trainable, details)


def search_space(strategy: str, layers: int) -> dict[str, dict[str, Any]]:
    """The hyperparameters `thrifty tune` searches when the user gives no space: the knobs that matter for
    `strategy` on a model of `layers` transformer layers (section.key -> {low, high[, log]} or {choices})."""
    traits = strategy_traits(strategy)
    low, high = traits.learning_rates
    space: dict[str, dict[str, Any]] = {
        "train.learning_rate": {"low": low, "high": high, "log": True},
        "train.epochs": {"low": 1, "high": 4},
        "train.batch_size": {"choices": [16, 32, 64]},
        "train.weight_decay": {"low": 0.0, "high": 0.1},
        "train.warmup_ratio": {"low": 0.0, "high": 0.2},
        "train.dropout": {"low": 0.0, "high": 0.3},
    }
    own = {"strategy.frozen_layers": {"low": 1, "high": layers - 1} if layers > 1 else None,
           "strategy.lora_r": {"choices": [4, 8, 16, 32]},
           "strategy.lora_alpha": {"choices": [8, 16, 32, 64]}}
    space.update({key: own[key] for key in traits.tuned if own[key] is not None})
    if traits.trains_pairs:  # a few examples make one or two batches an epoch: more epochs, smaller batches
        space.update({"train.epochs": {"low": 4, "high": 24}, "train.batch_size": {"choices": [8, 16, 32]}})
    return space
