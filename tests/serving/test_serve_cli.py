"""`thrifty serve` and `thrifty migrate` from the command line: clear refusals before a port opens, and a real server
process that finishes its requests and flushes its log on SIGTERM."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from thrifty.cli import main

from tests.postgres import free_port
from tests.serving.server_helpers import call, wait_ready


def run_main(capsys, args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_failure(code, err, fragment):
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert fragment in err, err


def test_a_missing_model_folder_is_refused(capsys, tmp_path):
    one_line_failure(*run_main(capsys, ["serve", tmp_path / "nothing"])[::2], "model folder not found")


def test_a_port_in_use_is_refused(capsys, tiny_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_main(capsys, ["serve", tiny_run, "--port", port, "--no-log"])
    one_line_failure(code, err, f"cannot listen on 127.0.0.1:{port}")


def test_an_unreachable_database_is_refused_before_serving(capsys, tiny_run):
    code, _, err = run_main(capsys, ["serve", tiny_run, "--port", free_port(), "--db",
                                     f"postgresql://thrifty@127.0.0.1:{free_port()}/nothing"])
    one_line_failure(code, err, "cannot open the prediction log")
    assert "--no-log" in err


def test_bad_serve_settings_are_refused(capsys, tiny_run):
    code, _, err = run_main(capsys, ["serve", tiny_run, "--serve.max_batch_textz", "8"])
    one_line_failure(code, err, "did you mean 'max_batch_texts'")
    code, _, err = run_main(capsys, ["serve", tiny_run, "--port", "70000"])
    one_line_failure(code, err, "serve.port=70000")
    code, _, err = run_main(capsys, ["serve", tiny_run, "--lanes", "0"])
    one_line_failure(code, err, "serve.lanes=0")


def test_lanes_for_a_tagger_are_refused_before_a_port_opens(capsys, tiny_run, tmp_path):
    import json
    import shutil

    tagger = tmp_path / "tagger"
    shutil.copytree(tiny_run, tagger)
    manifest = tagger / "model" / "thrifty.json"  # only the task differs: serve refuses before loading anything
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "task": "token_classification"}))
    code, _, err = run_main(capsys, ["serve", tagger, "--lanes", "2", "--no-log"])
    one_line_failure(code, err, "serve.lanes=2: lanes run classification passes")


def test_migrate_creates_the_schema(capsys, tmp_path):
    code, out, _ = run_main(capsys, ["migrate", "--db", tmp_path / "log.db"])
    assert code == 0 and "revision 0002" in out
    tables = {r[0] for r in sqlite3.connect(tmp_path / "log.db").execute("SELECT name FROM sqlite_master")}
    assert {"predictions", "thrifty_locks"} <= tables


def test_migrate_upgrades_a_log_made_by_the_first_schema(capsys, tmp_path):
    """A prediction log made before the retrain lock existed (schema 0001) is upgraded in place, its rows kept."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from thrifty.serving.predlog import MIGRATIONS, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.exec_driver_sql("INSERT INTO predictions (id, created_at, model_name, model_version, text_sha256, "
                                   "text_chars, result, latency_ms) VALUES ('a', '2026-11-01', 'm', 'v', 'h', 1, '{}', 1)")
    engine.dispose()
    code, out, _ = run_main(capsys, ["migrate", "--db", tmp_path / "old.db"])
    assert code == 0 and "revision 0002" in out
    db = sqlite3.connect(tmp_path / "old.db")
    assert db.execute("SELECT count(*) FROM predictions").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM thrifty_locks").fetchone() == (0,)


@pytest.mark.slow
def test_sigterm_finishes_requests_in_flight_and_flushes_the_log(tiny_run, tmp_path):
    port, db = free_port(), tmp_path / "log.db"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    server = subprocess.Popen([sys.executable, "-m", "thrifty", "serve", str(tiny_run), "--port", str(port),
                               "--db", str(db), "--serve.max_wait_ms", "400", "--serve.threads", "2"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_ready(base, server), server.stdout.read()
        answers = []

        def ask(i):
            answers.append(call(base, "POST", "/v1/predict", {"texts": [f"in flight {i}", "b", "c"]}))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.2)  # the requests wait in the batcher (max_wait_ms 400) when SIGTERM arrives
        server.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        assert server.wait(60) == 0
    finally:
        if server.poll() is None:
            server.kill()
    output = server.stdout.read()
    assert [status for status, _ in answers] == [200] * 4, output
    logged = sqlite3.connect(db).execute("SELECT count(*) FROM predictions").fetchone()[0]
    assert logged == 12, output
    assert "prediction log: sqlite:///" in output
