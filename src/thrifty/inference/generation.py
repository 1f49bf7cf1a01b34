"""`thrifty generate`: text from a fine-tuned decoder (task causal_lm) or encoder-decoder (seq2seq), or from a base
model by name.

A model trained on chat rows gets its prompts through the tokenizer's chat template; one trained on
prompt/completion rows gets them as written (as in training); a base model with a chat template (an instruct model)
gets the template. `--chat`/`--no-chat` decide otherwise. The defaults of max_new_tokens, temperature, top_p and stop
are those the run was trained with (its generate: section, kept in the model's manifest).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import torch

from thrifty.config import GenerateConfig
from thrifty.traits import TASKS, TaskTraits, task_traits
from thrifty.errors import ModelError

Prompt = Union[str, list]  # a text, or a conversation: [{"role": ..., "content": ...}, ...]


@dataclasses.dataclass
class Generator:
    model: Any
    tokenizer: Any
    task: str  # causal_lm or seq2seq
    chat_default: bool  # prompts go through the chat template unless told otherwise
    settings: GenerateConfig
    folder: str
    manifest: Optional[dict] = None  # a thrifty model's (None: a base model)

    @property
    def traits(self) -> TaskTraits:
        return task_traits(self.task)

    @classmethod
    def load(cls, path: str | Path, device: Optional[str] = None, trust_remote_code: bool = False) -> "Generator":
        """A thrifty model folder (or run folder), a local Hugging Face folder or a model id."""
        from thrifty.inference.predictor import prediction_device
        from thrifty.models.loading import load_tokenizer, quiet_transformers, resolve_model
        from thrifty.runs.manifest import is_thrifty_model, model_folder, read_manifest

        quiet_transformers()
        manifest = None
        if is_thrifty_model(Path(path).expanduser()):
            folder = str(model_folder(path))
            manifest = read_manifest(folder)
        else:
            folder = resolve_model(str(path))
        task = manifest["task"] if manifest else _task_of(folder, trust_remote_code)
        traits = TASKS.get(task)  # None: a base encoder
        if traits is None or not traits.writes_text:
            fits = ("thrifty predict" if traits is not None and traits.serves else
                    f"thrifty train --model.name {folder} (it is a base for a later run)")
            raise ModelError(f"{folder} is a {task} model: it does not write text; use {fits}")
        model = _load_model(folder, task, manifest, trust_remote_code).to(prediction_device(device)).eval()
        tokenizer = load_tokenizer(folder, trust_remote_code)
        kept = (manifest or {}).get("generation") or {}
        settings = GenerateConfig(**{k: v for k, v in kept.items() if k in {f.name for f in dataclasses.fields(GenerateConfig)}})
        prompt_format = kept.get("prompt_format")
        chat = prompt_format == "chat" if prompt_format else bool(getattr(tokenizer, "chat_template", None))
        return cls(model, tokenizer, task, chat, settings, folder, manifest)

    def prompt_ids(self, prompt: Prompt, chat: Optional[bool] = None) -> list[int]:
        """A prompt's token ids: a conversation always through the chat template, a text through it when `chat`."""
        from thrifty.data.instructions import chat_text, require_chat_template
        from thrifty.tasks.language_modeling import special_wrapping

        chat = self.chat_default if chat is None else chat
        if isinstance(prompt, list) or (chat and self.traits.chats):
            require_chat_template(self.tokenizer, self.folder)
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            return self.tokenizer(chat_text(self.tokenizer, messages, True), add_special_tokens=False)["input_ids"]
        if self.traits.encoder_decoder:
            return self.tokenizer(prompt)["input_ids"]  # the encoder reads the source as in training
        prefix, _ = special_wrapping(self.tokenizer)
        return prefix + self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def generate(self, prompts: list[Prompt], *, chat: Optional[bool] = None, stream: bool = False,
                 **overrides: Any) -> list[str]:
        """The text written for each prompt; `overrides`: max_new_tokens, temperature, top_p, stop, batch_size.
        `stream`: a single prompt's tokens go to stdout as they come."""
        from transformers import TextStreamer

        from thrifty.models.generation import generate_texts

        settings = dataclasses.replace(self.settings, **{k: v for k, v in overrides.items() if v is not None})
        settings.validate()
        streamer = TextStreamer(self.tokenizer, skip_prompt=not self.traits.encoder_decoder, skip_special_tokens=True) \
            if stream and len(prompts) == 1 else None
        return generate_texts(self.model, self.tokenizer, [self.prompt_ids(p, chat) for p in prompts],
                              max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                              top_p=settings.top_p, stop=settings.stop, batch_size=settings.batch_size,
                              device=next(self.model.parameters()).device, streamer=streamer)


def _task_of(folder: str, trust_remote_code: bool) -> str:
    """A base model's task: seq2seq for an encoder-decoder, causal_lm for a decoder, else what it is."""
    from transformers import AutoConfig

    from thrifty.tasks.language_modeling import lm_task_for

    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the config of '{folder}': {str(exc).splitlines()[0]}") from None
    if config.is_encoder_decoder:
        return "seq2seq"
    task = lm_task_for(config.model_type)
    return task if task_traits(task).writes_text else f"encoder ({config.model_type})"


def _load_model(folder: str, task: str, manifest: Optional[dict], trust_remote_code: bool):
    import transformers

    from thrifty.models.loading import resolve_model

    auto = transformers.AutoModelForSeq2SeqLM if task_traits(task).encoder_decoder else transformers.AutoModelForCausalLM
    if manifest and manifest.get("format") == "lora_adapter":  # the adapter on its base model, merged for speed
        from peft import PeftModel

        base_name = manifest["base_model"]["name"] if isinstance(manifest["base_model"], dict) else manifest["base_model"]
        base = auto.from_pretrained(resolve_model(base_name), dtype=torch.float32, trust_remote_code=trust_remote_code)
        with warnings.catch_warnings():  # peft's merge asks transformers a deprecated question: not the user's concern
            warnings.simplefilter("ignore", FutureWarning)
            return PeftModel.from_pretrained(base, folder).merge_and_unload()
    try:
        return auto.from_pretrained(folder, dtype=torch.float32, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a {task} model from '{folder}': {str(exc).splitlines()[0]}") from None
