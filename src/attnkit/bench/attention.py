"""``attnkit bench attention``: attention backends side by side in one process.

Candidates on the same inputs (``B=1, H=8, D=64``, float32 unless told otherwise):

* ``sdpa-flash`` - :func:`torch.nn.functional.scaled_dot_product_attention` forced to
  its fused (flash) kernel; masked cases get the equivalent dense mask (bool, or a
  float bias for ALiBi). This is the peer every ratio is taken against.
* ``sdpa-math`` - the same call forced to SDPA's unfused math kernel.
* ``reference`` - attnkit's readable backend (materializes the logits).
* ``tiled`` - attnkit's flash kernel in torch ops, skipping empty tiles.
* ``flex`` - :func:`torch.compile`-d FlexAttention with a block mask (forward only
  on CPU: PyTorch has no CPU backward for it); compile time is not timed.
* ``triton`` - attnkit's Triton kernel, when a CUDA device is present.

Cases: ``dense``, ``causal``, ``sliding_window`` (256 keys, causal), ``document``
(4 equal documents, causal), ``window_documents`` (256-key causal sliding window within
4 equal documents; not in the default suite, :data:`EXTRA_CASES`), ``alibi`` (causal).
Modes: ``fwd`` and ``fwd+bwd``.
Each row has the median time, the ratio ``sdpa-flash time / candidate time``
(above 1 = faster than SDPA), effective GFLOP/s (DESIGN.md section 5, counting the
dense or causal FLOPs whatever the mask, so skipped work shows as speed), for ``flex``
the seconds its first call took (``compile_s``: ``torch.compile`` plus one run, not
part of the median) and, with
``--memory``, the peak extra memory of one run measured in a fresh subprocess.
Candidates whose logits would not fit in ``--max-dense-gib`` are skipped, and the
row says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from attnkit._validate import check_bool, check_choice, check_float, check_int
from attnkit.bench.timing import (
    attention_flops,
    check_lengths,
    check_report_name,
    measure,
    peak_memory,
    write_report,
)
from attnkit.functional import masks, score_mods
from attnkit.functional.attention import attention

__all__ = ["run", "memory_curve", "CASES", "EXTRA_CASES", "ALL_CASES", "CANDIDATES", "MODES",
           "setup"]

CASES = ("dense", "causal", "sliding_window", "document", "alibi")  # the default suite
# Cases run only when asked for (``run(cases=[...])``).
EXTRA_CASES = ("window_documents",)
ALL_CASES = CASES + EXTRA_CASES
CANDIDATES = ("sdpa-flash", "sdpa-math", "reference", "tiled", "flex", "triton")
MODES = ("fwd", "fwd+bwd")
DEVICES = ("cpu", "cuda")
WINDOW = 256
DOCUMENTS = 4
COLUMNS = ("case", "L", "mode", "candidate", "median_ms", "ratio_vs_sdpa", "gflops",
           "compile_s", "peak_mib", "note")

_FLEX_CACHE: dict = {}


def _attnkit_args(case: str, L: int, heads: int) -> dict:
    if case == "dense":
        return {}
    if case == "causal":
        return {"causal": True}
    if case == "sliding_window":
        return {"mask": masks.sliding_window(WINDOW)}
    if case == "document":
        return {"mask": masks.document(torch.arange(L) * DOCUMENTS // L) & masks.causal()}
    if case == "window_documents":
        return {"mask": masks.sliding_window(WINDOW)
                & masks.document(torch.arange(L) * DOCUMENTS // L)}
    if case == "alibi":
        return {"causal": True, "score_mod": score_mods.alibi(score_mods.alibi_slopes(heads))}
    raise ValueError(f"case must be one of {ALL_CASES}, got {case!r}")


def _sdpa_args(case: str, L: int, heads: int, device) -> dict:
    """The same problem in SDPA's terms: is_causal, or a dense mask / float bias."""
    if case == "dense":
        return {}
    if case == "causal":
        return {"is_causal": True}
    args = _attnkit_args(case, L, heads)
    if case == "alibi":
        slopes = score_mods.alibi_slopes(heads).to(device)[:, None, None]  # (H, 1, 1)
        pos = torch.arange(L, device=device)
        bias = slopes * (pos[None, :] - pos[:, None]).float()  # (H, L, L)
        causal = pos[None, :] <= pos[:, None]
        return {"attn_mask": bias.masked_fill(~causal, float("-inf"))[None]}
    return {"attn_mask": masks.materialize(args["mask"], 1, 1, L, L, device)}


def _flex_fn(case: str, L: int, heads: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    key = (case, L, heads, device)
    if key not in _FLEX_CACHE:
        args = _attnkit_args(case, L, heads)
        mask_mod = args.get("mask")
        if args.get("causal"):
            mask_mod = masks.causal() if mask_mod is None else mask_mod & masks.causal()
        block_mask = None
        if mask_mod is not None:
            block_mask = create_block_mask(lambda b, h, q, kv: mask_mod(b, h, q, kv), None,
                                           None, L, L, device=device)
        score_mod = args.get("score_mod")
        compiled = torch.compile(flex_attention, dynamic=False)
        _FLEX_CACHE[key] = (compiled, block_mask,
                            (lambda s, b, h, q, kv: score_mod(s, b, h, q, kv))
                            if score_mod is not None else None)
    return _FLEX_CACHE[key]


def dense_bytes(candidate: str, case: str, L: int, heads: int, backward: bool) -> int:
    """Rough bytes the candidate materializes beyond O(L) (for skipping hopeless runs)."""
    logits = heads * L * L * 4
    if candidate in ("reference", "sdpa-math"):
        return logits * (5 if backward else 3)
    if candidate == "sdpa-flash" and case == "alibi":
        return logits
    if candidate == "sdpa-flash" and case in ("sliding_window", "document",
                                              "window_documents"):
        return L * L
    return 0


def setup(case: str, L: int, candidate: str, backward: bool, heads: int = 8,
          head_dim: int = 64, dtype: str = "float32", device: str = "cpu",
          seed: int = 0) -> Callable[[], None]:
    """Build inputs and return the zero-argument callable one timed run executes."""
    check_int(L, "L", minimum=1)
    torch.manual_seed(seed)
    torch_dtype = getattr(torch, dtype)
    q, k, v = (torch.randn(1, heads, L, head_dim, dtype=torch_dtype, device=device,
                           requires_grad=backward) for _ in range(3))
    grad = torch.randn(1, heads, L, head_dim, dtype=torch_dtype, device=device)

    def finish(out: torch.Tensor) -> None:
        if backward:
            q.grad = k.grad = v.grad = None
            out.backward(grad)

    if candidate in ("sdpa-flash", "sdpa-math"):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        kernel = SDPBackend.FLASH_ATTENTION if candidate == "sdpa-flash" else SDPBackend.MATH
        args = _sdpa_args(case, L, heads, device)

        def run_sdpa():
            with sdpa_kernel(kernel):
                finish(F.scaled_dot_product_attention(q, k, v, **args))

        return run_sdpa
    if candidate in ("reference", "tiled", "triton"):
        args = _attnkit_args(case, L, heads)
        return lambda: finish(attention(q, k, v, backend=candidate, **args)[0])
    if candidate == "flex":
        if backward and device == "cpu":
            raise NotImplementedError("FlexAttention has no CPU backward")
        compiled, block_mask, score_mod = _flex_fn(case, L, heads, device)
        return lambda: finish(compiled(q, k, v, block_mask=block_mask, score_mod=score_mod))
    raise ValueError(f"candidate must be one of {CANDIDATES}, got {candidate!r}")


def _repeats_for(L: int, repeats: int) -> tuple[int, int]:
    """(warm-up, repeats): long sequences get fewer runs so the suite finishes."""
    if L >= 16384:
        return 1, max(1, min(repeats, 2))
    if L >= 4096:
        return 1, max(1, min(repeats, 3))
    return 2, repeats


def _check_choices(values: Sequence[str], name: str, choices: Sequence[str]) -> list[str]:
    if isinstance(values, str) or not values:
        raise TypeError(f"{name} must be a non-empty sequence of names from {list(choices)}, "
                        f"got {values!r}")
    return [check_choice(value, name, choices) for value in values]


def _check_shape(heads: int, head_dim: int, device: str) -> None:
    check_int(heads, "heads", minimum=1)
    check_int(head_dim, "head_dim", minimum=1)
    check_choice(device, "device", DEVICES)


def run(*, lengths: Sequence[int] = (1024, 4096), cases: Sequence[str] = CASES,
        modes: Sequence[str] = MODES, candidates: Sequence[str] | None = None,
        repeats: int = 5, memory: bool = False, max_dense_gib: float = 6.0,
        out_dir: str = "benchmarks/results", name: str = "attention", heads: int = 8,
        head_dim: int = 64, device: str = "cpu", command: str = "attnkit bench attention",
        log: Callable[[str], None] = print) -> list[dict]:
    """Time every candidate on every (length, case, mode); write ``<name>.{json,md}``.

    Args:
        lengths: sequence lengths ``L = Lq = Lk`` (positive).
        cases, modes, candidates: subsets of :data:`ALL_CASES`, :data:`MODES` and
            :data:`CANDIDATES`; candidates default to all that run on ``device``
            (``triton`` needs ``device="cuda"``).
        repeats: timed runs per row (at least 1; long sequences use fewer).
        memory: also measure each row's peak extra memory in a subprocess.
        max_dense_gib: skip candidates that would materialize more (positive, finite).
        out_dir, name: the report goes to ``out_dir/name.json`` and ``.md``.
        heads, head_dim: ``H`` and ``D`` of ``q, k, v: (1, H, L, D)``.
        device: ``"cpu"`` or ``"cuda"``.
        command: the command line recorded in the report.

    Returns:
        One row per (length, case, mode, candidate), as written to the report.
    """
    lengths = check_lengths(lengths)
    cases = _check_choices(cases, "cases", ALL_CASES)
    modes = _check_choices(modes, "modes", MODES)
    _check_shape(heads, head_dim, device)
    if candidates is None:
        candidates = [c for c in CANDIDATES if c != "triton" or device == "cuda"]
    candidates = _check_choices(candidates, "candidates", CANDIDATES)
    if "triton" in candidates and device != "cuda":
        raise ValueError(f"candidates: 'triton' needs device='cuda', got device={device!r}")
    check_int(repeats, "repeats", minimum=1)
    check_bool(memory, "memory")
    check_float(max_dense_gib, "max_dense_gib", low=0.0, low_open=True)
    check_report_name(name)
    rows: list[dict] = []
    for L in lengths:
        for case in cases:
            for mode in modes:
                backward = mode == "fwd+bwd"
                causal = case != "dense"
                flops = attention_flops(1, heads, L, L, head_dim, causal=causal,
                                        backward=backward)
                found: dict[str, float] = {}
                for candidate in candidates:
                    row = {"case": case, "L": L, "mode": mode, "candidate": candidate}
                    need = dense_bytes(candidate, case, L, heads, backward)
                    if need > max_dense_gib * 2**30:
                        row["note"] = f"skipped: needs ~{need / 2**30:.0f} GiB"
                    elif candidate == "flex" and backward and device == "cpu":
                        row["note"] = "no CPU backward in FlexAttention"
                    else:
                        try:
                            fn = setup(case, L, candidate, backward, heads, head_dim,
                                       device=device)
                            warm, reps = _repeats_for(L, repeats)
                            if candidate == "flex":  # the first call compiles
                                start = time.perf_counter()
                                fn()
                                row["compile_s"] = time.perf_counter() - start
                            stats = measure(fn, warmup=warm, repeats=reps, device=device)
                            found[candidate] = stats["median_s"]
                            row["median_ms"] = stats["median_s"] * 1e3
                            row["gflops"] = flops / stats["median_s"] / 1e9
                            if memory:
                                mem = peak_memory("attnkit.bench.attention:setup",
                                                  {"case": case, "L": L,
                                                   "candidate": candidate,
                                                   "backward": backward, "heads": heads,
                                                   "head_dim": head_dim, "device": device})
                                row["peak_mib"] = None if mem is None else mem / 2**20
                        except (RuntimeError, NotImplementedError, ValueError) as exc:
                            row["note"] = f"failed: {str(exc).splitlines()[0][:80]}"
                    rows.append(row)
                peer = found.get("sdpa-flash")
                for row in rows[-len(candidates):]:
                    if peer is not None and row["candidate"] in found:
                        row["ratio_vs_sdpa"] = peer / found[row["candidate"]]
                    log(_format(row))
    write_report(rows, COLUMNS, out_dir, name,
                 title=f"Attention backends, B=1 H={heads} D={head_dim} float32 ({device})",
                 command=command)
    return rows


def _format(row: dict) -> str:
    cells = [f"{row['case']:>14}", f"L={row['L']:<6}", f"{row['mode']:<7}",
             f"{row['candidate']:<10}"]
    if "median_ms" in row:
        cells.append(f"{row['median_ms']:10.1f} ms")
        if "ratio_vs_sdpa" in row:
            cells.append(f"x{row['ratio_vs_sdpa']:.2f} vs sdpa")
        cells.append(f"{row['gflops']:6.1f} GFLOP/s")
        if row.get("compile_s") is not None:
            cells.append(f"compile {row['compile_s']:.1f} s")
        if row.get("peak_mib") is not None:
            cells.append(f"{row['peak_mib']:8.0f} MiB")
    else:
        cells.append(row.get("note", ""))
    return "  ".join(cells)


def memory_curve(lengths: Sequence[int] = (4096, 8192, 16384, 32768), case: str = "causal",
                 heads: int = 8, head_dim: int = 64, out_dir: str = "benchmarks/results",
                 command: str = "attnkit bench attention --memory-curve",
                 log: Callable[[str], None] = print) -> list[dict]:
    """Peak extra memory of one tiled forward+backward per length (each in a subprocess).

    Args:
        lengths: sequence lengths (positive); case: one of :data:`CASES`.
        heads, head_dim: ``H`` and ``D`` of ``q, k, v: (1, H, L, D)``.
        out_dir: the report goes to ``out_dir/memory_curve.json`` and ``.md``.
    """
    lengths = check_lengths(lengths)
    check_choice(case, "case", ALL_CASES)
    _check_shape(heads, head_dim, "cpu")
    rows = []
    for L in lengths:
        mem = peak_memory("attnkit.bench.attention:setup",
                          {"case": case, "L": L, "candidate": "tiled", "backward": True,
                           "heads": heads, "head_dim": head_dim}, timeout=3600)
        inputs = 4 * L * heads * head_dim * 4  # q, k, v, grad_out in float32
        row = {"case": case, "L": L, "candidate": "tiled", "mode": "fwd+bwd",
               "peak_mib": None if mem is None else mem / 2**20,
               "inputs_mib": inputs / 2**20,
               "dense_logits_mib": heads * L * L * 4 / 2**20}
        rows.append(row)
        log(f"L={L:<6} peak extra {row['peak_mib'] if mem is None else round(row['peak_mib'])}"
            f" MiB (inputs {row['inputs_mib']:.0f} MiB; one dense logit matrix would be "
            f"{row['dense_logits_mib']:.0f} MiB)")
    write_report(rows, ("case", "L", "candidate", "mode", "peak_mib", "inputs_mib",
                        "dense_logits_mib"), out_dir, "memory_curve",
                 title=f"tiled forward+backward peak extra memory, B=1 H={heads} D={head_dim}",
                 command=command)
    return rows
