"""The manifest of a model folder (`model/thrifty.json`): what makes the folder usable on its own.

It records the thrifty version and the manifest format, the task and its labels, the preprocessing that
prediction must repeat (normalisation, lowercasing, max_chars, max_length, label alignment, column names),
the base model with a hash of its weights, the parent model of a warm start, a fingerprint of the training
data, and the final metrics. `thrifty predict` and `thrifty evaluate` read only this folder, so a copied
`model/` works after its run folder is gone; a warm start (`model.name: runs/old`) reads it to map labels.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Optional

from thrifty.errors import ModelError, RunDirError
from thrifty.runs.run_dir import read_status
from thrifty.traits import task_traits

MANIFEST_FILE = "thrifty.json"
# `format` of a model folder: "full" (a Hugging Face classifier), "lora_adapter" (an adapter over its base model),
# "sentence_embedding" (strategy fewshot: an encoder, mean pooling and a head file; models/sentence.py).
SENTENCE_FORMAT = "sentence_embedding"
MANIFEST_VERSION = 1  # raise when a field changes meaning; readers refuse manifests newer than they know


def model_folder(path: str | Path) -> Path:
    """A finished run's `model/` folder, or the model folder itself. An unfinished run is refused."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise RunDirError(f"model folder not found: {folder}; give a finished run folder or its model/ folder")
    if (folder / "run.json").exists() and not (folder / MANIFEST_FILE).exists():
        status = read_status(folder).get("status")
        if status != "complete" or not (folder / "model").is_dir():
            hint = f"; resume it with: thrifty train --resume {folder}" if status in ("running", "interrupted", "failed") else ""
            raise RunDirError(f"{folder} is not a finished thrifty run (status: {status or 'unknown'}){hint}")
        folder = folder / "model"
    if not (folder / MANIFEST_FILE).exists():
        raise RunDirError(f"{folder} has no {MANIFEST_FILE}; give a run folder or a model/ folder saved by thrifty train")
    return folder


def is_thrifty_model(path: str | Path) -> bool:
    """A folder thrifty saved (a run, or its model/ folder): what `model.name` takes for a warm start."""
    folder = Path(path).expanduser()
    return folder.is_dir() and ((folder / MANIFEST_FILE).exists() or (folder / "run.json").exists())


def read_manifest(folder: str | Path, task: Optional[str] = None) -> dict[str, Any]:
    """The manifest of a model folder, refused when it is newer than this thrifty or is for another task."""
    from thrifty.version import __version__

    path = Path(folder) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}; the model folder is damaged") from None
    version = manifest.get("manifest_version", 0)  # 0: written before manifests had a version (thrifty 0.1)
    if version > MANIFEST_VERSION:
        raise ModelError(f"{folder} was saved by thrifty {manifest.get('thrifty_version', '?')} (manifest format {version}); "
                         f"this is thrifty {__version__}, which reads format {MANIFEST_VERSION} and older: upgrade thrifty")
    manifest.setdefault("task", "classification")
    if task is not None and manifest["task"] != task:
        raise ModelError(f"{folder} is a {manifest['task']} model and this is a {task} run; warm-start from a "
                         f"{task} model, or set task: {manifest['task']}")
    return manifest


def preprocessing(data_config, max_length: int, predict_max_length: int, task: str) -> dict[str, Any]:
    """The manifest's `preprocessing`: what prediction must repeat of a model's data config (a DataConfig)."""
    return {"unicode_normalization": data_config.unicode_normalization, "lowercase": data_config.lowercase,
            "max_chars": data_config.max_chars, "max_length": max_length, "predict_max_length": predict_max_length,
            "label_alignment": task_traits(task).label_alignment,
            "text_column": data_config.text_column, "label_column": data_config.label_column,
            "tokens_column": data_config.tokens_column, "tags_column": data_config.tags_column}


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    from thrifty.version import __version__

    full = {"manifest_version": MANIFEST_VERSION, "thrifty_version": __version__, **manifest}
    (folder / MANIFEST_FILE).write_text(json.dumps(full, indent=2, default=str) + "\n", encoding="utf-8")


def weights_sha256(folder: str | Path) -> Optional[str]:
    """A hash of a model folder's safetensors files (what a later run can check it starts from the same base)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    h = hashlib.sha256()
    for file in files:
        h.update(file.name.encode())
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def data_fingerprint(texts: Iterable[Any], labels: Iterable[Any]) -> str:
    """A hash of the training examples as trained on (after cleaning): same hash, same data. A text is a string, or
    an instruction example (a dict: prompt/completion, messages)."""
    h = hashlib.sha256()
    for text, label in zip(texts, labels):
        if not isinstance(text, str):
            text = json.dumps(text, sort_keys=True, ensure_ascii=False)
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
        h.update(json.dumps(label).encode())
        h.update(b"\n")
    return h.hexdigest()
