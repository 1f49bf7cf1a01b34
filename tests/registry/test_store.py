"""The registry on a real MLflow store (SQLite): versions with provenance, alias moves with their history, and the
errors a user can fix (one line, exit 2, nothing changed)."""

from __future__ import annotations

import json
import shutil

import pytest

from thrifty.cli import main
from thrifty.errors import RunDirError
from thrifty.registry.store import CHAMPION, MOVE_PREFIX, Registry, RegistryError, parse_model_uri
from thrifty.runs.manifest import weights_sha256


def test_register_records_provenance_and_is_idempotent(store, tiny_run, warm_run):
    registry = Registry(store, create=True)
    first, new = registry.register(tiny_run, "tiny")
    assert new and first.version == 1 and first.task == "classification" and sorted(first.labels) == ["neg", "pos"]
    manifest = json.loads((tiny_run / "model" / "thrifty.json").read_text())
    assert first.tags["thrifty.data_fingerprint"] == manifest["data"]["fingerprint"]
    assert first.tags["thrifty.weights_sha256"] == weights_sha256(tiny_run / "model")
    assert first.metrics["validation"]["accuracy"] == manifest["metrics"]["validation"]["accuracy"]
    assert first.parent_version is None
    # the files are in the store: the version stands without the run folder
    local = registry.local_model(first)
    assert weights_sha256(local) == weights_sha256(tiny_run / "model") and local != tiny_run / "model"

    again, new = registry.register(tiny_run, "tiny")
    assert not new and again.version == 1  # same weights: the version that holds them, no duplicate

    second, new = registry.register(warm_run, "tiny")
    assert new and second.version == 2 and second.parent_version == 1  # warm-started from version 1's weights
    assert [v.version for v in registry.versions("tiny")] == [2, 1]


def test_promote_and_rollback_move_the_alias_and_keep_who_and_why(store, tiny_run, warm_run):
    registry = Registry(store, create=True)
    registry.register(tiny_run, "tiny")
    registry.register(warm_run, "tiny")
    move = registry.promote("tiny", 1, by="alice@lab", reason="first model")
    assert (move.previous, move.version) == (None, 1)
    registry.promote("tiny", 2, by="thrifty retrain", reason="better on new data")
    assert registry.resolve("tiny").version == 2
    assert registry.version_for_uri("models:/tiny@champion").version == 2
    assert registry.version_for_uri("models:/tiny/1").version == 1

    back = registry.rollback("tiny", by="alice@lab", reason="complaints")
    assert (back.previous, back.version) == (2, 1) and registry.resolve("tiny").version == 1
    moves = registry.history("tiny")
    assert [(m.previous, m.version, m.by) for m in moves] == [(None, 1, "alice@lab"), (1, 2, "thrifty retrain"),
                                                              (2, 1, "alice@lab")]
    assert moves[1].reason == "better on new data" and moves[2].extra == {"rollback": True}
    shown = registry.show("tiny")
    assert shown["aliases"] == {CHAMPION: 1} and [v["version"] for v in shown["versions"]] == [2, 1]
    assert shown["versions"][1]["aliases"] == [CHAMPION]


def test_a_move_the_alias_never_made_is_not_history(store, tiny_run, warm_run):
    """A crash after recording a move as pending and before setting the alias: the history does not claim it."""
    registry = Registry(store, create=True)
    registry.register(tiny_run, "tiny")
    registry.register(warm_run, "tiny")
    registry.promote("tiny", 1, reason="first")
    registry.client.set_registered_model_tag(
        "tiny", f"{MOVE_PREFIX}29990101T000000.000000-dead",
        json.dumps({"alias": CHAMPION, "from": 1, "to": 2, "by": "crashed", "reason": "", "at": "", "state": "pending"}))
    assert registry.resolve("tiny").version == 1
    assert [m.version for m in registry.history("tiny")] == [1]
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback("tiny")  # the only real move had no previous champion


def test_bad_input_is_one_line_and_changes_nothing(store, tiny_run, warm_run, tmp_path, capsys):
    # reading a store that does not exist: named, and not created
    missing = tmp_path / "nowhere" / "mlflow.db"
    assert main(["registry", "list", "--registry", f"sqlite:///{missing}"]) == 2
    assert f"no model registry at {missing}" in capsys.readouterr().err and not missing.exists()
    # a tracking server that is not there: named
    assert main(["registry", "list", "--registry", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "http://127.0.0.1:9 cannot be reached" in err and len(err.strip().splitlines()) == 1

    registry = Registry(store, create=True)
    registry.register(tiny_run, "tiny")
    # an unfinished run
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_run, unfinished)
    status = json.loads((unfinished / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**status, "status": "interrupted"}))
    shutil.rmtree(unfinished / "model")
    with pytest.raises(RunDirError, match="not a finished thrifty run"):
        registry.register(unfinished, "tiny")
    assert main(["registry", "register", str(unfinished), "--name", "tiny", "--registry", store]) == 2
    assert "thrifty train --resume" in capsys.readouterr().err
    # another label set under the same name
    other = tmp_path / "other"
    shutil.copytree(tiny_run / "model", other)
    manifest = json.loads((other / "thrifty.json").read_text())
    (other / "thrifty.json").write_text(json.dumps({**manifest, "labels": ["a", "b", "c"]}))
    with pytest.raises(RegistryError, match="labels"):
        registry.register(other, "tiny")
    # versions and names that do not exist, a bad name
    assert main(["registry", "promote", "tiny", "7", "--registry", store]) == 2
    assert "tiny has no version 7 (versions: 1)" in capsys.readouterr().err
    assert main(["registry", "show", "nosuch", "--registry", store]) == 2
    assert "no registered model named 'nosuch'" in capsys.readouterr().err
    with pytest.raises(RegistryError, match="not allowed"):
        registry.register(tiny_run, "has space")
    with pytest.raises(RegistryError, match="no 'champion' alias yet"):
        registry.resolve("tiny")
    with pytest.raises(RegistryError, match="not a registry model URI"):
        parse_model_uri("models:/tiny")
    assert [v.version for v in registry.versions("tiny")] == [1] and registry.history("tiny") == []


def test_cli_register_list_show_promote_rollback(store, tiny_run, warm_run, capsys):
    assert main(["registry", "register", str(tiny_run), "--name", "tiny", "--registry", store, "--promote",
                 "--reason", "first"]) == 0
    out = capsys.readouterr().out
    assert "registered models:/tiny/1" in out and "tiny@champion: version - -> 1" in out
    assert main(["registry", "register", str(warm_run), "--name", "tiny", "--registry", store]) == 0
    assert "thrifty registry promote tiny 2" in capsys.readouterr().out
    assert main(["registry", "promote", "tiny", "2", "--reason", "fresher data", "--registry", store]) == 0
    assert "tiny@champion: version 1 -> 2" in capsys.readouterr().out
    assert main(["registry", "list", "--registry", store]) == 0
    assert "champion=v2" in capsys.readouterr().out
    assert main(["registry", "rollback", "tiny", "--registry", store]) == 0
    assert "version 2 -> 1" in capsys.readouterr().out
    assert main(["registry", "show", "tiny", "--json", "--registry", store]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["aliases"] == {"champion": 1} and shown["versions"][0]["parent_version"] == 1
    assert [m["reason"] for m in shown["moves"]] == ["first", "fresher data", "rollback from version 2"]
