"""Distributed helpers, and two gloo processes on CPU against one process: same losses per
step and same final parameters for the same global batch."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnkit.train.checkpoint import load_checkpoint
from attnkit.train.distributed import (
    all_reduce_sum,
    barrier,
    gather_objects,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    unwrap_model,
    wrap_model,
)

SCRIPT = Path(__file__).with_name("_train_script.py")
_spec = importlib.util.spec_from_file_location("_attnkit_train_script", SCRIPT)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT", "GROUP_RANK", "ROLE_RANK")


@pytest.fixture
def clean_env(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_single_process_helpers_are_no_ops(clean_env):
    info = init_distributed(backend="gloo")
    assert (info.rank, info.world_size, info.backend) == (0, 1, None)
    assert info.device == torch.device("cpu")
    assert not is_distributed() and is_main_process()
    assert get_rank() == 0 and get_world_size() == 1
    barrier()
    tensor = torch.tensor([1.0, 2.0])
    assert all_reduce_sum(tensor) is tensor and tensor.tolist() == [1.0, 2.0]
    assert gather_objects({"a": 1}) == [{"a": 1}]
    model = torch.nn.Linear(2, 2)
    assert wrap_model(model) is model and unwrap_model(model) is model


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "2"}, "RANK"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "1234"}, "MASTER_ADDR"),
    ({"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}, "RANK"),
])
def test_missing_or_bad_torchrun_variables_are_named(clean_env, env, message):
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        init_distributed(backend="gloo")
    assert not is_distributed()


def test_nccl_without_cuda_is_refused(clean_env):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    with pytest.raises(ValueError, match="nccl"):
        init_distributed(backend="nccl")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


STEPS = 10
COMMON = ["--dtype", "float64", "--dropout", "0", "--max-steps", str(STEPS),
          "--checkpoint-every", "5"]


def metric_losses(out_dir: Path) -> list[tuple[int, float]]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines)]


def test_two_gloo_processes_match_one_process(tmp_path, clean_env):
    """Two processes x two accumulated micro-batches of 2 rows == one process with 8 rows."""
    port = free_port()
    procs = []
    for rank in range(2):
        env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
        env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen(
            [sys.executable, str(SCRIPT), str(tmp_path / "ddp"), *COMMON, "--accum", "2",
             "--summary", str(tmp_path / "ddp.json")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    # the single-process reference runs here while the two processes start up
    script.run_in_process([str(tmp_path / "single"), *COMMON, "--summary",
                           str(tmp_path / "single.json")])
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=300)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outputs)

    single, ddp = metric_losses(tmp_path / "single"), metric_losses(tmp_path / "ddp")
    assert [s for s, _ in ddp] == list(range(1, STEPS + 1))
    assert [loss for _, loss in ddp] == pytest.approx([loss for _, loss in single], rel=1e-10)
    got, expected = load_checkpoint(tmp_path / "ddp"), load_checkpoint(tmp_path / "single")
    assert got.step == expected.step == STEPS
    assert len(got.rng) == 2 and got.rng[0] != got.rng[1]  # one RNG state per process
    for name, value in expected.model_state.items():
        torch.testing.assert_close(got.model_state[name], value, rtol=1e-9, atol=1e-12)
    summary = json.loads((tmp_path / "ddp.json").read_text())
    assert summary["tokens"] == json.loads((tmp_path / "single.json").read_text())["tokens"]
