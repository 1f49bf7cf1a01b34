"""The words every command shares (docs/cli.md): one meaning per option name, one help text for it."""

from __future__ import annotations

from thrifty.config import BACKENDS

# --output is always a folder; a command that writes one file takes --output-file for it
OUTPUT_RUN = "the run folder to write (default: output.dir of the config)"
OUTPUT_FILE = "the file to write"
# --resume is always a run folder (a search folder for tune)
RESUME = "the run folder of an interrupted run: continue it from its last checkpoint"
# --model is always the model folder or name to use
MODEL = "the model folder or name to use"
MODEL_DIR = "a finished run folder, or its model/ folder copied anywhere"
CONFIG = "YAML config (default: built-in defaults)"
DATA_TEXT_COLUMN = "the text column of a table (default: the one used in training)"
DATA_LABEL_COLUMN = "the label column of a table (default: the one used in training)"
BATCH_SIZE = "texts per forward pass"
NO_PROGRESS = "no progress bar"
JSON = "print JSON instead of the table"
TRUST_REMOTE_CODE = "run the model repository's own code (off: only for models you trust)"
REGISTRY = ("the registry store for models:/ (default: $THRIFTY_REGISTRY_URI, else $MLFLOW_TRACKING_URI, else SQLite "
            "at ./runs/mlflow.db)")
BACKEND_CHOICES = BACKENDS
BACKEND = ("auto (the default): bf16 weights where the hardware has bf16 and the model's labels agreed with fp32's on "
           "99.5% of its validation set when it was trained, else fp32; torch (fp32); torch-bf16 (bf16 weights: CPUs with AMX or AVX512-BF16, GPUs with bf16); onnx or onnx-int8: "
           "ONNX Runtime on the graph `thrifty export` wrote (classification)")
LANES = ("classification passes run at once, each on threads / N CPU threads (default: one per thread on a CPU, the "
         "most texts/s for small models; 1 for the lowest latency of a lone request on many cores)")

EPILOG_TRAIN = """config overrides: any key as --section.key VALUE, e.g.
  --data.max_train_examples 500 --data.max_length 64 --train.epochs 2 --train.batch_size 16
  --train.learning_rate 5e-5 --train.seed 1 --strategy.name lora
`thrifty config` prints every key with its default."""


def as_overrides(settings: dict[str, object]) -> list[str]:
    """Options that are short for a config key, as overrides: {"cost.hardware": "a10g"} -> --cost.hardware a10g
    (options not given, None, are left out)."""
    return [item for key, value in settings.items() if value is not None for item in (f"--{key}", str(value))]


def with_model(model: str | None, overrides: list[str]) -> list[str]:
    """--model MODEL as the override it is short for (--model.name MODEL), before the others; both at once refused."""
    if model is not None and any(o.split("=", 1)[0] == "--model.name" for o in overrides):
        from thrifty.errors import ConfigError

        raise ConfigError("--model and --model.name name the same setting: give one of them")
    return as_overrides({"model.name": model}) + overrides


def section_settings(config: str | None, overrides: list[str], section: str) -> dict[str, object]:
    """The keys of one config section that --config FILE or --section.key overrides set, resolved and validated:
    what a command that reads a finished model (generate, audit) takes from a config, below its own options."""
    if config is None and not overrides:
        return {}
    from thrifty.config import load_config, load_yaml, parse_overrides
    from thrifty.errors import ConfigError

    foreign = [f"--{name}.{key}" for name, key, _ in parse_overrides(overrides) if name != section]
    if foreign:  # a finished model's command reads only its own section: anything else would be silently ignored
        raise ConfigError(f"{foreign[0]}: this command takes only --{section}.KEY overrides (the model's own settings "
                          f"come from its folder); drop it")

    resolved = getattr(load_config(config, overrides), section)
    named = set(((load_yaml(config) or {}).get(section) or {}) if config else ())
    named |= {key for name, key, _ in parse_overrides(overrides) if name == section}
    return {key: getattr(resolved, key) for key in named if hasattr(resolved, key)}
