"""Multi-head attention: MHA, grouped-query (GQA) and multi-query (MQA) attention.

Multi-head attention is from Vaswani et al. 2017, "Attention Is All You Need"
(arXiv:1706.03762). Sharing each key/value head among a group of query heads is
multi-query attention (Shazeer 2019, arXiv:1911.02150; one key/value head) and,
in general, grouped-query attention (Ainslie et al. 2023, arXiv:2305.13245).
Optional QK-norm (RMSNorm of queries and keys per head, as in OLMo 2 and Qwen 3;
Dehghani et al. 2023, arXiv:2302.05442 used LayerNorm) and rotary position
embeddings (:class:`~attnkit.nn.positional.RotaryEmbedding`).

The module owns the four projections and calls :func:`attnkit.functional.attention`,
so every mask, ``score_mod`` and backend of the functional core works here too.
Deviations from ``torch.nn.MultiheadAttention``: ``q_proj``/``k_proj``/``v_proj``
are separate ``nn.Linear`` modules in the state dict and to hooks, masks with True = may attend
(torch's ``key_padding_mask``/bool ``attn_mask`` use True = ignore), no
``add_bias_kv``/``add_zero_attn``, weights always per head, and a query row with
nothing to attend to gives zeros instead of NaN.

Parameter layout: when keys and values have the query's width (``kdim == vdim ==
embed_dim``, every self-attention) the three input projections are rows of ONE
parameter, ``in_proj_weight (Hq*Dh + 2*Hkv*Dh, E)`` and ``in_proj_bias``, as torch's
``in_proj_weight`` and GPT-2's ``c_attn``: one tensor for the optimizer and gradient
clipping instead of six, one matmul for self-attention. ``q_proj``/``k_proj``/``v_proj``
remain ``nn.Linear`` modules whose ``weight``/``bias`` are views of those rows (for
reading, in-place edits and initializers; their ``.grad`` is on ``in_proj_weight``), and
the state dict keeps the names ``q_proj.weight`` ... ``v_proj.bias``, so checkpoints
of both layouts load into each other. The rows are initialized in the order the
three separate ``nn.Linear`` modules drew them, so a seeded model has the same weights
as before the change. With ``kdim``/``vdim`` different from ``embed_dim`` the three
projections are ordinary separate ``nn.Linear`` modules.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.module import (
    _global_backward_hooks,
    _global_backward_pre_hooks,
    _global_forward_hooks,
    _global_forward_pre_hooks,
)
from torch.utils.hooks import RemovableHandle

from attnkit._validate import check_bool, check_float, check_int
from attnkit.functional.attention import attention
from attnkit.kernels import BACKENDS
from attnkit.nn._inputs import check_dtype
from attnkit.nn.kv_cache import KVCache, StaticKVCache
from attnkit.nn.positional import RotaryEmbedding

__all__ = ["MultiHeadAttention", "HeadCall"]


class HeadCall(NamedTuple):
    """What one forward gave :func:`attnkit.functional.attention`, as a head hook sees it.

    ``q (B, Hq, Lq, Dh)`` after QK-norm and rotary; ``k``, ``v`` ``(B, Hkv, Lk, Dh)``
    (including cached positions); ``mask``, ``causal``, ``score_mod`` as passed (the scale
    is the default ``1 / sqrt(Dh)``).
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    mask: torch.Tensor | Callable | None
    causal: bool | str | None
    score_mod: Callable | None


def _check_input(x: object, name: str, features: int, layout: str,
                 dtype: torch.dtype) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[2] != features:
        raise ValueError(f"{name} must be {layout} with E={features}, got shape "
                         f"{tuple(x.shape)}")
    check_dtype(x, name, dtype, who="MultiHeadAttention")


class _StackedRows(nn.Linear):
    """``q_proj``, ``k_proj`` or ``v_proj`` of a :class:`MultiHeadAttention` whose input
    projections are stacked: an ``nn.Linear`` (``in_features -> stop - start``) whose
    ``weight``/``bias`` are rows ``start:stop`` of the owner's ``in_proj_weight`` /
    ``in_proj_bias``, read from the owner at every access (so they follow ``.to()``,
    ``load_state_dict(assign=True)`` and ``torch.func.functional_call``). It holds no
    parameters of its own; ``reset_parameters`` is ``nn.Linear``'s, on the rows."""

    def __init__(self, owner: MultiHeadAttention, start: int, stop: int,
                 in_features: int) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = in_features, stop - start
        self.start, self.stop = start, stop
        # A plain attribute, not a submodule: no recursion in modules() or state_dict().
        object.__setattr__(self, "_owner", owner)

    @property
    def weight(self) -> torch.Tensor:
        return self._owner._parameters["in_proj_weight"][self.start:self.stop]

    @property
    def bias(self) -> torch.Tensor | None:
        bias = self._owner._parameters["in_proj_bias"]
        return None if bias is None else bias[self.start:self.stop]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class MultiHeadAttention(nn.Module):
    """Multi-head (grouped-query, multi-query) scaled-dot attention.

    Shapes: ``E`` embed_dim, ``Hq`` num_heads, ``Hkv`` num_kv_heads,
    ``Dh = E // Hq`` head dim; query head ``h`` reads key/value head
    ``h // (Hq // Hkv)``.

    Args:
        embed_dim: ``E``, features of the query and of the output.
        num_heads: ``Hq``, query heads; must divide ``embed_dim``.
        num_kv_heads: ``Hkv``, key/value heads (default ``num_heads``: MHA;
            1: MQA; in between: GQA); must divide ``num_heads``.
        kdim, vdim: features of ``key`` and ``value`` (default ``embed_dim``).
        bias: biases in the four projections.
        dropout: dropout probability on the attention weights, in training mode only.
        qk_norm: RMSNorm (learned scale) over ``Dh`` of every query and key head.
        batch_first: inputs and output are ``(B, L, E)``; False: ``(L, B, E)``.
        rotary: a :class:`~attnkit.nn.positional.RotaryEmbedding` with
            ``head_dim == Dh``, applied to queries and keys in self-attention
            (after ``qk_norm``). Cross-attention is not rotated: query and source
            positions do not lie on one axis.
        backend: passed to :func:`attnkit.functional.attention` (``"auto"``,
            ``"reference"``, ``"sdpa"``).

    Example:
        >>> import torch
        >>> from attnkit.nn.multihead import MultiHeadAttention
        >>> mha = MultiHeadAttention(64, 8, num_kv_heads=2)
        >>> x = torch.randn(2, 10, 64)
        >>> out, _ = mha(x, causal=True)
        >>> out.shape
        torch.Size([2, 10, 64])
    """

    def __init__(self, embed_dim: int, num_heads: int, *, num_kv_heads: int | None = None,
                 kdim: int | None = None, vdim: int | None = None, bias: bool = True,
                 dropout: float = 0.0, qk_norm: bool = False, batch_first: bool = True,
                 rotary: RotaryEmbedding | None = None, backend: str = "auto") -> None:
        super().__init__()
        self.embed_dim = check_int(embed_dim, "embed_dim", minimum=1)
        self.num_heads = check_int(num_heads, "num_heads", minimum=1)
        if embed_dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide embed_dim ({embed_dim})")
        self.num_kv_heads = check_int(num_heads if num_kv_heads is None else num_kv_heads,
                                      "num_kv_heads", minimum=1)
        if num_heads % self.num_kv_heads:
            raise ValueError(f"num_kv_heads ({self.num_kv_heads}) must divide num_heads "
                             f"({num_heads})")
        self.kdim = check_int(embed_dim if kdim is None else kdim, "kdim", minimum=1)
        self.vdim = check_int(embed_dim if vdim is None else vdim, "vdim", minimum=1)
        self.dropout = check_float(dropout, "dropout", low=0.0, high=1.0, high_open=True)
        self.batch_first = check_bool(batch_first, "batch_first")
        if backend != "auto" and backend not in BACKENDS:
            raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, "
                             f"got {backend!r}")
        self.backend = backend
        self.head_dim = embed_dim // num_heads
        if rotary is not None and not isinstance(rotary, RotaryEmbedding):
            raise TypeError(f"rotary must be a RotaryEmbedding or None, got "
                            f"{type(rotary).__name__}")
        if rotary is not None and rotary.head_dim != self.head_dim:
            raise ValueError(f"rotary.head_dim ({rotary.head_dim}) must equal the head dim "
                             f"embed_dim // num_heads = {self.head_dim}")
        self.rotary = rotary
        check_bool(bias, "bias")
        inner_q, inner_kv = num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self._splits = (inner_q, inner_kv, inner_kv)
        if self.kdim == self.vdim == embed_dim:
            rows = inner_q + 2 * inner_kv
            self.in_proj_weight = nn.Parameter(torch.empty(rows, embed_dim))
            self.register_parameter("in_proj_bias",
                                    nn.Parameter(torch.empty(rows)) if bias else None)
            self.q_proj = _StackedRows(self, 0, inner_q, embed_dim)
            self.k_proj = _StackedRows(self, inner_q, inner_q + inner_kv, embed_dim)
            self.v_proj = _StackedRows(self, inner_q + inner_kv, rows, embed_dim)
            for projection in (self.q_proj, self.k_proj, self.v_proj):
                projection.reset_parameters()  # the draws of three separate nn.Linear
        else:
            self.register_parameter("in_proj_weight", None)
            self.register_parameter("in_proj_bias", None)
            self.q_proj = nn.Linear(embed_dim, inner_q, bias=bias)
            self.k_proj = nn.Linear(self.kdim, inner_kv, bias=bias)
            self.v_proj = nn.Linear(self.vdim, inner_kv, bias=bias)
        self.out_proj = nn.Linear(inner_q, embed_dim, bias=bias)
        self.q_norm = nn.RMSNorm(self.head_dim) if check_bool(qk_norm, "qk_norm") else None
        self.k_norm = nn.RMSNorm(self.head_dim) if qk_norm else None
        # an OrderedDict, as torch's own hook dicts: RemovableHandle holds a weak reference
        self._head_hooks: OrderedDict[int, Callable] = OrderedDict()

    def register_head_hook(self, hook: Callable) -> RemovableHandle:
        """Call ``hook(module, call, out)`` in every forward, between the attention and the
        merge of the heads; ``call`` is a :class:`HeadCall`, ``out`` the per-head output
        ``(B, Hq, Lq, Dh)``. The hook returns None (observe only) or a tensor of ``out``'s
        shape that replaces it (ablate or patch heads). ``handle.remove()`` unregisters it.
        """
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {type(hook).__name__}")
        handle = RemovableHandle(self._head_hooks)
        self._head_hooks[handle.id] = hook
        return handle

    def _run_head_hooks(self, call: HeadCall, out: torch.Tensor) -> torch.Tensor:
        for hook in tuple(self._head_hooks.values()):
            replaced = hook(self, call, out)
            if replaced is not None:
                if not isinstance(replaced, torch.Tensor) or replaced.shape != out.shape:
                    got = getattr(replaced, "shape", type(replaced).__name__)
                    raise ValueError(f"a head hook must return None or a tensor of shape "
                                     f"{tuple(out.shape)}, got {got}")
                out = replaced
        return out

    def _heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        x = x.view(x.shape[0], x.shape[1], heads, self.head_dim)  # (B, L, heads, Dh)
        return x.transpose(1, 2)  # (B, heads, L, Dh)

    def _project_source(self, key: torch.Tensor, value: torch.Tensor):
        """``key (B, Lk, kdim)``, ``value (B, Lk, vdim)`` -> ``k, v (B, Hkv, Lk, Dh)``; one
        matmul for both when they are one tensor and :meth:`_fused` allows."""
        if key is value and self._fused():
            _, inner_kv, _ = self._splits
            start = self._splits[0]
            bias = self.in_proj_bias
            k, v = F.linear(key, self.in_proj_weight[start:],
                            None if bias is None else bias[start:]).split(inner_kv, dim=-1)
        else:
            modules = self._modules
            k, v = modules["k_proj"](key), modules["v_proj"](value)
        k = self._heads(k, self.num_kv_heads)  # (B, Hkv, Lk, Dh)
        v = self._heads(v, self.num_kv_heads)  # (B, Hkv, Lk, Dh)
        return (k if self.k_norm is None else self.k_norm(k)), v

    @property
    def _layout(self) -> str:
        return "(B, L, E)" if self.batch_first else "(L, B, E)"

    @property
    def _dtype(self) -> torch.dtype:
        """The dtype inputs must have (that of the projection weights)."""
        stacked = self._parameters["in_proj_weight"]
        return (stacked if stacked is not None else self._modules["q_proj"].weight).dtype

    def _fused(self) -> bool:
        """Whether the stacked projections may run as one matmul: the layout is stacked and
        ``q_proj``/``k_proj``/``v_proj`` are still its row views without hooks (a hook or a
        replaced projection must see its own call), so the fused result is exactly what
        the separate calls would give."""
        if self._parameters["in_proj_weight"] is None:
            return False
        modules = self._modules
        for name in ("q_proj", "k_proj", "v_proj"):
            p = modules[name]
            if type(p) is not _StackedRows or p._forward_hooks or p._forward_pre_hooks \
                    or p._backward_hooks or p._backward_pre_hooks:
                return False
        return not (_global_forward_hooks or _global_forward_pre_hooks
                    or _global_backward_hooks or _global_backward_pre_hooks)

    def _project_separately(self, x: torch.Tensor):
        """Self-attention without the fused matmul (see :meth:`_fused`; ``forward`` runs the
        fused case inline): ``x (B, L, E)`` -> ``q (B, Hq, L, Dh), k, v (B, Hkv, L, Dh)``
        through the ``q_proj``/``k_proj``/``v_proj`` modules."""
        q = self._heads(self._modules["q_proj"](x), self.num_heads)
        k, v = self._project_source(x, x)
        return q, k, v

    # -- state dict: the stacked rows under the names of three separate projections --------
    def _row_slices(self):
        """``(name, start, stop, viewed)`` of the three projections; ``viewed``: the module
        still views the stacked rows (one replaced by another module saves and loads its
        own parameters, and its rows are left out of the state dict)."""
        inner_q, inner_kv, _ = self._splits
        rows = (("q_proj", 0, inner_q), ("k_proj", inner_q, inner_q + inner_kv),
                ("v_proj", inner_q + inner_kv, inner_q + 2 * inner_kv))
        return [(*row, type(self._modules[row[0]]) is _StackedRows) for row in rows]

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self._parameters["in_proj_weight"] is None:
            return
        stacked = {part: destination.pop(f"{prefix}in_proj_{part}", None)
                   for part in ("weight", "bias")}
        for name, start, stop, viewed in self._row_slices():
            for part, tensor in stacked.items():
                if tensor is not None and viewed:
                    destination[f"{prefix}{name}.{part}"] = tensor[start:stop]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if self._parameters["in_proj_weight"] is not None:
            self._stack_loaded(state_dict, prefix, missing_keys, error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)

    def _stack_loaded(self, state_dict, prefix, missing_keys, error_msgs) -> None:
        """Replace ``q_proj.weight`` ... ``v_proj.bias`` in ``state_dict`` by the stacked
        ``in_proj_weight``/``in_proj_bias`` (a piece that is absent or of the wrong shape
        keeps the module's current rows and is reported under its own name)."""
        for part in ("weight", "bias"):
            param = self._parameters[f"in_proj_{part}"]
            target = f"{prefix}in_proj_{part}"
            if param is None or target in state_dict:
                continue
            pieces, found = [], False
            for name, start, stop, viewed in self._row_slices():
                key = f"{prefix}{name}.{part}"
                current = param.detach()[start:stop]
                value = state_dict.pop(key, None) if viewed else current
                if value is None:
                    missing_keys.append(key)
                elif not isinstance(value, torch.Tensor) or value.shape != current.shape:
                    got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
                    error_msgs.append(f"size mismatch for {key}: copying a param with shape "
                                      f"{got} from checkpoint, the shape in current model is "
                                      f"{tuple(current.shape)}.")
                    found = True
                else:
                    pieces.append(value)
                    found = found or viewed
                    continue
                pieces.append(current)
            if found:
                state_dict[target] = torch.cat(pieces)
            else:  # nothing to load: the parameter stays, reported under the three names
                state_dict[target] = param.detach()

    def _self_keys_values(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          kv_cache: KVCache | None):
        """Self-attention: projected ``q``, ``k``, ``v`` rotated and ``k``, ``v`` appended to
        the cache."""
        if self.rotary is not None:
            offset = 0 if kv_cache is None else kv_cache.length
            q, k = self.rotary(q, offset), self.rotary(k, offset)
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)  # (B, Hkv, cache length + Lq, Dh)
        return q, k, v

    def _source_keys_values(self, key: torch.Tensor | None, value: torch.Tensor | None,
                            kv_cache: KVCache | StaticKVCache | None, batch: int):
        """Cross-attention: project ``key``/``value`` or read them from a StaticKVCache."""
        if isinstance(kv_cache, KVCache):
            raise ValueError("kv_cache=KVCache() is for self-attention (key=None); cache "
                             "cross-attention keys and values with StaticKVCache()")
        if kv_cache is not None and kv_cache.is_set:
            k, v = kv_cache.keys, kv_cache.values  # (B, Hkv, Lk, Dh)
            if k.shape[0] != batch:
                raise ValueError(f"kv_cache holds batch size {k.shape[0]} but query has batch "
                                 f"size {batch}")
            return k, v
        if key is None:
            raise ValueError("an empty StaticKVCache needs key (the source to cache) on the "
                             "first call; use KVCache for self-attention")
        value = key if value is None else value
        _check_input(key, "key", self.kdim, self._layout, self.k_proj.weight.dtype)
        _check_input(value, "value", self.vdim, self._layout, self.v_proj.weight.dtype)
        if not self.batch_first:
            key, value = key.transpose(0, 1), value.transpose(0, 1)  # (B, Lk, kdim|vdim)
        if key.shape[0] != batch or value.shape[0] != batch or key.shape[1] != value.shape[1]:
            raise ValueError(f"key {tuple(key.shape)} and value {tuple(value.shape)} must have "
                             f"batch size {batch} (from query) and equal lengths")
        k, v = self._project_source(key, value)  # (B, Hkv, Lk, Dh)
        if kv_cache is not None:
            kv_cache.set(k, v)
        return k, v

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | Callable | None = None,
        causal: bool | str | None = None,
        score_mod: Callable | None = None,
        kv_cache: KVCache | StaticKVCache | None = None,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` to ``key``/``value`` (or to ``query`` itself).

        Shapes are batch-first; with ``batch_first=False`` every ``(B, L, E)``
        below is ``(L, B, E)`` instead (weights stay ``(B, Hq, Lq, Lk)``).

        Args:
            query: ``(B, Lq, E)``.
            key: ``(B, Lk, kdim)`` for cross-attention; None for self-attention
                (keys and values are projected from ``query``).
            value: ``(B, Lk, vdim)``; defaults to ``key``.
            mask: passed to :func:`attnkit.functional.attention` unchanged. True =
                may attend; a bool tensor broadcastable to ``(B, Hq, Lq, Lk)`` (or
                ``(Lq, Lk)``), or a ``mask_mod`` callable. Key padding, from a
                ``(B, Lk)`` bool ``valid`` tensor: ``mask=valid[:, None, None, :]``;
                from ``(B,)`` lengths of right-padded keys:
                ``mask=attnkit.masks.key_padding(lengths)``. With a :class:`KVCache`,
                ``Lk`` counts the cached tokens too.
            causal: None, True, ``"upper_left"`` or ``"lower_right"`` (see
                :func:`attnkit.functional.attention`). With a :class:`KVCache`, True
                means ``"lower_right"``: the queries are the last ``Lq`` of the
                ``Lk = cache length + Lq`` positions.
            score_mod: optional ``score_mod(score, b, h, q_idx, kv_idx)`` (ALiBi,
                softcap, an additive float mask, ...). With a cache, ``q_idx`` counts
                from 0 at the first new token: pass e.g. ``alibi(slopes,
                q_offset=cache.length)``.
            kv_cache: None; a :class:`KVCache` for incremental self-attention
                (``key`` must be None): the new keys/values are appended and the
                queries attend over the whole cache, with rotary positions starting
                at the cache length; or a :class:`StaticKVCache` for
                cross-attention: filled from ``key``/``value`` on the first call,
                after which ``key``/``value`` are ignored (and may be None).
            return_weights: also return the attention weights.

        Returns:
            ``(out (B, Lq, E), weights (B, Hq, Lq, Lk) or None)``; the weights are
            taken before dropout.
        """
        if kv_cache is not None and not isinstance(kv_cache, (KVCache, StaticKVCache)):
            raise TypeError(f"kv_cache must be a KVCache, a StaticKVCache or None, got "
                            f"{type(kv_cache).__name__}")
        stacked = self._parameters["in_proj_weight"]
        # A batch-first query of the parameters' dtype passes on attribute reads alone;
        # anything else takes the full check (which raises, or accepts it under autocast).
        if type(query) is not torch.Tensor or query.ndim != 3 or \
                query.shape[2] != self.embed_dim or stacked is None or \
                query.dtype != stacked.dtype or not self.batch_first:
            _check_input(query, "query", self.embed_dim, self._layout, self._dtype)
        if type(return_weights) is not bool:
            check_bool(return_weights, "return_weights")
        if not self.batch_first:
            query = query.transpose(0, 1)  # (B, Lq, E)
        B, Lq = query.shape[0], query.shape[1]
        if key is not None or (kv_cache is not None and isinstance(kv_cache, StaticKVCache)):
            q = self._heads(self.q_proj(query), self.num_heads)  # (B, Hq, Lq, Dh)
            if self.q_norm is not None:
                q = self.q_norm(q)
            k, v = self._source_keys_values(key, value, kv_cache, B)  # (B, Hkv, Lk, Dh)
        else:
            if value is not None:
                raise ValueError("value was given without key; pass key too (value defaults "
                                 "to key), or neither for self-attention")
            if self.kdim != self.embed_dim or self.vdim != self.embed_dim:
                raise ValueError(f"self-attention (key=None) needs kdim == vdim == embed_dim, "
                                 f"got kdim={self.kdim}, vdim={self.vdim}, "
                                 f"embed_dim={self.embed_dim}; pass key and value")
            if self._fused():  # one matmul by the stacked rows (GPT-2's c_attn)
                params = self._parameters
                q, k, v = F.linear(query, params["in_proj_weight"], params["in_proj_bias"]) \
                    .split_with_sizes(self._splits, dim=-1)
                Hq, Hkv, Dh = self.num_heads, self.num_kv_heads, self.head_dim
                q = q.view(B, Lq, Hq, Dh).transpose(1, 2)  # (B, Hq, Lq, Dh)
                k = k.view(B, Lq, Hkv, Dh).transpose(1, 2)  # (B, Hkv, Lq, Dh)
                v = v.view(B, Lq, Hkv, Dh).transpose(1, 2)  # (B, Hkv, Lq, Dh)
                if self.k_norm is not None:
                    k = self.k_norm(k)
            else:
                q, k, v = self._project_separately(query)
            if self.q_norm is not None:
                q = self.q_norm(q)
            if self.rotary is not None or kv_cache is not None:
                q, k, v = self._self_keys_values(q, k, v, kv_cache)  # k, v: (B, Hkv, Lk, Dh)
                if causal is True and kv_cache is not None:
                    causal = "lower_right"

        out, weights = attention(
            q, k, v, mask=mask, causal=causal, score_mod=score_mod,
            dropout_p=self.dropout if self.training else 0.0,
            return_weights=return_weights, backend=self.backend,
        )  # out: (B, Hq, Lq, Dh)
        if self._head_hooks:
            out = self._run_head_hooks(HeadCall(q, k, v, mask, causal, score_mod), out)
        out = out.transpose(1, 2).reshape(B, Lq, self.num_heads * self.head_dim)  # (B, Lq, E)
        out = self._modules["out_proj"](out)  # (B, Lq, E)
        if not self.batch_first:
            out = out.transpose(0, 1)  # (Lq, B, E)
        return out, weights

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}, head_dim={self.head_dim}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")
