"""A sentence-embedding classifier: encoder -> mean pooling -> L2 normalisation -> a linear head.

This is the model of `strategy: fewshot` (SetFit's shape): the encoder is trained so that texts of one class
have similar embeddings, and the head is a logistic regression on those embeddings (fitted before each
evaluation, tasks/fewshot.py). Sentence-transformers models
such as all-MiniLM-L6-v2 were pre-trained with exactly this pooling, which is why a few examples suffice.

Saved as a plain Hugging Face encoder folder (config.json + model.safetensors, loadable by AutoModel and by
`model.name` of any later run) plus the head in `sentence_head.safetensors`; the manifest says
`format: sentence_embedding` (runs/manifest.py). Nothing is pickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from thrifty.errors import ModelError

HEAD_FILE = "sentence_head.safetensors"
# Architectures that read text left to right only: their mean-pooled states are not sentence embeddings.
DECODER_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


@dataclass
class SentenceOutput:
    logits: torch.Tensor  # the head's scores, [batch, labels]
    embeddings: torch.Tensor  # unit-length sentence embeddings, [batch, hidden]


CHUNK_ROWS = 8  # rows per length chunk: small enough to cut padding, large enough to keep matmuls efficient
CHUNK_SAVING = 0.75  # chunk only when that computes at most this share of the batch's padded tokens


def length_chunks(lengths: torch.Tensor) -> Optional[list[tuple[torch.Tensor, int]]]:
    """Rows sorted by length in chunks of CHUNK_ROWS, each with its longest length; None when chunking would save
    little (a batch already of similar lengths)."""
    order = torch.argsort(lengths, stable=True)
    chunks = [(rows, int(lengths[rows].max())) for rows in torch.split(order, CHUNK_ROWS)]
    chunked = sum(len(rows) * length for rows, length in chunks)
    return chunks if chunked <= CHUNK_SAVING * len(lengths) * int(lengths.max()) else None


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the real tokens' states (padding excluded): how sentence-transformers pools."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class SentenceClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, num_labels: int):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config  # carries num_labels/id2label like any Hugging Face classifier's config
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.zeros_(self.head.weight)  # replaced by the fitted head before it is ever used
        nn.init.zeros_(self.head.bias)

    base_model_prefix = "encoder"

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def embed(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
              token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Unit-length sentence embeddings. A batch of mixed lengths is encoded in chunks of similar length, each
        cut to its own longest row: each row's embedding is the same (its attention never sees padding), the
        padding computed is not. fewshot's class-balanced batches cannot be grouped by length, and on Banking77
        two thirds of their tokens were padding."""
        if attention_mask is not None and input_ids.shape[0] > CHUNK_ROWS:
            chunks = length_chunks(attention_mask.sum(1))
            if chunks is not None:
                parts = [self._embed(input_ids[rows, :length], attention_mask[rows, :length],
                                     None if token_type_ids is None else token_type_ids[rows, :length])
                         for rows, length in chunks]
                order = torch.cat([rows for rows, _ in chunks])  # row of the batch -> position in the chunks
                return torch.cat(parts)[torch.argsort(order)]
        return self._embed(input_ids, attention_mask, token_type_ids)

    def _embed(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
               token_type_ids: Optional[torch.Tensor]) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        if attention_mask is not None:  # (without one, e.g. when FLOPs are counted on the meta device: every token)
            kwargs["attention_mask"] = attention_mask
        hidden = self.encoder(input_ids=input_ids, **kwargs).last_hidden_state
        pooled = mean_pool(hidden, attention_mask) if attention_mask is not None else hidden.mean(1)
        return nn.functional.normalize(pooled.float(), dim=-1)

    def logits_unchunked(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The logits without length chunks: the one path a graph export (ONNX) can trace, as chunking depends on
        the lengths in each batch. Same logits as forward()."""
        return self._head(self._embed(input_ids, attention_mask, None))

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, **_: Any) -> SentenceOutput:
        embeddings = self.embed(input_ids, attention_mask, token_type_ids)
        return SentenceOutput(logits=self._head(embeddings), embeddings=embeddings)

    def _head(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The head on the (fp32, normalised) embeddings, in the head's own dtype (bf16 weights: --backend torch-bf16)."""
        return self.head(embeddings.to(self.head.weight.dtype))

    def save_pretrained(self, folder: str | Path, safe_serialization: bool = True) -> None:
        from safetensors.torch import save_file

        self.encoder.save_pretrained(folder, safe_serialization=True)
        save_file({"weight": self.head.weight.detach().cpu().contiguous(),
                   "bias": self.head.bias.detach().cpu().contiguous()}, str(Path(folder) / HEAD_FILE))

    @classmethod
    def from_pretrained(cls, path: str | Path, label_names: list[str], *, dropout: Optional[float] = None,
                        trust_remote_code: bool = False, with_head: bool = False) -> "SentenceClassifier":
        """An encoder folder (any BERT-like model, a sentence-transformers model, a thrifty model) with a head for
        `label_names`: the saved head when `with_head` (a fewshot model folder), else a fresh one."""
        from transformers import AutoModel

        from thrifty.models.loading import load_model_config

        config = load_model_config(str(path), len(label_names), label_names, dropout, trust_remote_code)
        refuse_decoder(config, str(path))
        try:
            encoder = AutoModel.from_pretrained(str(path), config=config, use_safetensors=True,
                                                trust_remote_code=trust_remote_code, add_pooling_layer=False)
        except TypeError:  # an architecture without a pooler argument
            encoder = AutoModel.from_pretrained(str(path), config=config, use_safetensors=True,
                                                trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load '{path}' as a sentence encoder: {str(exc).splitlines()[0]}") from None
        model = cls(encoder.float(), len(label_names))
        if with_head:
            from safetensors.torch import load_file

            head = load_file(str(Path(path) / HEAD_FILE))
            if head["weight"].shape != model.head.weight.shape:
                raise ModelError(f"{path}/{HEAD_FILE} has {head['weight'].shape[0]} labels, the manifest {len(label_names)}; "
                                 "the model folder is damaged")
            model.head.load_state_dict(head)
        return model


def is_sentence_encoder(config) -> bool:
    """Whether a model reads text both ways, so its mean-pooled states are a sentence embedding: the families
    transformers has a masked-LM head for (BERT, RoBERTa, MPNet, DistilBERT, ELECTRA, ...), not a decoder or an
    encoder-decoder."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    architectures = list(getattr(config, "architectures", None) or [])
    return not (getattr(config, "is_encoder_decoder", False) or any(a.endswith(DECODER_SUFFIXES) for a in architectures)
                or config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def refuse_decoder(config, name: str) -> None:
    """Few-shot learning reads a bidirectional sentence embedding; a decoder's states are not one."""
    if not is_sentence_encoder(config):
        architectures = list(getattr(config, "architectures", None) or [])
        kind = architectures[0] if architectures else config.model_type
        raise ModelError(f"strategy fewshot needs a sentence encoder (BERT, RoBERTa, MPNet or MiniLM style, e.g. the default "
                         f"all-MiniLM-L6-v2 or any sentence-transformers model); {name} is a decoder ({kind}); use strategy "
                         "full, lora or head for it")
