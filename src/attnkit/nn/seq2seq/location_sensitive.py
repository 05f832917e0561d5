"""Location-sensitive ("hybrid") attention: content plus a convolution of past alignments.

Chorowski, Bahdanau, Serdyuk, Cho, Bengio, "Attention-Based Models for Speech
Recognition", NIPS 2015, arXiv:1506.07503::

    f_i      = F * alpha_{i-1}                              (1-D convolution, num_filters channels)
    e_{i,j}  = w^T tanh(W s_{i-1} + V h_j + U f_{i,j} + b)
    alpha_i  = softmax_j(e_i)

with ``s_{i-1}`` the decoder state (``query``) and ``h_j`` the encoder states (``keys``).

Choices and deviations:

- ``cumulative=False`` is the paper: the convolution sees the previous alignment
  ``alpha_{i-1}``. ``cumulative=True`` (default) convolves the sum of all previous
  alignments instead, as Tacotron 2 does (Shen et al. 2017, arXiv:1712.05884); it
  tells the decoder which encoder positions were already used.
- The first step sees an all-zero alignment, so it is plain additive attention.
  The paper does not pin ``alpha_0`` down; zeros is what Tacotron 2 style
  implementations use.
- Only the softmax normalizer is implemented; the paper's sharpening, smoothing
  and windowing variants are left out.
- The defaults ``num_filters=32, kernel_size=31`` are Tacotron 2's.
- ``Lq > 1`` is processed sequentially, row by row: row ``i`` of ``query`` sees the
  alignment produced by row ``i - 1`` (teacher forcing). So one call with ``Lq = T``
  equals ``T`` calls with ``Lq = 1`` that pass the state along.
"""

from __future__ import annotations

import torch
from torch import nn

from attnkit._validate import check_bool, check_int
from attnkit.functional.normalizers import masked_softmax
from attnkit.nn.seq2seq.base import Seq2SeqAttention, State

__all__ = ["LocationSensitiveAttention"]


class LocationSensitiveAttention(Seq2SeqAttention):
    """Additive attention whose scores also see a convolution of past alignments.

    Args:
        query_dim: ``Dq``, size of the decoder state ``s``.
        key_dim: ``Dk``, size of the encoder states ``h``.
        hidden_dim: ``H``, size of the tanh layer.
        num_filters: channels of the location convolution ``F``.
        kernel_size: width of ``F``; odd, so the convolved alignment keeps length ``Lk``.
        cumulative: convolve the running sum of past alignments (Tacotron 2) instead of
            the previous alignment only (the paper).

    State (``init_state`` / returned by ``forward``):
        ``keys_proj`` ``(B, Lk, H)``: ``V h + b``, computed once per source.
        ``alignment`` ``(B, Lk)``: the last alignment (zeros before the first step).
        ``cumulative`` ``(B, Lk)``: the sum of all alignments so far.

    Example:
        >>> attn = LocationSensitiveAttention(8, 6, 16, kernel_size=5)
        >>> keys = torch.randn(2, 7, 6)
        >>> state = attn.init_state(keys)
        >>> ctx, w, state = attn(torch.randn(2, 1, 8), keys, state=state)
        >>> ctx.shape, w.shape
        (torch.Size([2, 1, 6]), torch.Size([2, 1, 7]))
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int, *, num_filters: int = 32,
                 kernel_size: int = 31, cumulative: bool = True) -> None:
        super().__init__()
        for arg, value in (("query_dim", query_dim), ("key_dim", key_dim),
                           ("hidden_dim", hidden_dim), ("num_filters", num_filters),
                           ("kernel_size", kernel_size)):
            check_int(value, arg, minimum=1, owner="LocationSensitiveAttention")
        check_bool(cumulative, "cumulative", owner="LocationSensitiveAttention")
        if kernel_size % 2 == 0:
            raise ValueError(f"LocationSensitiveAttention: kernel_size must be odd so the "
                             f"location features keep length Lk, got {kernel_size}")
        self.query_dim, self.key_dim, self.hidden_dim = query_dim, key_dim, hidden_dim
        self.cumulative = cumulative
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False)       # W
        self.key_proj = nn.Linear(key_dim, hidden_dim)                       # V and b
        self.location_conv = nn.Conv1d(1, num_filters, kernel_size,
                                       padding=kernel_size // 2, bias=False)  # F
        self.location_proj = nn.Linear(num_filters, hidden_dim, bias=False)  # U
        self.energy = nn.Linear(hidden_dim, 1, bias=False)                   # w

    def init_state(self, keys: torch.Tensor, values: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None) -> State:
        """Zero alignments and the key projection for ``keys`` ``(B, Lk, Dk)``."""
        self._check_keys(keys, self.key_dim)
        zeros = keys.new_zeros(keys.shape[:2])  # (B, Lk)
        return {"keys_proj": self.key_proj(keys), "alignment": zeros, "cumulative": zeros}

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor | None = None,
                *, mask: torch.Tensor | None = None, state: State | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Attend for each of the ``Lq`` query rows in turn.

        Args:
            query: ``(B, Lq, Dq)`` decoder states, one row per decoder step.
            keys: ``(B, Lk, Dk)`` encoder states.
            values: ``(B, Lk, Dv)``; defaults to ``keys``.
            mask: ``(B, Lk)`` or ``(B, Lq, Lk)`` bool, True = may attend.
            state: from ``init_state`` or a previous call; None starts a new source.

        Returns:
            context ``(B, Lq, Dv)``, weights ``(B, Lq, Lk)`` and the state after the last row.
        """
        values, mask, state = self._begin_stateful(query, keys, values, mask, state)
        B, Lq, _ = query.shape
        Lk = keys.shape[1]
        _check_state(state, {"keys_proj": (B, Lk, self.hidden_dim), "alignment": (B, Lk),
                             "cumulative": (B, Lk)})
        keys_proj = state["keys_proj"]
        alignment, cumulative = state["alignment"], state["cumulative"]
        query_proj = self.query_proj(query)  # (B, Lq, H)
        rows = []
        for i in range(Lq):
            previous = cumulative if self.cumulative else alignment
            location = self.location_conv(previous[:, None, :].to(keys_proj.dtype))  # (B, F, Lk)
            location = self.location_proj(location.transpose(1, 2))  # (B, Lk, H)
            hidden = torch.tanh(query_proj[:, i, None, :] + keys_proj + location)  # (B, Lk, H)
            scores = self.energy(hidden).squeeze(-1)  # (B, Lk)
            row_mask = None if mask is None else mask[:, i if mask.shape[1] == Lq else 0]
            alignment = masked_softmax(scores, row_mask)
            cumulative = cumulative + alignment
            rows.append(alignment)
        weights = torch.stack(rows, dim=1)  # (B, Lq, Lk)
        context = torch.bmm(weights.to(values.dtype), values)  # (B, Lq, Dv)
        return context, weights, {"keys_proj": keys_proj, "alignment": alignment,
                                  "cumulative": cumulative}


def _check_state(state: State, expected: dict[str, tuple[int, ...]]) -> None:
    if not isinstance(state, dict):
        raise TypeError(f"LocationSensitiveAttention: state must be a dict from init_state(), "
                        f"got {type(state).__name__}")
    for key, shape in expected.items():
        if key not in state:
            raise ValueError(f"LocationSensitiveAttention: state is missing {key!r}; build it "
                             f"with init_state(keys)")
        if tuple(state[key].shape) != shape:
            raise ValueError(f"LocationSensitiveAttention: state[{key!r}] must have shape "
                             f"{shape} for these keys, got {tuple(state[key].shape)}")
