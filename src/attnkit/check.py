"""``attnkit check``: every available backend against the float64 oracle on this machine.

For each case (shape x mask x score_mod) and dtype it runs the golden float64
reference, the reference in the dtype, and every backend that accepts the case,
then applies the rule of :mod:`attnkit.testing` to the output and to the
gradients of ``q``, ``k`` and ``v``. The float64 reference itself is checked
against an independent textbook formula (dense einsum and softmax), so a broken
oracle cannot pass silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from attnkit.functional.attention import attention
from attnkit.functional.masks import causal as causal_mask
from attnkit.functional.masks import (
    document,
    index_grids,
    key_padding,
    materialize,
    sliding_window,
)
from attnkit.functional.score_mods import alibi, alibi_slopes, softcap
from attnkit.kernels import BACKENDS, unavailable
from attnkit.testing import DTYPES, max_error, oracle_check

__all__ = ["CheckCase", "default_cases", "run_check", "format_table"]


@dataclasses.dataclass(frozen=True)
class CheckCase:
    name: str
    batch: int = 2
    q_heads: int = 4
    kv_heads: int = 4
    q_len: int = 97
    kv_len: int = 97
    head_dim: int = 64
    causal: str | None = None
    mask: Callable[[], object] | None = None  # builds the mask (tensor or mask_mod)
    score_mod: Callable[[], Callable] | None = None


def _empty_rows_mask() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    mask = torch.rand(2, 1, 61, 75, generator=gen) > 0.3  # (B, 1, Lq, Lk)
    mask[:, :, 5] = False  # a query row with nothing to attend to
    return mask


def default_cases(quick: bool = False) -> list[CheckCase]:
    """The grid: awkward head dims and lengths, both causal alignments, GQA, empty rows."""
    cases = [
        CheckCase("dense D=64 L=97"),
        CheckCase("causal D=59 L=128", q_len=128, kv_len=128, head_dim=59, causal="upper_left"),
        CheckCase("lower-right Lq=33 Lk=97 D=111", q_len=33, kv_len=97, head_dim=111,
                  causal="lower_right"),
        CheckCase("lower-right Lq=40 Lk=17 (empty rows)", q_len=40, kv_len=17,
                  causal="lower_right"),
        CheckCase("bool mask with empty rows", q_len=61, kv_len=75, mask=_empty_rows_mask),
        CheckCase("GQA 8:2 + key padding", q_heads=8, kv_heads=2, kv_len=80,
                  mask=lambda: key_padding(torch.tensor([80, 0]))),
        CheckCase("MQA 4:1 sliding window 16", q_heads=4, kv_heads=1, q_len=130, kv_len=130,
                  mask=lambda: sliding_window(16)),
        CheckCase("document mask + causal", q_len=96, kv_len=96, causal="upper_left",
                  mask=lambda: document(torch.arange(96) // 30)),
        CheckCase("ALiBi causal", q_len=64, kv_len=64, causal="upper_left",
                  score_mod=lambda: alibi(alibi_slopes(4))),
        CheckCase("softcap 5", score_mod=lambda: softcap(5.0)),
        CheckCase("decode step Lq=1 Lk=1025", q_len=1, kv_len=1025, causal="lower_right",
                  q_heads=8, kv_heads=2),
    ]
    return cases[:4] if quick else cases


def _textbook(q, k, v, mask, scale, score_mod):
    """Independent float64 formula: dense scores, -inf masking, softmax, zero empty rows."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, 1)
    v = v.repeat_interleave(group, 1)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * scale
    if score_mod is not None:
        scores = score_mod(scores, *index_grids(*scores.shape, q.device))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return torch.einsum("bhqk,bhkd->bhqd", weights, v)


def _dense_for_textbook(case: CheckCase, mask_arg) -> torch.Tensor | None:
    dense = None
    if isinstance(mask_arg, torch.Tensor):
        dense = mask_arg
    elif mask_arg is not None:
        dense = materialize(mask_arg, case.batch, case.q_heads, case.q_len, case.kv_len)
    if case.causal is not None:
        tri = materialize(causal_mask(case.causal, q_len=case.q_len, kv_len=case.kv_len),
                          1, 1, case.q_len, case.kv_len)
        dense = tri if dense is None else dense & tri
    return dense


def _run(backend, q, k, v, kwargs, grad_out):
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    out, _ = attention(*leaves, backend=backend, **kwargs)
    out.backward(grad_out.to(out.dtype))
    return out.detach(), [t.grad for t in leaves]


def run_check(cases: list[CheckCase] | None = None, dtypes=None,
              backends: list[str] | None = None) -> list[dict]:
    """Run the grid; returns one row per (backend, case, dtype, pass) with errors.

    Args:
        backends: names from :data:`attnkit.kernels.BACKENDS` (default: every backend
            but the reference that can run on this machine).

    Raises:
        ValueError: naming ``backends`` when one is unknown or cannot run here at all
            (e.g. triton without triton installed or without a GPU).
    """
    cases = default_cases() if cases is None else cases
    dtypes = dtypes or DTYPES
    if backends is None:
        backends = [name for name in BACKENDS if name != "reference" and unavailable(name) is None]
    for name in backends:
        if name not in BACKENDS:
            raise ValueError(f"backends: {name!r} is not a backend; choose from {list(BACKENDS)}")
        reason = unavailable(name)
        if reason is not None:
            raise ValueError(f"backends: {name!r} cannot run on this machine: {reason}")
    rows = []
    for case in cases:
        gen = torch.Generator().manual_seed(0)
        q = torch.randn(case.batch, case.q_heads, case.q_len, case.head_dim, generator=gen,
                        dtype=torch.float64)
        k = torch.randn(case.batch, case.kv_heads, case.kv_len, case.head_dim, generator=gen,
                        dtype=torch.float64)
        v = torch.randn(case.batch, case.kv_heads, case.kv_len, case.head_dim, generator=gen,
                        dtype=torch.float64)
        grad_out = torch.randn(case.batch, case.q_heads, case.q_len, case.head_dim,
                               generator=gen, dtype=torch.float64)
        mask_arg = case.mask() if case.mask else None
        kwargs = {"mask": mask_arg, "causal": case.causal,
                  "score_mod": case.score_mod() if case.score_mod else None}
        golden, golden_grads = _run("reference", q, k, v, kwargs, grad_out)

        expected = _textbook(q, k, v, _dense_for_textbook(case, mask_arg),
                             q.shape[-1] ** -0.5, kwargs["score_mod"])
        err = max_error(golden, expected)
        rows.append({"backend": "reference", "case": case.name, "dtype": "float64",
                     "pass": "forward", "max_error": err, "tolerance": 1e-10,
                     "ok": err <= 1e-10})

        for dtype in dtypes:
            low = [t.to(dtype) for t in (q, k, v)]
            ref, ref_grads = _run("reference", *low, kwargs, grad_out)
            for backend in backends:
                try:
                    out, grads = _run(backend, *low, kwargs, grad_out)
                except ValueError as exc:
                    if "cannot run this call" in str(exc):
                        continue  # the backend refuses this case; explain() says why
                    raise
                error, allowed, ok = oracle_check(out, ref, golden, kind="forward")
                rows.append({"backend": backend, "case": case.name, "dtype": str(dtype)[6:],
                             "pass": "forward", "max_error": error, "tolerance": allowed,
                             "ok": ok})
                # Report the worst gradient as a fraction of its own allowance.
                checks = [oracle_check(g, r, gg, kind="backward")
                          for g, r, gg in zip(grads, ref_grads, golden_grads, strict=True)]
                worst = max(checks, key=lambda c: c[0] / c[1])
                rows.append({"backend": backend, "case": case.name, "dtype": str(dtype)[6:],
                             "pass": "backward", "max_error": worst[0], "tolerance": worst[1],
                             "ok": all(c[2] for c in checks)})
    return rows


def format_table(rows: list[dict]) -> str:
    header = ("backend", "case", "dtype", "pass", "max error", "tolerance", "result")
    body = [(r["backend"], r["case"], r["dtype"], r["pass"], f"{r['max_error']:.2e}",
             f"{r['tolerance']:.2e}", "ok" if r["ok"] else "FAIL") for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]

    def line(cells) -> str:
        return "  ".join(f"{cell:<{width}}" for cell, width in zip(cells, widths, strict=True))

    out = [line(header), line("-" * w for w in widths)]
    out += [line(row) for row in body]
    return "\n".join(out)
