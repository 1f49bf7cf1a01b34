"""The config: defaults, YAML, overrides, and loud failures for anything unknown or mistyped."""

from pathlib import Path

import pytest

from thrifty.config import Config, dump_config, load_config, parse_overrides
from thrifty.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_valid():
    config = load_config()
    assert config.model.name == "all-MiniLM-L6-v2"
    assert config.strategy.name == "full"
    assert config.train.epochs >= 1


def test_yaml_and_overrides_compose(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 5\n  learning_rate: 3.0e-5\ndata:\n  text_column: sentence\n")
    config = load_config(path, ["--train.epochs", "2", "--data.max_length=64", "--strategy.name", "lora",
                                "--train.learning_rate", "1e-4", "--strategy.lora_target_modules", "query,value"])
    assert config.train.epochs == 2  # the command line wins over the file
    assert config.train.learning_rate == pytest.approx(1e-4)  # '1e-4' is a float, not the YAML string
    assert config.data.max_length == 64
    assert config.data.text_column == "sentence"
    assert config.strategy.name == "lora"
    assert config.strategy.lora_target_modules == ["query", "value"]


def test_contract_overrides_exist():
    overrides = ["--data.max_train_examples", "10", "--data.max_length", "32", "--train.epochs", "1",
                 "--train.batch_size", "4", "--train.learning_rate", "0.001", "--train.seed", "3"]
    for strategy in ("full", "freeze", "head", "lora"):
        config = load_config(None, overrides + ["--strategy.name", strategy])
        assert config.strategy.name == strategy
    assert config.data.max_train_examples == 10 and config.train.seed == 3


def test_unknown_key_lists_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "train.epoch" in message and "did you mean 'epochs'" in message and "learning_rate" in message


def test_unknown_section_lists_sections():
    with pytest.raises(ConfigError, match="valid sections: task, model, data, strategy, train"):
        load_config(None, ["--trian.epochs", "3"])


def test_wrong_types_and_choices_are_rejected():
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        load_config(None, ["--train.epochs", "three"])
    with pytest.raises(ConfigError, match="choose one of: full, freeze, head, lora"):
        load_config(None, ["--strategy.name", "everything"])
    with pytest.raises(ConfigError, match="must be true or false"):
        load_config(None, ["--tracking.tensorboard", "maybe"])
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(None, ["--train.learning_rate", "5"])
    with pytest.raises(ConfigError, match="has no value"):
        parse_overrides(["--train.epochs"])


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: 3\n  batch_size: [1, 2\n")
    with pytest.raises(ConfigError, match=r"malformed YAML .* line \d+"):
        load_config(path)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("nope/missing.yaml")


def test_saved_config_round_trips(tmp_path):
    config = load_config(None, ["--train.epochs", "4", "--data.labels", "[b, a]"])
    dump_config(config, tmp_path / "saved.yaml")
    again = load_config(tmp_path / "saved.yaml")
    assert again == config


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_example_parses(example):
    config = load_config(example)
    assert isinstance(config, Config)
    for key in ("train", "validation", "test"):  # data files named by the example exist (paths from the repo root)
        value = getattr(config.data, key)
        if value and not value.startswith("builtin:"):
            path = REPO / value
            if "shared" in value and not path.exists():
                pytest.skip("../shared/data is not available")
            assert path.exists(), f"{example.name}: data.{key} {value} does not exist"


def test_learning_rate_defaults_follow_the_strategy():
    assert load_config(None, ["--strategy.name", "full"]).learning_rate == 1e-4
    assert load_config(None, ["--strategy.name", "lora"]).learning_rate == 1e-3
    assert load_config(None, ["--strategy.name", "lora", "--train.learning_rate", "2e-4"]).learning_rate == 2e-4


@pytest.mark.parametrize("space", sorted((REPO / "examples" / "spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_search_space_parses(space):
    from thrifty.tuning.search import _load_space, parse_space

    base = load_config(REPO / "examples" / "sst2.yaml")
    dims = parse_space(_load_space(space, base, layers=6), base)
    assert dims and all(d.key.count(".") == 1 for d in dims)


def test_examples_per_class_is_checked_with_the_limits_it_could_clash_with():
    from thrifty.config import config_from_dict

    with pytest.raises(ConfigError, match="examples_per_class=0 must be at least 1"):
        config_from_dict({"data": {"examples_per_class": 0}}).validate()
    with pytest.raises(ConfigError, match="set one of them"):
        config_from_dict({"data": {"examples_per_class": 8, "max_train_examples": 100}}).validate()
    with pytest.raises(ConfigError, match="token_classification does not have"):
        config_from_dict({"task": "token_classification", "data": {"examples_per_class": 8}}).validate()
    assert config_from_dict({"data": {"examples_per_class": 8}}).validate().data.examples_per_class == 8


def test_the_documented_config_parses_and_shows_the_defaults():
    """docs/configuration.md's commented config: every key exists, and every value is the default (data.train aside,
    a path to show), so the page cannot drift from config.py."""
    import dataclasses
    import re

    import yaml

    from thrifty.config import config_from_dict

    block = re.search(r"```yaml\n(.*?)```", (REPO / "docs" / "configuration.md").read_text(), re.S).group(1)
    documented = yaml.safe_load(block)
    shown, default = dataclasses.asdict(config_from_dict(documented)), dataclasses.asdict(Config())
    differ = [f"{section}.{key}" for section, keys in documented.items() if isinstance(keys, dict)
              for key in keys if shown[section][key] != default[section][key]]
    assert differ == ["data.train"]


def test_the_delimiter_setting_takes_auto_and_the_four_delimiters():
    import subprocess
    import sys

    assert load_config().data.delimiter == "auto"
    for value in (",", ";", "|", "tab", "\\t", "\t"):
        assert load_config(None, ["--data.delimiter", value]).data.delimiter == value
    with pytest.raises(ConfigError, match=r"data.delimiter=':' is not valid; choose auto \(sniffed\), ',', ';', '\|' or tab"):
        load_config(None, ["--data.delimiter", ":"])
    shown = subprocess.run([sys.executable, "-m", "thrifty", "config", "--data.delimiter", ";"], capture_output=True,
                           text=True, check=True).stdout
    assert "delimiter: ;" in shown  # `thrifty config` lists it with the other data keys
