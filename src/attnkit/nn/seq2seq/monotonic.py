"""Monotonic attention: expected alignment in training, online hard alignment at test time.

Raffel, Luong, Liu, Weiss, Eck, "Online and Linear-Time Attention by Enforcing
Monotonic Alignments", ICML 2017, arXiv:1704.00784.

At output step ``i`` the decoder scans the memory left to right from where it
stopped at step ``i - 1`` and stops at ``j`` with probability ``p_{i,j}``::

    e_{i,j} = g v^T / ||v|| tanh(W s_{i-1} + V h_j + b) + r      (weight-normalized energy)
    p_{i,j} = sigmoid(e_{i,j})

Training uses the expected alignment (eqs. 13-14, solved in parallel over ``j`` in
appendix C.1)::

    q_{i,j}     = (1 - p_{i,j-1}) q_{i,j-1} + alpha_{i-1,j}    q_{i,0} = p_{i,0} = 0 (j from 1)
    alpha_{i,j} = p_{i,j} q_{i,j}
                = p_{i,j} cumprod_excl(1 - p_i)_j cumsum(alpha_{i-1} / cumprod_excl(1 - p_i))_j

Test time stops at the first ``j >= t_{i-1}`` with ``p_{i,j} >= 0.5`` and attends to
that one entry; if there is none the context is zero (section 2.2).

Numerics: ``cumprod_excl(1 - p)`` underflows to 0 once some ``p`` is close to 1,
and the closed form divides by it, the instability the paper points out for this
form. We clamp the divisor to ``[1e-10, 1]``: the parallel form is exact while the
cumulative product stays above the floor and an underestimate (never NaN or inf)
beyond it.
The cumulative products and sums run in float32 (float64 for float64 inputs).

Choices:

- ``alpha_0`` is one-hot at position 0 (the paper's ``t_0 = 1``).
- ``sum_j alpha_{i,j} <= 1``: the missing mass is "attend to nothing", as in the
  paper; rows are not renormalized.
- Masked keys get ``p = 0``: the scan passes over them and never stops there.
- Once a hard scan attends to nothing, every later step attends to nothing too
  (the scan has run off the end of the memory).
- ``g`` starts at ``1/sqrt(hidden_dim)``. A negative initial ``r`` keeps early
  ``p`` small, so alignments do not stop at the first entries (recommended for
  long memories); the default ``score_bias_init=-4.0`` is such a value. Tune it.
- Training adds Gaussian noise of std ``sigmoid_noise`` (default 1.0) before the
  sigmoid, the paper's way of pushing ``p`` towards 0 or 1 so that the expected
  alignment seen in training matches the hard process used at test time.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnkit._validate import check_choice, check_float, check_int
from attnkit.functional.normalizers import compute_dtype
from attnkit.nn.seq2seq.base import Seq2SeqAttention, State

__all__ = ["MonotonicAttention", "expected_alignment", "hard_alignment"]

# Floor for the divisor cumprod(1 - p) of the parallel expected alignment.
CUMPROD_FLOOR = 1e-10


def expected_alignment(p_choose: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Expected monotonic alignment of one step, in parallel over the memory.

    Args:
        p_choose: ``(..., Lk)`` stopping probabilities ``p_{i,j}`` in ``[0, 1]``.
        previous: ``(..., Lk)`` the previous alignment ``alpha_{i-1}``.

    Returns:
        ``alpha_i`` ``(..., Lk)``, with ``sum_j alpha_{i,j} <= sum_j alpha_{i-1,j}``.
    """
    # cumprod_excl(1 - p)_j = prod_{l < j} (1 - p_l): the chance of passing 0..j-1.
    passed = torch.cumprod(torch.cat([torch.ones_like(p_choose[..., :1]),
                                      1.0 - p_choose[..., :-1]], dim=-1), dim=-1)
    return p_choose * passed * torch.cumsum(previous / passed.clamp(min=CUMPROD_FLOOR), dim=-1)


def hard_alignment(p_choose: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Hard monotonic alignment of one step: stop at the first ``p >= 0.5`` at or after
    the previously attended position.

    Args:
        p_choose: ``(..., Lk)`` stopping probabilities.
        previous: ``(..., Lk)`` the previous alignment; its first nonzero entry is the
            previous position ``t_{i-1}``, an all-zero row means the scan has ended.

    Returns:
        ``(..., Lk)`` one-hot rows, or all-zero rows where the scan finds no stop.
    """
    reached = torch.cumsum(previous, dim=-1) > 0
    stops = (p_choose >= 0.5) & reached
    first = stops & (torch.cumsum(stops.to(torch.int32), dim=-1) == 1)
    return first.to(p_choose.dtype)


class MonotonicAttention(Seq2SeqAttention):
    """Monotonic attention with a Bahdanau-style energy.

    Args:
        query_dim: ``Dq``, size of the decoder state ``s``.
        key_dim: ``Dk``, size of the encoder states ``h``.
        hidden_dim: ``H``, size of the tanh layer of the energy.
        mode: ``"expected"``: expected alignment while ``self.training``, hard
            alignment in eval mode (the paper's recipe). ``"hard"``: always hard.
        sigmoid_noise: std of the Gaussian noise added to the energy in training
            (expected alignment only); 0 turns it off.
        score_bias_init: initial value of the scalar bias ``r``.

    State (``init_state`` / returned by ``forward``):
        ``keys_proj`` ``(B, Lk, H)``: ``V h + b``, computed once per source.
        ``alignment`` ``(B, Lk)``: the last alignment, float32 (float64 for float64
        inputs); one-hot at position 0 before the first step.

    ``Lq > 1`` is processed sequentially (row ``i`` continues from row ``i - 1``),
    so one call equals ``Lq`` single-row calls that pass the state along.

    Example:
        >>> attn = MonotonicAttention(8, 6, 16).eval()
        >>> ctx, w, state = attn(torch.randn(2, 3, 8), torch.randn(2, 7, 6))
        >>> ctx.shape, w.shape, state["alignment"].shape
        (torch.Size([2, 3, 6]), torch.Size([2, 3, 7]), torch.Size([2, 7]))
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int, *, mode: str = "expected",
                 sigmoid_noise: float = 1.0, score_bias_init: float = -4.0) -> None:
        super().__init__()
        who = "MonotonicAttention"
        for arg, value in (("query_dim", query_dim), ("key_dim", key_dim),
                           ("hidden_dim", hidden_dim)):
            check_int(value, arg, minimum=1, owner=who)
        self.query_dim, self.key_dim, self.hidden_dim = query_dim, key_dim, hidden_dim
        self.mode = check_choice(mode, "mode", ("expected", "hard"), owner=who)
        self.sigmoid_noise = check_float(sigmoid_noise, "sigmoid_noise", low=0.0, owner=who)
        score_bias_init = check_float(score_bias_init, "score_bias_init", owner=who)
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False)  # W
        self.key_proj = nn.Linear(key_dim, hidden_dim)                  # V and b
        self.direction = nn.Parameter(torch.randn(hidden_dim) / math.sqrt(hidden_dim))  # v
        self.gain = nn.Parameter(torch.tensor(1.0 / math.sqrt(hidden_dim)))             # g
        self.score_bias = nn.Parameter(torch.tensor(float(score_bias_init)))            # r

    def init_state(self, keys: torch.Tensor, values: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None) -> State:
        """One-hot alignment at position 0 and the key projection for ``keys`` ``(B, Lk, Dk)``."""
        self._check_keys(keys, self.key_dim)
        alignment = keys.new_zeros(keys.shape[:2], dtype=compute_dtype(keys.dtype))  # (B, Lk)
        alignment[:, 0] = 1.0
        return {"keys_proj": self.key_proj(keys), "alignment": alignment}

    def energy(self, query: torch.Tensor, keys_proj: torch.Tensor) -> torch.Tensor:
        """``e = g v^T/||v|| tanh(W query + keys_proj) + r``: ``(B, Lq, Dq)``, ``(B, Lk, H)``
        -> ``(B, Lq, Lk)``."""
        query_proj = self.query_proj(query)  # (B, Lq, H)
        hidden = torch.tanh(query_proj[:, :, None, :] + keys_proj[:, None])  # (B, Lq, Lk, H)
        return self.gain * (hidden @ (self.direction / self.direction.norm())) + self.score_bias

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor | None = None,
                *, mask: torch.Tensor | None = None, state: State | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Monotonic attention for each of the ``Lq`` query rows in turn.

        Arguments and shapes are those of :mod:`attnkit.nn.seq2seq.base` (one query row
        per decoder step); ``state`` None starts a new source.

        Returns:
            context ``(B, Lq, Dv)``; weights ``(B, Lq, Lk)`` (rows sum to at most 1; one-hot
            or zero in hard mode); the state after the last row.
        """
        values, mask, state = self._begin_stateful(query, keys, values, mask, state)
        B, Lq, _ = query.shape
        Lk = keys.shape[1]
        for key, shape in (("keys_proj", (B, Lk, self.hidden_dim)), ("alignment", (B, Lk))):
            if not isinstance(state, dict) or key not in state:
                raise ValueError(f"MonotonicAttention: state is missing {key!r}; build it with "
                                 f"init_state(keys)")
            if tuple(state[key].shape) != shape:
                raise ValueError(f"MonotonicAttention: state[{key!r}] must have shape {shape} "
                                 f"for these keys, got {tuple(state[key].shape)}")
        energy = self.energy(query, state["keys_proj"])  # (B, Lq, Lk)
        hard = self.mode == "hard" or not self.training
        if not hard and self.sigmoid_noise > 0:
            energy = energy + self.sigmoid_noise * torch.randn_like(energy)
        acc = compute_dtype(energy.dtype)
        p_choose = torch.sigmoid(energy.to(acc))
        if mask is not None:
            p_choose = p_choose.masked_fill(~mask, 0.0)
        step = hard_alignment if hard else expected_alignment
        alignment = state["alignment"].to(acc)
        rows = []
        for i in range(Lq):
            alignment = step(p_choose[:, i], alignment)
            rows.append(alignment)
        weights = torch.stack(rows, dim=1)  # (B, Lq, Lk)
        context = torch.bmm(weights.to(values.dtype), values)  # (B, Lq, Dv)
        return context, weights.to(energy.dtype), {"keys_proj": state["keys_proj"],
                                                   "alignment": alignment}
