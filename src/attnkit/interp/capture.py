"""Capture what a model's attention layers do, and edit single heads.

:func:`capture` is a context manager for any model built from attnkit attention modules
(:class:`~attnkit.nn.MultiHeadAttention` inside Transformer, GPT and BertEncoder, and the
:class:`~attnkit.nn.seq2seq.base.Seq2SeqAttention` mechanisms of the RNN encoder-decoders).
Layers are named by their module paths, as ``model.named_modules()`` gives them
(``"blocks.1.self_attn"``, ``"decoder.0.cross_attn"``, ``"attention"``), in the style of
TransformerLens's hook names.

The model keeps running on whatever backend it chose (SDPA, the tiled flash kernel, ...):
a head hook of :class:`~attnkit.nn.MultiHeadAttention` hands over the queries, keys, values
and the mask of each call, and the weights are rebuilt exactly for the chosen heads and
rows with :func:`attnkit.functional.weights.attention_weights` (the reference softmax over
just those rows), in memory proportional to what is kept. Without an edit, capturing does
not change a single bit of the model's outputs.

Edits (:meth:`Capture.ablate`, :meth:`Capture.replace`) rewrite one head's output before the
heads are merged by the output projection (for a Seq2Seq mechanism, its one "head": the
context vector).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from attnkit.functional.weights import attention_weights
from attnkit.nn.multihead import HeadCall, MultiHeadAttention
from attnkit.nn.seq2seq.base import Seq2SeqAttention

__all__ = ["Capture", "Record", "attention_modules", "capture"]

STORED = ("weights", "q", "k", "v", "out")

Replacement = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every attnkit attention module of ``model`` by module path, in ``named_modules`` order
    (the root itself is named ``""``)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {name: module for name, module in model.named_modules()
            if isinstance(module, (MultiHeadAttention, Seq2SeqAttention))}


def num_heads(module: nn.Module) -> int:
    """Query heads of an attention module (1 for a Seq2Seq mechanism)."""
    return module.num_heads if isinstance(module, MultiHeadAttention) else 1


@dataclass
class Record:
    """One call of one attention module (tensors detached, on the model's device).

    ``h = len(heads)`` selected query heads, ``r = len(rows)`` selected query rows:

    Attributes:
        name: the module path.
        heads: the query heads kept (indices into the module's ``Hq``).
        rows: the query positions kept (indices into this call's ``Lq``).
        weights: ``(B, h, r, Lk)`` attention weights in the queries' dtype, or None if
            not stored.
        q: ``(B, h, r, D)`` queries (after QK-norm and rotary), or None.
        k: ``(B, h, Lk, D)`` keys of each kept query head (a key/value head shared by
            grouped-query heads appears once per query head), or None.
        v: ``(B, h, Lk, Dv)`` values, likewise, or None.
        out: ``(B, h, r, Dv)`` per-head outputs after any edit, before the output
            projection (for a Seq2Seq mechanism, its context vectors), or None.
    """

    name: str
    heads: tuple[int, ...]
    rows: tuple[int, ...]
    weights: torch.Tensor | None
    q: torch.Tensor | None
    k: torch.Tensor | None
    v: torch.Tensor | None
    out: torch.Tensor | None


def _index_list(value, name: str) -> tuple[int, ...] | None:
    """None, an int, or a sequence/range/integer tensor of non-negative ints."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must hold integers, got a tensor of dtype {value.dtype}")
        value = value.flatten().tolist()
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple, range)):
        raise TypeError(f"{name} must be None, an int or a sequence of ints, got "
                        f"{type(value).__name__}")
    items = list(value)
    if any(isinstance(i, bool) or not isinstance(i, int) for i in items):
        raise TypeError(f"{name} must hold ints, got {items!r}")
    if not items or any(i < 0 for i in items):
        raise ValueError(f"{name} must be a non-empty list of indices >= 0, got {items}")
    return tuple(dict.fromkeys(items))


def _select_layers(found: dict[str, nn.Module], layers) -> dict[str, nn.Module]:
    names = list(found)
    if layers is None:
        return found
    if isinstance(layers, (str, int)) and not isinstance(layers, bool):
        layers = [layers]
    if not isinstance(layers, (list, tuple, range)):
        raise TypeError(f"layers must be None, a module path, an index or a sequence of them, "
                        f"got {type(layers).__name__}")
    chosen = []
    for layer in layers:
        if isinstance(layer, str):
            if layer not in found:
                raise ValueError(f"layers: {layer!r} is not an attention module of the model; "
                                 f"its attention modules are {names}")
            chosen.append(layer)
        elif isinstance(layer, int) and not isinstance(layer, bool):
            if not -len(names) <= layer < len(names):
                raise ValueError(f"layers: index {layer} is out of range for the "
                                 f"{len(names)} attention modules {names}")
            chosen.append(names[layer])
        else:
            raise TypeError(f"layers must hold module paths (str) or indices (int), got "
                            f"{layer!r}")
    if not chosen:
        raise ValueError("layers must name at least one attention module")
    return {name: found[name] for name in dict.fromkeys(chosen)}


class Capture:
    """What :func:`capture` yields: the records of every call, and head edits.

    Attributes:
        modules: ``{name: module}`` of the captured attention modules, in model order.
        records: ``{name: [Record, ...]}``, one record per call, in call order.
    """

    def __init__(self, modules: dict[str, nn.Module], heads: tuple[int, ...] | None,
                 rows: tuple[int, ...] | None, store: tuple[str, ...]) -> None:
        self.modules = modules
        self.records: dict[str, list[Record]] = {name: [] for name in modules}
        self._heads, self._rows, self._store = heads, rows, store
        self._edits: dict[str, dict[int, Replacement | None]] = {}

    @property
    def names(self) -> list[str]:
        """The captured module paths, in model order."""
        return list(self.modules)

    def clear(self) -> None:
        """Forget every record (the edits stay)."""
        for calls in self.records.values():
            calls.clear()

    # ----------------------------------------------------------------- edits
    def _check_head(self, name: str, head: int) -> None:
        if name not in self.modules:
            raise ValueError(f"name: {name!r} is not a captured attention module; captured: "
                             f"{self.names}")
        if isinstance(head, bool) or not isinstance(head, int):
            raise TypeError(f"head must be an int, got {type(head).__name__}")
        count = num_heads(self.modules[name])
        if not 0 <= head < count:
            raise ValueError(f"head must be in [0, {count}) for {name!r}, got {head}")

    def ablate(self, name: str, head: int) -> None:
        """Zero head ``head`` of module ``name`` in every later call."""
        self._check_head(name, head)
        self._edits.setdefault(name, {})[head] = None

    def replace(self, name: str, head: int, value: Replacement) -> None:
        """Replace the output of head ``head`` of module ``name`` in every later call.

        Args:
            name: module path.
            head: query head index.
            value: a tensor broadcastable to the head's output ``(B, Lq, Dv)`` (e.g. the
                ``out[:, i]`` of a record from another input), or a callable
                ``head_out (B, Lq, Dv) -> (B, Lq, Dv)``.
        """
        self._check_head(name, head)
        if not (isinstance(value, torch.Tensor) or callable(value)):
            raise TypeError(f"value must be a tensor or a callable, got {type(value).__name__}")
        self._edits.setdefault(name, {})[head] = value

    def reset_edits(self) -> None:
        """Undo every :meth:`ablate` and :meth:`replace`."""
        self._edits.clear()

    def _edit(self, name: str, out: torch.Tensor) -> torch.Tensor | None:
        """``out (B, H, Lq, Dv)`` with the edits of ``name`` applied, or None if none."""
        edits = self._edits.get(name)
        if not edits:
            return None
        heads = list(out.unbind(1))  # H x (B, Lq, Dv)
        for head, value in edits.items():
            if value is None:
                heads[head] = torch.zeros_like(heads[head])
            else:
                new = value(heads[head]) if callable(value) else value
                heads[head] = torch.broadcast_to(new.to(out.dtype), heads[head].shape)
        return torch.stack(heads, 1)  # (B, H, Lq, Dv)

    # ----------------------------------------------------------------- results
    def weights(self, name: str) -> torch.Tensor:
        """The weights of module ``name``, the rows of successive calls stacked.

        One call (a whole forward): its ``(B, h, r, Lk)`` weights. Several calls of one
        decoding (a step per call, e.g. an RNN decoder or a KV-cache decoder): the rows
        stacked in call order, each call's key axis padded with zeros on the right to the
        longest (keys a step had not seen yet get weight 0). Stacking assumes the calls
        are steps of one sequence; :meth:`clear` between unrelated forwards.

        Returns:
            ``(B, h, total rows, max Lk)``.
        """
        if name not in self.records:
            raise ValueError(f"name: {name!r} is not a captured attention module; captured: "
                             f"{self.names}")
        calls = [r.weights for r in self.records[name] if r.weights is not None]
        if not calls:
            raise ValueError(f"no weights recorded for {name!r}: run the model inside the "
                             f"capture (with 'weights' in store)")
        if len(calls) == 1:
            return calls[0]
        longest = max(w.shape[-1] for w in calls)
        padded = [torch.nn.functional.pad(w, (0, longest - w.shape[-1])) for w in calls]
        return torch.cat(padded, dim=2)

    def patterns(self) -> dict[str, torch.Tensor]:
        """``{name: weights(name)}`` for every module that recorded weights."""
        return {name: self.weights(name) for name, calls in self.records.items()
                if any(r.weights is not None for r in calls)}

    # ----------------------------------------------------------------- hooks
    def _kept(self, count: int, chosen: tuple[int, ...] | None, what: str, name: str,
              strict: bool) -> list[int]:
        if chosen is None:
            return list(range(count))
        kept = [i for i in chosen if i < count]
        if strict and len(kept) != len(chosen):
            raise ValueError(f"{what} {list(chosen)}: {name!r} has only {count}")
        return kept

    def _head_hook(self, name: str):
        def hook(module: MultiHeadAttention, call: HeadCall, out: torch.Tensor):
            edited = self._edit(name, out)
            final = out if edited is None else edited
            with torch.no_grad():
                self._record_heads(name, module, call, final)
            return edited
        return hook

    def _record_heads(self, name: str, module: MultiHeadAttention, call: HeadCall,
                      out: torch.Tensor) -> None:
        heads = self._kept(module.num_heads, self._heads, "heads", name, strict=True)
        rows = self._kept(call.q.shape[2], self._rows, "rows", name, strict=False)
        if not rows:
            return
        store = self._store
        head_idx = torch.tensor(heads, device=call.q.device)
        row_idx = torch.tensor(rows, device=call.q.device)
        kv_idx = head_idx // (module.num_heads // call.k.shape[1])
        weights = None
        if "weights" in store:
            weights = attention_weights(call.q.detach(), call.k.detach(), mask=call.mask,
                                        causal=call.causal, score_mod=call.score_mod,
                                        heads=heads, rows=rows)  # (B, h, r, Lk)
        self.records[name].append(Record(
            name=name, heads=tuple(heads), rows=tuple(rows), weights=weights,
            q=call.q.detach()[:, head_idx][:, :, row_idx] if "q" in store else None,
            k=call.k.detach()[:, kv_idx] if "k" in store else None,
            v=call.v.detach()[:, kv_idx] if "v" in store else None,
            out=out.detach()[:, head_idx][:, :, row_idx] if "out" in store else None))

    def _seq2seq_hook(self, name: str):
        def hook(module: Seq2SeqAttention, args: tuple, kwargs: dict, output: tuple):
            context, weights, state = output
            edited = self._edit(name, context[:, None])  # (B, 1, Lq, Dv)
            if edited is not None:
                context = edited[:, 0]
            with torch.no_grad():
                self._record_seq2seq(name, module, args, kwargs, context, weights)
            return None if edited is None else (context, weights, state)
        return hook

    def _record_seq2seq(self, name: str, module: Seq2SeqAttention, args: tuple, kwargs: dict,
                        context: torch.Tensor, weights: torch.Tensor) -> None:
        bound = dict(zip(("query", "keys", "values"), args, strict=False)) | kwargs
        query, keys = bound["query"], bound["keys"]
        values = keys if bound.get("values") is None else bound["values"]
        rows = self._kept(query.shape[1], self._rows, "rows", name, strict=False)
        if not rows:
            return
        row_idx = torch.tensor(rows, device=query.device)
        store = self._store
        self.records[name].append(Record(
            name=name, heads=(0,), rows=tuple(rows),
            weights=weights.detach()[:, None, row_idx] if "weights" in store else None,
            q=query.detach()[:, None, row_idx] if "q" in store else None,
            k=keys.detach()[:, None] if "k" in store else None,
            v=values.detach()[:, None] if "v" in store else None,
            out=context.detach()[:, None, row_idx] if "out" in store else None))


@contextmanager
def capture(model: nn.Module, *, layers: str | int | Sequence[str | int] | None = None,
            heads: int | Sequence[int] | None = None, rows: int | Sequence[int] | None = None,
            store: Sequence[str] = STORED) -> Iterator[Capture]:
    """Record the attention of ``model``'s attnkit attention modules while inside the block.

    Args:
        model: any ``nn.Module`` containing :class:`~attnkit.nn.MultiHeadAttention` or
            :class:`~attnkit.nn.seq2seq.base.Seq2SeqAttention` modules.
        layers: which modules: None (all), module paths, or indices into
            :func:`attention_modules` order (negative counts from the end).
        heads: query heads to keep (None: all); every captured module must have them (a
            Seq2Seq mechanism has one head, 0).
        rows: query positions to keep, per call (None: all); positions past a call's
            ``Lq`` are skipped for that call.
        store: what to keep of each call, a subset of ``("weights", "q", "k", "v", "out")``.

    Yields:
        a :class:`Capture`; its records fill as the model runs. The hooks are removed when
        the block exits (also on an exception).

    Example:
        >>> import torch
        >>> from attnkit.models import GPT, GPTConfig
        >>> model = GPT(GPTConfig(vocab_size=20, context_len=8, num_layers=2, num_heads=2,
        ...                       d_model=16)).eval()
        >>> with capture(model, heads=[1]) as cap:
        ...     _ = model(torch.randint(0, 20, (1, 8)))
        >>> cap.weights("blocks.0.self_attn").shape
        torch.Size([1, 1, 8, 8])
    """
    chosen = _select_layers(attention_modules(model), layers)
    if not chosen:
        raise ValueError(f"model ({type(model).__name__}) has no attnkit attention module "
                         f"(MultiHeadAttention or Seq2SeqAttention)")
    head_list, row_list = _index_list(heads, "heads"), _index_list(rows, "rows")
    if isinstance(store, str) or not all(isinstance(s, str) for s in store):
        raise TypeError(f"store must be a sequence of names from {STORED}, got {store!r}")
    unknown = sorted(set(store) - set(STORED))
    if unknown:
        raise ValueError(f"store: unknown entries {unknown}; choose from {STORED}")
    if head_list is not None:
        for name, module in chosen.items():
            if max(head_list) >= num_heads(module):
                raise ValueError(f"heads {list(head_list)}: {name!r} has only "
                                 f"{num_heads(module)} head(s)")
    cap = Capture(chosen, head_list, row_list, tuple(store))
    handles = []
    try:
        for name, module in chosen.items():
            if isinstance(module, MultiHeadAttention):
                handles.append(module.register_head_hook(cap._head_hook(name)))
            else:
                handles.append(module.register_forward_hook(cap._seq2seq_hook(name),
                                                            with_kwargs=True))
        yield cap
    finally:
        for handle in handles:
            handle.remove()
