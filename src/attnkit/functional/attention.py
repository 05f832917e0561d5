"""``attention()``: the one entry point for scaled-dot attention, and ``explain()``.

Shape legend: ``B`` batch, ``Hq`` query heads, ``Hkv`` key/value heads
(``Hq % Hkv == 0``; ``Hkv < Hq`` is grouped-query attention, ``Hkv == 1``
multi-query), ``Lq`` query length, ``Lk`` key length, ``D`` query/key head dim,
``Dv`` value head dim.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from attnkit._validate import check_bool
from attnkit.functional import _checks
from attnkit.functional._plan import CallPlan
from attnkit.functional.normalizers import masked_softmax
from attnkit.functional.score_mods import ScoreMod
from attnkit.functional.sparsemax import sparsemax
from attnkit.functional.weights import attention_weights
from attnkit.kernels import BACKENDS, Decision, Problem, dispatch
from attnkit.kernels.tiled import DEFAULT_BLOCK_K, DEFAULT_BLOCK_Q

__all__ = ["attention", "explain"]

MaskLike = torch.Tensor | Callable | None

_NORMALIZERS = {"softmax": masked_softmax, "sparsemax": sparsemax}


# Calls without a mask or score_mod (a causal flag at most: every decoder layer in a
# training loop) are described by plain, hashable values. A key that was validated once
# stays valid: shapes, dtypes and devices of q, k, v and the other arguments with their
# exact types (so True and 1, or 0.5 and a numpy float, are different keys). The cached
# entry holds what validation derived (the Problem and, without return_weights, the whole
# CallPlan: nothing in it depends on the tensors' values then) and the backend dispatch
# chose, with the registry and machine state it chose under (:func:`dispatch.state`): a
# cached call re-asks dispatch only when that state changed.
_FAST_CACHE_SIZE = 512
_FAST_TYPES = (type(None), bool, int, float, str)


class _Cached:
    """One validated unmasked call: its Problem, its plan (None with ``return_weights``:
    the weights rebuild closes over ``q`` and ``k``), the alignment, scale and dropout
    validation resolved, and dispatch's answer with the state it was given under."""

    __slots__ = ("problem", "plan", "alignment", "scale", "dropout_p", "state", "backend")

    def __init__(self, problem: Problem, plan: CallPlan | None, alignment: str | None,
                 scale: float, dropout_p: float, state: tuple, backend: str) -> None:
        self.problem, self.plan, self.alignment = problem, plan, alignment
        self.scale, self.dropout_p, self.state, self.backend = scale, dropout_p, state, backend


_fast_cache: dict[tuple, _Cached] = {}


def _fast_key(q, k, v, causal, scale, dropout_p, return_weights, backend, normalize):
    """The cache key of an unmasked call, or None when the call does not qualify."""
    if type(q) is not torch.Tensor or type(k) is not torch.Tensor or \
            type(v) is not torch.Tensor:
        return None
    if type(causal) not in _FAST_TYPES or type(scale) not in _FAST_TYPES or \
            type(dropout_p) not in _FAST_TYPES or type(return_weights) not in _FAST_TYPES or \
            type(backend) not in _FAST_TYPES or type(normalize) not in _FAST_TYPES:
        return None
    requires_grad = (q.requires_grad or k.requires_grad or v.requires_grad) and \
        torch.is_grad_enabled()
    return (q.shape, k.shape, v.shape, q.dtype, k.dtype, v.dtype, q.device, k.device,
            v.device, type(causal), causal, type(scale), scale, type(dropout_p), dropout_p,
            type(return_weights), return_weights, backend, normalize, requires_grad)


def _plan(q, k, mask, alignment, score_mod, scale, dropout_p, return_weights, normalize,
          causal) -> CallPlan:
    rebuild = (functools.partial(_weights_from_lse, q, k, mask, causal, scale, score_mod)
               if return_weights else None)
    return CallPlan.build(
        q, k.shape[2], mask, alignment, score_mod, scale=scale, dropout_p=dropout_p,
        return_weights=return_weights, normalize=_NORMALIZERS[normalize],
        rebuild_weights=rebuild)


def _cached(q, k, v, mask, causal, scale, score_mod, dropout_p, return_weights, backend,
            normalize) -> tuple[tuple | None, _Cached | None]:
    """``(key, entry)``: the fast-cache key of an unmasked call (None for other calls) and
    its cached entry (None when not cached yet)."""
    if mask is not None or score_mod is not None:
        return None, None
    key = _fast_key(q, k, v, causal, scale, dropout_p, return_weights, backend, normalize)
    return key, (None if key is None else _fast_cache.get(key))


def _prepare(q, k, v, mask, causal, scale, score_mod, dropout_p, return_weights, backend,
             normalize="softmax") -> tuple[CallPlan, Problem, str]:
    """Validate every argument and describe the call; returns the plan, the Problem and
    the backend dispatch chose (a named backend that refuses raises here)."""
    key, entry = _cached(q, k, v, mask, causal, scale, score_mod, dropout_p, return_weights,
                         backend, normalize)
    if entry is not None:
        plan = entry.plan
        if plan is None:
            plan = _plan(q, k, None, entry.alignment, None, entry.scale, entry.dropout_p,
                         return_weights, normalize, causal)
        return plan, entry.problem, _decided(entry, backend)
    plan, problem = _describe(q, k, v, mask, causal, scale, score_mod, dropout_p,
                              return_weights, backend, normalize)
    state = dispatch.state()
    name = dispatch.backend_for(problem, backend)  # raises for a named backend that refuses
    if key is not None:
        if len(_fast_cache) >= _FAST_CACHE_SIZE:
            _fast_cache.clear()
        _fast_cache[key] = _Cached(problem, None if return_weights else plan, plan.alignment,
                                   plan.scale, plan.dropout_p, state, name)
    return plan, problem, name


def _decided(entry: _Cached, backend: str) -> str:
    """The cached call's backend, asked again when the registry or machine state changed."""
    state = dispatch.state()
    if state != entry.state:
        entry.backend = dispatch.backend_for(entry.problem, backend)
        entry.state = state
    return entry.backend


def _describe(q, k, v, mask, causal, scale, score_mod, dropout_p, return_weights, backend,
              normalize) -> tuple[CallPlan, Problem]:
    """Validate every argument and describe the call for dispatch."""
    _checks.check_qkv(q, k, v)
    B, Hq, Lq, D = q.shape
    Hkv, Lk, Dv = k.shape[1], k.shape[2], v.shape[3]
    alignment = _checks.resolve_causal(causal, Lq, Lk)
    mask_kind = _checks.check_mask(mask, q, Lk)
    _checks.check_score_mod(score_mod)
    dropout_p = _checks.check_dropout(dropout_p)
    scale = _checks.resolve_scale(scale, D)
    check_bool(return_weights, "return_weights")
    _checks.check_normalize(normalize)
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    plan = _plan(q, k, mask, alignment, score_mod, scale, dropout_p, return_weights,
                 normalize, causal)
    requires_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    # Block sparsity matters where a dense kernel would run a mask_mod densely.
    sparsity = (plan.block_sparsity(DEFAULT_BLOCK_Q, DEFAULT_BLOCK_K)
                if mask_kind == "mask_mod" else None)
    spec = plan.kernel_spec()
    problem = Problem(
        batch=B, q_heads=Hq, kv_heads=Hkv, q_len=Lq, kv_len=Lk, head_dim=D, v_dim=Dv,
        dtype=q.dtype, device_type=q.device.type, mask=mask_kind, causal=alignment,
        score_mod=score_mod is not None,
        score_mod_traceable=score_mod is None or isinstance(score_mod, ScoreMod),
        return_weights=return_weights, dropout_p=dropout_p, requires_grad=requires_grad,
        block_sparsity=sparsity, normalize=normalize,
        spec_refusal=spec if isinstance(spec, str) else None,
    )
    return plan, problem


def _weights_from_lse(q, k, mask, causal, scale, score_mod, lse):
    return attention_weights(q, k, mask=mask, causal=causal, scale=scale, score_mod=score_mod,
                             lse=lse)


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
        backend: ``"auto"`` (the fastest backend that supports the call) or a name
            in :data:`attnkit.kernels.BACKENDS`: ``"reference"``, ``"sdpa"``,
            ``"tiled"``, ``"triton"`` (CUDA; the ``attnkit[triton]`` extra).
            :func:`explain` says which runs and why.

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
    if mask is None and score_mod is None and return_weights is False:
        # The hot path of a training loop: a cached unmasked call runs its cached plan on
        # the backend chosen for it, re-asking dispatch only when its state changed.
        key = _fast_key(q, k, v, causal, scale, dropout_p, False, backend, normalize)
        if key is not None and key in _fast_cache:
            entry = _fast_cache[key]
            return BACKENDS[_decided(entry, backend)].run(q, k, v, entry.plan)
    plan, _, name = _prepare(q, k, v, mask, causal, scale, score_mod, dropout_p,
                             return_weights, backend, normalize)
    return BACKENDS[name].run(q, k, v, plan)


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
        A :class:`~attnkit.kernels.Decision` with ``backend`` (the name that
        would run) and ``refused`` (``{name: reason}`` for every other backend).
    """
    problem = _prepare(q, k, v, mask, causal, scale, score_mod, dropout_p, return_weights,
                       backend, normalize)[1]
    return dispatch.choose(problem, backend)
