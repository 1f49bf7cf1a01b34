"""Load a finished run's model and predict: sorted batches for speed, results in input order."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from thrifty.data.prepare import normalise_text
from thrifty.config import DataConfig
from thrifty.data.tokenize import encode
from thrifty.errors import RunDirError
from thrifty.evaluation.evaluate import predict_logits, softmax
from thrifty.models import first_token
from thrifty.models.loading import load_classifier, load_tokenizer, quiet_transformers
from thrifty.training.run_dir import require_complete_run


@dataclass
class Predictor:
    model: Any
    tokenizer: Any
    label_names: list[str]
    max_length: int
    text_column: str
    data_config: DataConfig  # the normalisation used in training, applied to new texts too
    device: torch.device

    @classmethod
    def load(cls, run_dir: str | Path, device: Optional[str] = None) -> "Predictor":
        run = require_complete_run(run_dir)
        model_dir = run / "model"
        meta_path = model_dir / "thrifty.json"
        if not meta_path.exists():
            raise RunDirError(f"{model_dir} lacks thrifty.json; it was not saved by thrifty train")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        from thrifty.config import config_from_dict, load_yaml

        config = config_from_dict(load_yaml(run / "config.yaml"))
        quiet_transformers()
        tokenizer = load_tokenizer(str(model_dir))
        if meta["format"] == "lora_adapter":
            from peft import PeftModel

            base, _ = load_classifier(meta["base_model"], meta["labels"], pad_token_id=tokenizer.pad_token_id)
            model = PeftModel.from_pretrained(base, str(model_dir))
        else:
            from transformers import AutoModelForSequenceClassification

            model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), use_safetensors=True)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model.to(dev).eval()
        first_token.enable(model)  # same logits, less work
        return cls(model, tokenizer, meta["labels"], int(meta["max_length"]), meta.get("text_column", "text"), config.data, dev)

    def logits(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        clean = [normalise_text(t[: self.data_config.max_chars], self.data_config) for t in texts]
        ids = encode(self.tokenizer, clean, self.max_length)
        return predict_logits(self.model, ids, self.tokenizer.pad_token_id, batch_size, self.device)

    def predict(self, texts: Sequence[str], batch_size: int = 128) -> list[dict[str, Any]]:
        if not texts:
            return []
        probs = softmax(self.logits(texts, batch_size))
        out = []
        for row in probs:
            best = int(row.argmax())
            out.append({"label": self.label_names[best], "score": float(row[best]),
                        "probabilities": {name: float(p) for name, p in zip(self.label_names, row)}})
        return out
