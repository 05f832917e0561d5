"""One attention call, described for every backend.

``attention()`` validates its arguments once and builds a :class:`CallPlan`: the mask
argument and the causal flag folded into one tensor part and one ``mask_mod`` part,
the (checked) score_mod, the scale, dropout and normalizer. The plan is the
:class:`~attnkit.kernels.backend.KernelCall` a backend receives: each backend asks it
for the view it needs, a dense mask (reference, sdpa), per-tile callables and a tile
plan (tiled), or a plain-number description (fused GPU kernels). The mask classes
answer the kernel questions themselves (:class:`~attnkit.masks.MaskMod` methods).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable

import torch
from torch import nn

from attnkit.functional import masks as _masks
from attnkit.functional._checks import apply_score_mod
from attnkit.functional.normalizers import masked_softmax
from attnkit.functional.score_mods import ScoreMod
from attnkit.kernels.spec import EMPTY, FULL, PARTIAL, KernelSpec, MaskSpec, ScoreSpec
from attnkit.kernels.tiled import TileFns

__all__ = ["CallPlan", "captured_tensors"]


@dataclasses.dataclass
class CallPlan:
    batch: int
    q_heads: int
    q_len: int
    kv_len: int
    device: torch.device
    tensor_mask: torch.Tensor | None  # bool, 4-D, broadcastable to (B, Hq, Lq, Lk)
    user_mask_mod: Callable | None
    alignment: str | None
    score_mod: Callable | None
    scale: float = 1.0
    dropout_p: float = 0.0
    return_weights: bool = False
    normalize: Callable = masked_softmax  # (scores, mask) -> weights
    # lse (B, Hq, Lq) -> exact weights (B, Hq, Lq, Lk), for fused backends
    rebuild_weights: Callable[[torch.Tensor], torch.Tensor] | None = None
    _tile_plans: dict = dataclasses.field(default_factory=dict)
    # Whether a mask tensor or mask_mod was given (the causal flag aside); a field, not a
    # property, because backends read it on every call.
    has_mask: bool = dataclasses.field(init=False, default=False)

    def __post_init__(self) -> None:
        self.has_mask = self.tensor_mask is not None or self.user_mask_mod is not None

    @classmethod
    def build(cls, q: torch.Tensor, kv_len: int, mask, alignment, score_mod,
              **call: object) -> CallPlan:
        """``call``: the other fields (scale, dropout_p, return_weights, normalize,
        rebuild_weights) for a plan that backends will run."""
        B, Hq, Lq, _ = q.shape
        tensor_mask = None
        if isinstance(mask, torch.Tensor):
            tensor_mask = mask if mask.dim() == 4 else mask[None, None]  # (B|1, H|1, ..)
        mask_mod = mask if (mask is not None and tensor_mask is None) else None
        return cls(B, Hq, Lq, kv_len, q.device, tensor_mask, mask_mod, alignment, score_mod,
                   **call)

    # -- mask, as one predicate ------------------------------------------------------------
    @functools.cached_property
    def mask_mod(self) -> Callable | None:
        """The user's mask_mod and the causal flag, combined (the tensor part aside)."""
        parts = []
        if self.user_mask_mod is not None:
            parts.append(self.user_mask_mod)
        if self.alignment is not None:
            parts.append(_masks.causal(self.alignment, q_len=self.q_len, kv_len=self.kv_len))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else _masks.and_masks(*parts)

    def dense_mask(self) -> torch.Tensor | None:
        """Everything as one bool tensor broadcastable to ``(B, Hq, Lq, Lk)``, or None."""
        mod = self.mask_mod
        dense = self.tensor_mask
        if mod is not None:
            evaluated = _masks.materialize(mod, self.batch, self.q_heads, self.q_len,
                                           self.kv_len, self.device)
            dense = evaluated if dense is None else dense & evaluated
        return dense

    # -- scores ------------------------------------------------------------------------------
    def score(self, scores: torch.Tensor, q0: int = 0, k0: int = 0) -> torch.Tensor:
        """The checked score_mod on logits ``(B, Hq, rows, cols)`` starting at query ``q0``
        and key ``k0``; identity without a score_mod."""
        if self.score_mod is None:
            return scores
        grids = _masks.index_grids(scores.shape[0], scores.shape[1], scores.shape[2],
                                   scores.shape[3], scores.device, q0, k0)
        return apply_score_mod(self.score_mod, scores, *grids)

    def captured(self) -> list[torch.Tensor]:
        """Tensors the score_mod reads that need gradients (see :func:`captured_tensors`)."""
        return captured_tensors(self.score_mod)

    def weights_from_lse(self, lse: torch.Tensor) -> torch.Tensor:
        """Exact weights ``(B, Hq, Lq, Lk)`` from a fused forward's ``lse (B, Hq, Lq)``."""
        return self.rebuild_weights(lse)

    # -- tiles -------------------------------------------------------------------------------
    def tile_plan(self, block_q: int, block_k: int) -> torch.Tensor | None:
        """int8 ``(nq, nk)``: EMPTY where no (b, h) may attend anywhere in the tile, FULL
        where every (b, h) may attend everywhere, PARTIAL otherwise; None if unmasked."""
        key = (block_q, block_k)
        if key not in self._tile_plans:
            kinds = [_masks.block_map(part, self.batch, self.q_heads, self.q_len,
                                      self.kv_len, block_q=block_q, block_k=block_k,
                                      device=self.device).kinds
                     for part in (self.mask_mod, self.tensor_mask) if part is not None]
            plan = None
            if kinds:
                stacked = torch.stack([k.flatten(0, 1) for k in
                                       torch.broadcast_tensors(*kinds)])  # (parts, BH, nq, nk)
                plan = torch.full(stacked.shape[2:], PARTIAL, dtype=torch.int8)
                plan[(stacked == EMPTY).any(0).all(0)] = EMPTY
                plan[(stacked == FULL).all(0).all(0)] = FULL
            self._tile_plans[key] = plan
        return self._tile_plans[key]

    def block_sparsity(self, block_q: int, block_k: int) -> float:
        """Fraction of tiles no query may attend to (work a block-skipping kernel saves)."""
        plan = self.tile_plan(block_q, block_k)
        return 0.0 if plan is None else float((plan == EMPTY).float().mean())

    def tile_fns(self, block_q: int, block_k: int) -> TileFns:
        B, Hq = self.batch, self.q_heads
        mod, tensor, device = self.mask_mod, self.tensor_mask, self.device

        def tile_mask(q0: int, q1: int, k0: int, k1: int) -> torch.Tensor:
            result = None
            if tensor is not None:
                rows = slice(q0, q1) if tensor.shape[2] > 1 else slice(None)
                cols = slice(k0, k1) if tensor.shape[3] > 1 else slice(None)
                result = tensor[:, :, rows, cols]
            if mod is not None:
                grids = _masks.index_grids(B, Hq, q1 - q0, k1 - k0, device, q0, k0)
                evaluated = mod(*grids)
                result = evaluated if result is None else result & evaluated
            return result

        has_mask = mod is not None or tensor is not None
        return TileFns(mask=tile_mask if has_mask else None,
                       score=self.score if self.score_mod is not None else None,
                       plan=self.tile_plan(block_q, block_k) if has_mask else None)

    # -- plain-number description for fused GPU kernels -----------------------------------------
    def kernel_spec(self) -> KernelSpec | str:
        """A :class:`~attnkit.kernels.spec.KernelSpec`, or why there is none."""
        if self.tensor_mask is not None:
            return "a dense tensor mask has no structure a kernel can use; pass a mask_mod"
        fields: dict = {}
        mod = self.mask_mod
        if mod is not None:
            if not isinstance(mod, _masks.MaskMod):
                return (f"the mask_mod {type(mod).__name__} has no kernel description "
                        f"(kernels take the attnkit.masks constructors)")
            reason = mod.kernel_terms(self.batch, self.q_len, self.kv_len, fields)
            if reason:
                return reason
        if self.score_mod is None:
            score = ScoreSpec()
        elif isinstance(self.score_mod, ScoreMod):
            score = self.score_mod.kernel_spec()
            if isinstance(score, str):
                return score
        else:
            return (f"the score_mod {type(self.score_mod).__name__} has no kernel description "
                    f"(kernels take alibi and softcap)")
        return KernelSpec(MaskSpec(**fields), score)


def captured_tensors(fn: Callable | None) -> list[torch.Tensor]:
    """Floating tensors requiring grad that a score_mod reads from its own state.

    Looked for in dataclass fields (the built-in score mods), module parameters and
    buffers, closure cells, default arguments and ``functools.partial`` arguments.
    Tensors reached only through globals are not found; see :func:`attnkit.attention`.
    """
    found: list[torch.Tensor] = []

    def add(value) -> None:
        if isinstance(value, torch.Tensor):
            if value.requires_grad and value.is_floating_point() and \
                    not any(value is t for t in found):
                found.append(value)
        elif isinstance(value, nn.Module):
            for t in list(value.parameters()) + list(value.buffers()):
                add(t)
        elif isinstance(value, (list, tuple)):
            for item in value:
                add(item)

    def visit(obj, depth: int = 0) -> None:
        if obj is None or depth > 3:
            return
        add(obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for field in dataclasses.fields(obj):
                value = getattr(obj, field.name)
                add(value)
                if callable(value):
                    visit(value, depth + 1)
        if isinstance(obj, functools.partial):
            for value in (*obj.args, *obj.keywords.values()):
                add(value)
            visit(obj.func, depth + 1)
        if inspect.ismethod(obj):
            visit(obj.__self__, depth + 1)
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            add(value)
            if callable(value) and not isinstance(value, type):
                visit(value, depth + 1)
        for value in getattr(obj, "__defaults__", None) or ():
            add(value)

    visit(fn)
    return found
