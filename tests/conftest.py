"""Shared fixtures: real data paths, a tiny BERT for fast mechanism tests, deliberate thread counts."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded in tests
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Caches written by tests (token ids, converted models) go to a throwaway folder, not the user's ~/.cache.
os.environ.setdefault("THRIFTY_CACHE_DIR", tempfile.mkdtemp(prefix="thrifty-test-cache-"))

import torch  # noqa: E402

# Two cores: one process, two threads. Tests never run training processes side by side.
torch.set_num_threads(int(os.environ.get("THRIFTY_TEST_THREADS", "2")))

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data").resolve()


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared/data is needed for real-data tests)")
    return path


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from thrifty.models.loading import default_model_dir

    return default_model_dir()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, minilm_dir) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's real tokenizer, deterministically initialised."""
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    BertForSequenceClassification(config).bert.save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm_dir / name).exists():
            shutil.copy(minilm_dir / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, minilm_dir) -> Path:
    """A 2-layer Llama-architecture decoder (no pad token, as real decoders ship)."""
    from transformers import LlamaConfig, LlamaModel

    folder = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=128,
                         bos_token_id=101, eos_token_id=102, pad_token_id=None)
    torch.manual_seed(0)
    LlamaModel(config).save_pretrained(folder, safe_serialization=True)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    tok.save_pretrained(folder)
    return folder


CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} [SEP] {% endfor %}"
                 "{% if add_generation_prompt %}<assistant> {% endif %}")
@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory, minilm_dir) -> Path:
    """A 2-layer, 32-wide T5 with MiniLM's tokenizer, seeded: the seq2seq tests' model (and its golden losses')."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny-t5")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=2, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


WORDS = ["alpha", "beta", "gamma", "delta"]


def naming_rows(n: int = 120) -> list[dict]:
    """Prompt/completion rows a tiny decoder learns in seconds: the answer is the word in the prompt."""
    return [{"prompt": f"item {i} is {WORDS[i % 4]}. name:", "completion": f" {WORDS[i % 4]}"} for i in range(n)]


@pytest.fixture(scope="session")
def chat_llama(tiny_llama, tmp_path_factory) -> Path:
    """The tiny Llama with an end-of-sequence token and a chat template, as instruct models ship."""
    from thrifty.models.loading import load_tokenizer

    folder = tmp_path_factory.mktemp("chat-llama")
    for f in tiny_llama.iterdir():
        shutil.copy(f, folder / f.name)
    tokenizer = load_tokenizer(str(tiny_llama))
    tokenizer.eos_token = "[SEP]"
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def sft_run(chat_llama, tmp_path_factory) -> Path:
    """A finished SFT run (full fine-tuning) of the tiny chat Llama on naming_rows: it answers with the word."""
    import json

    import thrifty

    root = tmp_path_factory.mktemp("sft-run")
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in naming_rows(160)))
    config = {"task": "causal_lm", "model": {"name": str(chat_llama)}, "data": {"train": str(train)},
              "train": {"epochs": 6, "batch_size": 8, "learning_rate": 1e-2, "num_threads": 2},
              "generate": {"max_new_tokens": 3}, "tracking": {"tensorboard": False, "energy": False}}
    return thrifty.train(config, output=root / "run", progress=False).run_dir


def train_pos_neg(root: Path, model: Path, positive: str, negative: str, per_label: int, **train) -> Path:
    """A finished pos/neg run of `model` (a base model or a run to warm-start from) on `per_label` texts per label
    made from two templates ({i} numbers them); returns the run folder."""
    import csv

    import thrifty

    data = root / "train.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows([(positive.format(i=i), "pos") for i in range(per_label)] +
                         [(negative.format(i=i), "neg") for i in range(per_label)])
    config = tiny_config(model, data, **train)
    config["tracking"]["tensorboard"] = False
    thrifty.train(config, output=root / "run", progress=False)
    return root / "run"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_bert):
    """A finished classification run of the tiny BERT (pos/neg): for prediction backends and the server."""
    return train_pos_neg(tmp_path_factory.mktemp("served"), tiny_bert, "I loved this wonderful film number {i}",
                         "I hated this terrible film number {i}", 30, epochs=3, learning_rate=3e-3)


@pytest.fixture
def small_csv(tmp_path) -> Path:
    """A tiny, clean two-class data set with easy-to-learn texts."""
    rows = ["text,label"]
    for i in range(40):
        rows.append(f"I loved this wonderful film number {i},pos")
        rows.append(f"I hated this terrible film number {i},neg")
    path = tmp_path / "small.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def tiny_config(model_dir: Path, data: Path, **train) -> dict:
    """A config dict for a fast run of the tiny model."""
    settings = {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "seed": 7, "num_threads": 2}
    settings.update(train)
    return {
        "model": {"name": str(model_dir)},
        "data": {"train": str(data), "validation_fraction": 0.25},
        "train": settings,
        "tracking": {"tensorboard": True, "energy": False},  # codecarbon's start-up second, saved in most tests
    }


@pytest.fixture(scope="session")
def warm_run(tmp_path_factory, tiny_run):
    """tiny_run fine-tuned again on more texts: same task and labels, other weights, tiny_run's model as its parent."""
    return train_pos_neg(tmp_path_factory.mktemp("warm"), tiny_run, "What a wonderful, lovely story {i}",
                         "What a terrible, boring story {i}", 20, epochs=1, learning_rate=1e-3, seed=3)


@pytest.fixture
def store(tmp_path) -> str:
    """A fresh local registry store (SQLite, artifacts beside it)."""
    return f"sqlite:///{tmp_path / 'registry' / 'mlflow.db'}"


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL cluster for the session (tests/postgres.py): the prediction log, a shared study."""
    from tests.postgres import PostgresCluster

    cluster = PostgresCluster().init()
    cluster.start()
    yield cluster
    cluster.remove()
