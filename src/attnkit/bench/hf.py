"""Hugging Face forward time at long context: ``attn_implementation="attnkit"`` against
transformers' ``"sdpa"`` and ``"eager"`` on the same model and weights.

The model is a randomly initialised Mistral (Jiang et al. 2023, "Mistral 7B",
arXiv:2310.06825): causal sliding-window attention with grouped-query heads, so the
mask is where the implementations differ. transformers builds a dense
``(B, 1, L, L)`` mask for ``sdpa`` (bool) and ``eager`` (float) in every forward and
SDPA runs over all ``L^2`` logits; ``attnkit`` receives the sliding window as a
structured mask (:mod:`attnkit.hf`) and its dispatch picks the tiled kernel, which
skips the tiles outside the window. The default model is small (2 layers, width 256,
4 query heads of 64, 2 key/value heads) so that attention dominates the forward.

Every row also reports the largest absolute difference of the last hidden state from
the ``sdpa`` run (float32), so a fast wrong answer cannot pass as a speed-up.
Ratio = sdpa time / candidate time (above 1: faster than sdpa). Candidates whose
dense logits or mask would exceed ``max_dense_gib`` are skipped (eager at 16k
materializes several GiB per layer).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from attnkit._validate import check_bool, check_float, check_int
from attnkit.bench.timing import (
    check_lengths,
    check_report_name,
    measure_interleaved,
    write_report,
)

__all__ = ["run", "IMPLEMENTATIONS", "build_models"]

IMPLEMENTATIONS = ("attnkit", "sdpa", "eager")
COLUMNS = ("L", "window", "implementation", "forward_ms", "ratio_vs_sdpa",
           "max_abs_diff_vs_sdpa")


def build_models(implementations: Sequence[str], *, window: int, max_len: int,
                 layers: int = 2, width: int = 256, heads: int = 4, kv_heads: int = 2,
                 vocab: int = 1000, seed: int = 0) -> dict[str, torch.nn.Module]:
    """One randomly initialised ``MistralModel`` per implementation, same weights."""
    from transformers import MistralConfig, MistralModel

    from attnkit.hf import register

    register()
    config = MistralConfig(vocab_size=vocab, hidden_size=width, intermediate_size=2 * width,
                           num_hidden_layers=layers, num_attention_heads=heads,
                           num_key_value_heads=kv_heads, sliding_window=window,
                           max_position_embeddings=max_len, bos_token_id=0, eos_token_id=0,
                           pad_token_id=0)
    torch.manual_seed(seed)
    models: dict[str, torch.nn.Module] = {}
    state = None
    for name in implementations:
        model = MistralModel._from_config(copy.deepcopy(config), attn_implementation=name)
        if state is None:
            state = model.state_dict()
        else:
            model.load_state_dict(state)
        models[name] = model.eval()
    return models


def _dense_gib(name: str, L: int, heads: int) -> float:
    """What one layer of ``name`` materializes beyond O(L) memory, in GiB (float32)."""
    mask = L * L * (4 if name == "eager" else 1)  # the model's (1, 1, L, L) mask
    if name == "eager":
        return (mask + 2 * heads * L * L * 4) / 2**30  # logits and weights
    if name == "sdpa":
        return (mask + heads * L * L * 4) / 2**30  # SDPA's math path with a mask
    return 0.0


#: lengths, window and repeats: by default, and under ``quick``
_DEFAULT_SIZES = ((4096, 16384), 1024, 3)
_QUICK_SIZES = ((256, 512), 64, 1)


def run(*, lengths: Sequence[int] | None = None, window: int | None = None,
        implementations: Sequence[str] = IMPLEMENTATIONS, repeats: int | None = None,
        max_dense_gib: float = 6.0, layers: int = 2, quick: bool = False,
        out_dir: str = "benchmarks/results", name: str = "hf", write: bool = True,
        command: str | None = None) -> list[dict]:
    """Time one forward (``torch.no_grad``, batch 1) per implementation and length.

    Args:
        lengths: context lengths ``L`` (default 4096 and 16384).
        window: Mistral's ``sliding_window`` (default 1024).
        implementations: among :data:`IMPLEMENTATIONS`; ``sdpa`` is the baseline of the
            ratio and of the difference and is always run.
        repeats: timed forwards per row, after one warm-up (default 3).
        max_dense_gib: skip an implementation whose dense per-layer tensors would exceed it.
        layers: decoder layers.
        quick: smoke-test sizes (L = 256 and 512, window 64, one repeat); it sets
            ``lengths``, ``window`` and ``repeats`` itself, so giving one of them as well
            is refused.
        out_dir, name: where ``<name>.json`` and ``<name>.md`` go (when ``write``).
        command: the command line recorded in the report.
    """
    check_bool(quick, "quick")
    given = {"lengths": lengths, "window": window, "repeats": repeats}
    if quick:
        clash = [name for name, value in given.items() if value is not None]
        if clash:
            raise ValueError(f"{clash[0]}: quick sets its own (L = 256 and 512, window 64, "
                             f"one repeat); give {clash[0]} or quick, not both")
        lengths, window, repeats = _QUICK_SIZES
    else:
        lengths, window, repeats = (value if value is not None else default
                                    for value, default in zip(given.values(), _DEFAULT_SIZES,
                                                              strict=True))
    lengths = check_lengths(lengths)
    window = check_int(window, "window", minimum=1)
    repeats = check_int(repeats, "repeats", minimum=1)
    layers = check_int(layers, "layers", minimum=1)
    max_dense_gib = check_float(max_dense_gib, "max_dense_gib", low=0.0, low_open=True)
    check_report_name(name)
    unknown = [i for i in implementations if i not in IMPLEMENTATIONS]
    if unknown or not implementations:
        raise ValueError(f"implementations must be a non-empty subset of {IMPLEMENTATIONS}, "
                         f"got {list(implementations)}")
    chosen = ["sdpa"] + [i for i in implementations if i != "sdpa"]
    heads = 4
    models = build_models(chosen, window=window, max_len=max(lengths), layers=layers,
                          heads=heads)
    rows = []
    for L in lengths:
        ids = torch.randint(1000, (1, L), generator=torch.Generator().manual_seed(L))
        fit = {i: _dense_gib(i, L, heads) <= max_dense_gib for i in chosen}
        runnable = [i for i in chosen if fit[i]]
        outputs: dict[str, torch.Tensor] = {}

        def forward(impl: str, ids: torch.Tensor = ids, outputs: dict = outputs):
            def call() -> None:
                with torch.no_grad():
                    outputs[impl] = models[impl](ids).last_hidden_state  # (1, L, E)
            return call

        stats = measure_interleaved({i: forward(i) for i in runnable}, warmup=1,
                                    repeats=repeats) if runnable else {}
        base = stats.get("sdpa", {}).get("median_s")
        for impl in chosen:
            row = {"L": L, "window": window, "implementation": impl, "forward_ms": None,
                   "ratio_vs_sdpa": None, "max_abs_diff_vs_sdpa": None}
            if impl in stats:
                seconds = stats[impl]["median_s"]
                row["forward_ms"] = seconds * 1e3
                if base is not None:
                    row["ratio_vs_sdpa"] = base / seconds
                    row["max_abs_diff_vs_sdpa"] = float(
                        (outputs[impl] - outputs["sdpa"]).abs().max())
            else:
                row["skipped"] = (f"dense tensors of ~{_dense_gib(impl, L, heads):.1f} GiB per "
                                  f"layer exceed max_dense_gib={max_dense_gib}")
            rows.append(row)
            shown = "skipped" if row["forward_ms"] is None else f"{row['forward_ms']:10.1f} ms"
            ratio = "" if row["ratio_vs_sdpa"] is None else \
                f"  x{row['ratio_vs_sdpa']:.2f} vs sdpa  diff {row['max_abs_diff_vs_sdpa']:.1e}"
            print(f"L={L:<6} window={window:<5} {impl:<8} {shown}{ratio}", flush=True)
    if write:
        if command is None:
            command = (f"attnkit.bench.hf.run(lengths={list(lengths)}, window={window}, "
                       f"implementations={list(implementations)}, repeats={repeats}, "
                       f"layers={layers}, quick={quick})")
        json_path, md_path = write_report(
            rows, COLUMNS, out_dir, name,
            title=f"Hugging Face MistralModel forward (random weights, {layers} layers, width "
                  f"256, 4 query / 2 key-value heads, sliding window {window}, batch 1, "
                  f"float32, no_grad): attn_implementation attnkit vs sdpa vs eager; ratio = "
                  f"sdpa time / time",
            command=command)
        print(f"wrote {json_path} and {md_path}")
    return rows
