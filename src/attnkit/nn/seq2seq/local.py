"""Luong local attention: monotonic (local-m) and predictive (local-p) alignment.

Paper: Luong, Pham & Manning (2015), "Effective Approaches to Attention-based
Neural Machine Translation", arXiv:1508.04025, section 3.2. The decoder attends
only to the window ``[p_t - D, p_t + D]`` around an aligned position ``p_t``:

* local-m: ``p_t = t`` and ``a_t = softmax(score(h_t, h_s))`` over the window;
* local-p: ``p_t = S * sigmoid(v_p^T tanh(W_p h_t))`` with ``S`` the source length,
  and ``a_t(s) = align(h_t, h_s) * exp(-(s - p_t)^2 / (2 sigma^2))``,
  ``sigma = D / 2``, where ``align`` is the softmax of the scores over the window.

``score`` is one of Luong's ``dot``, ``general`` or ``concat`` (see
:mod:`attnkit.nn.seq2seq.luong`).

Where the paper leaves a choice, this module picks:

* Positions are 0-based, ``s = 0 .. S-1`` (the paper counts from 1); ``p_t`` is
  kept as the paper writes it, ``S * sigmoid(.) in [0, S]``.
* Window membership is ``|s - p_t| <= D`` for real ``p_t``; every position
  outside it gets exactly zero weight. Window positions that the mask forbids
  (or that fall outside ``0 .. Lk-1``) are simply absent.
* local-p weights are NOT renormalized after the Gaussian, as in the paper, so
  a row sums to less than 1 (unlike the other :class:`Seq2SeqAttention` modules).
  The Gaussian carries the gradient to ``p_t``; the window edge itself is a hard
  cut with no gradient.
* local-m: ``t`` is the decoding step, carried in ``state["step"]`` (shape
  ``(B,)``, start 0) and advanced by ``Lq`` after each call; inside one call query
  ``i`` sits at ``t + i``, so feeding ``Lq`` queries at once equals ``Lq`` steps.
  When ``t - D`` passes the end of the source the window is empty: zero weights
  and a zero context.
* local-p: ``S`` is each row's number of allowed keys in the mask (the source
  length for the usual padding mask ``(B, Lk)``), or ``Lk`` without a mask.
* Scores are computed for all ``Lk`` keys and the window is applied as a mask:
  the result is the paper's, the cost is that of global attention. A gathered
  ``2D+1`` window would save compute on long sources; it is not done here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnkit._validate import check_choice, check_int
from attnkit.functional.normalizers import compute_dtype, masked_softmax
from attnkit.nn.seq2seq.base import Seq2SeqAttention, State
from attnkit.nn.seq2seq.luong import LUONG_SCORES, _key_projection

__all__ = ["LocalAttention"]

_MODES = ("monotonic", "predictive")
_SCORES = ("dot", "general", "concat")


class LocalAttention(Seq2SeqAttention):
    """Attention restricted to ``[p_t - D, p_t + D]`` (local-m or local-p).

    Args:
        query_dim: ``Dq``, size of the target state ``h_t``.
        key_dim: ``Dk``, size of the source states ``h_s``.
        window: ``D``, the half-width of the window (the paper uses 10).
        mode: ``"monotonic"`` (local-m) or ``"predictive"`` (local-p).
        score: ``"general"``, ``"dot"`` (needs ``Dq == Dk``) or ``"concat"``.
        value_dim: ``Dv`` of ``values``; defaults to ``key_dim`` (values = keys).
        hidden_dim: size of the ``tanh`` layer of the ``concat`` score.
        predict_dim: rows of ``W_p`` (local-p), default ``query_dim``.

    Shapes (see :mod:`attnkit.nn.seq2seq.base`): ``query (B, Lq, Dq)``, ``keys
    (B, Lk, Dk)``, ``values (B, Lk, Dv)``, ``mask (B, Lk)`` or ``(B, Lq, Lk)`` ->
    ``context (B, Lq, Dv)``, ``weights (B, Lq, Lk)`` (zero outside the window; for
    local-p the rows sum to less than 1, see the module docstring), ``state`` with
    ``"key_proj"`` and, for local-m, ``"step": (B,)`` int64.

    Example::

        >>> attn = LocalAttention(4, 4, window=2, mode="monotonic", score="dot")
        >>> keys = torch.randn(1, 9, 4)
        >>> state = attn.init_state(keys)
        >>> _, weights, state = attn(torch.randn(1, 1, 4), keys, state=state)
        >>> (weights[0, 0, 3:] == 0).all().item(), state["step"].tolist()
        (True, [1])
    """

    decoder_style = "luong"  # p_t and the scores come from the current state h_t (3.2)

    def __init__(self, query_dim: int, key_dim: int, *, window: int = 10,
                 mode: str = "predictive", score: str = "general",
                 value_dim: int | None = None, hidden_dim: int | None = None,
                 predict_dim: int | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self._set_sizes(query_dim, key_dim, value_dim)
        self.window = check_int(window, "window", minimum=1, owner=name)
        check_choice(mode, "mode", _MODES, owner=name)
        check_choice(score, "score", _SCORES, owner=name)
        for arg, value in (("hidden_dim", hidden_dim), ("predict_dim", predict_dim)):
            if value is not None:
                check_int(value, arg, minimum=1, owner=name)
        self.mode = mode
        factory = {"device": device, "dtype": dtype}
        self.score = LUONG_SCORES[score](query_dim, key_dim, hidden_dim=hidden_dim,
                                         factory=factory, owner=name)
        if mode == "predictive":
            predict_dim = query_dim if predict_dim is None else predict_dim
            self.position_proj = nn.Linear(query_dim, predict_dim, bias=False, **factory)  # W_p
            self.position_vector = nn.Parameter(torch.empty(predict_dim, **factory))  # v_p
            bound = 1.0 / math.sqrt(predict_dim)
            nn.init.uniform_(self.position_vector, -bound, bound)

    def init_state(self, keys: torch.Tensor, values: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None) -> State:
        """``{"key_proj"}`` (+ ``"step": zeros (B,)`` for local-m) for one source."""
        self._check_keys(keys, self.key_dim)
        state = {"key_proj": self.score.project_keys(keys)}
        if self.mode == "monotonic":
            state["step"] = torch.zeros(keys.shape[0], dtype=torch.long, device=keys.device)
        return state

    def _step(self, batch: int, device: torch.device, state: State | None) -> torch.Tensor:
        """local-m decoding step per row, ``(B,)`` int64."""
        step = None if state is None else state.get("step")
        if step is None:
            return torch.zeros(batch, dtype=torch.long, device=device)
        if not isinstance(step, torch.Tensor) or tuple(step.shape) != (batch,) \
                or step.dtype != torch.long:
            got = (step.dtype, tuple(step.shape)) if isinstance(step, torch.Tensor) else step
            raise ValueError(f"{type(self).__name__}: state['step'] must be an int64 tensor "
                             f"of shape (B,) = ({batch},), got {got}")
        return step

    def _positions(self, query: torch.Tensor, k_len: int, mask: torch.Tensor | None,
                   state: State | None) -> torch.Tensor:
        """Aligned positions ``p_t`` as ``(B, Lq)`` in the compute dtype; ``mask`` is the
        checked ``(B, 1 | Lq, Lk)`` mask."""
        batch, q_len = query.shape[:2]
        acc = compute_dtype(query.dtype)
        if self.mode == "monotonic":
            offsets = torch.arange(q_len, device=query.device)
            return (self._step(batch, query.device, state)[:, None] + offsets).to(acc)
        src_len = (torch.full((batch, 1), float(k_len), dtype=acc, device=query.device)
                   if mask is None else mask.sum(-1).to(acc))  # (B, 1 | Lq)
        logit = torch.tanh(self.position_proj(query)) @ self.position_vector  # (B, Lq)
        return src_len * torch.sigmoid(logit.to(acc))

    def aligned_positions(self, query: torch.Tensor, keys: torch.Tensor, *,
                          mask: torch.Tensor | None = None,
                          state: State | None = None) -> torch.Tensor:
        """The window centres ``p_t`` that :meth:`forward` would use, ``(B, Lq)``
        (float32, or float64 for float64 queries)."""
        _, mask = self._check_inputs(query, keys, None, mask, state)
        return self._positions(query, keys.shape[1], mask, state)

    def forward(self, query: torch.Tensor, keys: torch.Tensor,
                values: torch.Tensor | None = None, *, mask: torch.Tensor | None = None,
                state: State | None = None) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Context, weights (zero outside the window) and the next state (shapes above)."""
        values, mask = self._check_inputs(query, keys, values, mask, state)
        key_proj = _key_projection(self, self.score, query, keys, values, state)
        scores = self.score(query, key_proj)  # (B, Lq, Lk)
        centres = self._positions(query, keys.shape[1], mask, state)  # (B, Lq)
        offsets = torch.arange(keys.shape[1], device=keys.device, dtype=centres.dtype)
        distance = offsets - centres[..., None]  # (B, Lq, Lk): s - p_t
        allowed = distance.abs() <= self.window
        if mask is not None:
            allowed = allowed & mask
        weights = masked_softmax(scores, allowed)
        if self.mode == "predictive":
            sigma = self.window / 2
            gauss = torch.exp(-distance.square() / (2 * sigma**2))
            weights = (weights.to(gauss.dtype) * gauss).to(scores.dtype)
        context = weights @ values  # (B, Lq, Dv)
        next_state = {**(state or {}), "key_proj": key_proj}
        if self.mode == "monotonic":
            next_state["step"] = self._step(query.shape[0], query.device, state) + query.shape[1]
        return context, weights, next_state
