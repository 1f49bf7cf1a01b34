"""Load a model folder (a finished run, or its `model/` folder copied anywhere) and predict.

Everything prediction must repeat of training comes from the folder's manifest (`thrifty.json`): task, labels,
normalisation, lowercasing, max_chars, max_length, label alignment. Sorted batches for speed, results in input
order. Classification gives a label, its score and every label's probability; token classification gives the
entities of each text with type, text, character start/end and score.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from thrifty.config import BACKENDS, DataConfig
from thrifty.errors import ModelError
from thrifty.data.prepare import normalise_text
from thrifty.data.tagged import normalise_word
from thrifty.data.tokenize import encode
from thrifty.evaluation.evaluate import predict_logits, softmax
from thrifty.models import first_token
from thrifty.models.loading import AUTO_CLASSES, load_classifier, load_tokenizer, quiet_transformers
from thrifty.models.precision import has_fast_bf16, prediction_backend
from thrifty.runs.manifest import SENTENCE_FORMAT, model_folder, read_manifest
from thrifty.tasks import Encoded, get_task
from thrifty.tasks.token_classification import align_first_subtokens, group_entities
from thrifty.inference.lanes import check_lanes
from thrifty.traits import TaskTraits, task_traits

PREDICT_MIN_FILL = 0.7  # a pass ends before a text shorter than 0.7x its longest (data.batching.sorted_batches): on
#                        random 64-text batches of SST-2 test, texts/s 1.6x PyTorch's one padded pass, 1.35x int8's (0.5-0.7
#                        within noise of each other; 0.8 lower)


def _data_config(manifest: dict[str, Any], folder: Path) -> DataConfig:
    """The preprocessing recorded in the manifest (or, for a 0.1 model, in its run's config.yaml)."""
    pre = manifest.get("preprocessing")
    if pre is None:
        from thrifty.config import config_from_dict, load_yaml

        return config_from_dict(load_yaml(folder.parent / "config.yaml")).data
    keys = {"unicode_normalization", "lowercase", "max_chars", "text_column", "label_column", "tokens_column", "tags_column"}
    return DataConfig(**{k: v for k, v in pre.items() if k in keys})


def _max_length(manifest: dict[str, Any]) -> int:
    """Tokens read per text when predicting: the manifest's predict_max_length (else the training max_length)."""
    pre = manifest.get("preprocessing", {})
    return int(pre.get("predict_max_length") or pre.get("max_length") or manifest["max_length"])


def prediction_device(device: Optional[str] = None) -> torch.device:
    """The device a PyTorch backend predicts on: the one asked for, else a GPU when there is one."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def default_lanes(task: str, device: torch.device) -> int:
    """Forward passes at once when none are asked for: one per CPU thread for classification (each pass on one thread;
    on 2 cores, SST-2 test: 1.3-1.45x the texts/s of one pass on both threads, every backend), else 1 (a GPU runs
    one pass at a time anyway; token classification runs one pass on every thread)."""
    return torch.get_num_threads() if task_traits(task).parallel_passes and device.type == "cpu" else 1


def require_bf16(device: torch.device) -> None:
    if not has_fast_bf16(device):
        raise ModelError(f"this {device.type.upper()} has no bf16 instructions (AMX or AVX512-BF16 on a CPU), so "
                         "--backend torch-bf16 would run slower than fp32; use --backend torch or onnx-int8")


@dataclass
class Predictor:
    model: Any
    tokenizer: Any
    label_names: list[str]
    max_length: int
    task: str
    data_config: DataConfig  # the normalisation used in training, applied to new texts too
    manifest: dict[str, Any]
    folder: Path
    device: torch.device
    lanes: int = 1  # classification passes running at once (load's `lanes`)...
    lane_threads: int = 1  # ...each on this many threads (with one lane, torch's own count instead)
    backend: str = "torch"  # what it predicts with (load's `backend`, `auto` resolved)...
    backend_reason: str = "asked for"  # ...and why
    _lane_pool: Optional[ThreadPoolExecutor] = field(default=None, repr=False)
    _tokenizer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def traits(self) -> TaskTraits:
        """What its task does (traits.py): labels per text, tags per word, ..."""
        return task_traits(self.task)

    @property
    def text_column(self) -> str:
        return self.data_config.text_column

    @classmethod
    def load(cls, path: str | Path, device: Optional[str] = None, backend: str = "auto", lanes: Optional[int] = 1,
             threads: Optional[int] = None) -> "Predictor":
        """`backend`: auto (torch-bf16 where the hardware has bf16 and the model's labels agreed with fp32's on 99.5% of
        its validation set when it was trained, else torch: models/precision.py), torch, torch-bf16 (the same model with bf16 weights: on SST-2 test 2.16x fp32's texts/s offline, 1.68x
        under load, on a CPU with AMX, 99.8% of its labels; docs/serving.md), onnx (MODEL_DIR/onnx/model.onnx) or onnx-int8
        (model.int8.onnx), both from `thrifty export`.
        `lanes`: classification passes run at once, each on `threads` / lanes threads (None: default_lanes;
        `threads`: torch's thread count now). The process's own thread count is left as it is."""
        folder = model_folder(path)
        manifest = read_manifest(folder)
        task = manifest["task"]
        traits = task_traits(task)
        if traits.writes_text:
            raise ModelError(f"{folder} writes text (task {task}): it has no labels to predict; use thrifty generate "
                             f"{folder} --prompt \"...\" (or train a classifier from it with --model.name {folder})")
        if not traits.serves:
            raise ModelError(f"{folder} is a language model adapted by thrifty adapt ({task}): it has no labels to predict; "
                             f"train a classifier from it with --model.name {folder}")
        if backend not in BACKENDS:
            raise ModelError(f"backend {backend!r} is not one of: {', '.join(BACKENDS)}")
        dev = torch.device("cpu") if backend.startswith("onnx") else prediction_device(device)
        reason = "asked for"
        if backend == "auto":
            backend, reason = prediction_backend(manifest, dev)
        lanes = default_lanes(task, dev) if lanes is None else lanes
        check_lanes(lanes, task, folder)
        lane_threads = max(1, (threads or torch.get_num_threads()) // lanes)
        head = get_task(task).head
        quiet_transformers()
        tokenizer = load_tokenizer(str(folder))
        if backend.startswith("onnx"):
            from thrifty.inference.onnx_backend import load_onnx_classifier

            if not traits.predicts_labels:
                raise ModelError(f"the ONNX backend covers classification models; {folder} is {task}: use --backend torch")
            model = load_onnx_classifier(folder, "int8" if backend == "onnx-int8" else None, len(manifest["labels"]),
                                         threads=lane_threads)
            return cls(model, tokenizer, list(manifest["labels"]), _max_length(manifest), task,
                       _data_config(manifest, folder), manifest, folder, dev, lanes, lane_threads, backend, reason)
        if manifest["format"] == SENTENCE_FORMAT:  # strategy fewshot: encoder + mean pooling + the fitted head
            from thrifty.models.sentence import SentenceClassifier

            model = SentenceClassifier.from_pretrained(folder, list(manifest["labels"]), with_head=True)
        elif manifest["format"] == "lora_adapter":
            from peft import PeftModel

            base = manifest["base_model"]
            base_name = base["name"] if isinstance(base, dict) else base
            model, _ = load_classifier(base_name, manifest["labels"], pad_token_id=tokenizer.pad_token_id, head=head)
            model = PeftModel.from_pretrained(model, str(folder))
        else:
            import transformers

            model = getattr(transformers, AUTO_CLASSES[head]).from_pretrained(str(folder), use_safetensors=True)
        if backend == "torch-bf16":
            require_bf16(dev)
            model.to(torch.bfloat16)  # logits come back as float32 (predict_logits, word_probabilities)
        model.to(dev).eval()
        first_token.enable(model)  # same logits, less work (sequence classifiers only)
        return cls(model, tokenizer, list(manifest["labels"]), _max_length(manifest), task,
                   _data_config(manifest, folder), manifest, folder, dev, lanes, lane_threads, backend, reason)

    def _lanes(self) -> Optional[ThreadPoolExecutor]:
        """The lanes' threads, started once, each running torch on `lane_threads` threads. torch keeps a thread
        count per thread (OpenMP's), fixed the first time a thread asks; the caller's own count is put back."""
        if self.lanes > 1 and self._lane_pool is None:
            own = torch.get_num_threads()
            started = threading.Barrier(self.lanes + 1)

            def start_lane() -> None:
                torch.get_num_threads()  # this thread's count is now fixed, then set for it alone
                torch.set_num_threads(self.lane_threads)
                started.wait()

            pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="thrifty-lane")
            for _ in range(self.lanes):  # a task per thread, all waiting at the barrier: every lane starts now
                pool.submit(start_lane)
            started.wait()
            torch.set_num_threads(own)  # for threads started later (set_num_threads also sets a process-wide count)
            self._lane_pool = pool
        return self._lane_pool

    def close(self) -> None:
        """Let the lanes' threads end once their queued passes are done (a server swapping models calls this)."""
        pool, self._lane_pool = self._lane_pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    # ---- classification
    def logits(self, texts: Sequence[str], batch_size: int = 128, min_fill: Optional[float] = None) -> np.ndarray:
        clean = [normalise_text(t[: self.data_config.max_chars], self.data_config) for t in texts]
        with self._tokenizer_lock:  # a fast tokenizer sets its truncation per call: one call at a time
            ids = encode(self.tokenizer, clean, self.max_length)
        return predict_logits(self.model, ids, self.tokenizer.pad_token_id, batch_size, self.device,
                              min_fill=PREDICT_MIN_FILL if min_fill is None else min_fill, lanes=self._lanes())

    def predict(self, texts: Sequence[str], batch_size: int = 128) -> list[dict[str, Any]]:
        """Raw texts -> one result per text (a label, or the entities found in it)."""
        if not texts:
            return []
        if self.traits.tags_words:
            return self.entities(texts, batch_size=batch_size)
        probs = softmax(self.logits(texts, batch_size))
        out = []
        for row in probs:
            best = int(row.argmax())
            out.append({"label": self.label_names[best], "score": float(row[best]),
                        "probabilities": {name: float(p) for name, p in zip(self.label_names, row)}})
        return out

    def label_ids(self, split) -> np.ndarray:
        """The label id it gives each text of a labelled split, or each word of a tagged one (in order)."""
        if self.traits.tags_words:
            index = {name: i for i, name in enumerate(self.label_names)}
            return np.array([index[tag] for tags, _ in self.word_tags(split.words) for tag in tags], dtype=np.int64)
        return self.logits(split.texts).argmax(axis=1)

    # ---- token classification
    def word_tags(self, sentences: Sequence[Sequence[str]], batch_size: int = 128) -> list[tuple[list[str], list[float]]]:
        """Pre-split words -> a tag and its probability per word (O for a word with no token or past max_length)."""
        task = get_task(self.task)
        words = [[normalise_word(w, self.data_config) for w in s] for s in sentences]
        enc = self.tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.max_length,
                             return_attention_mask=False)
        return self._tags(task, enc, [list(range(len(s))) for s in words], batch_size)

    def _tags(self, task, enc, words: list[list[int]], batch_size: int) -> list[tuple[list[str], list[float]]]:
        """A tag and its probability for each of `words[i]` (word ids of example i, in order) of each example."""
        ids, targets, firsts = [], [], []
        for i in range(len(words)):
            labels, first = align_first_subtokens(enc.word_ids(i))
            ids.append(list(enc["input_ids"][i]))
            targets.append(labels)
            firsts.append(first)
        encoded = Encoded(ids, targets, {"word_index": firsts})
        probs, _, _ = task.word_probabilities(self.model, encoded, self.tokenizer.pad_token_id, batch_size, self.device)
        out = []
        for i, word_ids in enumerate(words):
            position = {w: k for k, w in enumerate(word_ids)}
            tags, scores = ["O"] * len(word_ids), [1.0] * len(word_ids)
            for w, row in zip(firsts[i], probs[i]):
                tags[position[w]], scores[position[w]] = self.label_names[int(row.argmax())], float(row.max())
            out.append((tags, scores))
        return out

    def entities(self, texts: Optional[Sequence[str]] = None, *, tokens: Optional[Sequence[Sequence[str]]] = None,
                 batch_size: int = 128) -> list[dict[str, Any]]:
        """Entities per input: raw texts (split into words by the model's own pre-tokenizer, with character offsets
        into the text as given) or pre-tokenised word lists (offsets into the words joined by single spaces)."""
        task = get_task(self.task)
        results = []
        if tokens is not None:
            for words, (tags, scores) in zip(tokens, self.word_tags(tokens, batch_size)):
                starts, position = [], 0
                for w in words:
                    starts.append(position)
                    position += len(w) + 1
                text = " ".join(words)
                results.append({"text": text, "tokens": list(words), "tags": tags, "entities": [
                    {"type": kind, "text": text[starts[a]: starts[b] + len(words[b])], "start": starts[a],
                     "end": starts[b] + len(words[b]), "score": round(score, 4), "first_token": a, "last_token": b}
                    for kind, a, b, score in group_entities(tags, scores)]})
            return results
        texts = list(texts or [])
        shown = [t[: self.data_config.max_chars] for t in texts]
        model_texts = [t.lower() if self.data_config.lowercase else t for t in shown]  # same length: offsets hold
        enc = self.tokenizer(model_texts, truncation=True, max_length=self.max_length, return_offsets_mapping=True,
                             return_attention_mask=False)
        spans_per_text = []
        for i in range(len(texts)):
            spans: dict[int, list[int]] = {}
            for w, (start, end) in zip(enc.word_ids(i), enc["offset_mapping"][i]):
                if w is not None:
                    span = spans.setdefault(w, [start, end])
                    span[1] = end
            spans_per_text.append(spans)
        tagged = self._tags(task, enc, [sorted(spans) for spans in spans_per_text], batch_size)
        for text, by_word, (tags, scores) in zip(shown, spans_per_text, tagged):
            spans = [by_word[w] for w in sorted(by_word)]
            results.append({"text": text, "entities": [
                {"type": kind, "text": text[spans[a][0]: spans[b][1]], "start": spans[a][0], "end": spans[b][1],
                 "score": round(score, 4)} for kind, a, b, score in group_entities(tags, scores)]})
        return results


def labelled_texts(predictor: Predictor, data: str, text_column: Optional[str] = None,
                   label_column: Optional[str] = None, role: str = "labelled"
                   ) -> tuple[list[str], list[int], dict[str, int], str]:
    """A labelled file read and cleaned as the model's training data was: its texts, their label ids in the model's
    order, the cleaning counts and the file's source name. A label the model does not know is refused."""
    split, counts, source = labelled_split(predictor, data, text_column, label_column, role)
    return split.texts, split.labels, counts, source


def labelled_split(predictor: Predictor, data: str, text_column: Optional[str] = None,
                   label_column: Optional[str] = None, role: str = "labelled") -> tuple[Any, dict[str, Any], str]:
    """A labelled (or tagged) file read by the model's task as its training data was read, the columns as given or as
    in training: (the split, its targets in the model's label order; the counts; the file's source name)."""
    import dataclasses

    config = dataclasses.replace(predictor.data_config, text_column=text_column or predictor.data_config.text_column,
                                 label_column=label_column or predictor.data_config.label_column)
    return get_task(predictor.task).read_labelled(data, config, predictor.label_names, role)


def run_data(run_dir: Path):
    """(the prepared data, the config) of a finished run, rebuilt from its config.yaml: the same files, cleaning and
    seeded split it trained on."""
    from thrifty.config import config_from_dict, load_yaml
    from thrifty.data.prepare import prepare_data

    config = config_from_dict(load_yaml(Path(run_dir) / "config.yaml"))
    return prepare_data(config.data, config.train.seed), config


def run_splits(predictor: Predictor, instead: str, run: Optional[Path] = None) -> tuple[list[str], list[str], list[int]]:
    """Training texts, validation texts and validation label ids (in the model's label order) of the run the model
    folder belongs to (or `run`, e.g. a registered version's run), rebuilt from its config.yaml: the same files,
    cleaning and seeded split. `instead` names what to give when the folder has left its run behind."""
    from thrifty.errors import ConfigError

    run = Path(run) if run is not None else predictor.folder.parent
    if not (run / "config.yaml").exists():
        raise ConfigError(f"{predictor.folder} is not inside its run folder, so its training and validation data are "
                          f"unknown; give {instead}")
    prepared, _ = run_data(run)
    index = {name: i for i, name in enumerate(predictor.label_names)}
    labels = [index[prepared.label_names[y]] for y in prepared.validation.labels]
    return prepared.train.texts, prepared.validation.texts, labels
