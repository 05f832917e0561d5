"""The ``triton`` registry entry. Triton itself is imported only when a call reaches the
kernel or its refusal, so listing the backends does not import it."""

from __future__ import annotations

import importlib.util
import os

import torch

from attnkit.kernels.backend import Backend, Bid
from attnkit.kernels.problem import Problem
from attnkit.kernels.spec import KernelSpec, MaskSpec, ScoreSpec

__all__ = ["BACKEND"]


def _availability() -> str | None:
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed: install attnkit[triton]"
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        return ("no CUDA device: the Triton kernels run on CPU only in Triton's interpreter "
                "(TRITON_INTERPRET=1, for tests)")
    return None


def _refusal(p: Problem) -> str | None:
    missing = _availability()
    if missing is not None:
        return missing
    if p.dropout_p > 0.0:
        return "dropout_p > 0: the Triton kernel has no dropout"
    if p.normalize != "softmax":
        return f"normalize={p.normalize!r}: the online softmax does not apply"
    from attnkit.kernels.triton.launch import triton_refusal  # imports triton

    # The refusal only needs to know whether a spec exists; its contents do not matter.
    spec = p.spec_refusal if p.spec_refusal is not None else KernelSpec(MaskSpec(), ScoreSpec())
    return triton_refusal(p.dtype, p.device_type, spec, head_dim=p.head_dim, v_dim=p.v_dim)


def _run(q, k, v, call):
    from attnkit.kernels.triton.launch import triton_attention  # imports triton

    out, lse = triton_attention(q, k, v, call.kernel_spec(), call.scale, return_lse=True)
    return out, (call.weights_from_lse(lse.detach()) if call.return_weights else None)


def _bid(p: Problem) -> Bid:
    if p.device_type != "cuda":
        return Bid(-1, "CPU tensors run only in Triton's interpreter (for tests, far too slow)")
    if p.mask == "mask_mod" or p.score_mod or p.return_weights:
        # Where the dense kernels would run a structured mask densely, cannot take the
        # score_mod, or cannot give weights back, the fused kernel earns its place.
        return Bid(5, "runs structured masks and score mods fused on this GPU")
    return Bid(0, "the fused dense kernels already cover dense and causal attention on the GPU")


BACKEND = Backend(
    name="triton",
    summary="FlashAttention-2 in Triton (CUDA): structured masks, ALiBi, softcap, GQA",
    refusal=_refusal, run=_run, bid=_bid, availability=_availability,
)
