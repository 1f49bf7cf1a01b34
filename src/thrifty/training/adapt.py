"""`thrifty adapt`: continued pre-training on unlabelled in-domain text, before fine-tuning on a task.

Domain-adaptive pre-training (DAPT: text of the target domain) and task-adaptive pre-training (TAPT: the task's
own texts, without labels) carry a general model into a domain (Gururangan et al. 2020). This is `thrifty train`
with a language-modelling task (tasks/language_modeling.py): masked LM for an encoder, causal LM for a decoder,
chosen from the model; everything the loop does (estimates, budgets, checkpoints and `--resume`, TensorBoard,
MLflow, the run folder) works the same. RUN_DIR/model/ is then a base model for any later run:
`--model.name RUN_DIR`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from thrifty.config import Config
from thrifty.traits import task_traits
from thrifty.errors import ModelError


def choose_lm_task(config: Config) -> str:
    """The configured LM task, or the one the model can do: masked LM for an encoder, causal LM for a decoder."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from thrifty.models.loading import resolve_model
    from thrifty.tasks.language_modeling import lm_task_for

    if task_traits(config.task).learns_unlabelled_text:
        return config.task
    path = resolve_model(config.model.name)
    try:
        model_type = AutoConfig.from_pretrained(path, trust_remote_code=config.model.trust_remote_code).model_type
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the config of '{config.model.name}': {str(exc).splitlines()[0]}") from None
    task = lm_task_for(model_type)
    if task_traits(task).writes_text and model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelError(f"'{config.model.name}' (model type {model_type}) has no masked-LM or causal-LM form in "
                         "transformers, so it has no usable embedding/output layer to adapt; adapt an encoder (BERT, "
                         "RoBERTa, MiniLM, ...) or a decoder (Llama, GPT-2, Qwen, SmolLM2, ...)")
    return task


def adapt(
    config: Config | str | Path | dict | None = None,
    *,
    data: Optional[str | Path] = None,
    output: Optional[str | Path] = None,
    overrides: Optional[list[str]] = None,
    resume: Optional[str | Path] = None,
    overwrite: bool = False,
    progress: bool = True,
    clock_start: Optional[float] = None,
    on_evaluation: Optional[Callable] = None,
):
    """Continued pre-training of `model.name` on the unlabelled texts of `data` (or `data.train`); the Python twin of
    ``thrifty adapt``. Returns the RunResult of the run; its model/ folder is the adapted model."""
    from thrifty.inputs import as_config
    from thrifty.training.recipe import train

    if resume is not None:
        return train(resume=resume, progress=progress, clock_start=clock_start, on_evaluation=on_evaluation)
    config = as_config(config, overrides)
    if data is not None:
        config.data.train = str(data)
    config.task = choose_lm_task(config)
    config.validate()  # strategy head or fewshot, or examples_per_class, are refused here with the fix
    return train(config, output=output, overwrite=overwrite, progress=progress, clock_start=clock_start,
                 on_evaluation=on_evaluation)
