"""Trainer: config validation, losses, accumulation, AMP, eval/metrics, and exact resume after
SIGKILL and SIGINT of a training subprocess."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from attnkit.train.checkpoint import load_checkpoint
from attnkit.train.losses import lm_loss_fn, seq2seq_loss_fn, token_cross_entropy
from attnkit.train.trainer import TrainConfig, Trainer, build_optimizer, resolve_amp

SCRIPT = Path(__file__).with_name("_train_script.py")
_spec = importlib.util.spec_from_file_location("_attnkit_train_script", SCRIPT)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)

# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("field, value", [
    ("max_steps", 0), ("lr", 0.0), ("lr", float("nan")), ("min_lr", -1.0),
    ("weight_decay", -0.1), ("betas", (0.9,)), ("betas", (0.9, 1.0)), ("eps", 0.0),
    ("warmup_steps", -1), ("schedule", "linear-ish"), ("grad_clip", -1.0),
    ("horizon", "minutes"), ("eval_every_s", -1.0),
    ("label_smoothing", 1.0), ("accum_steps", 0), ("amp", "fp16"), ("eval_every", -1),
    ("checkpoint_every", 1.5), ("keep_checkpoints", 0), ("out_dir", 3), ("seed", -1),
    ("log_every", 0), ("progress", "yes"), ("max_steps", True),
])
def test_config_rejects_bad_fields_by_name(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def test_config_min_lr_above_lr():
    with pytest.raises(ValueError, match="min_lr"):
        TrainConfig(lr=1e-3, min_lr=1e-2)


# ----------------------------------------------------------------------------- losses


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_token_cross_entropy_matches_torch_with_ignore_index(smoothing):
    logits = torch.randn(3, 5, 11, dtype=torch.float64)
    targets = torch.randint(1, 11, (3, 5))
    targets[0, 3:] = 0
    targets[2, 1:] = 0
    loss_sum, count = token_cross_entropy(logits, targets, pad_id=0, label_smoothing=smoothing)
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=0,
                               label_smoothing=smoothing, reduction="sum")
    assert count == int((targets != 0).sum()) == 9
    torch.testing.assert_close(loss_sum, expected, rtol=1e-12, atol=1e-12)


def test_token_cross_entropy_without_pad_and_in_bf16():
    logits = torch.randn(4, 7)
    targets = torch.tensor([0, 1, 2, 3])
    loss_sum, count = token_cross_entropy(logits.bfloat16(), targets, pad_id=None)
    assert count == 4 and loss_sum.dtype == torch.float32
    expected = F.cross_entropy(logits.bfloat16().float(), targets, reduction="sum")
    torch.testing.assert_close(loss_sum, expected)


def test_token_cross_entropy_rejects_bad_input():
    with pytest.raises(ValueError, match="leading dims"):
        token_cross_entropy(torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="targets"):
        token_cross_entropy(torch.randn(2, 5), torch.zeros(2))
    with pytest.raises(ValueError, match="label_smoothing"):
        token_cross_entropy(torch.randn(2, 5), torch.zeros(2, dtype=torch.long),
                            label_smoothing=1.0)


class EchoSeq2Seq(torch.nn.Module):
    """Logits from target-input embeddings plus the mean source embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(9, 9)

    def forward(self, src, src_lengths, tgt_in):
        return self.embed(tgt_in) + self.embed(src).mean(1, keepdim=True)  # (B, T, V)


def test_seq2seq_and_lm_loss_fns():
    model = EchoSeq2Seq()
    batch = {"src": torch.tensor([[4, 5, 0]]), "src_lengths": torch.tensor([2]),
             "tgt_in": torch.tensor([[1, 6, 7]]), "tgt_out": torch.tensor([[6, 7, 2]])}
    loss_sum, count = seq2seq_loss_fn(label_smoothing=0.1)(model, batch)
    logits = model(batch["src"], batch["src_lengths"], batch["tgt_in"])
    expected = F.cross_entropy(logits[0], batch["tgt_out"][0], label_smoothing=0.1,
                               reduction="sum")
    assert count == 3
    torch.testing.assert_close(loss_sum, expected)

    lm = script.TinyLM(dropout=0.0).eval()
    tokens = script.make_batch(0)
    loss_a, count_a = lm_loss_fn(pad_id=0)(lm, tokens)
    loss_b, count_b = lm_loss_fn(pad_id=0)(lm, (tokens[:, :-1], tokens[:, 1:]))
    assert count_a == count_b == int((tokens[:, 1:] != 0).sum())
    assert torch.equal(loss_a, loss_b)
    with pytest.raises(TypeError, match="lm batch"):
        lm_loss_fn()(lm, [tokens])


# ----------------------------------------------------------------------------- optimizer, amp


def test_no_weight_decay_on_biases_norms_and_embeddings():
    model = script.TinyLM()
    optimizer = build_optimizer(model, TrainConfig(weight_decay=0.1))
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    decay_ids = {id(p) for p in decay["params"]}
    assert decay_ids == {id(model.mix.weight), id(model.ff[0].weight), id(model.ff[3].weight)}
    assert id(model.embed.weight) not in decay_ids  # also the tied head
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_fused_adamw_matches_the_per_tensor_loop():
    # The fused kernel is the default; it must take the same steps as PyTorch's loop.
    torch.manual_seed(0)
    models = [script.TinyLM(dropout=0.0) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    optimizers = [build_optimizer(m, TrainConfig(lr=1e-2, fused_optimizer=fused))
                  for m, fused in zip(models, (True, False), strict=True)]
    assert optimizers[0].param_groups[0]["fused"] is True
    assert not optimizers[1].param_groups[0]["fused"]
    batch = torch.randint(1, script.VOCAB, (4, 9))
    for _ in range(3):
        for model, optimizer in zip(models, optimizers, strict=True):
            optimizer.zero_grad()
            loss, count = lm_loss_fn()(model, batch)
            (loss / count).backward()
            optimizer.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="fused_optimizer"):
        TrainConfig(fused_optimizer="yes")


def test_reuse_memory_is_checked_and_applies_once():
    import platform
    import sys

    from attnkit.train.allocator import keep_freed_memory

    with pytest.raises(ValueError, match="reuse_memory"):
        TrainConfig(reuse_memory=1)
    first = keep_freed_memory()
    assert isinstance(first, bool) and keep_freed_memory() is first
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert first == glibc  # applied exactly where glibc's mallopt exists


def test_resolve_amp():
    cpu = torch.device("cpu")
    assert resolve_amp("off", cpu) is None
    assert resolve_amp("bf16", cpu) is torch.bfloat16
    assert resolve_amp("auto", cpu) is None  # float32 on every CPU, AMX or not
    with pytest.raises(ValueError, match="amp"):
        resolve_amp("fp8", cpu)


def test_bf16_autocast_is_used_for_the_loss(tmp_path):
    seen = []

    def loss_fn(model, batch):
        logits = model(batch[:, :-1])
        seen.append(logits.dtype)
        return token_cross_entropy(logits, batch[:, 1:], pad_id=0)

    model = script.TinyLM(dropout=0.0)
    config = TrainConfig(max_steps=2, amp="bf16", warmup_steps=0, progress=False)
    summary = Trainer(model, config, script.make_batch_fn(), loss_fn).fit()
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert model.mix.weight.dtype == torch.float32 and math.isfinite(summary["loss"])


# ----------------------------------------------------------------------------- the loop


def run_trainer(accum_steps: int, max_steps: int = 4, **overrides):
    torch.manual_seed(0)
    model = script.TinyLM(dropout=0.0).double()
    config = TrainConfig(max_steps=max_steps, lr=3e-2, warmup_steps=2, amp="off",
                         accum_steps=accum_steps, log_every=1, progress=False,
                         **overrides)
    trainer = Trainer(model, config, script.make_batch_fn(accum_steps),
                      lm_loss_fn(pad_id=0, label_smoothing=0.1))
    return model, trainer.fit()


def test_accumulation_of_half_batches_equals_full_batches():
    model_1, summary_1 = run_trainer(accum_steps=1)
    model_2, summary_2 = run_trainer(accum_steps=2)
    losses_1 = [r["loss"] for r in summary_1["metrics"]]
    losses_2 = [r["loss"] for r in summary_2["metrics"]]
    assert losses_1 == pytest.approx(losses_2, rel=1e-12)
    assert summary_1["tokens"] == summary_2["tokens"]
    for p1, p2 in zip(model_1.parameters(), model_2.parameters(), strict=True):
        torch.testing.assert_close(p1, p2, rtol=1e-10, atol=1e-12)


def test_logged_loss_and_grad_norm_are_token_means():
    torch.manual_seed(0)
    model = script.TinyLM(dropout=0.0).double()
    batch = script.make_batch(0)
    # run_trainer's loss: label smoothing 0.1, mean over the non-pad tokens of the step
    loss_sum, count = token_cross_entropy(model(batch[:, :-1]), batch[:, 1:], pad_id=0,
                                          label_smoothing=0.1)
    (loss_sum / count).backward()
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters())).item()
    _, summary = run_trainer(accum_steps=2, max_steps=1, grad_clip=0.0)
    first = summary["metrics"][0]
    assert first["grad_norm"] == pytest.approx(norm, rel=1e-10)
    assert first["loss"] == pytest.approx(loss_sum.item() / count, rel=1e-12)


def test_eval_metrics_log_and_summary(tmp_path):
    calls = []

    def eval_fn(model):
        calls.append((model.training, torch.is_grad_enabled()))
        return {"score": 1.5}

    torch.manual_seed(0)
    config = TrainConfig(max_steps=5, warmup_steps=1, amp="off", eval_every=2, log_every=2,
                         out_dir=str(tmp_path / "run"), progress=False)
    summary = Trainer(script.TinyLM(), config, script.make_batch_fn(),
                      lm_loss_fn(pad_id=0), eval_fn).fit()
    assert calls == [(False, False)] * 3  # steps 2, 4 and the last
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["event"], r["step"]) for r in lines] == [
        ("train", 2), ("eval", 2), ("train", 4), ("eval", 4), ("train", 5), ("eval", 5)]
    assert set(lines[0]) >= {"step", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed"}
    assert lines[1]["score"] == 1.5
    assert summary["eval"] == {"score": 1.5} and summary["step"] == 5
    assert summary["metrics"] == lines
    assert summary["checkpoint"].endswith("ckpt-00000005")
    assert not summary["interrupted"]


def test_fresh_run_refuses_an_out_dir_with_checkpoints(tmp_path):
    config = TrainConfig(max_steps=1, amp="off", out_dir=str(tmp_path), progress=False)
    Trainer(script.TinyLM(), config, script.make_batch_fn(), lm_loss_fn(pad_id=0)).fit()
    with pytest.raises(ValueError, match="resume=True"):
        Trainer(script.TinyLM(), config, script.make_batch_fn(), lm_loss_fn(pad_id=0))
    resumed = Trainer(script.TinyLM(), config, script.make_batch_fn(), lm_loss_fn(pad_id=0),
                      resume=True)
    assert resumed.step == 1 and resumed.fit()["step"] == 1  # already done: nothing to do
    changed = TrainConfig(max_steps=2, lr=1e-2, amp="off", out_dir=str(tmp_path),
                          progress=False)
    with pytest.warns(UserWarning, match=r"changed config fields \['lr'\]"):
        Trainer(script.TinyLM(), changed, script.make_batch_fn(), lm_loss_fn(pad_id=0),
                resume=True)


def test_request_stop_checkpoints_and_returns(tmp_path):
    trainer = None

    def batch_fn(index, rank, world_size):
        if index == 1:
            trainer.request_stop()
        return script.make_batch(index)

    config = TrainConfig(max_steps=10, amp="off", out_dir=str(tmp_path), progress=False)
    trainer = Trainer(script.TinyLM(), config, batch_fn, lm_loss_fn(pad_id=0))
    summary = trainer.fit()
    assert summary["interrupted"] and summary["step"] == 2 and summary["signal"] is None
    assert load_checkpoint(tmp_path).step == 2


def test_sigterm_finishes_the_step_checkpoints_and_restores_handlers(tmp_path):
    before = signal.getsignal(signal.SIGTERM)

    def batch_fn(index, rank, world_size):
        if index == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the trainer: a flag, no exit
        return script.make_batch(index)

    config = TrainConfig(max_steps=10, amp="off", out_dir=str(tmp_path), progress=False)
    summary = Trainer(script.TinyLM(), config, batch_fn, lm_loss_fn(pad_id=0)).fit()
    assert summary["interrupted"] and summary["signal"] == "SIGTERM" and summary["step"] == 3
    assert load_checkpoint(tmp_path).step == 3
    assert signal.getsignal(signal.SIGTERM) is before


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch):
    config = TrainConfig(max_steps=3, amp="off", warmup_steps=1)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    Trainer(script.TinyLM(), config, script.make_batch_fn(), lm_loss_fn(pad_id=0)).fit()
    shown = terminal.getvalue()
    assert "3/3" in shown and "loss=" in shown and "tok_s=" in shown
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    Trainer(script.TinyLM(), config, script.make_batch_fn(), lm_loss_fn(pad_id=0)).fit()
    assert piped.getvalue() == ""


def test_loss_fn_contract_errors():
    config = TrainConfig(max_steps=1, amp="off", progress=False)
    bad = Trainer(script.TinyLM(), config, script.make_batch_fn(),
                  lambda model, batch: (torch.tensor(1.0), 3))
    with pytest.raises(ValueError, match="require grad"):
        bad.fit()
    with pytest.raises(TypeError, match="batch_fn"):
        Trainer(script.TinyLM(), config, None, lm_loss_fn())


# ----------------------------------------------------------------------------- crash and resume

MAX_STEPS, EVERY, PAUSE_AT = 8, 3, 4
RUN_ARGS = ["--max-steps", str(MAX_STEPS), "--checkpoint-every", str(EVERY)]


def start_paused_run(out_dir: Path) -> tuple[subprocess.Popen, queue.Queue]:
    """Start the script; it pauses inside training step PAUSE_AT + 1 (after ckpt-3)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out_dir), *RUN_ARGS, "--pause-at", str(PAUSE_AT),
         "--summary", str(out_dir.with_suffix(".json"))],
        stdout=subprocess.PIPE, stderr=open(out_dir.with_suffix(".err"), "w"), text=True,
        env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout] + [lines.put("")],
                     daemon=True).start()
    return proc, lines


def wait_paused(proc, lines, out_dir: Path) -> None:
    try:
        line = lines.get(timeout=300)
    except queue.Empty:
        proc.kill()
        pytest.fail("training subprocess did not reach the pause point in 300 s")
    if line.strip() != "PAUSED":
        proc.wait(timeout=60)
        pytest.fail(f"training subprocess ended early (rc {proc.returncode}):\n"
                    f"{out_dir.with_suffix('.err').read_text()}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two paused subprocesses (started together so their imports overlap) and an
    uninterrupted in-process reference run with the same seed."""
    root = tmp_path_factory.mktemp("resume")
    procs = {name: start_paused_run(root / name) for name in ("killed", "interrupted")}
    script.run_in_process([str(root / "reference"), *RUN_ARGS,
                           "--summary", str(root / "reference.json")])
    yield root, procs
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def metric_steps(out_dir: Path) -> list[tuple[int, float]]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines)]


def assert_same_final_state(run: Path, reference: Path) -> None:
    got, expected = load_checkpoint(run), load_checkpoint(reference)
    assert got.step == expected.step == MAX_STEPS
    assert got.model_state.keys() == expected.model_state.keys()
    for name in expected.model_state:
        assert torch.equal(got.model_state[name], expected.model_state[name]), name
    for index, state in expected.optimizer_state["state"].items():
        for key, value in state.items():
            assert torch.equal(got.optimizer_state["state"][index][key], value), (index, key)
    assert got.rng == expected.rng
    summary = json.loads(run.with_suffix(".json").read_text())
    reference_summary = json.loads(reference.with_suffix(".json").read_text())
    assert summary["loss"] == reference_summary["loss"]  # bit-identical float
    assert metric_steps(run) == metric_steps(reference)  # no lost or duplicated steps


def test_resume_after_sigkill_is_bit_identical(runs):
    root, procs = runs
    proc, lines = procs["killed"]
    out = root / "killed"
    wait_paused(proc, lines, out)
    assert (out / "ckpt-00000003" / "state.json").is_file()
    os.kill(proc.pid, signal.SIGKILL)  # mid step 5: steps 4-5 are lost
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert load_checkpoint(out).step == EVERY
    assert [s for s, _ in metric_steps(out)] == [1, 2, 3, 4]  # step 4 logged, not saved
    script.run_in_process([str(out), *RUN_ARGS, "--resume", "--summary",
                           str(out.with_suffix(".json"))])
    assert json.loads(out.with_suffix(".json").read_text())["resumed_from"] == EVERY
    assert_same_final_state(out, root / "reference")


def test_sigint_saves_a_checkpoint_and_resumes_bit_identical(runs):
    root, procs = runs
    proc, lines = procs["interrupted"]
    out = root / "interrupted"
    wait_paused(proc, lines, out)
    os.kill(proc.pid, signal.SIGINT)  # the step in progress finishes, then a checkpoint
    assert proc.wait(timeout=120) == 128 + signal.SIGINT
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["interrupted"] and summary["signal"] == "SIGINT"
    assert summary["step"] == PAUSE_AT + 1
    assert (out / "latest").read_text().strip() == f"ckpt-{PAUSE_AT + 1:08d}"
    assert [s for s, _ in metric_steps(out)] == list(range(1, PAUSE_AT + 2))
    script.run_in_process([str(out), *RUN_ARGS, "--resume", "--summary",
                           str(out.with_suffix(".json"))])
    assert_same_final_state(out, root / "reference")


def test_wall_clock_budget_ends_the_run_with_eval_and_checkpoint(tmp_path, monkeypatch):
    batch_fn = ten_second_batches(monkeypatch)

    evals = []
    config = TrainConfig(max_steps=100, max_time_s=25.0, amp="off", out_dir=str(tmp_path),
                         progress=False)
    summary = Trainer(script.TinyLM(), config, batch_fn, lm_loss_fn(pad_id=0),
                      lambda model: evals.append(1) or {"score": 1.0}).fit()
    # Steps 1 and 2 end at 10 s and 20 s; step 3 crosses 25 s and is the last one.
    assert summary["step"] == 3 and summary["out_of_time"] and not summary["interrupted"]
    assert evals == [1] and load_checkpoint(tmp_path).step == 3
    with pytest.raises(ValueError, match="max_time_s"):
        TrainConfig(max_time_s=-1.0)


def test_time_horizon_lays_the_schedule_over_the_budget(tmp_path, monkeypatch):
    batch_fn = ten_second_batches(monkeypatch)

    evals, plans = [], []
    config = TrainConfig(max_steps=10**6, max_time_s=200.0, lr=1.0, warmup_steps=2,
                         schedule="linear", horizon="time", eval_every_s=50.0, log_every=1,
                         amp="off", out_dir=str(tmp_path), progress=False)
    trainer = Trainer(script.TinyLM(), config, batch_fn, lm_loss_fn(pad_id=0),
                      lambda model: evals.append(trainer.step) or {"score": 1.0},
                      on_plan=plans.append)
    summary = trainer.fit()
    lrs = [r["lr"] for r in summary["metrics"] if r["event"] == "train"]
    assert summary["step"] == 20 and summary["out_of_time"]
    # Warmup in updates; update 2 (the peak) had the progress estimated after update 1
    # (0.05, no step time known yet), then update k >= 3 ends at k * 10 s of 200 s.
    assert lrs[:2] == pytest.approx([0.5, 1.0])
    expected = [1.0 - (k * 10 / 200 - 0.05) / 0.95 for k in range(3, 21)]
    assert lrs[2:] == pytest.approx(expected)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)  # the budget ends at the bottom
    assert evals == [5, 10, 15, 20]  # every 50 s, and the last
    assert plans == [{"step_time": 10.0, "expected_steps": 20.0, "remaining_s": 80.0,
                      "budget_s": 200.0, "step": 12}]
    with pytest.raises(ValueError, match="horizon"):
        TrainConfig(horizon="time")  # no budget to lay it over


def ten_second_batches(monkeypatch):
    """A batch_fn whose every batch advances the trainer's (fake) clock by 10 s."""
    import attnkit.train.trainer as trainer_module

    clock = [0.0]

    class FakeTime:
        @staticmethod
        def perf_counter() -> float:
            return clock[0]

    monkeypatch.setattr(trainer_module, "time", FakeTime)

    def batch_fn(index, rank, world_size):
        clock[0] += 10.0
        return script.make_batch(index)

    return batch_fn
