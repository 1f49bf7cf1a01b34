"""What commands show while they work (thrifty.console): a bar with an ETA on a terminal, one clean line per stage in
a redirected log, nothing with --quiet, and no library warnings or INFO lines unless --debug."""

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from thrifty import console


@pytest.fixture
def plain_log(monkeypatch):
    """stderr is not a terminal (as in a log file): the settings a CLI run would make."""
    monkeypatch.setattr(console.SETTINGS, "quiet", False)
    monkeypatch.setattr(console.SETTINGS, "showing", 0)
    monkeypatch.setattr(type(console.SETTINGS), "interactive", property(lambda self: False))


def test_a_stage_is_one_line_in_a_log_and_a_long_one_reports_each_tenth_with_its_eta(plain_log, capsys, monkeypatch):
    with console.Progress("predict", 40, "text") as bar:
        for _ in range(40):
            bar.update(1)
    assert capsys.readouterr().err == ""  # under a second: not worth a line
    monkeypatch.setattr(console.Progress, "END_LINE_AFTER_SECONDS", 0.0)  # a stage of a few seconds: its one line
    with console.Progress("predict", 40, "text") as bar:
        for _ in range(40):
            bar.update(1)
    err = capsys.readouterr().err
    assert err.splitlines() == [err.splitlines()[0]] and err.startswith("predict: 40 texts in ")
    monkeypatch.setattr(console.Progress, "LINE_AFTER_SECONDS", 0.0)  # a stage past a few seconds
    with console.Progress("write answers", 20, "answer") as bar:
        for _ in range(20):
            bar.update(1)
            time.sleep(0.001)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and all("ETA" in line for line in lines[:9]) and "\r" not in "".join(lines)
    assert lines[0].startswith("write answers: 2/20 answers (10%)") and lines[-1].startswith("write answers: 20 answers in")


def test_loops_show_progress_only_inside_showing_and_never_when_quiet(plain_log, capsys, monkeypatch):
    def loop():
        with console.passes("predict", 3, "text") as bar:
            bar.update(3)

    monkeypatch.setattr(console.Progress, "END_LINE_AFTER_SECONDS", 0.0)
    loop()  # a server or a training run's evaluation: silent
    assert capsys.readouterr().err == ""
    with console.showing():
        loop()
    assert capsys.readouterr().err.startswith("predict: 3 texts in")
    monkeypatch.setattr(console.SETTINGS, "quiet", True)
    with console.showing():
        loop()
    assert capsys.readouterr().err == ""


def run_in_terminal(args, timeout=240):
    """The CLI on a pseudo-terminal, as a person sees it: everything it writes."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, its stdout and stderr on a terminal of 120 x 40 (a new one has no size)
        import fcntl
        import struct
        import termios

        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.execv(sys.executable, [sys.executable, "-m", "thrifty", *map(str, args)])
    out, deadline = b"", time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    os.waitpid(pid, 0)
    return out.decode("utf-8", "replace")


def test_predict_on_a_terminal_shows_a_bar_with_an_eta_and_in_a_log_plain_lines(tiny_run, tmp_path, capsys,
                                                                                  monkeypatch):
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"I loved this wonderful film number {i}\n" for i in range(1000)))
    shown = run_in_terminal(["predict", tiny_run, "--input", texts, "--output-file", tmp_path / "a.jsonl",
                             "--batch-size", "8"])
    assert re.search(r"predict: +\d+%\|.*\| \d+/1000 \[\d\d:\d\d<", shown)  # a bar, its count, [elapsed<remaining]
    assert "wrote 1000 predictions" in shown
    from thrifty.cli import main

    monkeypatch.setattr(console.Progress, "END_LINE_AFTER_SECONDS", 0.0)  # however quick, the stage says it ended
    assert main(["predict", str(tiny_run), "--input", str(texts), "--output-file", str(tmp_path / "b.jsonl")]) == 0
    logged = capsys.readouterr().err  # not a terminal: plain lines
    assert "\r" not in logged and "%|" not in logged
    assert logged.splitlines()[0].startswith("predict: 1,000 texts in ")
    assert logged.splitlines()[-1] == f"wrote 1000 predictions to {tmp_path / 'b.jsonl'}"
    assert main(["predict", str(tiny_run), "--input", str(texts), "--output-file", str(tmp_path / "c.jsonl"), "--quiet"]) == 0
    assert capsys.readouterr().err.splitlines() == [f"wrote 1000 predictions to {tmp_path / 'c.jsonl'}"]


@pytest.mark.slow
def test_export_prints_no_library_warnings_unless_debug(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    done = subprocess.run([sys.executable, "-m", "thrifty", "export", str(run), "--format", "onnx", "--quantize", "int8",
                           "--force"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "WARNING" not in done.stderr, done.stderr
    # nothing but its own stage lines (those of a second or more: how many depends on the machine's speed)
    assert all(line.startswith(("export: ", "predict: ")) for line in done.stderr.splitlines()), done.stderr
    shutil.rmtree(run / "model" / "onnx")
    debug = subprocess.run([sys.executable, "-m", "thrifty", "--debug", "export", str(run), "--format", "onnx"],
                           capture_output=True, text=True, timeout=300)
    assert debug.returncode == 0 and "TracerWarning" in debug.stderr  # shown when asked for


def test_registry_commands_print_no_library_log_lines(tiny_run, tmp_path):
    """MLflow logs 'Creating initial MLflow database tables...' and Alembic its migrations at INFO on a new store."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-m", "thrifty", "registry", "register", str(tiny_run), "--name", "films",
                           "--promote", "--reason", "first", "--registry", store], capture_output=True, text=True,
                          timeout=240, env={k: v for k, v in os.environ.items() if k != "MLFLOW_LOGGING_LEVEL"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("registered models:/films/1") and "INFO" not in done.stdout + done.stderr
