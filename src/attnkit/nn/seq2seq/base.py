"""The interface shared by attention mechanisms that live inside RNN encoder-decoders.

Every mechanism (additive, Luong, local, location-sensitive, monotonic, hard,
positional, ...) is an ``nn.Module`` subclass of :class:`Seq2SeqAttention` with::

    forward(query, keys, values=None, *, mask=None, state=None)
        -> (context, weights, state)

    query:   (B, Lq, Dq)   decoder states (Lq = 1 when stepping a decoder)
    keys:    (B, Lk, Dk)   encoder states
    values:  (B, Lk, Dv)   defaults to keys
    mask:    (B, Lk) or (B, Lq, Lk) bool, True = may attend (a real source token)
    state:   dict of tensors a mechanism carries across decoder steps (previous or
             cumulative alignment, decoding position, precomputed key projections);
             None on the first step, or the dict returned by init_state()
    context: (B, Lq, Dv)
    weights: (B, Lq, Lk)   rows sum to 1 over allowed keys; all-zero for a row with
             nothing to attend to (its context is zero too)

The decoder calls ``init_state(keys, values, mask)`` once per source sentence
(mechanisms put per-source precomputation there, e.g. the key projection ``U k``
of additive attention) and then feeds each returned state into the next step.
Mechanisms that need no state return the state they were given (or ``{}``).

``decoder_style`` tells an RNN decoder which query the mechanism's paper uses:
``"bahdanau"`` (the previous decoder state, before the RNN step) or ``"luong"`` (the
current one, after it).

Padding: a model holds source lengths and passes the key-padding mask as one dense
``(B, Lk)`` bool tensor made by :func:`source_padding_mask` (the materialized
``attnkit.masks.key_padding(lengths)``). These mechanisms compute every score anyway,
so there are no tiles to skip and a dense mask is the simplest contract.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from attnkit import masks
from attnkit._validate import check_int
from attnkit.nn._inputs import check_dtype

__all__ = ["Seq2SeqAttention", "State", "source_padding_mask"]

State = dict[str, torch.Tensor]


def source_padding_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """``(B, S)`` bool, True at the first ``lengths[b]`` positions of row ``b``: the dense
    form of ``attnkit.masks.key_padding(lengths)`` for ``S = length`` keys."""
    padding = masks.key_padding(lengths)
    dense = masks.materialize(padding, lengths.shape[0], 1, 1, length,
                              device=lengths.device)  # (B, 1, 1, S)
    return dense[:, 0, 0]  # (B, S)


class Seq2SeqAttention(nn.Module):
    """Base class: input checking and the default (stateless) ``init_state``."""

    decoder_style: ClassVar[str] = "bahdanau"

    def init_state(self, keys: torch.Tensor, values: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None) -> State:
        """Per-source state for the first decoder step (default: empty)."""
        self._check_keys(keys, getattr(self, "key_dim", None))
        return {}

    def _set_sizes(self, query_dim: int, key_dim: int, value_dim: int | None) -> None:
        """Check and store ``query_dim``, ``key_dim`` and ``value_dim`` (None: ``key_dim``,
        i.e. values = keys)."""
        name = type(self).__name__
        self.query_dim = check_int(query_dim, "query_dim", minimum=1, owner=name)
        self.key_dim = check_int(key_dim, "key_dim", minimum=1, owner=name)
        self.value_dim = self.key_dim if value_dim is None else check_int(
            value_dim, "value_dim", minimum=1, owner=name)

    def _check_state(self, state: object) -> None:
        """TypeError unless ``state`` is None or a dict of tensors, so that a stray object
        fails here, by name, rather than deep inside the mechanism."""
        if state is None:
            return
        name = type(self).__name__
        if not isinstance(state, dict):
            raise TypeError(f"{name}: state must be None or the dict returned by init_state() "
                            f"or a previous call, got {type(state).__name__}")
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name}: state[{key!r}] must be a tensor, got "
                                f"{type(value).__name__}")

    def _check_keys(self, keys: torch.Tensor, key_dim: int | None) -> None:
        """``keys`` must be ``(B, Lk, key_dim)`` (any ``key_dim`` if None) with ``Lk >= 1``,
        in the parameters' dtype; ValueError or TypeError naming the module otherwise."""
        name = type(self).__name__
        if not isinstance(keys, torch.Tensor):
            raise TypeError(f"{name}: keys must be a tensor (B, Lk, Dk), got "
                            f"{type(keys).__name__}")
        if keys.dim() != 3 or (key_dim is not None and keys.shape[-1] != key_dim) \
                or keys.shape[1] == 0:
            want = "Dk" if key_dim is None else key_dim
            raise ValueError(f"{name}: keys must be (B, Lk >= 1, {want}), got "
                             f"{tuple(keys.shape)}")
        parameter = next(self.parameters(), None)
        if parameter is not None:
            check_dtype(keys, "keys", parameter.dtype, who=type(self).__name__)

    def _begin_stateful(self, query: torch.Tensor, keys: torch.Tensor,
                        values: torch.Tensor | None, mask: torch.Tensor | None,
                        state: State | None) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        """The start of a stateful mechanism's forward: :meth:`_check_inputs`, the query
        width against ``query_dim``, and ``init_state(keys)`` when ``state`` is None.
        Returns ``(values, mask, state)`` as :meth:`_check_inputs` gives them."""
        values, mask = self._check_inputs(query, keys, values, mask, state)
        if query.shape[-1] != self.query_dim:
            raise ValueError(f"{type(self).__name__}: query must have last dim "
                             f"{self.query_dim}, got shape {tuple(query.shape)}")
        return values, mask, self.init_state(keys) if state is None else state

    def _check_inputs(self, query: torch.Tensor, keys: torch.Tensor,
                      values: torch.Tensor | None, mask: torch.Tensor | None,
                      state: State | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validate shapes, dtypes and the state's type; returns ``values`` (keys if None)
        and the mask as ``(B, Lq | 1, Lk)`` bool (or None)."""
        name = type(self).__name__
        self._check_state(state)
        for arg, t in (("query", query), ("keys", keys)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}: {arg} must be a tensor, got {type(t).__name__}")
            if t.dim() != 3 or t.shape[1] == 0:
                raise ValueError(f"{name}: {arg} must be 3-D (B, L >= 1, D), got shape "
                                 f"{tuple(t.shape)}")
        values = keys if values is None else values
        if not isinstance(values, torch.Tensor) or values.dim() != 3:
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values)
            raise ValueError(f"{name}: values must be 3-D (B, Lk, Dv), got {got}")
        parameter = next(self.parameters(), None)
        if parameter is not None:
            for arg, t in (("query", query), ("keys", keys), ("values", values)):
                check_dtype(t, arg, parameter.dtype, who=name)
        B, Lq, _ = query.shape
        Lk = keys.shape[1]
        if keys.shape[0] != B or values.shape[0] != B:
            raise ValueError(f"{name}: batch sizes differ: query {B}, keys {keys.shape[0]}, "
                             f"values {values.shape[0]}")
        if values.shape[1] != Lk:
            raise ValueError(f"{name}: keys and values must have the same length, got keys "
                             f"{tuple(keys.shape)}, values {tuple(values.shape)}")
        if mask is None:
            return values, None
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(f"{name}: mask must be a bool tensor (True = may attend), got {got}")
        if mask.dim() == 2 and tuple(mask.shape) == (B, Lk):
            return values, mask[:, None, :]  # (B, 1, Lk)
        if mask.dim() == 3 and tuple(mask.shape) in ((B, Lq, Lk), (B, 1, Lk)):
            return values, mask
        raise ValueError(f"{name}: mask must be (B, Lk) = {(B, Lk)} or (B, Lq, Lk) = "
                         f"{(B, Lq, Lk)}, got {tuple(mask.shape)}")


def autocast_like(reference: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Under ``torch.autocast``, cast ``tensors`` to ``reference``'s dtype (a projection's
    output is then bf16/fp16 while a raw parameter such as a score vector stays float32).
    Outside autocast they are returned unchanged, so a real dtype mismatch still raises."""
    if not torch.is_autocast_enabled(reference.device.type):
        return tensors
    return tuple(t.to(reference.dtype) for t in tensors)
