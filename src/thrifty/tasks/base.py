"""The task protocol: what the one training loop asks of a task, and nothing more.

A task says how data is read and prepared, how a model is built for it (Auto class, PEFT task type, head
names), how examples become padded batches with targets, the loss (the model's own cross-entropy unless it
says otherwise), its metrics with the primary one and its direction, how raw outputs become what a user
reads, and which of the loop's speed-ups apply to it. The loop (training/recipe.py) knows no task by name.

Adding a task (masked or causal LM): write one module with a class that has these members (``TaskDefaults``
supplies the usual batches, loss inputs and evaluation hook), add it to ``TASKS`` in ``tasks/__init__.py`` and
its row of traits (metrics, fitting strategies, what its models do) to ``thrifty/traits.py``. A strategy that
changes the objective of a task (``fewshot``) brings its own task class, chosen by the task's ``for_config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Sequence

import torch

from thrifty.traits import TaskTraits


@dataclass
class Encoded:
    """One split after tokenisation: unpadded ids, and the targets the loss and the metrics read."""

    input_ids: list  # one id sequence per example, unpadded
    targets: list  # classification: a label id per example; tokens: per example, a label id per input id (-100: none)
    extra: dict[str, Any] = field(default_factory=dict)  # task-specific (e.g. which word each token starts)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


class Task(Protocol):
    traits: TaskTraits  # what the rest of thrifty may know of it by name, without loading it (traits.py)
    name: str  # the value of `task:` in a config
    head: str  # the Auto class family: "sequence" (one output per text) or "token" (one per token)
    peft_task_type: str  # PEFT's TaskType name, e.g. "SEQ_CLS", "TOKEN_CLS"
    caches_frozen_layers: bool  # freeze/head: the frozen bottom computed once per data set
    prunes_last_layer: bool  # the head reads one position only, so the last layer can skip the others
    evaluates_full_length: bool  # validation/test (and prediction) tokenised to the model's limit, not max_length
    plot_name: Optional[str]  # the file stem of its plots (confusion_matrix, per_type_f1), None: no plot
    embeds_train_before_evaluation: bool  # before_evaluation runs the model over the training set (for estimates)
    windows_long_texts: bool  # a text longer than max_length is cut into windows, not truncated: nothing is lost
    loss_sums: bool  # the loss is a sum over a batch's tokens over a constant: a process's share weighs N times
    prompt_format: str  # how its prompts are written (text; prompt_completion, chat: instruction data), for generation

    @classmethod
    def for_config(cls, config) -> "Task":
        """The task set up by a run's Config (its strategy, adapt and generate sections)."""

    def prepare_data(self, config, seed: int) -> Any:
        """Read, clean and split the configured files; `.train/.validation/.test/.label_names/.report`."""

    def read_labelled(self, path: str, config, label_names: list[str], role: str = "evaluation") -> tuple[Any, dict, str]:
        """An evaluation file read as the training data was (`config`: the model's DataConfig): (the split with its
        targets in the model's label order, the reading and cleaning counts, the file's source name); what the
        model does not know (a label, a tag) is refused."""

    def attach(self, model) -> None:
        """Called once with the freshly loaded model, before a strategy wraps it: what batches need to know of it
        (seq2seq: the decoder's start token; causal_lm: whether its head can compute chosen positions only), and
        what its evaluation imports (classification: sklearn), so that no import lands inside the training loop."""

    def token_lengths(self, tokenizer, split, tokens) -> Any:
        """Untruncated token counts of a split (for max_length and the report)."""

    def encode(self, tokenizer, split, max_length: int, tokens) -> Encoded:
        """Token ids and aligned targets, truncated to max_length; `tokens` is the on-disk token cache."""

    def training_batches(self, train: Encoded, batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list:
        """The batches (lists of example indices) of one epoch; the same for the same (seed, epoch)."""

    def collate(self, encoded: Encoded, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        """A right-padded batch with its `labels`."""

    def loss_inputs(self, output) -> Any:
        """What the loss reads of the model's output in training (the logits; a pair loss reads embeddings)."""

    def fit_loss(self, train: Encoded, batch_size: int) -> None:
        """Called once before training with the encoded training split: what the loss needs to know about it
        (a token-level loss takes the mean number of scored tokens per batch)."""

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of a training batch, on the scale of a mean per example (or per scored token)."""

    def start_epoch(self, model, epoch: int, epochs: int, resumed: bool, train: Encoded, pad_id: int, batch_size: int,
                    device) -> None:
        """Called as each epoch (0-based, of `epochs`) begins, or resumes mid-way (`resumed`): a task whose objective
        changes between epochs switches here (fewshot's end-to-end epochs)."""

    def before_evaluation(self, model, train: Encoded, pad_id: int, batch_size: int, device) -> None:
        """Called before each validation with the unwrapped model: fit what is fitted, not trained (a closed-form head)."""

    def plan_answers(self, training_seconds: float, evaluations: int, count: Optional[int]) -> None:
        """Called before each of training's evaluations (and the final test, with `count` None) with the run's planned
        training seconds, its number of evaluations (the test included) and the answers each validation wrote so far
        (None before the first): a task whose evaluation can cost more than the training (writing answers) sizes it
        from these (AnswerAllowance)."""

    def evaluate(self, model, encoded: Encoded, split, label_names: list[str], pad_id: int, batch_size: int, device,
                 autocast_dtype=None, forward: Optional[Callable] = None) -> dict[str, Any]:
        """The task's metrics on a split (the primary one first in its traits' metrics), with `loss` and `examples`."""

    def summary(self, metrics: dict[str, Any]) -> str:
        """One line of the metrics a person looks at first."""

    def history_keys(self) -> tuple[str, ...]:
        """The scalar metrics logged at each evaluation (TensorBoard, MLflow, metrics.json history)."""

    def baseline(self, split, label_names: list[str]) -> float:
        """The primary metric of the trivial predictor (the most common label; no entity): what training adds to."""

    def plots(self, metrics: dict[str, Any], label_names: list[str], path, title: str) -> None:
        """Pictures of a split's results (a confusion matrix, per-type F1)."""


class TaskDefaults:
    """The members most tasks share: length-grouped batches, a loss on the logits, nothing to fit before evaluating."""

    embeds_train_before_evaluation = False
    windows_long_texts = False
    loss_sums = False
    prompt_format = "text"

    @property
    def name(self) -> str:
        return self.traits.name

    @property
    def plot_name(self) -> Optional[str]:  # RUN_DIR/<plot_name>_validation.png, _test.png
        return self.traits.plot_name

    @classmethod
    def for_config(cls, config) -> "TaskDefaults":
        return cls()

    def training_batches(self, train: Encoded, batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list:
        from thrifty.data.batching import training_batches

        return training_batches(train.lengths, batch_size, seed, epoch, group_by_length)

    def loss_inputs(self, output) -> Any:
        return output.logits

    def start_epoch(self, model, epoch: int, epochs: int, resumed: bool, train: Encoded, pad_id: int, batch_size: int,
                    device) -> None:
        return None

    def before_evaluation(self, model, train: Encoded, pad_id: int, batch_size: int, device) -> None:
        return None

    def plan_answers(self, training_seconds: float, evaluations: int, count: Optional[int]) -> None:
        return None

    def attach(self, model) -> None:
        return None

    def read_labelled(self, path: str, config, label_names: list[str], role: str = "evaluation") -> tuple:
        from thrifty.errors import DataError

        raise DataError(f"a {self.name} model is not evaluated on a file: it is a base for later runs")


@dataclass
class AnswerAllowance:
    """How many evaluation answers a training run writes. Writing is sequential and slow: without a cap a small run
    spends many times its training writing validation answers. With `share`, all the answers a run writes take at most
    about that share of it: each evaluation (the test too) gets `share / (1 - share)` of the planned training time,
    divided by the number of evaluations. The first validation writes a batch at a time until its time is spent (at
    least one batch), and every later one writes the same number (`count`): the same seeded sample each time, so the
    exact match of two evaluations compares like with like. The test writes a batch at a time for its own time."""

    share: Optional[float]  # None: no cap (every answer asked for is written)
    seconds: float = float("inf")  # per evaluation
    count: Optional[int] = None  # answers per validation, fixed by the first

    def plan(self, training_seconds: float, evaluations: int, count: Optional[int]) -> None:
        if self.share is not None:
            self.seconds = self.share / (1.0 - self.share) * training_seconds / max(1, evaluations)
        self.count = count


def written_answers(model, tokenizer, prompts: list, references: list[str], settings, whole: bool, device,
                    rouge: bool = False, keep: Optional[int] = 5,
                    allowance: Optional[AnswerAllowance] = None) -> dict[str, Any]:
    """Answers written for a seeded sample of `settings.eval_examples` prompts (token ids), or for all of them
    (`whole`: the test split), scored against the references: exact_match, and rouge_l with `rouge`. In a multi-process
    evaluation each process writes its share. `keep` samples (prompt, reference, written, match; None: all) are kept
    for metrics.json.

    With an `allowance` (training's evaluations) the answers written may be fewer: a prefix of a seeded random order
    (a random sample of those asked for), `count` of them, or as many as its time allows, a batch at a time (the
    first batch always). `generated` counts them and `asked` the rows they were drawn from."""
    import time

    import numpy as np

    from thrifty.evaluation.sharding import any_process, my_share, sharing_processes, summed
    from thrifty.models.generation import answer_matches, generate_texts, rouge_l

    order = np.random.default_rng(0).permutation(len(prompts)).tolist()
    picked = order if whole else order[: settings.eval_examples]
    capped = allowance is not None and allowance.share is not None
    if not capped or allowance.count is not None:  # one call: batched by length over all of them
        chunks = [sorted(picked[: allowance.count] if capped else picked)]
    else:  # every process walks the same chunks (each writes its share of one), so they stop together
        width = settings.batch_size * sharing_processes()
        chunks = [picked[i : i + width] for i in range(0, len(picked), width)]
    mine: list[int] = []
    written: list[str] = []
    done, started = 0, time.perf_counter()
    for n, chunk in enumerate(chunks):
        if n and any_process(time.perf_counter() - started >= allowance.seconds):
            break
        part = my_share(chunk)
        if part:
            written += generate_texts(model, tokenizer, [prompts[i] for i in part], max_new_tokens=settings.max_new_tokens,
                                      temperature=settings.temperature, top_p=settings.top_p, stop=settings.stop,
                                      batch_size=settings.batch_size, device=device)
        mine += part
        done += len(chunk)
    wanted = [references[i] for i in mine]
    matches = [answer_matches(w, r) for w, r in zip(written, wanted)]
    scores = {"exact_match": summed(sum(matches)) / max(1, done)}
    if rouge:
        scores["rouge_l"] = summed(rouge_l(written, wanted) * len(mine) if mine else 0.0) / max(1, done)
    samples = [{"prompt": tokenizer.decode(prompts[i], skip_special_tokens=False), "reference": r, "generated": w,
                "exact_match": m} for w, r, i, m in list(zip(written, wanted, mine, matches))[:keep]]
    return {**scores, "generated": done, "asked": len(picked), "samples": samples}


def answers_counted(metrics: dict[str, Any]) -> str:
    """How many answers an evaluation wrote, for its log line: '200 generated answers', or '48 of 200 generated
    answers (capped by generate.eval_time_share)' when the time allowance stopped it."""
    asked = metrics.get("asked", metrics["generated"])
    if metrics["generated"] < asked:
        return f"{metrics['generated']:,} of {asked:,} generated answers (capped by generate.eval_time_share)"
    return f"{metrics['generated']:,} generated answers"
