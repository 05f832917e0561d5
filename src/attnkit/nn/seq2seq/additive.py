"""Additive (Bahdanau) attention for RNN encoder-decoders.

Paper: Bahdanau, Cho & Bengio (2014), "Neural Machine Translation by Jointly
Learning to Align and Translate", arXiv:1409.0473, appendix A.1.2::

    e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)      a_ij = softmax_j(e_ij)      c_i = sum_j a_ij h_j

Here ``query`` plays ``s_{i-1}`` (the previous decoder state: feeding the right
state is the decoder's job), ``keys`` the annotations ``h_j`` and ``values``
default to the keys, as in the paper.

``U_a h_j`` does not depend on the decoder step, so :meth:`init_state` computes it
once per source and every step reuses it (the paper's appendix notes this too).
Large problems go through the chunked kernel of
:mod:`attnkit.functional.additive`, which never builds the ``(B, Lq, Lk, d)``
activations.

Deviations: the paper has no bias; ``bias=True`` adds one to ``U_a h_j`` (a
single bias suffices, as ``W_a s + b`` and ``U_a h + b`` are the same function
family), as many implementations do. Softmax over masked keys follows
:func:`attnkit.functional.normalizers.masked_softmax`: a row with nothing to
attend to gets zero weights and a zero context.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnkit._validate import check_bool, check_int
from attnkit.functional.additive import DEFAULT_CHUNK_THRESHOLD, additive_scores
from attnkit.functional.normalizers import masked_softmax
from attnkit.nn.seq2seq.base import Seq2SeqAttention, State, autocast_like

__all__ = ["AdditiveAttention"]


class AdditiveAttention(Seq2SeqAttention):
    """Bahdanau attention ``softmax_j(v^T tanh(W q_i + U k_j))``.

    Args:
        query_dim: ``Dq``, size of the decoder state.
        key_dim: ``Dk``, size of the encoder annotations.
        hidden_dim: ``d``, size of the ``tanh`` layer (``n`` in the paper).
        value_dim: ``Dv`` of ``values``; defaults to ``key_dim`` (values = keys).
        bias: add a learned bias inside the ``tanh`` (the paper has none).
        chunk_threshold: use the chunked score kernel when ``B * Lq * Lk * d``
            exceeds this (``0`` always, ``None`` never). The default is where the
            chunked kernel stopped being slower than the broadcast one on a 2-core
            CPU; above it the chunked kernel is faster and uses far less memory.

    Shapes (see :mod:`attnkit.nn.seq2seq.base`): ``query (B, Lq, Dq)``, ``keys
    (B, Lk, Dk)``, ``values (B, Lk, Dv)``, ``mask (B, Lk)`` or ``(B, Lq, Lk)`` ->
    ``context (B, Lq, Dv)``, ``weights (B, Lq, Lk)``, ``state`` with
    ``"key_proj": (B, Lk, d)``.

    Example::

        >>> attn = AdditiveAttention(query_dim=8, key_dim=6, hidden_dim=5)
        >>> keys = torch.randn(2, 7, 6)
        >>> state = attn.init_state(keys)
        >>> context, weights, state = attn(torch.randn(2, 1, 8), keys, state=state)
        >>> context.shape, weights.shape
        (torch.Size([2, 1, 6]), torch.Size([2, 1, 7]))
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int, *,
                 value_dim: int | None = None, bias: bool = False,
                 chunk_threshold: int | None = DEFAULT_CHUNK_THRESHOLD,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self._set_sizes(query_dim, key_dim, value_dim)
        self.hidden_dim = check_int(hidden_dim, "hidden_dim", minimum=1, owner=name)
        check_bool(bias, "bias", owner=name)
        if chunk_threshold is not None:
            check_int(chunk_threshold, "chunk_threshold (an int or None)", minimum=0, owner=name)
        self.chunk_threshold = chunk_threshold
        factory = {"device": device, "dtype": dtype}
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False, **factory)  # W_a
        self.key_proj = nn.Linear(key_dim, hidden_dim, bias=bias, **factory)  # U_a
        self.score_vector = nn.Parameter(torch.empty(hidden_dim, **factory))  # v_a
        bound = 1.0 / math.sqrt(hidden_dim)
        nn.init.uniform_(self.score_vector, -bound, bound)

    def init_state(self, keys: torch.Tensor, values: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None) -> State:
        """``{"key_proj": U keys}`` of shape ``(B, Lk, d)``, reused by every decoder step.

        The state belongs to this source: passing it with other keys of the same
        shape silently reuses the old projection.
        """
        self._check_keys(keys, self.key_dim)
        return {"key_proj": self.key_proj(keys)}

    def forward(self, query: torch.Tensor, keys: torch.Tensor,
                values: torch.Tensor | None = None, *, mask: torch.Tensor | None = None,
                state: State | None = None) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Context, weights and the state holding ``U keys`` (shapes in the class doc)."""
        values, mask = self._check_inputs(query, keys, values, mask, state)
        for arg, t, want in (("query", query, self.query_dim), ("keys", keys, self.key_dim),
                             ("values", values, self.value_dim)):
            if t.shape[-1] != want:
                raise ValueError(f"AdditiveAttention: {arg} must have last dim {want}, got "
                                 f"shape {tuple(t.shape)}")
        batch, k_len = keys.shape[:2]
        key_proj = None if state is None else state.get("key_proj")
        if key_proj is None:
            key_proj = self.key_proj(keys)
        elif tuple(key_proj.shape) != (batch, k_len, self.hidden_dim):
            raise ValueError(f"AdditiveAttention: state['key_proj'] must be (B, Lk, d) = "
                             f"{(batch, k_len, self.hidden_dim)}, got {tuple(key_proj.shape)}; "
                             f"was it made by init_state for these keys?")
        wq = self.query_proj(query)  # (B, Lq, d)
        key_proj, score_vector = autocast_like(wq, key_proj, self.score_vector)
        scores = additive_scores(wq, key_proj, score_vector,
                                 chunk_threshold=self.chunk_threshold)  # (B, Lq, Lk)
        weights = masked_softmax(scores, mask)
        context = weights @ values  # (B, Lq, Dv)
        return context, weights, {**(state or {}), "key_proj": key_proj}
