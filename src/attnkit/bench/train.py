"""Training throughput of :class:`attnkit.models.GPT` against a minimal GPT in plain torch,
and per-token decoding latency with and without the KV cache.

Training: the configuration of nanoGPT's CPU Shakespeare-char setting (4 layers, 4 heads,
d_model 128, context 64, batch 12, vocabulary 65, no dropout), one AdamW step per
iteration (forward, backward, clip, step) on random tokens, float32. The peers are written
here, in this file, with plain torch ops: ``plain`` computes attention as
``softmax(QK^T / sqrt(d) + causal) V`` with explicit matmuls (the textbook model), and
``plain-sdpa`` is the same model calling ``scaled_dot_product_attention`` (what nanoGPT
does when torch has it). Ratio = peer time / attnkit time, so above 1.0 attnkit is faster.
All candidates run interleaved in one process. Four columns do not depend on timing:
``param_tensors`` (what the optimizer and gradient clipping iterate over, one tensor at a
time for CPU parameters: both sides use torch's default ``AdamW``, neither fused nor
foreach on the CPU; attnkit, like the peers, stacks the q/k/v projections in one
parameter),
``aten_ops_per_step`` (ATen operators one step dispatches, counted by the profiler),
``python_calls_per_step`` (Python function calls, generator resumptions included, and
calls of built-in functions: what ``cProfile`` counts) and ``module_calls_per_step``
(``nn.Module`` calls among them), so overhead can be located on a loaded machine by
counting instead of timing.

Decoding: the same widths with a context of 2048; the latency of one new token when the
sequence already holds ``t`` tokens (t = 10 and 1000), either a cached step (one query
against ``t`` cached keys, timed alone after an untimed prefill) or a full recompute of
the ``t + 1`` prefix.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit._validate import check_bool, check_int
from attnkit.bench.timing import measure, measure_interleaved, write_report
from attnkit.models.gpt import GPT, GPTConfig

__all__ = ["run", "PlainGPT"]

TRAIN_COLUMNS = ("model", "params", "param_tensors", "aten_ops_per_step",
                 "python_calls_per_step", "module_calls_per_step", "step_ms", "tokens_per_s",
                 "ratio_attnkit_vs_peer")
DECODE_COLUMNS = ("position", "mode", "ms_per_token", "speedup_vs_recompute")


class _PlainBlock(nn.Module):
    """Pre-norm block: causal self-attention then a GELU MLP, both residual."""

    def __init__(self, d_model: int, num_heads: int, use_sdpa: bool) -> None:
        super().__init__()
        self.num_heads, self.use_sdpa = num_heads, use_sdpa
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.fc_out = nn.Linear(4 * d_model, d_model)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        B, T, E = x.shape
        q, k, v = self.qkv(x).split(E, dim=2)
        q, k, v = (t.view(B, T, self.num_heads, E // self.num_heads).transpose(1, 2)
                   for t in (q, k, v))  # (B, H, T, D)
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, T)
            future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            y = scores.masked_fill(future, float("-inf")).softmax(dim=-1) @ v  # (B, H, T, D)
        return self.proj(y.transpose(1, 2).reshape(B, T, E))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._attend(self.ln1(x))
        return x + self.fc_out(F.gelu(self.fc(self.ln2(x))))


class PlainGPT(nn.Module):
    """The peer: a GPT-2-shaped model in plain torch (learned positions, tied head)."""

    def __init__(self, config: GPTConfig, *, use_sdpa: bool = False) -> None:
        super().__init__()
        self.token = nn.Embedding(config.vocab_size, config.d_model)
        self.position = nn.Embedding(config.context_len, config.d_model)
        self.blocks = nn.ModuleList(_PlainBlock(config.d_model, config.num_heads, use_sdpa)
                                    for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.token.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.token(idx) + self.position(positions)  # (B, T, E)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # (B, T, V)


def _train_step(model: nn.Module, batch: int, context: int, vocab: int):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    data = torch.randint(vocab, (batch, context + 1), generator=generator)
    x, y = data[:, :-1], data[:, 1:]

    def step() -> None:
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def aten_ops(step) -> int:
    """ATen operators (nested calls included) that one call of ``step`` dispatches."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return sum(1 for event in prof.events() if event.name.startswith("aten::"))


def python_calls(step) -> tuple[int, int]:
    """``(calls, module calls)`` that one call of ``step`` makes (``step`` itself included):
    every Python function call (a generator's resumption counts, as in ``cProfile``) and
    every call of a built-in function, and among them the ``nn.Module`` calls
    (``Module._call_impl``). Deterministic for a given torch and Python, unlike a timing on
    a loaded machine."""
    module_call = nn.Module._call_impl.__code__
    counts = [0, 0]

    def profile(frame, event, arg) -> None:
        if event == "call":
            counts[0] += 1
            counts[1] += frame.f_code is module_call
        elif event == "c_call" and arg is not sys.setprofile:  # not the measurement's own
            counts[0] += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        step()
    finally:
        sys.setprofile(previous)
    return counts[0], counts[1]


def train_rows(repeats: int, steps_per_sample: int) -> list[dict]:
    config = GPTConfig(vocab_size=65, context_len=64, num_layers=4, num_heads=4, d_model=128,
                       dropout=0.0)
    batch = 12
    torch.manual_seed(0)
    models = {"attnkit GPT": GPT(config), "plain (explicit softmax)": PlainGPT(config),
              "plain-sdpa": PlainGPT(config, use_sdpa=True)}
    steps = {name: _train_step(m.train(), batch, config.context_len, config.vocab_size)
             for name, m in models.items()}

    def repeated(fn):
        def run() -> None:
            for _ in range(steps_per_sample):
                fn()
        return run

    stats = measure_interleaved({name: repeated(fn) for name, fn in steps.items()},
                                warmup=1, repeats=repeats)
    ops = {name: aten_ops(fn) for name, fn in steps.items()}
    calls = {name: python_calls(fn) for name, fn in steps.items()}
    ours = stats["attnkit GPT"]["median_s"] / steps_per_sample
    rows = []
    for name, model in models.items():
        per_step = stats[name]["median_s"] / steps_per_sample
        rows.append({"model": name, "params": _params(model),
                     "param_tensors": len({id(p) for p in model.parameters()}),
                     "aten_ops_per_step": ops[name],
                     "python_calls_per_step": calls[name][0],
                     "module_calls_per_step": calls[name][1], "step_ms": per_step * 1e3,
                     "tokens_per_s": batch * config.context_len / per_step,
                     "ratio_attnkit_vs_peer": per_step / ours})
    return rows


def _cached_step_s(model: GPT, prefix: torch.Tensor, new: torch.Tensor, repeats: int) -> float:
    """Median seconds per cached decoding step: each run prefills fresh caches with
    ``prefix (1, t)`` untimed, then times the ``new.shape[1]`` one-token steps alone (a
    difference of two timings, cached run minus prefill, could come out <= 0 under load)."""
    times = []
    for run in range(1 + repeats):  # the first run warms up
        caches = model.make_kv_caches()
        model(prefix, kv_caches=caches)
        start = time.perf_counter()
        for i in range(new.shape[1]):
            model(new[:, i:i + 1], kv_caches=caches)
        if run:
            times.append((time.perf_counter() - start) / new.shape[1])
    return statistics.median(times)


@torch.no_grad()
def decode_rows(positions: tuple[int, ...], repeats: int, tokens: int) -> list[dict]:
    config = GPTConfig(vocab_size=65, context_len=max(positions) + tokens + 1, num_layers=4,
                       num_heads=4, d_model=128, dropout=0.0)
    torch.manual_seed(0)
    model = GPT(config).eval()
    rows = []
    for t in positions:
        prefix = torch.randint(config.vocab_size, (1, t))
        new = torch.randint(config.vocab_size, (1, tokens))

        def recompute(prefix=prefix, new=new) -> None:
            for i in range(tokens):
                model(torch.cat([prefix, new[:, :i + 1]], dim=1))

        per_cached = _cached_step_s(model, prefix, new, repeats)
        per_recompute = measure(recompute, repeats=repeats)["median_s"] / tokens
        rows.append({"position": t, "mode": "KV cache", "ms_per_token": per_cached * 1e3,
                     "speedup_vs_recompute": per_recompute / per_cached})
        rows.append({"position": t, "mode": "recompute prefix",
                     "ms_per_token": per_recompute * 1e3, "speedup_vs_recompute": 1.0})
    return rows


def run(*, repeats: int | None = None, quick: bool = False, out_dir: str = "benchmarks/results",
        write: bool = True, command: str | None = None) -> dict[str, list[dict]]:
    """Measure both tables, print them, and (``write``) save JSON + markdown reports.

    Args:
        repeats: timed runs per candidate (at least 1; default 7).
        quick: smoke-test sizes and 3 repeats (so ``repeats`` is refused beside it).
        out_dir: where ``train_gpt`` and ``decode_gpt`` (``.json``, ``.md``) go.
        command: the command line recorded in the reports (default: this call).
    """
    check_bool(quick, "quick")
    if quick and repeats is not None:
        raise ValueError(f"repeats: quick runs 3 repeats; give repeats or quick, not both "
                         f"(got repeats={repeats!r})")
    repeats = 3 if quick else 7 if repeats is None else repeats
    check_int(repeats, "repeats", minimum=1)
    steps_per_sample = 2 if quick else 10
    train = train_rows(repeats=repeats, steps_per_sample=steps_per_sample)
    for row in train:
        print(f"{row['model']:<26} {row['step_ms']:8.2f} ms/step  {row['tokens_per_s']:9.0f} "
              f"tok/s  attnkit/peer speed {row['ratio_attnkit_vs_peer']:.3f}  "
              f"{row['param_tensors']} parameter tensors, {row['aten_ops_per_step']} aten ops, "
              f"{row['python_calls_per_step']} Python calls, {row['module_calls_per_step']} "
              f"module calls per step", flush=True)
    decode = decode_rows((10, 1000), repeats=repeats, tokens=4 if quick else 16)
    for row in decode:
        print(f"t={row['position']:<5} {row['mode']:<17} {row['ms_per_token']:8.3f} ms/token "
              f"({row['speedup_vs_recompute']:.1f}x)", flush=True)
    if write:
        if command is None:
            command = ("attnkit.bench.train.run(quick=True)" if quick
                       else f"attnkit.bench.train.run(repeats={repeats})")
        config = asdict(GPTConfig(vocab_size=65, context_len=64, num_layers=4, num_heads=4,
                                  d_model=128, dropout=0.0))
        write_report(train, TRAIN_COLUMNS, out_dir, "train_gpt",
                     title=f"GPT training step (AdamW), batch 12, config {config}, float32; "
                           "ratio = peer step time / attnkit step time", command=command)
        write_report(decode, DECODE_COLUMNS, out_dir, "decode_gpt",
                     title="GPT per-token decoding latency, batch 1 (same widths, context "
                           "2048)", command=command)
    return {"train": train, "decode": decode}
