"""`thrifty generate`: prompts in, answers out."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

from thrifty.cli import vocabulary as words
from thrifty.cli.command import Arg, Context, Option, command, file_or_folder
from thrifty.errors import ThriftyError

GENERATE_KEYS = ("max_new_tokens", "temperature", "top_p", "stop", "batch_size")


@command("text from a fine-tuned decoder or seq2seq model (or a base model by name): greedy or sampled, batched "
         "(docs/generation.md)", config=True, shows_passes=True,
         epilog="generate settings: --generate.KEY VALUE or a --config YAML's generate: section (the options win)")
def generate(
    model_dir: Annotated[str, Arg("a finished causal_lm/seq2seq run folder or its model/ folder; or a base model "
                                  "(smollm2-135m, a local folder, a hub id)", metavar="MODEL_DIR")],
    *,
    prompt: Annotated[Optional[list[str]], Option("a prompt (repeatable); one prompt streams its answer to the "
                                                  "terminal, several give JSON lines", group="source",
                                                  required=True)] = None,
    input: Annotated[Optional[str], Option("prompts: .txt (one per line) or JSONL with a prompt or messages field per "  # noqa: A002
                                           "row", group="source", metavar="FILE")] = None,
    config: Annotated[Optional[str], Option("YAML with a generate: section (other sections are ignored)")] = None,
    output: Annotated[Optional[str], Option("the folder to write answers.jsonl to (default: stdout as JSON lines)",
                                            metavar="FOLDER")] = None,
    output_file: Annotated[Optional[str], Option(words.OUTPUT_FILE + ": .jsonl (default: stdout as JSON lines)",
                                                 metavar="FILE")] = None,
    overwrite: Annotated[bool, Option("replace an existing output file")] = False,
    max_new_tokens: Annotated[Optional[int], Option("tokens to write at most (default: the run's generate: setting, "
                                                    "32)")] = None,
    temperature: Annotated[Optional[float], Option("0 = greedy (default); above 0 samples")] = None,
    top_p: Annotated[Optional[float], Option("sampling: nucleus probability mass (default 1.0)")] = None,
    stop: Annotated[Optional[list[str]], Option("the answer ends before this string (repeatable)")] = None,
    batch_size: Annotated[Optional[int], Option("prompts written together, left-padded (default 16)")] = None,
    seed: Annotated[int, Option("the random seed of sampling")] = 0,
    chat: Annotated[Optional[bool], Option("--chat: apply the tokenizer's chat template to text prompts; --no-chat: "
                                           "give them as written (default: the run's choice)")] = None,
    trust_remote_code: Annotated[bool, Option(words.TRUST_REMOTE_CODE)] = False,
    ctx: Context,
) -> int:
    """Prompts in, answers out: one prompt streamed to the terminal, several (or a file) as JSON lines."""
    from thrifty.data import results as files
    from thrifty.inference.generation import Generator
    from thrifty.models.generation import answer_matches
    from thrifty.runs.run_dir import atomic_write_text

    out_path = file_or_folder(output, output_file, "answers.jsonl")
    if out_path is not None:
        if out_path.suffix.lower() != ".jsonl":
            raise ThriftyError(f"--output-file {out_path} must end in .jsonl")
        if out_path.exists() and not overwrite:
            raise ThriftyError(f"{out_path} already exists; choose another --output-file or add --overwrite")
    settings = {k: v for k, v in words.section_settings(config, ctx.overrides, "generate").items() if k in GENERATE_KEYS}
    given = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop=stop, batch_size=batch_size)
    settings.update({k: v for k, v in given.items() if v is not None})
    rows = [{"prompt": p} for p in prompt] if prompt is not None else prompt_rows(input)
    generator = Generator.load(model_dir, trust_remote_code=trust_remote_code)
    import torch

    torch.manual_seed(seed)
    prompts = [r["messages"][:_last_user(r["messages"])] if "messages" in r else r["prompt"] for r in rows]
    stream = prompt is not None and len(rows) == 1 and out_path is None
    written = generator.generate(prompts, chat=chat, stream=stream, **settings)
    if stream:
        return 0  # the answer went to the terminal as it was written
    lines = files.as_json_lines([{**row, "generated": text} for row, text in zip(rows, written)])
    scored = [(text, row["completion"]) for row, text in zip(rows, written) if isinstance(row.get("completion"), str)]
    if scored:  # rows with a reference answer: how many the model wrote
        hits = sum(answer_matches(text, reference) for text, reference in scored)
        print(f"exact match {hits / len(scored):.4f} ({hits} of {len(scored)} rows with a completion)", file=sys.stderr)
    if out_path is None:
        print(lines, end="")
        return 0
    atomic_write_text(out_path, lines)
    print(f"wrote {len(written)} answers to {out_path}", file=sys.stderr)
    return 0


def prompt_rows(path: str) -> list[dict]:
    """--input: JSONL rows with a prompt or messages, or texts (a .txt file, a table) as prompts."""
    from thrifty.data.jsonl import is_jsonl, read_records
    from thrifty.data.readers import read_table

    if is_jsonl(path):
        return read_records(path, "input", lambda r: isinstance(r, dict) and (isinstance(r.get("prompt"), str)
                                                                             or isinstance(r.get("messages"), list)),
                            "has no 'prompt' text or 'messages' list; a row looks like "
                            '{"prompt": "..."} or {"messages": [{"role": "user", "content": "..."}]}')
    return [{"prompt": t} for t in read_table(path, role="input", label_column=None, plain_lines=True).texts]


def _last_user(messages: list) -> int:
    """A conversation that ends with the assistant's answer is prompted with what comes before it."""
    return len(messages) - 1 if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant" \
        else len(messages)
