"""Data-parallel training for real on CPU (gloo): 2 processes reproduce 1, two launcher invocations make a 2-"node"
run, Ctrl-C in one process stops both with a checkpoint, and a resume after kill -9 ends with the weights of an
uninterrupted run. Bad launches are one line."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from thrifty.cli import main

from tests.conftest import tiny_config
from tests.postgres import free_port


def _config(tiny_bert, small_csv, tmp_path, **train) -> str:
    # dropout 0: the 2 processes draw other dropout masks than the 1 (each its own generator), so only without
    # dropout can the curves be compared step by step
    settings = {"epochs": 2, "batch_size": 8, "num_threads": 1, "dropout": 0.0, "eval_every_steps": 4, **train}
    config = tiny_config(tiny_bert, small_csv, **settings)
    config["tracking"]["tensorboard"] = False
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _thrifty(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thrifty", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", **(env or {})})  # a crash's stack


def _losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


@pytest.mark.slow
def test_two_processes_reproduce_one_process_with_the_same_global_batch(tiny_bert, small_csv, tmp_path):
    config = _config(tiny_bert, small_csv, tmp_path)
    one = _thrifty("train", config, "--output", str(tmp_path / "one"))
    two = _thrifty("train", config, "--output", str(tmp_path / "two"), "--processes", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 16  # 60 training texts, batches of 8 over both processes: 8 steps an epoch
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4  # the stated tolerance: float sums in another order
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["validation"]["accuracy"] == m1["validation"]["accuracy"] and m2["train"]["processes"] == 2
    assert m2["validation"]["examples"] == m1["validation"]["examples"] == 20  # sharded, and gathered whole
    assert m2["train"]["tokens"] == m1["train"]["tokens"]  # counted over both processes
    # only the main process prints
    assert two.stdout.count("\ntrained 16 steps") == 1 and two.stdout.count("data: 60 train") == 1
    assert "x 2 processes (multi_cpu, 4 examples each per batch)" in two.stdout


@pytest.mark.slow
def test_two_launcher_invocations_make_a_two_node_run(tiny_bert, small_csv, tmp_path):
    config = _config(tiny_bert, small_csv, tmp_path, epochs=1)
    port = free_port()
    logs = [tmp_path / f"node{rank}.log" for rank in (0, 1)]  # files, not pipes: an unread pipe that fills blocks a node
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
                               "-m", "thrifty", "train", config, "--output", str(tmp_path / "run")],
                              stdout=open(logs[rank], "w"), stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}) for rank in (0, 1)]
    for node in nodes:
        node.wait(timeout=600)
    outputs = [log.read_text() for log in logs]
    assert [n.returncode for n in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train"]["processes"] == 2 and metrics["train"]["steps"] == 8


@pytest.mark.slow
def test_ctrl_c_in_one_process_stops_both_with_a_checkpoint(tiny_bert, small_csv, tmp_path):
    config = _config(tiny_bert, small_csv, tmp_path)
    run = tmp_path / "run"
    stopped = _thrifty("train", config, "--output", str(run), "--processes", "2", env={"THRIFTY_FAULT_AT_STEP": "3:INT@1"})
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "interrupted" and status["step"] == 3
    assert (run / "checkpoint" / "state.pt").exists() and not (run / "metrics.json").exists()
    alone = _thrifty("train", "--resume", str(run))  # one process would split the batches and random draws otherwise
    assert alone.returncode == 2 and "was trained by 2 process(es); resume it with the same number" in alone.stderr
    done = _thrifty("train", "--resume", str(run), "--processes", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["train"]["steps"] == 16


@pytest.mark.slow
def test_resume_after_kill_9_of_one_process_ends_with_the_weights_of_an_uninterrupted_run(tiny_bert, small_csv, tmp_path):
    # dropout on: each process's generator is checkpointed and restored
    config = _config(tiny_bert, small_csv, tmp_path, dropout=0.1, checkpoint_every_steps=2)
    whole = _thrifty("train", config, "--output", str(tmp_path / "whole"), "--processes", "2")
    assert whole.returncode == 0, whole.stderr[-3000:]
    cut = tmp_path / "cut"
    killed = _thrifty("train", config, "--output", str(cut), "--processes", "2", env={"THRIFTY_FAULT_AT_STEP": "5:KILL@1"})
    assert killed.returncode != 0 and "rank 1 (killed by signal 9)" in killed.stderr
    assert not (cut / "metrics.json").exists()
    resumed = _thrifty("train", "--resume", str(cut), "--processes", "2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _weights(tmp_path / "whole"), _weights(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_more_processes_than_the_machine_has_is_one_line(tiny_bert, small_csv, tmp_path, capsys):
    code = main(["train", _config(tiny_bert, small_csv, tmp_path), "--output", str(tmp_path / "run"), "--processes", "999"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--processes 999 but this machine has" in err
    assert not (tmp_path / "run").exists()


def test_an_inconsistent_launcher_environment_is_one_line(tiny_bert, small_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    code = main(["train", _config(tiny_bert, small_csv, tmp_path), "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "RANK=5 with WORLD_SIZE=2" in err


def test_fewshot_refuses_several_processes(tiny_bert, small_csv, tmp_path, monkeypatch, capsys):
    for key, value in {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(key, value)
    config = yaml.safe_load(open(_config(tiny_bert, small_csv, tmp_path)))
    config["strategy"] = {"name": "fewshot"}
    (tmp_path / "fewshot.yaml").write_text(yaml.safe_dump(config))
    code = main(["train", str(tmp_path / "fewshot.yaml"), "--output", str(tmp_path / "run")])
    assert code == 2 and "run it in one process" in capsys.readouterr().err


def test_the_estimate_of_two_processes_times_one_process_share_and_adds_the_gradient_exchange(tiny_bert, small_csv,
                                                                                                 tmp_path):
    from thrifty.cost.estimate import estimate

    config = yaml.safe_load(open(_config(tiny_bert, small_csv, tmp_path)))
    config["cost"] = {"reuse_calibration": False}
    one, two = estimate(config, calibration_steps=2), estimate(config, calibration_steps=2, processes=2)
    assert one["processes"] == 1 and one["communication_seconds_per_step"] == 0
    assert two["processes"] == 2 and two["calibration"]["threads"] == max(1, (os.cpu_count() or 1) // 2)
    trainable_bytes = one["trainable_parameters"] * 4
    assert two["communication_seconds_per_step"] > trainable_bytes / 1.2e9  # at least the gradients once
    assert two["steps"] == one["steps"] and two["train_flops"] == one["train_flops"]  # the same run, split


# --------------------------------------------------------------------------------------------------
# FSDP2: the model sharded between the processes


@pytest.mark.slow
@pytest.mark.parametrize("strategy,precision", [("full", "fp32"), ("lora", "auto")])
def test_fsdp_on_a_small_decoder_trains_like_ddp_resumes_and_saves_one_safetensors_model(tiny_llama, small_csv, tmp_path,
                                                                                          strategy, precision):
    config = yaml.safe_load(open(_config(tiny_llama, small_csv, tmp_path, checkpoint_every_steps=2, precision=precision)))
    config["strategy"] = {"name": strategy}
    path = tmp_path / "decoder.yaml"
    path.write_text(yaml.safe_dump(config))
    ddp = _thrifty("train", str(path), "--output", str(tmp_path / "ddp"), "--processes", "2")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    sharded = _thrifty("train", str(path), "--output", str(tmp_path / "fsdp"), "--processes", "2", "--train.fsdp", "true")
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert "FSDP2: weights, gradients and optimizer state sharded over 2 processes (2 layers" in sharded.stdout
    # the same arithmetic, other collectives: the same loss curve and accuracy. In fp32 to 1e-5 (measured: 1e-6). The
    # two add the gradients' squares for clipping in another order, and under bf16 autocast (auto on a CPU with bf16)
    # a weight's last bit can then round a product the other way: the same first step, curves within 2e-3 (measured
    # with full fine-tuning: 4e-4 after 16 steps; a gradient averaged wrongly parts them by far more)
    ddp_losses, fsdp_losses = _losses(tmp_path / "ddp"), _losses(tmp_path / "fsdp")
    assert abs(ddp_losses[0] - fsdp_losses[0]) < 1e-6
    assert max(abs(x - y) for x, y in zip(ddp_losses, fsdp_losses)) < (1e-5 if precision == "fp32" else 2e-3)
    accuracy = [json.loads((tmp_path / r / "metrics.json").read_text())["validation"]["accuracy"] for r in ("ddp", "fsdp")]
    assert accuracy[0] == accuracy[1]
    # one consolidated model, as a single process would save it, that predicts on its own
    model = tmp_path / "fsdp" / "model"
    saved = sorted(p.name for p in model.glob("*.safetensors"))
    assert saved == (["model.safetensors"] if strategy == "full" else ["adapter_model.safetensors"])
    predicted = _thrifty("predict", str(model), "--text", "I loved this wonderful film")
    assert predicted.returncode == 0 and json.loads(predicted.stdout.splitlines()[0])["label"] in ("pos", "neg")
    # kill -9 of one process, resume: the weights of the uninterrupted sharded run
    cut = tmp_path / "cut"
    killed = _thrifty("train", str(path), "--output", str(cut), "--processes", "2", "--train.fsdp", "true",
                      env={"THRIFTY_FAULT_AT_STEP": "5:KILL@1"})
    assert killed.returncode != 0 and not (cut / "metrics.json").exists()
    shards = sorted(p.name for p in (cut / "checkpoint").glob("*.safetensors"))  # each process wrote its own
    assert shards == [f"{kind}.rank{r}-of-2.safetensors" for kind in ("best", "optimizer", "trainable") for r in (0, 1)]
    resumed = _thrifty("train", "--resume", str(cut), "--processes", "2")
    if resumed.returncode != 0 and "(killed by signal 11)" in resumed.stderr:
        # Seen once in ~20 sharded resumes on this CPU (an earlier checkpoint code): a segmentation fault inside gloo,
        # which the next --resume (from the last checkpoint, as a user would) got past; docs/distributed.md says so
        resumed = _thrifty("train", "--resume", str(cut), "--processes", "2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = (load_file(str(r / "model" / saved[0])) for r in (tmp_path / "fsdp", cut))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_fsdp_refuses_a_strategy_that_trains_little(tiny_bert, small_csv, tmp_path, capsys):
    code = main(["train", _config(tiny_bert, small_csv, tmp_path), "--output", str(tmp_path / "run"),
                 "--strategy.name", "freeze", "--train.fsdp", "true"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "train.fsdp shards a model whose weights are trained" in err
