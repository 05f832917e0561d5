"""attnkit as an attention implementation inside Hugging Face ``transformers``.

:func:`register` adds ``"attnkit"`` to transformers' ``AttentionInterface`` (the
attention function every modern model calls) and to its ``AttentionMaskInterface``
(the mask each model builds once per forward), so that::

    import attnkit.hf
    from transformers import AutoModel
    attnkit.hf.register()
    model = AutoModel.from_pretrained(path, attn_implementation="attnkit")

runs the model's attention on :func:`attnkit.attention` and its dispatch: GQA
without repeating keys (``Hq % Hkv == 0`` is native), causal, sliding-window and
padding masks as structured ``mask_mod`` objects (so the tiled kernel can skip empty
tiles and fused GPU kernels get a plain-number description), softcapping as a
score_mod, attention weights on demand (``output_attentions=True``) computed
exactly by attnkit, and per-layer head hooks (:func:`register_head_hook`, the
interface of :meth:`attnkit.nn.MultiHeadAttention.register_head_hook`) to observe or
edit single heads.

How transformers' masks are translated. transformers describes a mask by a
``mask_function(b, h, q_idx, kv_idx)`` closure plus a 2-D padding tensor. The stock
closures are recognised by identity and structure: causal, bidirectional, causal
sliding window (``q - w < kv <= q``) and bidirectional sliding window
(``|q - kv| <= w``), with the query/key offsets of a cache as the diagonal offset.
Padding becomes :func:`attnkit.masks.key_padding` when every row is right-padded,
else a two-id :func:`attnkit.masks.document` mask (valid keys share the queries'
id). Any other mask function (packed sequences, custom ``and``/``or`` overlays,
chunked attention, vmap-only patterns) is evaluated densely by transformers' own
``sdpa_mask`` and passed as a boolean tensor: always correct, never structured.

Deviations from ``attn_implementation="eager"``: a query row that may attend to no
key at all (e.g. a left-padding position under a causal mask) gives zeros (the
attnkit convention) where eager averages every value; such rows are padding, whose
outputs transformers leaves undefined. T5-style ``position_bias`` and attention sinks
(``s_aux``) are not supported and raise ValueError.

transformers is imported lazily; without it :func:`register` raises an ImportError
naming the ``hf`` extra.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch.utils.hooks import RemovableHandle

from attnkit.functional.attention import attention
from attnkit.functional.masks import document, key_padding, sliding_window
from attnkit.functional.masks.diagonal import Causal
from attnkit.score_mods import softcap as _softcap

__all__ = ["register", "NAME", "StructuredMask", "attention_forward", "mask_interface",
           "HeadCall", "register_head_hook"]

NAME = "attnkit"


def _transformers():
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise ImportError("attnkit.hf needs Hugging Face transformers: "
                          "pip install 'attnkit[hf]'") from exc
    return transformers


def register(name: str = NAME) -> str:
    """Register attnkit's attention and mask functions with transformers under ``name``.

    Idempotent. Afterwards ``from_pretrained(..., attn_implementation=name)`` (or
    ``model.set_attn_implementation(name)``) runs the model on attnkit.

    Returns:
        ``name``.

    Raises:
        ImportError: transformers is not installed (the ``hf`` extra).
        TypeError: ``name`` is not a non-empty string.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    _transformers()
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(name, attention_forward)
    AttentionMaskInterface.register(name, mask_interface)
    return name


@dataclasses.dataclass(frozen=True, eq=False)
class StructuredMask:
    """The mask transformers hands to every attention layer, kept structured.

    ``mask_mod`` is an attnkit ``mask_mod`` (None: every query may attend to every
    key); ``shape`` is ``(B, 1, Lq, Lk)``, the shape of the dense mask it stands for.
    """

    mask_mod: Callable | None
    shape: tuple[int, int, int, int]

    @property
    def ndim(self) -> int:
        return 4

    def dense(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The mask as a bool tensor broadcastable to ``shape`` (True = may attend)."""
        from attnkit.functional.masks import materialize

        B, _, Lq, Lk = self.shape
        if self.mask_mod is None:
            return torch.ones(1, 1, Lq, Lk, dtype=torch.bool, device=device)
        return materialize(self.mask_mod, B, 1, Lq, Lk, device)


# -- masks -----------------------------------------------------------------------------------

def _closure(fn: Callable) -> dict[str, Any]:
    names = getattr(getattr(fn, "__code__", None), "co_freevars", ())
    cells = getattr(fn, "__closure__", None) or ()
    values = {}
    for name, cell in zip(names, cells, strict=False):
        try:
            values[name] = cell.cell_contents
        except ValueError:
            return {}
    return values


def _pattern(mask_function: Callable, mu) -> tuple[str, int | None] | None:
    """``("causal"|"full"|"window"|"window_bidirectional", w)`` for transformers' stock
    mask functions, None for anything else."""
    if mask_function is mu.causal_mask_function:
        return "causal", None
    if mask_function is mu.bidirectional_mask_function:
        return "full", None
    parts = _closure(mask_function).get("mask_functions")
    if getattr(mask_function, "__qualname__", "") != "and_masks.<locals>.and_mask" or \
            not isinstance(parts, tuple) or len(parts) != 2:
        return None
    overlay, base = parts
    window = _closure(overlay).get("sliding_window")
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        return None
    qualname = getattr(overlay, "__qualname__", "")
    if base is mu.causal_mask_function and \
            qualname == "sliding_window_overlay.<locals>.inner_mask":
        return "window", window
    if base is mu.bidirectional_mask_function and \
            qualname == "sliding_window_bidirectional_overlay.<locals>.inner_mask":
        return "window_bidirectional", window
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, torch.Tensor):
        return int(value.item()) if value.numel() == 1 else None
    return int(value) if isinstance(value, int) else None


def _padding(valid: torch.Tensor, q_len: int) -> Callable | None:
    """``valid (B, Lk)`` bool -> a mask_mod, or None when every key is valid."""
    if bool(valid.all()):
        return None
    lengths = valid.sum(dim=1)  # (B,)
    positions = torch.arange(valid.shape[1], device=valid.device)
    if bool((valid == (positions[None] < lengths[:, None])).all()):
        return key_padding(lengths)  # right padding: a kernel term and tile skipping
    # Left or scattered padding: the queries share id 1 with the valid keys.
    return document(torch.ones(valid.shape[0], q_len, dtype=torch.long, device=valid.device),
                    valid.long())


def _structured(pattern: tuple[str, int | None], batch: int, q_len: int, kv_len: int,
                offset: int, padding: Callable | None) -> Callable | None:
    kind, window = pattern
    if kind == "causal":
        mod = Causal(offset)
    elif kind == "window":
        mod = sliding_window(window, causal=True)
        mod = dataclasses.replace(mod, offset=offset)
    elif kind == "window_bidirectional":
        mod = dataclasses.replace(sliding_window(window + 1, causal=False), offset=offset)
    else:
        mod = None
    if padding is None:
        return mod
    return padding if mod is None else mod & padding


def mask_interface(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0,
                   kv_offset: int = 0, mask_function: Callable | None = None,
                   attention_mask: torch.Tensor | None = None, use_vmap: bool = False,
                   device: torch.device | str = "cpu", **kwargs: Any):
    """transformers' mask-interface signature (see ``masking_utils.sdpa_mask``).

    Args:
        batch_size, q_length, kv_length: ``B``, ``Lq``, ``Lk`` of the attention calls.
        q_offset, kv_offset: absolute position of the first query / key.
        mask_function: transformers' ``mask_function(b, h, q_idx, kv_idx)``.
        attention_mask: ``(B, >= kv_offset + Lk)`` bool padding mask (True = real token),
            or a :class:`StructuredMask` prepared earlier (returned unchanged).

    Returns:
        A :class:`StructuredMask` for the stock mask functions, else the dense
        ``(B, 1, Lq, Lk)`` bool mask transformers' ``sdpa_mask`` builds.
    """
    from transformers import masking_utils as mu

    if isinstance(attention_mask, StructuredMask):
        # Already prepared (generate() builds the mask before the forward): returned as
        # is, as transformers returns a prepared 4-D mask.
        return attention_mask
    if mask_function is None:
        mask_function = mu.causal_mask_function
    pattern = None if use_vmap else _pattern(mask_function, mu)
    q_off, kv_off = _as_int(q_offset), _as_int(kv_offset)
    if pattern is not None and q_off is not None and kv_off is not None:
        padding = None
        if attention_mask is not None:
            padded = mu.prepare_padding_mask(attention_mask, kv_length, kv_off)
            padding = _padding(padded[:, kv_off:kv_off + kv_length].to(torch.bool), q_length)
        mod = _structured(pattern, batch_size, q_length, kv_length, q_off - kv_off, padding)
        return StructuredMask(mod, (batch_size, 1, q_length, kv_length))
    return mu.sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length,
                        q_offset=q_offset, kv_offset=kv_offset, mask_function=mask_function,
                        attention_mask=attention_mask, allow_is_causal_skip=False,
                        allow_is_bidirectional_skip=False, use_vmap=use_vmap, device=device)


# -- head hooks ------------------------------------------------------------------------------

class HeadCall(NamedTuple):
    """What one HF attention layer gave :func:`attnkit.attention`, as a head hook sees it
    (:class:`attnkit.nn.multihead.HeadCall` plus the scale, which HF models set per layer).

    ``q (B, Hq, Lq, D)``, ``k``/``v`` ``(B, Hkv, Lk, D)`` after rotary and the cache;
    ``mask``, ``causal``, ``score_mod``, ``scale`` exactly as passed.
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    mask: Any
    causal: str | None
    score_mod: Callable | None
    scale: float | None


_HOOKS = "_attnkit_head_hooks"


def register_head_hook(module: torch.nn.Module, hook: Callable) -> RemovableHandle:
    """Call ``hook(module, call, out)`` whenever the HF attention layer ``module`` runs on
    attnkit, between the attention and the merge of the heads: ``call`` is a
    :class:`HeadCall`, ``out`` the per-head output ``(B, Hq, Lq, Dv)``. The hook returns
    None (observe) or a tensor of ``out``'s shape that replaces it (ablate, patch).
    Weights for chosen heads/rows can be rebuilt from ``call`` with
    :func:`attnkit.functional.weights.attention_weights`. ``handle.remove()`` unregisters.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not callable(hook):
        raise TypeError(f"hook must be callable, got {type(hook).__name__}")
    hooks = module.__dict__.get(_HOOKS)
    if hooks is None:
        hooks = OrderedDict()
        module.__dict__[_HOOKS] = hooks
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    return handle


def _run_head_hooks(module, hooks, call: HeadCall, out: torch.Tensor) -> torch.Tensor:
    for hook in tuple(hooks.values()):
        replaced = hook(module, call, out)
        if replaced is not None:
            if not isinstance(replaced, torch.Tensor) or replaced.shape != out.shape:
                got = getattr(replaced, "shape", type(replaced).__name__)
                raise ValueError(f"a head hook must return None or a tensor of shape "
                                 f"{tuple(out.shape)}, got {got}")
            out = replaced
    return out


# -- attention -------------------------------------------------------------------------------

def _tensor_mask(mask: torch.Tensor) -> torch.Tensor:
    """A 4-D bool or additive float mask -> bool (True = may attend)."""
    if mask.dtype == torch.bool:
        return mask
    if not mask.is_floating_point():
        raise TypeError(f"attention_mask must be bool or floating, got dtype {mask.dtype}")
    blocked = mask <= torch.finfo(mask.dtype).min / 2
    if not bool(((mask == 0) | blocked).all()):
        raise ValueError("attention_mask: an additive float mask with values other than 0 "
                         "and -inf/dtype-min is a bias, which attnkit takes as a score_mod; "
                         "pass a bool mask or use attn_implementation='eager'")
    return ~blocked


def attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                      value: torch.Tensor, attention_mask: Any, dropout: float = 0.0,
                      scaling: float | None = None, is_causal: bool | None = None,
                      **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers' attention-function signature, computed by :func:`attnkit.attention`.

    Args:
        module: the calling attention layer (``is_causal``, ``training``, ``config``).
        query: ``(B, Hq, Lq, D)``; key: ``(B, Hkv, Lk, D)``; value: ``(B, Hkv, Lk, Dv)``
            (``Hq % Hkv == 0``: grouped-query attention without repeating heads).
        attention_mask: a :class:`StructuredMask`, a 4-D bool or 0/-inf float tensor
            broadcastable to ``(B, Hq, Lq, Lk)``, or None (then causal when the layer
            is causal and ``Lq > 1``, upper-left, as transformers' sdpa path).
        dropout: dropout probability on the weights (transformers passes 0 in eval).
        scaling: logit multiplier (default ``1 / sqrt(D)``).
        kwargs: ``softcap`` (logit soft-capping), ``sliding_window`` (used when no mask
            was built), ``output_attentions`` (return the weights).

    Returns:
        ``(out (B, Lq, Hq, Dv), weights (B, Hq, Lq, Lk) or None)``.
    """
    if kwargs.get("position_bias") is not None:
        raise ValueError("position_bias (T5-style additive bias) is not supported by "
                         "attn_implementation='attnkit'; use 'eager' or 'sdpa'")
    if kwargs.get("s_aux") is not None or kwargs.get("sinks") is not None:
        raise ValueError("attention sinks (s_aux) are not supported by "
                         "attn_implementation='attnkit'; use 'eager'")
    q_len, kv_len = query.shape[2], key.shape[2]
    mask, causal = None, None
    if isinstance(attention_mask, StructuredMask):
        mask = attention_mask.mask_mod
    elif isinstance(attention_mask, torch.Tensor):
        mask = _tensor_mask(attention_mask)
        if mask.dim() == 4 and mask.shape[-1] != kv_len:  # a static cache's longer mask
            mask = mask[..., :kv_len]
    elif attention_mask is None:
        layer_causal = is_causal if is_causal is not None else getattr(module, "is_causal",
                                                                        True)
        if layer_causal and q_len > 1:
            window = kwargs.get("sliding_window")
            if isinstance(window, int) and not isinstance(window, bool) and window > 0:
                mask = sliding_window(window, causal=True)
            else:
                causal = "upper_left"
    else:
        raise TypeError(f"attention_mask must be a tensor, an attnkit.hf.StructuredMask or "
                        f"None, got {type(attention_mask).__name__} (was the model loaded "
                        f"with attn_implementation='attnkit' after attnkit.hf.register()?)")
    cap = kwargs.get("softcap")
    config = getattr(module, "config", None)
    want_weights = bool(kwargs.get("output_attentions")
                        or getattr(config, "output_attentions", False))
    score_mod = _softcap(cap) if cap else None
    out, weights = attention(
        query, key, value, mask=mask, causal=causal, scale=scaling, score_mod=score_mod,
        dropout_p=float(dropout or 0.0), return_weights=want_weights,
        backend=getattr(module, "attnkit_backend", "auto"),
    )  # out: (B, Hq, Lq, Dv)
    hooks = module.__dict__.get(_HOOKS)
    if hooks:
        call = HeadCall(query, key, value, mask, causal, score_mod, scaling)
        out = _run_head_hooks(module, hooks, call, out)
    return out.transpose(1, 2).contiguous(), weights
