"""Luong (global) attention and its four score functions.

Paper: Luong, Pham & Manning (2015), "Effective Approaches to Attention-based
Neural Machine Translation", arXiv:1508.04025, section 3.1::

    score(h_t, h_s) = h_t^T h_s                      dot
                      h_t^T W_a h_s                  general
                      v_a^T tanh(W_a [h_t; h_s])     concat
    a_t = softmax(W_a h_t)                           location (no keys involved)
    a_t(s) = softmax_s(score(h_t, h_s))              c_t = sum_s a_t(s) h_s

``query`` is the current target state ``h_t`` and ``keys`` the source states
``h_s``; ``values`` default to the keys. The attentional state
``tanh(W_c [c_t; h_t])`` and input feeding belong to the decoder, not here.

Choices and deviations:

* ``concat`` splits ``W_a [h_t; h_s]`` into ``W_q h_t + W_k h_s`` (the same map),
  so ``W_k h_s`` is computed once per source and the score reuses the chunked
  additive kernel of :mod:`attnkit.functional.additive`. The paper does not give
  the size of that layer: ``hidden_dim`` (default ``query_dim``).
* ``general`` stores ``W_a h_s`` (one projection per source) in the state.
* ``location`` needs a largest source length ``max_source_len``: ``W_a`` maps
  ``h_t`` to ``max_source_len`` logits, of which the first ``Lk`` are used, i.e.
  the softmax runs over the real source positions only (the mask removes padding
  as usual). Sources longer than ``max_source_len`` raise an error.
* ``scale=True`` multiplies ``dot``/``general`` scores by a learned scalar that
  starts at 1 (as Keras's ``use_scale`` and TensorFlow's ``LuongAttention(scale=
  True)``); the paper has no scale, so the default is False.
* fully masked rows get zero weights and a zero context (attnkit convention).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnkit._validate import check_bool, check_choice, check_int
from attnkit.functional.additive import DEFAULT_CHUNK_THRESHOLD, additive_scores
from attnkit.functional.normalizers import masked_softmax
from attnkit.nn.seq2seq.base import Seq2SeqAttention, State, autocast_like

__all__ = ["LuongAttention", "DotScore", "GeneralScore", "ConcatScore", "LocationScore",
           "LUONG_SCORES"]


class DotScore(nn.Module):
    """``h_t^T h_s``; needs ``query_dim == key_dim``."""

    def __init__(self, query_dim: int, key_dim: int, *, owner: str = "LuongAttention",
                 **_: object) -> None:
        super().__init__()
        if query_dim != key_dim:
            raise ValueError(f"{owner}: score 'dot' needs query_dim == key_dim, got "
                             f"query_dim={query_dim}, key_dim={key_dim}; use 'general' to "
                             f"learn a map between different sizes")

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """``(B, Lk, Dk)`` -> the keys themselves."""
        return keys

    def forward(self, query: torch.Tensor, key_proj: torch.Tensor) -> torch.Tensor:
        """``query (B, Lq, Dq)``, ``key_proj (B, Lk, Dq)`` -> ``(B, Lq, Lk)``."""
        return query @ key_proj.transpose(1, 2)


class GeneralScore(nn.Module):
    """``h_t^T W_a h_s`` with ``W_a`` of shape ``(Dq, Dk)``."""

    def __init__(self, query_dim: int, key_dim: int, *, factory: dict, **_: object) -> None:
        super().__init__()
        self.weight = nn.Linear(key_dim, query_dim, bias=False, **factory)  # W_a

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """``(B, Lk, Dk)`` -> ``W_a h_s`` of shape ``(B, Lk, Dq)``."""
        return self.weight(keys)

    def forward(self, query: torch.Tensor, key_proj: torch.Tensor) -> torch.Tensor:
        """``query (B, Lq, Dq)``, ``key_proj (B, Lk, Dq)`` -> ``(B, Lq, Lk)``."""
        return query @ key_proj.transpose(1, 2)


class ConcatScore(nn.Module):
    """``v_a^T tanh(W_q h_t + W_k h_s)`` (= ``v_a^T tanh(W_a [h_t; h_s])``)."""

    def __init__(self, query_dim: int, key_dim: int, *, hidden_dim: int | None,
                 factory: dict, chunk_threshold: int | None = DEFAULT_CHUNK_THRESHOLD,
                 **_: object) -> None:
        super().__init__()
        hidden_dim = query_dim if hidden_dim is None else hidden_dim
        self.chunk_threshold = chunk_threshold
        self.query_weight = nn.Linear(query_dim, hidden_dim, bias=False, **factory)
        self.key_weight = nn.Linear(key_dim, hidden_dim, bias=False, **factory)
        self.score_vector = nn.Parameter(torch.empty(hidden_dim, **factory))  # v_a
        bound = 1.0 / math.sqrt(hidden_dim)
        nn.init.uniform_(self.score_vector, -bound, bound)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """``(B, Lk, Dk)`` -> ``W_k h_s`` of shape ``(B, Lk, hidden_dim)``."""
        return self.key_weight(keys)

    def forward(self, query: torch.Tensor, key_proj: torch.Tensor) -> torch.Tensor:
        """``query (B, Lq, Dq)``, ``key_proj (B, Lk, hidden_dim)`` -> ``(B, Lq, Lk)``."""
        wq = self.query_weight(query)  # (B, Lq, hidden_dim)
        key_proj, score_vector = autocast_like(wq, key_proj, self.score_vector)
        return additive_scores(wq, key_proj, score_vector,
                               chunk_threshold=self.chunk_threshold)


class LocationScore(nn.Module):
    """``W_a h_t`` truncated to the first ``Lk`` of ``max_source_len`` positions."""

    def __init__(self, query_dim: int, key_dim: int, *, max_source_len: int | None,
                 factory: dict, owner: str = "LuongAttention", **_: object) -> None:
        super().__init__()
        if max_source_len is None:
            raise ValueError(f"{owner}: mode 'location' needs max_source_len, a positive int "
                             f"(the longest source)")
        check_int(max_source_len, "max_source_len", minimum=1, owner=owner)
        self.max_source_len = max_source_len
        self.owner = owner
        self.weight = nn.Linear(query_dim, max_source_len, bias=False, **factory)  # W_a

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """Only the key length matters; the keys are passed through."""
        return keys

    def forward(self, query: torch.Tensor, key_proj: torch.Tensor) -> torch.Tensor:
        """``query (B, Lq, Dq)``, ``key_proj (B, Lk, *)`` -> ``(B, Lq, Lk)``."""
        k_len = key_proj.shape[1]
        if k_len > self.max_source_len:
            raise ValueError(f"{self.owner}: keys have length {k_len} but mode 'location' was "
                             f"built with max_source_len={self.max_source_len}")
        return self.weight(query)[..., :k_len]


LUONG_SCORES: dict[str, type[nn.Module]] = {
    "dot": DotScore, "general": GeneralScore, "concat": ConcatScore, "location": LocationScore,
}


class LuongAttention(Seq2SeqAttention):
    """Luong global attention ``softmax_s(score(h_t, h_s))`` with a choice of score.

    Args:
        query_dim: ``Dq``, size of the target state ``h_t``.
        key_dim: ``Dk``, size of the source states ``h_s``.
        mode: ``"dot"`` (needs ``Dq == Dk``), ``"general"``, ``"concat"`` or
            ``"location"``; see the module docstring.
        value_dim: ``Dv`` of ``values``; defaults to ``key_dim`` (values = keys).
        hidden_dim: size of the ``tanh`` layer of ``concat`` (default ``query_dim``).
        max_source_len: longest source for ``location`` (required there).
        scale: learn a scalar multiplier of the ``dot``/``general`` scores (init 1).

    Shapes (see :mod:`attnkit.nn.seq2seq.base`): ``query (B, Lq, Dq)``, ``keys
    (B, Lk, Dk)``, ``values (B, Lk, Dv)``, ``mask (B, Lk)`` or ``(B, Lq, Lk)`` ->
    ``context (B, Lq, Dv)``, ``weights (B, Lq, Lk)``, ``state`` with
    ``"key_proj"``: the per-source key projection (the keys for dot/location).

    Example::

        >>> attn = LuongAttention(4, 6, mode="general")
        >>> context, weights, _ = attn(torch.randn(2, 3, 4), torch.randn(2, 5, 6))
        >>> context.shape, weights.shape
        (torch.Size([2, 3, 6]), torch.Size([2, 3, 5]))
    """

    decoder_style = "luong"  # attends with the current target state h_t (section 3.1)

    def __init__(self, query_dim: int, key_dim: int, *, mode: str = "general",
                 value_dim: int | None = None, hidden_dim: int | None = None,
                 max_source_len: int | None = None, scale: bool = False,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self._set_sizes(query_dim, key_dim, value_dim)
        if hidden_dim is not None:
            check_int(hidden_dim, "hidden_dim", minimum=1, owner=name)
        if max_source_len is not None:
            check_int(max_source_len, "max_source_len", minimum=1, owner=name)
        check_choice(mode, "mode", sorted(LUONG_SCORES), owner=name)
        if check_bool(scale, "scale", owner=name) and mode not in ("dot", "general"):
            raise ValueError(f"{name}: scale=True applies to mode 'dot' or 'general', got "
                             f"mode={mode!r}")
        self.mode = mode
        factory = {"device": device, "dtype": dtype}
        self.score = LUONG_SCORES[mode](query_dim, key_dim, hidden_dim=hidden_dim,
                                        max_source_len=max_source_len, factory=factory,
                                        owner=name)
        self.score_scale = nn.Parameter(torch.ones((), **factory)) if scale else None

    def init_state(self, keys: torch.Tensor, values: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None) -> State:
        """``{"key_proj": ...}`` computed once per source, reused by every step."""
        self._check_keys(keys, self.key_dim)
        return {"key_proj": self.score.project_keys(keys)}

    def forward(self, query: torch.Tensor, keys: torch.Tensor,
                values: torch.Tensor | None = None, *, mask: torch.Tensor | None = None,
                state: State | None = None) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Context, weights and the state holding the key projection (shapes above)."""
        values, mask = self._check_inputs(query, keys, values, mask, state)
        key_proj = _key_projection(self, self.score, query, keys, values, state)
        scores = self.score(query, key_proj)  # (B, Lq, Lk)
        if self.score_scale is not None:
            scores = scores * self.score_scale
        weights = masked_softmax(scores, mask)
        context = weights @ values  # (B, Lq, Dv)
        return context, weights, {**(state or {}), "key_proj": key_proj}


def _key_projection(module: Seq2SeqAttention, score: nn.Module, query: torch.Tensor,
                    keys: torch.Tensor, values: torch.Tensor,
                    state: State | None) -> torch.Tensor:
    """Check feature sizes; return ``state["key_proj"]`` (shape-checked) or a fresh one."""
    name = type(module).__name__
    for arg, t, want in (("query", query, module.query_dim), ("keys", keys, module.key_dim),
                         ("values", values, module.value_dim)):
        if t.shape[-1] != want:
            raise ValueError(f"{name}: {arg} must have last dim {want}, got shape "
                             f"{tuple(t.shape)}")
    key_proj = None if state is None else state.get("key_proj")
    if key_proj is None:
        return score.project_keys(keys)
    if key_proj.shape[:2] != keys.shape[:2]:
        raise ValueError(f"{name}: state['key_proj'] must start with (B, Lk) = "
                         f"{tuple(keys.shape[:2])}, got {tuple(key_proj.shape)}; was it made "
                         f"by init_state for these keys?")
    return key_proj
