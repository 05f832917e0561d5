"""Key/value caches for incremental decoding with :class:`attnkit.nn.MultiHeadAttention`.

* :class:`KVCache` - self-attention: every decoding step appends the keys and
  values of the new tokens and attends over everything cached so far.
* :class:`StaticKVCache` - cross-attention: the projected encoder keys and values
  are stored on the first decoding step and reused by every later step, so the
  source is projected once per sentence instead of once per generated token.

Both hold tensors in the functional layout ``k (B, Hkv, L, D)``, ``v (B, Hkv, L, Dv)``
(after projection, ``qk_norm`` and rotary embedding).

Caches are meant for inference (under ``torch.no_grad()`` or
``torch.inference_mode()``). :class:`KVCache` writes new entries in place into
its storage, so autograd rejects a backward pass that spans several updates;
backpropagate through one step before the next update if you need gradients.
"""

from __future__ import annotations

import torch

from attnkit._validate import check_int
from attnkit.nn._inputs import check_row_index

__all__ = ["KVCache", "StaticKVCache"]


def _check_pair(k: object, v: object, who: str, names: tuple[str, str]) -> None:
    """``k (B, H, L, D)`` and ``v (B, H, L, Dv)`` that agree on B, H, L, dtype, device."""
    k_name, v_name = names
    for name, t in ((k_name, k), (v_name, v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{who}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{who}: {name} must have 4 dims (B, Hkv, L, D), got shape "
                             f"{tuple(t.shape)}")
    if k.shape[:3] != v.shape[:3]:
        raise ValueError(f"{who}: {k_name} {tuple(k.shape)} and {v_name} {tuple(v.shape)} "
                         f"must agree on (B, Hkv, L)")
    if v.dtype != k.dtype:
        raise ValueError(f"{who}: {v_name}.dtype {v.dtype} differs from {k_name}.dtype {k.dtype}")
    if v.device != k.device:
        raise ValueError(f"{who}: {v_name} is on {v.device} but {k_name} is on {k.device}")


class KVCache:
    """Growing key/value cache for incremental self-attention.

    Storage is preallocated and doubles in length when full. Appending to a
    preallocated buffer copies only the new tokens, so a step costs O(new tokens)
    and the occasional doubling costs O(L) once per doubling: amortized O(1) per
    token. ``torch.cat`` of the old cache with the new token would copy the whole
    cache on every step, O(L) per token and O(L^2) for a whole sequence.

    Shapes, dtype and device are taken from the first :meth:`update`. While the
    cache holds tokens, later updates must match them (``ValueError`` naming the
    argument otherwise). :meth:`reset` empties the cache for a new sequence; the
    storage is kept and reused when the next sequence has the same batch size,
    heads, head dims, dtype and device, and reallocated otherwise.

    Args:
        initial_capacity: tokens allocated on the first update (more if the first
            update is longer).

    Example:
        >>> import torch

from attnkit._validate import check_int
from attnkit.nn._inputs import check_row_index
        >>> from attnkit.nn.kv_cache import KVCache
        >>> cache = KVCache(initial_capacity=2)
        >>> for _ in range(3):
        ...     k_all, v_all = cache.update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4))
        >>> k_all.shape, cache.length, cache.capacity
        (torch.Size([1, 2, 3, 4]), 3, 4)
    """

    def __init__(self, initial_capacity: int = 16) -> None:
        self.initial_capacity = check_int(initial_capacity, "initial_capacity", minimum=1,
                                          owner="KVCache")
        self._k: torch.Tensor | None = None  # (B, Hkv, capacity, D)
        self._v: torch.Tensor | None = None  # (B, Hkv, capacity, Dv)
        self._length = 0

    @property
    def length(self) -> int:
        """Number of cached tokens ``L`` (the position of the next token)."""
        return self._length

    @property
    def capacity(self) -> int:
        """Tokens the current storage can hold before it grows (0 before the first update)."""
        return 0 if self._k is None else self._k.shape[2]

    @property
    def keys(self) -> torch.Tensor | None:
        """``(B, Hkv, L, D)`` view of the cached keys, or None when empty."""
        return None if self._length == 0 else self._k[:, :, :self._length]

    @property
    def values(self) -> torch.Tensor | None:
        """``(B, Hkv, L, Dv)`` view of the cached values, or None when empty."""
        return None if self._length == 0 else self._v[:, :, :self._length]

    def reset(self) -> None:
        """Forget the cached tokens (views returned earlier will be overwritten)."""
        self._length = 0

    def _check_against_storage(self, k: torch.Tensor, v: torch.Tensor) -> None:
        B, H, _, D = self._k.shape
        Dv = self._v.shape[3]
        hint = "; call reset() before starting a different sequence"
        for name, t, held in (("k_new", k, self._k), ("v_new", v, self._v)):
            if t.shape[0] != B:
                raise ValueError(f"KVCache.update: {name} has batch size {t.shape[0]} but the "
                                 f"cache holds batch size {B}{hint}")
            if t.shape[1] != H:
                raise ValueError(f"KVCache.update: {name} has {t.shape[1]} heads but the cache "
                                 f"holds {H}{hint}")
            if t.dtype != held.dtype:
                raise ValueError(f"KVCache.update: {name}.dtype is {t.dtype} but the cache holds "
                                 f"{held.dtype}{hint}")
            if t.device != held.device:
                raise ValueError(f"KVCache.update: {name} is on {t.device} but the cache is on "
                                 f"{held.device}{hint}")
        if k.shape[3] != D:
            raise ValueError(f"KVCache.update: k_new has head dim {k.shape[3]} but the cache "
                             f"holds {D}{hint}")
        if v.shape[3] != Dv:
            raise ValueError(f"KVCache.update: v_new has head dim {v.shape[3]} but the cache "
                             f"holds {Dv}{hint}")

    def _allocate(self, k: torch.Tensor, v: torch.Tensor, capacity: int) -> None:
        """New storage of ``capacity`` tokens holding the current ``length`` tokens."""
        B, H, _, D = k.shape
        new_k = k.new_empty(B, H, capacity, D)  # (B, Hkv, capacity, D)
        new_v = v.new_empty(B, H, capacity, v.shape[3])  # (B, Hkv, capacity, Dv)
        if self._length:
            new_k[:, :, :self._length] = self._k[:, :, :self._length]
            new_v[:, :, :self._length] = self._v[:, :, :self._length]
        self._k, self._v = new_k, new_v

    def update(self, k_new: torch.Tensor, v_new: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append new tokens and return everything cached.

        Args:
            k_new: ``(B, Hkv, Lnew, D)`` keys of the new tokens.
            v_new: ``(B, Hkv, Lnew, Dv)`` values of the new tokens.

        Returns:
            ``(k_all (B, Hkv, L + Lnew, D), v_all (B, Hkv, L + Lnew, Dv))``, views into
            the cache storage (valid until the next :meth:`reset`).
        """
        _check_pair(k_new, v_new, "KVCache.update", ("k_new", "v_new"))
        if self._length:
            self._check_against_storage(k_new, v_new)
        end = self._length + k_new.shape[2]
        if self._k is None or (self._length == 0 and not self._fits(k_new, v_new)):
            self._allocate(k_new, v_new, max(self.initial_capacity, end))
        elif end > self.capacity:
            self._allocate(k_new, v_new, max(2 * self.capacity, end))
        self._k[:, :, self._length:end] = k_new
        self._v[:, :, self._length:end] = v_new
        self._length = end
        return self._k[:, :, :end], self._v[:, :, :end]

    def index_select(self, index: torch.Tensor) -> None:
        """Reorder the batch in place: new row ``j`` holds old row ``index[j]``.

        For beam search: rows may repeat (expanding hypotheses) or be dropped, so the
        batch size becomes ``B' = len(index)``. The capacity is kept; only the
        ``length`` cached tokens are copied. Views returned earlier keep the old
        order (they point at the old storage). An empty cache (length 0) has nothing
        to reorder: the call only checks ``index``, and the next update takes its
        batch size from the new tokens.

        Args:
            index: ``(B',)`` integer tensor of old batch rows, each in ``[0, B)``.
        """
        if self._length == 0:
            check_row_index(index, None, who="KVCache.index_select")
            return
        index = check_row_index(index, self._k.shape[0], who="KVCache.index_select")
        index = index.to(self._k.device)
        _, H, capacity, D = self._k.shape
        Dv = self._v.shape[3]
        new_k = self._k.new_empty(len(index), H, capacity, D)  # (B', Hkv, capacity, D)
        new_v = self._v.new_empty(len(index), H, capacity, Dv)  # (B', Hkv, capacity, Dv)
        new_k[:, :, :self._length] = self._k[index, :, :self._length]
        new_v[:, :, :self._length] = self._v[index, :, :self._length]
        self._k, self._v = new_k, new_v

    def _fits(self, k: torch.Tensor, v: torch.Tensor) -> bool:
        """Whether the kept storage can serve a new sequence shaped like ``k``, ``v``."""
        same = (self._k.shape[:2] == k.shape[:2] and self._k.shape[3] == k.shape[3]
                and self._v.shape[3] == v.shape[3])
        return same and self._k.dtype == k.dtype and self._k.device == k.device

    def __repr__(self) -> str:
        return f"KVCache(length={self._length}, capacity={self.capacity})"


class StaticKVCache:
    """Cross-attention cache: projected source keys/values, computed once.

    :class:`~attnkit.nn.MultiHeadAttention` fills it on the first call that
    receives ``key`` (the encoder output) and afterwards ignores ``key``/``value``
    and reads the stored projections, so each decoding step only projects its
    queries. Call :meth:`reset` (or use a new cache) for a new source.

    Example:
        >>> import torch

from attnkit._validate import check_int
from attnkit.nn._inputs import check_row_index
        >>> from attnkit.nn.kv_cache import StaticKVCache
        >>> cache = StaticKVCache()
        >>> k, v = cache.set(torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 8))
        >>> cache.is_set, cache.length
        (True, 7)
    """

    def __init__(self) -> None:
        self._k: torch.Tensor | None = None  # (B, Hkv, Lk, D)
        self._v: torch.Tensor | None = None  # (B, Hkv, Lk, Dv)

    @property
    def is_set(self) -> bool:
        return self._k is not None

    @property
    def length(self) -> int:
        """Number of cached source tokens ``Lk`` (0 when empty)."""
        return 0 if self._k is None else self._k.shape[2]

    @property
    def keys(self) -> torch.Tensor | None:
        """``(B, Hkv, Lk, D)`` or None when empty."""
        return self._k

    @property
    def values(self) -> torch.Tensor | None:
        """``(B, Hkv, Lk, Dv)`` or None when empty."""
        return self._v

    def set(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the source keys ``k (B, Hkv, Lk, D)`` and values ``v (B, Hkv, Lk, Dv)``.

        Raises ``ValueError`` if the cache already holds a source (call :meth:`reset`).
        """
        if self.is_set:
            raise ValueError("StaticKVCache.set: the cache already holds keys/values; call "
                             "reset() before caching a new source")
        _check_pair(k, v, "StaticKVCache.set", ("k", "v"))
        self._k, self._v = k, v
        return k, v

    def reset(self) -> None:
        self._k = self._v = None

    def index_select(self, index: torch.Tensor) -> None:
        """Reorder the batch in place: new row ``j`` holds old row ``index[j]``.

        Rows may repeat or be dropped (beam search), so the batch size becomes
        ``B' = len(index)``. An empty cache has nothing to reorder: the call only
        checks ``index``.

        Args:
            index: ``(B',)`` integer tensor of old batch rows, each in ``[0, B)``.
        """
        if self._k is None:
            check_row_index(index, None, who="StaticKVCache.index_select")
            return
        index = check_row_index(index, self._k.shape[0], who="StaticKVCache.index_select")
        index = index.to(self._k.device)
        self._k = self._k.index_select(0, index)  # (B', Hkv, Lk, D)
        self._v = self._v.index_select(0, index)  # (B', Hkv, Lk, Dv)

    def __repr__(self) -> str:
        return f"StaticKVCache(length={self.length})"
