"""Backend selection: which implementation runs a given attention call, and why.

Every backend declares what it cannot do as a function ``Problem -> reason or
None``. :func:`choose` walks the preference order and returns the first backend
with no objection, together with every other backend's reason, so
``attnkit.explain`` can report the decision as data instead of warnings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from attnkit.kernels.spec import KernelSpec, MaskSpec, ScoreSpec

__all__ = ["Problem", "Decision", "BACKENDS", "choose"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """Everything about one attention call that decides which backend may run it.

    ``mask`` is ``"none"``, ``"tensor"`` (a dense bool mask) or ``"mask_mod"``;
    ``causal`` is None, ``"upper_left"`` or ``"lower_right"`` (already resolved).
    """

    batch: int
    q_heads: int
    kv_heads: int
    q_len: int
    kv_len: int
    head_dim: int
    v_dim: int
    dtype: torch.dtype
    device_type: str
    mask: str
    causal: str | None
    score_mod: bool
    score_mod_traceable: bool  # its trainable tensors can be found (built-in score mods)
    return_weights: bool
    dropout_p: float
    requires_grad: bool
    block_sparsity: float | None  # fraction of empty tiles of a mask_mod, else None
    normalize: str = "softmax"
    # Why the mask/score_mod has no plain-number description for fused GPU kernels
    # (None when it has one; see attnkit.kernels.spec).
    spec_refusal: str | None = None

    @property
    def elements(self) -> int:
        """Size of the full logit tensor ``B * Hq * Lq * Lk``."""
        return self.batch * self.q_heads * self.q_len * self.kv_len


@dataclasses.dataclass(frozen=True)
class Decision:
    """The backend that runs and, for every backend that does not, the reason."""

    backend: str
    refused: dict[str, str]

    def __str__(self) -> str:
        lines = [f"runs on: {self.backend}"]
        lines += [f"  {name}: {reason}" for name, reason in self.refused.items()]
        return "\n".join(lines)


def _reference_refusal(p: Problem) -> str | None:
    return None  # the oracle handles every documented case


def _sdpa_refusal(p: Problem) -> str | None:
    if p.normalize != "softmax":
        return f"normalize={p.normalize!r}: SDPA computes a softmax"
    if p.return_weights:
        return "return_weights=True: SDPA does not expose the attention weights"
    if p.score_mod:
        return "a score_mod rewrites the logits; SDPA only takes a boolean or additive mask"
    if p.dtype == torch.float64 and p.device_type == "cuda":
        return "float64 on CUDA runs SDPA's unfused math path; the reference is as fast and exact"
    return None


def _tiled_refusal(p: Problem) -> str | None:
    if p.normalize != "softmax":
        return f"normalize={p.normalize!r}: the online softmax does not apply"
    if p.dropout_p > 0.0:
        return ("dropout_p > 0: the tiled backward recomputes the weights and would need "
                "the forward's random dropout mask")
    return None


def _triton_refusal(p: Problem) -> str | None:
    from attnkit.kernels.triton_attention import triton_refusal  # imports triton lazily

    if p.dropout_p > 0.0:
        return "dropout_p > 0: the Triton kernel has no dropout"
    if p.normalize != "softmax":
        return f"normalize={p.normalize!r}: the online softmax does not apply"
    # The refusal only needs to know whether a spec exists; its contents do not matter.
    spec = p.spec_refusal if p.spec_refusal is not None else KernelSpec(MaskSpec(), ScoreSpec())
    return triton_refusal(p.dtype, p.device_type, spec, head_dim=p.head_dim, v_dim=p.v_dim)


BACKENDS: dict[str, Callable[[Problem], str | None]] = {
    "reference": _reference_refusal,
    "sdpa": _sdpa_refusal,
    "tiled": _tiled_refusal,
    "triton": _triton_refusal,
}

# Policy thresholds for backend="auto", measured on the 2-core development machine
# (benchmarks/README.md). Below TILED_MIN_ELEMENTS logits the reference's single
# matmul beats the tile loop; a mask_mod leaves SDPA for the tiled kernel once at
# least TILED_MIN_SPARSITY of the tiles are empty.
TILED_MIN_ELEMENTS = 1 << 22
TILED_MIN_SPARSITY = 0.5
REFERENCE_MAX_WEIGHTS = 1 << 26


def _auto(p: Problem, ok: set[str]) -> tuple[str, dict[str, str]]:
    """The auto policy: (chosen backend, why each other usable backend was passed over)."""
    why: dict[str, str] = {}
    big = p.elements >= TILED_MIN_ELEMENTS
    if "triton" in ok and p.device_type != "cuda":
        ok = ok - {"triton"}
        why["triton"] = "CPU tensors run only in Triton's interpreter (for tests, far too slow)"
    if "triton" in ok and (p.mask == "mask_mod" or p.score_mod or p.return_weights):
        # On a GPU SDPA already has fused dense and causal kernels; the Triton kernel
        # earns its place where SDPA would run a structured mask densely, cannot take
        # the score_mod, or cannot give weights back.
        for name in ok - {"triton"}:
            why[name] = "triton runs structured masks and score mods fused on this GPU"
        return "triton", why
    if "triton" in ok:
        why["triton"] = "sdpa's fused kernels cover dense and causal attention on the GPU"
        ok = ok - {"triton"}
    if p.return_weights:
        if "tiled" in ok and p.elements > REFERENCE_MAX_WEIGHTS:
            why["reference"] = (f"return_weights with {p.elements:,} logits: tiled computes "
                                f"the output in O(L) memory and rebuilds the weights from lse")
            return "tiled", why
        why["tiled"] = "return_weights on a small problem: the reference is simpler and exact"
        return "reference", why
    if p.score_mod:
        custom_grad = p.requires_grad and not p.score_mod_traceable
        if "tiled" in ok and big and not custom_grad:
            why["reference"] = (f"{p.elements:,} logits: the tiled kernel never materializes "
                                f"them")
            return "tiled", why
        why["tiled"] = ("a custom score_mod callable under autograd: tensors it captures "
                        "may not all be found (use attnkit.score_mods, or backend='tiled')"
                        if custom_grad and big else
                        f"only {p.elements:,} logits: the reference's one matmul is faster")
        return "reference", why
    if (p.block_sparsity is not None and p.block_sparsity >= TILED_MIN_SPARSITY
            and "tiled" in ok and "sdpa" in ok):
        why["sdpa"] = (f"a mask_mod with block sparsity {p.block_sparsity:.2f} would run "
                       f"dense; tiled skips the empty tiles")
        why["reference"] = "tiled is preferred"
        return "tiled", why
    if "sdpa" in ok:
        for name in ok - {"sdpa"}:
            why[name] = ("sdpa is preferred" if p.block_sparsity is None else
                         f"sdpa is preferred at block sparsity {p.block_sparsity:.2f}")
        return "sdpa", why
    if "tiled" in ok and big:
        why["reference"] = "tiled is preferred"
        return "tiled", why
    why.update({name: "reference is preferred" for name in ok - {"reference"}})
    return "reference", why


def choose(problem: Problem, backend: str = "auto") -> Decision:
    """Pick the backend for ``problem``.

    Args:
        backend: ``"auto"`` or the name of a backend in :data:`BACKENDS`.

    Raises:
        ValueError: an unknown backend name, or a named backend that refuses the
            problem (the message gives its reason).
    """
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {backend!r}")
    refusals = {name: BACKENDS[name](problem) for name in BACKENDS}
    if backend != "auto":
        reason = refusals[backend]
        if reason is not None:
            raise ValueError(f"backend={backend!r} cannot run this call: {reason}")
        chosen, why = backend, {}
    else:
        chosen, why = _auto(problem, {n for n, r in refusals.items() if r is None})
    refused = {name: reason or why.get(name, "not requested")
               for name, reason in refusals.items() if name != chosen}
    return Decision(chosen, refused)
