"""``attention()``: the one entry point for scaled-dot attention, and ``explain()``.

Shape legend: ``B`` batch, ``Hq`` query heads, ``Hkv`` key/value heads
(``Hq % Hkv == 0``; ``Hkv < Hq`` is grouped-query attention, ``Hkv == 1``
multi-query), ``Lq`` query length, ``Lk`` key length, ``D`` query/key head dim,
``Dv`` value head dim.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import torch

from attnkit.functional import _checks
from attnkit.functional._plan import CallPlan, captured_tensors
from attnkit.functional.normalizers import masked_softmax
from attnkit.functional.reference import reference_attention
from attnkit.functional.sparsemax import sparsemax
from attnkit.functional.weights import attention_weights
from attnkit.kernels.dispatch import Decision, Problem, choose
from attnkit.kernels.sdpa import sdpa_attention
from attnkit.kernels.tiled import DEFAULT_BLOCK_K, DEFAULT_BLOCK_Q, tiled_attention

__all__ = ["attention", "explain"]

MaskLike = torch.Tensor | Callable | None

_NORMALIZERS = {"softmax": masked_softmax, "sparsemax": sparsemax}


def _prepare(q, k, v, mask, causal, scale, score_mod, dropout_p, return_weights, backend,
             normalize="softmax"):
    _checks.check_qkv(q, k, v)
    B, Hq, Lq, D = q.shape
    Hkv, Lk, Dv = k.shape[1], k.shape[2], v.shape[3]
    alignment = _checks.resolve_causal(causal, Lq, Lk)
    mask_kind = _checks.check_mask(mask, q, Lk)
    _checks.check_score_mod(score_mod)
    dropout_p = _checks.check_dropout(dropout_p)
    scale = _checks.resolve_scale(scale, D)
    _checks.check_flag(return_weights, "return_weights")
    _checks.check_normalize(normalize)
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    plan = CallPlan.build(q, Lk, mask, alignment, score_mod)
    requires_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    # Block sparsity matters where SDPA would run a mask_mod densely.
    sparsity = (plan.block_sparsity(DEFAULT_BLOCK_Q, DEFAULT_BLOCK_K)
                if mask_kind == "mask_mod" else None)
    problem = Problem(
        batch=B, q_heads=Hq, kv_heads=Hkv, q_len=Lq, kv_len=Lk, head_dim=D, v_dim=Dv,
        dtype=q.dtype, device_type=q.device.type, mask=mask_kind, causal=alignment,
        score_mod=score_mod is not None,
        score_mod_traceable=score_mod is None or _score_mod_traceable(score_mod),
        return_weights=return_weights, dropout_p=dropout_p, requires_grad=requires_grad,
        block_sparsity=sparsity, normalize=normalize, spec_refusal=_spec_refusal(plan, q),
    )
    return problem, plan, scale, dropout_p, choose(problem, backend)


def _spec_refusal(plan: CallPlan, q: torch.Tensor) -> str | None:
    """Why no kernel spec exists (None if one does); only worked out where a fused GPU
    kernel could run at all."""
    if q.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return "no GPU: not described"
    spec = plan.kernel_spec()
    return spec if isinstance(spec, str) else None


def triton_attention(q, k, v, spec, scale):
    """The Triton kernel, imported on first use (triton is an optional extra)."""
    from attnkit.kernels.triton_attention import triton_attention as kernel

    return kernel(q, k, v, spec, scale, return_lse=True)


def _score_mod_traceable(score_mod: Callable) -> bool:
    """True when every tensor the score_mod may need gradients for can be found."""
    from attnkit.functional.score_mods import ScoreMod

    return isinstance(score_mod, ScoreMod)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: MaskLike = None,
    causal: bool | str | None = None,
    scale: float | None = None,
    score_mod: Callable | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
    normalize: str = "softmax",
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled-dot attention ``softmax(score_mod(q k^T * scale) | mask) v``.

    Args:
        q: ``(B, Hq, Lq, D)`` queries.
        k: ``(B, Hkv, Lk, D)`` keys; ``Hq % Hkv == 0`` (query head ``h`` reads
            key/value head ``h // (Hq // Hkv)``).
        v: ``(B, Hkv, Lk, Dv)`` values.
        mask: True = may attend. A bool tensor ``(Lq, Lk)`` or 4-D broadcastable to
            ``(B, Hq, Lq, Lk)`` (each dim equal or 1), or a
            ``mask_mod(b, h, q_idx, kv_idx)`` callable (see :mod:`attnkit.masks`).
        causal: None (no causal masking), ``"upper_left"``, ``"lower_right"``, or
            True when ``Lq == Lk`` (both alignments agree then; with ``Lq != Lk``
            True raises, because the two differ). For ``Lq = 2, Lk = 5``::

                upper_left     lower_right
                1 0 0 0 0      1 1 1 1 0
                1 1 0 0 0      1 1 1 1 1

            Combined with ``mask`` by logical and.
        scale: logit multiplier, default ``1 / sqrt(D)``.
        score_mod: ``score_mod(score, b, h, q_idx, kv_idx)`` applied to the scaled
            logits before masking (see :mod:`attnkit.score_mods`).
        dropout_p: dropout probability on the attention weights, in ``[0, 1)``.
            Applied whenever it is > 0 (pass 0.0 at evaluation time).
        return_weights: also return the softmax weights (before dropout).
        normalize: ``"softmax"``, or ``"sparsemax"`` (Martins & Astudillo 2016,
            arXiv:1602.02068: sparse weights; reference backend only).
        backend: ``"auto"`` (the fastest backend that supports the call),
            ``"reference"``, ``"sdpa"``, ``"tiled"`` or ``"triton"`` (CUDA; the
            ``attnkit[triton]`` extra). :func:`explain` says which runs and why.

    Returns:
        ``(out, weights)``: ``out (B, Hq, Lq, Dv)`` in the input dtype;
        ``weights (B, Hq, Lq, Lk)`` in the input dtype, or None unless
        ``return_weights``. A query row with nothing to attend to gives zeros in both.

    Example:
        >>> import torch, attnkit
        >>> q = k = v = torch.randn(2, 4, 16, 32)
        >>> out, _ = attnkit.attention(q, k, v, causal=True)
        >>> out.shape
        torch.Size([2, 4, 16, 32])
    """
    problem, plan, scale, dropout_p, decision = _prepare(
        q, k, v, mask, causal, scale, score_mod, dropout_p, return_weights, backend, normalize)

    if decision.backend == "sdpa":
        alignment = plan.alignment
        if alignment == "lower_right" and problem.q_len == problem.kv_len:
            alignment = "upper_left"  # the two alignments coincide on a square
        if alignment == "lower_right" and problem.q_len == 1:
            alignment = None  # a single lower-right query sees every key
        if alignment == "upper_left" and problem.mask == "none":
            # SDPA's own causal flag is upper-left and needs no mask tensor.
            out = sdpa_attention(q, k, v, mask=None, is_causal=True, scale=scale,
                                 dropout_p=dropout_p)
        else:
            dense = dataclasses.replace(plan, alignment=alignment).dense_mask()
            out = sdpa_attention(q, k, v, mask=dense, is_causal=False, scale=scale,
                                 dropout_p=dropout_p)
        return out, None

    if decision.backend == "triton":
        out, lse = triton_attention(q, k, v, plan.kernel_spec(), scale)
        weights = None
        if return_weights:
            weights = attention_weights(q, k, mask=mask, causal=causal, scale=scale,
                                        score_mod=score_mod, lse=lse.detach())
        return out, weights

    if decision.backend == "tiled":
        fns = plan.tile_fns(DEFAULT_BLOCK_Q, DEFAULT_BLOCK_K)
        out, lse = tiled_attention(q, k, v, scale=scale, fns=fns,
                                   captured=captured_tensors(score_mod))
        weights = None
        if return_weights:
            weights = attention_weights(q, k, mask=mask, causal=causal, scale=scale,
                                        score_mod=score_mod, lse=lse.detach())
        return out, weights

    return reference_attention(q, k, v, mask=plan.dense_mask(), scale=scale,
                               score_mod=score_mod, dropout_p=dropout_p,
                               return_weights=return_weights,
                               normalize=_NORMALIZERS[normalize])


def explain(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: MaskLike = None,
    causal: bool | str | None = None,
    scale: float | None = None,
    score_mod: Callable | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
    normalize: str = "softmax",
    backend: str = "auto",
) -> Decision:
    """Which backend :func:`attention` would run for these arguments, and why not the others.

    Takes exactly :func:`attention`'s arguments and validates them the same way,
    without computing anything.

    Returns:
        A :class:`~attnkit.kernels.dispatch.Decision` with ``backend`` (the name that
        would run) and ``refused`` (``{name: reason}`` for every other backend).
    """
    return _prepare(q, k, v, mask, causal, scale, score_mod, dropout_p, return_weights,
                    backend, normalize)[-1]
