"""Ring attention on gloo CPU processes: memory per rank, bytes sent, work and time per step.

For every world size ``W`` and sequence length ``L`` the suite starts ``W`` processes (one
gloo group through a file store), gives each its ``(B, H, L / W, D)`` float32 shard of
``q, k, v`` and the output gradient, and runs training steps of
:func:`attnkit.distributed.ring_attention` (forward + backward). ``W = 1`` is the
baseline: one process running ``attnkit.attention(backend="tiled")`` on the full sequence.

**Attention memory** (what issue 16's memory goal compares): the largest number of bytes
held in torch tensors at any moment of one forward + backward step, counting the inputs
``q, k, v`` and ``dO`` the step reads, and everything it allocates: output, log-sum-exp,
``dq, dk, dv``, transfer buffers, accumulators and the kernel's tiles. It is measured
exactly, from the allocator's events (``torch.profiler`` with ``profile_memory``; every
allocation and free of the step, summed in time order), so it does not depend on load,
on the Python runtime or on how the C allocator returns pages. Per row:

* ``mem_mib``: that peak, the largest over the ranks; ``above_inputs_mib``: the same minus
  the inputs (``q, k, v, dO``: bytes allocated by the step itself);
* ``vs_one_process``: ``mem_mib`` over the one-process figure at the same ``L``;
  ``goal``: ``1.1 / W`` (at most 1/W of one process's attention memory, plus 10%);
  ``above_ratio``: the same ratio for ``above_inputs_mib``;
* ``rss_mib``: growth of the resident set (Linux high-water mark, reset after a warm-up
  step and ``malloc_trim``) during one step: what the operating system sees, including
  allocator slack; shown, not used for the goal;
* ``fwd_mib_sent`` / ``bwd_mib_sent``: bytes one rank sends per step, and
  ``fwd_messages`` / ``bwd_messages`` the point-to-point sends they take (counted by
  ``ring_attention(stats=...)``);
* ``gflop``: matmul GFLOP the busiest rank executed in one step (forward + backward,
  ``torch.utils.flop_counter``; for ``W = 1`` the one process);
* ``work_imbalance``: largest over smallest attention work across ranks, counted two
  ways: ``logits`` in the tiles each rank's schedule computes
  (:func:`~attnkit.distributed.ring_schedule`), and ``flop_imbalance`` from the matmul
  FLOPs each rank actually executed in one step (``torch.utils.flop_counter``, forward +
  backward; a causal fused flash call counted as half its dense FLOPs); the zigzag goal
  is <= 1.10. ``compute_imbalance``: the same for the seconds each rank spent in its
  kernels (load-dependent: meaningful on free cores only);
* ``step_ms``: median over ``repeats`` steps of the slowest rank's wall time.

Every process uses ``threads`` torch threads: with more processes than cores (W = 4 on a
2-core machine) the ranks share cores and the times measure the sharing, not the ring.

The report ends with :func:`overlap_model`: when a ring step's compute hides its transfer
on a multi-node GPU cluster, from stated hardware figures (no measurement).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from attnkit._io import atomic_write_text
from attnkit._validate import check_bool, check_choice, check_float, check_int
from attnkit.bench.timing import (
    _proc_status_bytes,
    _reset_peak_rss,
    available_memory_bytes,
    check_lengths,
    check_report_name,
    write_report,
)

__all__ = ["run", "overlap_model", "overlap_markdown", "estimate_bytes", "worker", "COLUMNS"]

COLUMNS = ("W", "L", "layout", "candidate", "mem_mib", "vs_one_process", "goal",
           "above_inputs_mib", "above_ratio", "rss_mib", "fwd_mib_sent", "bwd_mib_sent",
           "fwd_messages", "bwd_messages", "gflop", "work_imbalance", "flop_imbalance",
           "compute_imbalance", "step_ms", "note")


def estimate_bytes(world: int, seq_len: int, batch: int, heads: int, kv_heads: int,
                   head_dim: int) -> int:
    """Rough float32 working set of one rank's training step (an upper bound, for
    skipping rows): ``q, dO, out, dq`` and ``k, v, dk, dv`` of its shard, 16 key/value
    pieces of ``DEFAULT_CHUNK`` positions (the backward holds about 11 in flight), and
    the kernel's per-call buffers (a few ``2 MiB`` batches of logits)."""
    from attnkit.distributed.ring import DEFAULT_CHUNK  # noqa: PLC0415

    shard = seq_len // world
    q_like = batch * heads * shard * head_dim * 4
    kv_like = batch * kv_heads * shard * head_dim * 4
    pieces = 16 * batch * kv_heads * min(shard, DEFAULT_CHUNK) * head_dim * 4
    return 4 * q_like + 4 * kv_like + pieces + 16 * 2**20


def _launch(world: int, spec: dict, timeout_s: float) -> list[dict]:
    """Run ``world`` worker processes on ``spec``; every rank's result dict."""
    with tempfile.TemporaryDirectory(prefix="attnkit-ring-") as folder:
        code = "import sys; from attnkit.bench.ring import worker; worker(sys.argv[1:])"
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
        procs = [subprocess.Popen([sys.executable, "-c", code, str(rank), str(world),
                                   os.path.join(folder, "store"), json.dumps(spec),
                                   os.path.join(folder, f"rank{rank}.json")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                 for rank in range(world)]
        deadline = time.monotonic() + timeout_s
        errors = []
        for proc in procs:
            try:
                _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for other in procs:
                    if other.poll() is None:
                        other.kill()
                raise RuntimeError(f"W={world}: the workers ran past {timeout_s:.0f} s") \
                    from None
            if proc.returncode != 0:
                errors.append(_error_line(err.decode(errors="replace"), proc.returncode))
        if errors:
            raise RuntimeError(f"W={world}: a worker failed: {errors}")
        return [json.loads(Path(folder, f"rank{rank}.json").read_text())
                for rank in range(world)]


def tensor_peak_bytes(step: Callable[[], object]) -> int:
    """Largest growth of the bytes held in CPU torch tensors while ``step()`` runs: every
    allocation and free of the step from ``torch.profiler``'s memory events, summed in
    time order (exact, independent of load and of the C allocator)."""
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == _CPU)
    live = peak = 0
    for _, size in events:
        live += size
        peak = max(peak, live)
    return peak


_CPU = torch._C._autograd.DeviceType.CPU


def _flash_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of ``aten._scaled_dot_product_flash_attention_for_cpu`` (shapes given):
    ``4 B H Lq Lk D``, half of it for a causal call (the kernel skips the masked blocks)."""
    B, H, Lq, D = q
    causal = args[1] if len(args) > 1 else kwargs.get("is_causal", False)
    flops = 4 * B * H * Lq * k[2] * D
    return flops // 2 if causal else flops


def matmul_flops(step: Callable[[], object]) -> int:
    """Matmul FLOPs ``step()`` executes (``torch.utils.flop_counter``, forward and
    backward, plus the CPU flash-attention call the tiled kernel may use)."""
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415

    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    with FlopCounterMode(display=False, custom_mapping={flash: _flash_flops}) as counter:
        step()
    return int(counter.get_total_flops())


def _error_line(stderr: str, returncode: int) -> str:
    """The line of a worker's stderr that says what failed: the exception of its traceback
    (libraries log after it, e.g. the profiler's shutdown), else its last line, else how the
    process ended (a negative code is the signal that killed it: -9 is often the kernel's
    out-of-memory killer)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit)\b", line):
            return line
    if lines:
        return lines[-1]
    return f"exit status {returncode}" + (" (killed by a signal)" if returncode < 0 else "")


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so the next RSS peak starts clean."""
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def worker(argv: Sequence[str]) -> None:
    """One rank: ``RANK WORLD STORE SPEC_JSON OUT_JSON`` (started by :func:`run`)."""
    import torch.distributed as dist  # noqa: PLC0415 (only workers join a group)

    from attnkit import masks  # noqa: PLC0415
    from attnkit.distributed import ring_attention  # noqa: PLC0415
    from attnkit.functional.attention import attention  # noqa: PLC0415

    rank, world, store, spec, out = argv
    rank, world, spec = int(rank), int(world), json.loads(spec)
    torch.set_num_threads(spec["threads"])
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world,
                            timeout=datetime.timedelta(seconds=spec["timeout_s"]))
    B, H, Hkv, L, D = (spec[key] for key in ("batch", "heads", "kv_heads", "seq_len",
                                             "head_dim"))
    n = L // world
    gen = torch.Generator().manual_seed(rank)
    q = torch.randn(B, H, n, D, generator=gen, requires_grad=True)
    k = torch.randn(B, Hkv, n, D, generator=gen, requires_grad=True)
    v = torch.randn(B, Hkv, n, D, generator=gen, requires_grad=True)
    grad = torch.randn(B, H, n, D, generator=gen)
    inputs = sum(t.numel() * t.element_size() for t in (q, k, v, grad))
    causal = spec["causal"]
    mask = (masks.sliding_window(spec["window"], causal=causal) if spec["window"] else None)

    def step(stats: dict | None = None) -> None:
        if spec["candidate"] == "tiled":
            out, _ = attention(q, k, v, causal=causal or None, mask=mask, backend="tiled")
        else:
            out, _ = ring_attention(q, k, v, causal=causal, mask=mask, layout=spec["layout"],
                                    stats=stats)
        out.backward(grad)
        q.grad = k.grad = v.grad = None

    dist.barrier()
    stats: dict = {}
    profiled = spec["memory"] == "profiler"
    if profiled:  # the first step: stats and memory
        above = tensor_peak_bytes(lambda: step(stats))
        dist.barrier()
        flops = matmul_flops(step)
    else:  # the profiler keeps every event: too much memory for long shards
        step(stats)
        flops = None
    dist.barrier()
    _malloc_trim()
    rss = None
    if _reset_peak_rss():
        base = _proc_status_bytes("VmRSS")
        step()
        rss = max(0, _proc_status_bytes("VmHWM") - base)
    if not profiled:
        above = rss
    times = []
    for index in range(spec["warmup"] + spec["repeats"]):
        dist.barrier()
        start = time.perf_counter()
        step()
        elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # the step ends with the slowest rank
        if index >= spec["warmup"]:
            times.append(float(elapsed))
    Path(out).write_text(json.dumps({"rank": rank, "inputs_bytes": inputs,
                                     "above_inputs_bytes": above, "rss_bytes": rss,
                                     "flops": flops, "stats": stats, "times": times}))
    dist.destroy_process_group()


def _check_names(values: Sequence[str], name: str, choices: Sequence[str]) -> list[str]:
    if isinstance(values, str) or not values:
        raise TypeError(f"{name} must be a non-empty list of {list(choices)}, got {values!r}")
    return [check_choice(value, name, choices) for value in values]


def run(*, worlds: Sequence[int] = (1, 2, 4), lengths: Sequence[int] = (4096, 16384),
        layouts: Sequence[str] = ("zigzag", "contiguous"), causal: bool = True,
        window: int | None = None, batch: int = 1, heads: int = 8, kv_heads: int = 8,
        head_dim: int = 64,
        threads: int = 1, repeats: int = 3, timed: bool = True, memory: str = "profiler",
        max_gib: float = 24.0,
        timeout_s: float = 1800.0, out_dir: str = "benchmarks/results", name: str = "ring",
        command: str = "attnkit bench ring", log: Callable[[str], None] = print,
        ) -> list[dict]:
    """Measure every (length, world size, layout); write ``<name>.json`` and ``<name>.md``.

    Args:
        worlds: world sizes ``W`` (each a separate group of ``W`` processes).
        lengths: full sequence lengths ``L``; each must be a multiple of ``2W`` for every
            ``W`` (zigzag chunks).
        layouts: ``"zigzag"`` and/or ``"contiguous"`` (``W = 1`` runs once).
        causal: causal attention (the case the layouts differ on).
        window: None, or a sliding window of this many keys
            (``masks.sliding_window(window, causal=causal)``) on top: the attention work
            then grows as ``L * window`` instead of ``L**2`` while every tensor still grows
            as ``L``, so lengths where the machine's memory, not its compute, is the limit
            can be measured.
        batch, heads, kv_heads, head_dim: ``B``, ``Hq``, ``Hkv``, ``D`` of the float32 shards
            ``q (B, Hq, L/W, D)``, ``k, v (B, Hkv, L/W, D)``.
        threads: torch threads per process.
        repeats: timed steps per row after one warm-up step.
        timed: False measures memory, bytes and work only (no timed steps, no
            ``step_ms``): the figures that do not depend on the machine's load.
        memory: ``"profiler"`` (the exact tensor peak from the allocator's events, and the
            FLOP count) or ``"rss"``: memory above the inputs is the growth of the
            resident set's high-water mark during one step (Linux), and no FLOPs are
            counted. The profiler keeps every event of the step in memory, which at
            shards of hundreds of thousands of positions outgrows the step itself (it
            needed more than 23 GiB for one process at L=262,144 with a window);
            ``"rss"`` includes allocator slack, small next to gigabytes of tensors.
        max_gib: skip rows whose estimated per-rank working set
            (:func:`estimate_bytes`) exceeds this, or whose ranks together exceed the
            memory available.
        timeout_s: per-launch limit; also the process group's timeout.
        out_dir, name: where the report goes.
        command: the command line recorded in the report.

    Returns:
        The rows written to the report (``COLUMNS``).
    """
    worlds = check_lengths(worlds, "worlds")
    lengths = check_lengths(lengths)
    layouts = _check_names(layouts, "layouts", ("zigzag", "contiguous"))
    check_bool(causal, "causal")
    if window is not None:
        check_int(window, "window", minimum=1)
    for value, arg in ((batch, "batch"), (heads, "heads"), (kv_heads, "kv_heads"),
                       (head_dim, "head_dim"), (threads, "threads"), (repeats, "repeats")):
        check_int(value, arg, minimum=1)
    check_bool(timed, "timed")
    check_choice(memory, "memory", ("profiler", "rss"))
    if memory == "rss" and not _reset_peak_rss():
        raise ValueError("memory: 'rss' needs the resident-set high-water mark that Linux "
                         "resets through /proc/self/clear_refs, unavailable here")
    if heads % kv_heads:
        raise ValueError(f"kv_heads ({kv_heads}) must divide heads ({heads})")
    check_float(max_gib, "max_gib", low=0.0, low_open=True)
    check_float(timeout_s, "timeout_s", low=0.0, low_open=True)
    check_report_name(name)
    for L in lengths:
        for W in worlds:
            if L % (2 * W):
                raise ValueError(f"lengths: L={L} does not split into 2W = {2 * W} equal "
                                 f"zigzag chunks")
    base = {"batch": batch, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
            "threads": threads, "repeats": repeats if timed else 0,
            "warmup": 1 if timed else 0,
            "causal": causal, "window": window, "memory": memory,
            "timeout_s": timeout_s}
    rows: list[dict] = []
    for L in lengths:
        one_process = None
        plan = [(1, "tiled", "-")] + [(W, "ring", layout) for W in worlds
                                       for layout in (layouts if W > 1 else layouts[:1])]
        for W, candidate, layout in plan:
            row = {"W": W, "L": L, "layout": layout, "candidate": candidate}
            need = estimate_bytes(W, L, batch, heads, kv_heads, head_dim)
            if need > max_gib * 2**30 or W * need > 0.8 * available_memory_bytes():
                row["note"] = f"skipped: ~{need / 2**30:.1f} GiB per rank"
                rows.append(row)
                log(_format(row))
                continue
            spec = dict(base, seq_len=L, candidate=candidate, layout=layout)
            results = _launch(W, spec, timeout_s)
            total = max(r["inputs_bytes"] + r["above_inputs_bytes"] for r in results)
            above = max(r["above_inputs_bytes"] for r in results)
            row["mem_mib"], row["above_inputs_mib"] = total / 2**20, above / 2**20
            counted = all(r["flops"] is not None for r in results)
            if counted:
                row["gflop"] = max(r["flops"] for r in results) / 1e9
            rss = [r["rss_bytes"] for r in results]
            if all(value is not None for value in rss):
                row["rss_mib"] = max(rss) / 2**20
            if candidate == "tiled":
                one_process = (total, above)
            elif one_process:
                row["vs_one_process"] = total / one_process[0]
                row["above_ratio"] = above / one_process[1]
                row["goal"] = 1.1 / W
            if candidate == "ring":
                row["fwd_mib_sent"] = results[0]["stats"]["bytes_sent_forward"] / 2**20
                row["bwd_mib_sent"] = results[0]["stats"]["bytes_sent_backward"] / 2**20
                row["fwd_messages"] = results[0]["stats"]["messages_forward"]
                row["bwd_messages"] = results[0]["stats"]["messages_backward"]
                row["work_imbalance"] = _imbalance([r["stats"]["logits"] for r in results])
                if counted:
                    row["flop_imbalance"] = _imbalance([r["flops"] for r in results])
                row["compute_imbalance"] = _imbalance(
                    [r["stats"]["compute_s_forward"] + r["stats"]["compute_s_backward"]
                     for r in results])
            if results[0]["times"]:
                row["step_ms"] = statistics.median(results[0]["times"]) * 1e3
            rows.append(row)
            log(_format(row))
    kind = "causal" if causal else "non-causal"
    if window is not None:
        kind += f" sliding window of {window} keys"
    title = (f"Ring attention, gloo CPU processes, B={batch} Hq={heads} Hkv={kv_heads} "
             f"D={head_dim} float32, {kind}, fwd+bwd" + ("" if timed else ", not timed")
             + (", memory from the resident set" if memory == "rss" else ""))
    _, md_path = write_report(rows, COLUMNS, out_dir, name, title=title, command=command)
    atomic_write_text(md_path, md_path.read_text() + "\n" + overlap_markdown())
    return rows


def _imbalance(values: Sequence[float]) -> float:
    """Largest over smallest (a rank with no work counts as a tiny amount)."""
    return max(values) / max(min(values), 1e-12)


def _format(row: dict) -> str:
    cells = [f"W={row['W']}", f"L={row['L']:<6}", f"{row['layout']:<10}",
             f"{row['candidate']:<5}"]
    if "note" in row:
        return "  ".join(cells + [row["note"]])
    if row.get("mem_mib") is not None:
        cells.append(f"{row['mem_mib']:8.1f} MiB ({row['above_inputs_mib']:.1f} above inputs)")
    if "vs_one_process" in row:
        cells.append(f"x{row['vs_one_process']:.3f} (goal {row['goal']:.3f})")
    if "fwd_mib_sent" in row:
        cells.append(f"sent {row['fwd_mib_sent']:.1f}+{row['bwd_mib_sent']:.1f} MiB in "
                     f"{row['fwd_messages']}+{row['bwd_messages']} messages")
    if "step_ms" in row:
        cells.append(f"{row['step_ms']:9.1f} ms")
    return "  ".join(cells)


# --- when does compute hide communication? ----------------------------------------------------

# Assumed hardware (sources in overlap_markdown): an H100 SXM node, 8 GPUs, one 400 Gb/s
# InfiniBand NDR link per GPU between nodes, NVLink 4 inside a node.
ATTENTION_FLOPS = 600e12  # bf16 attention FLOP/s actually reached per GPU (FA3 reaches 740)
INTER_NODE_BYTES = 50e9  # 400 Gb/s NDR per GPU, one direction
INTRA_NODE_BYTES = 450e9  # NVLink 4: 900 GB/s bidirectional per GPU


def overlap_model(*, flops: float = ATTENTION_FLOPS, link_bytes: float = INTER_NODE_BYTES,
                  heads: int = 64, kv_heads: int = 8, head_dim: int = 128,
                  element_bytes: int = 2, grad_bytes: int = 4, causal: bool = True,
                  ) -> dict[str, float]:
    """Shard length above which a ring step's attention compute hides its transfer.

    One ring step of a rank with shard length ``n`` (batch 1):

    * forward: sends ``K, V``: ``2 Hkv n D s`` bytes; computes ``4 Hq n^2 D`` FLOPs on a full
      block, half that on average for causal zigzag (two of the four chunk pairs);
    * backward: sends ``K, V`` again plus ``dK, dV`` in the accumulation dtype:
      ``2 Hkv n D (s + g)`` bytes; computes 2.5x the forward FLOPs.

    Compute hides the transfer when ``FLOPs / flops >= bytes / link_bytes``, which is
    linear in ``n``; the returned thresholds are the smallest such ``n``.

    Returns:
        ``{"forward_n", "backward_n", "n"}`` (``n``: the larger of the two) and the
        inputs.
    """
    block = 0.5 if causal else 1.0  # zigzag: every step after the first does half a block
    fwd_flops_per_n2 = 4 * heads * head_dim * block  # FLOPs / n^2
    fwd_bytes_per_n = 2 * kv_heads * head_dim * element_bytes  # bytes / n
    bwd_flops_per_n2 = 2.5 * fwd_flops_per_n2
    bwd_bytes_per_n = 2 * kv_heads * head_dim * (element_bytes + grad_bytes)
    forward_n = fwd_bytes_per_n / link_bytes * flops / fwd_flops_per_n2
    backward_n = bwd_bytes_per_n / link_bytes * flops / bwd_flops_per_n2
    return {"forward_n": forward_n, "backward_n": backward_n,
            "n": max(forward_n, backward_n), "flops": flops, "link_bytes": link_bytes,
            "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim}


def overlap_markdown() -> str:
    """The written model, with its numbers, for the report."""
    cases = [
        ("inter-node, GQA 64/8 heads (Llama 3 70B), causal", INTER_NODE_BYTES, 64, 8, True),
        ("inter-node, MHA 32/32 heads, causal", INTER_NODE_BYTES, 32, 32, True),
        ("inter-node, MHA 32/32 heads, non-causal", INTER_NODE_BYTES, 32, 32, False),
        ("intra-node NVLink, MHA 32/32 heads, causal", INTRA_NODE_BYTES, 32, 32, True),
    ]
    lines = ["## When compute hides communication (a model, not a measurement)", "",
             "Each ring step overlaps one transfer of a key/value shard with attention on the "
             "shard in hand, so the step costs max(compute, transfer). For shard length n "
             "(tokens per rank, batch 1, head dim D = 128, bf16 K/V, float32 dK/dV):", "",
             "* forward: sends 2 Hkv n D 2 bytes, computes 4 Hq n^2 D FLOPs per full block "
             "(half on average under causal zigzag);",
             "* backward: sends K, V and dK, dV (2 Hkv n D (2 + 4) bytes), computes 2.5x the "
             "forward FLOPs (the FLOP convention of DESIGN.md section 5).", "",
             "Compute grows as n^2 and the transfer as n, so compute hides the transfer "
             "above a threshold n* = bytes-per-token / link bandwidth x FLOP rate / "
             "FLOPs-per-token^2:", "",
             "| case | forward n* | backward n* | tokens per rank needed |", "|---|---|---|---|"]
    for label, link, heads, kv_heads, causal in cases:
        m = overlap_model(link_bytes=link, heads=heads, kv_heads=kv_heads, causal=causal)
        lines.append(f"| {label} | {m['forward_n']:,.0f} | {m['backward_n']:,.0f} | "
                     f"{m['n']:,.0f} |")
    lines += ["",
              f"Assumptions: attention runs at {ATTENTION_FLOPS / 1e12:.0f} TFLOP/s per GPU "
              f"(bf16 H100 SXM; FlashAttention-3 reports up to 740 TFLOP/s forward, Shah et "
              f"al. 2024, arXiv:2407.08608; the dense bf16 peak is 989 TFLOP/s, NVIDIA H100 "
              f"datasheet); between nodes each GPU has one 400 Gb/s InfiniBand NDR link "
              f"({INTER_NODE_BYTES / 1e9:.0f} GB/s per direction, NVIDIA ConnectX-7 "
              f"datasheet); inside a node NVLink 4 gives {INTRA_NODE_BYTES / 1e9:.0f} GB/s "
              f"per direction (900 GB/s bidirectional, NVIDIA H100 datasheet). Llama 3 70B "
              f"has 64 query and 8 key/value heads (arXiv:2407.21783, table 3).", "",
              "Reading: with grouped-query attention the key/value shards are small and a "
              "few thousand tokens per GPU hide an inter-node hop; multi-head attention "
              "needs 8x more. A ring spanning nodes is limited by its slowest (inter-node) "
              "hop, so the inter-node rows apply to any ring that leaves a node. The model "
              "ignores latency per message (microseconds, negligible at these sizes), "
              "contention when all GPUs of a node share the NICs, and the first step, whose "
              "compute has nothing to hide. Ring attention's paper (Liu et al. 2023, "
              "arXiv:2310.01889) derives the same kind of condition: a block at least as "
              "long as the FLOP rate over the bandwidth.", ""]
    return "\n".join(lines)
