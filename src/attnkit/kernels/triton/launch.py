"""Host side of the Triton backend: tile sizes, input checks, launches and autograd.

See :mod:`attnkit.kernels.triton` for the algorithm and where it deviates from the paper.
"""

from __future__ import annotations

import dataclasses

import torch

from attnkit._validate import check_float, check_int
from attnkit.kernels.spec import KernelSpec
from attnkit.kernels.triton.backward import bwd_delta_kernel, bwd_kv_kernel, bwd_q_kernel
from attnkit.kernels.triton.forward import fwd_kernel
from attnkit.kernels.triton.jit import tl, triton

__all__ = ["TileSizes", "default_tiles", "triton_attention", "triton_attention_forward",
           "triton_refusal", "interpreted", "SUPPORTED_DTYPES", "MAX_HEAD_DIM"]

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256
_MAX_GRID_Y = 65535  # CUDA limit of the second grid axis, which carries B * H


@dataclasses.dataclass(frozen=True)
class TileSizes:
    """Tile shape and launch options of one kernel launch.

    ``block_m`` is the number of query rows and ``block_n`` the number of keys in
    one tile (powers of two, at least 16). The forward and dQ kernels give each
    program ``block_m`` query rows; the dK/dV kernel gives each program
    ``block_n`` keys.
    """

    block_m: int
    block_n: int
    num_warps: int = 4  # ignored by the interpreter
    num_stages: int = 2  # software-pipelining depth of the tile loop (GPU only)

    def __post_init__(self):
        for name in ("block_m", "block_n"):
            value = getattr(self, name)
            check_int(value, name, minimum=16)
            if value & (value - 1):
                raise ValueError(f"{name} must be a power of two >= 16, got {value!r}")


def interpreted() -> bool:
    """Whether the kernels were defined under ``TRITON_INTERPRET=1`` (read at import)."""
    return type(fwd_kernel).__name__ == "InterpretedFunction"


def default_tiles(dtype: torch.dtype, head_dim: int, backward: bool) -> TileSizes:
    """Tile sizes used when the caller passes none.

    Chosen to fit the registers and shared memory of an A100/H100 (not tuned on
    this machine); the interpreter gets 16 x 16 tiles so small test problems
    still cover several tiles.
    """
    if interpreted():
        return TileSizes(16, 16)
    wide = head_dim > 64
    if dtype == torch.float32:
        return TileSizes(32, 32, num_warps=4, num_stages=2)
    if head_dim > 128:
        return TileSizes(32, 32, num_warps=8, num_stages=2)
    if backward:
        return TileSizes(32, 64, num_warps=8 if wide else 4, num_stages=2)
    return TileSizes(128, 64, num_warps=8 if wide else 4, num_stages=3 if not wide else 2)


def triton_refusal(q_dtype: torch.dtype, device_type: str, spec_or_reason: KernelSpec | str,
                   *, head_dim: int | None = None, v_dim: int | None = None) -> str | None:
    """Why :func:`triton_attention` cannot run a call, or None when it can.

    Args:
        q_dtype: dtype of ``q`` (and ``k``, ``v``).
        device_type: ``q.device.type``.
        spec_or_reason: the functional layer's description of the mask and
            score_mod (``CallPlan.kernel_spec()``): a
            :class:`~attnkit.kernels.spec.KernelSpec`, or the reason there is none.
        head_dim, v_dim: ``D`` and ``Dv`` when known (both at most 256).
    """
    if triton is None:
        return "triton is not installed: install attnkit[triton]"
    if device_type != "cuda" and not interpreted():
        return (f"the Triton kernels need a CUDA device, got device type {device_type!r} "
                f"(CPU tensors run only when TRITON_INTERPRET=1 is set before "
                f"attnkit.kernels.triton.launch is first imported)")
    if q_dtype not in SUPPORTED_DTYPES:
        return f"dtype {q_dtype} is not supported (float16, bfloat16 or float32)"
    if (q_dtype == torch.bfloat16 and device_type == "cuda" and not interpreted()
            and not torch.cuda.is_bf16_supported()):
        return "bfloat16 needs a GPU of compute capability 8.0 or newer"
    if isinstance(spec_or_reason, str):
        return spec_or_reason
    for name, dim in (("head_dim", head_dim), ("v_dim", v_dim)):
        if dim is not None and dim > MAX_HEAD_DIM:
            return f"{name} {dim} exceeds the kernel's maximum of {MAX_HEAD_DIM}"
    return None


def _require_triton() -> None:
    if triton is None:
        raise ImportError("the Triton attention kernel needs triton: install attnkit[triton]")


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: KernelSpec,
                  scale: float) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a 4-D tensor (B, H, L, D), got {got}")
        if t.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"{name} must be float16, bfloat16 or float32, got {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    B, Hq, Lq, D = q.shape
    if k.shape[0] != B or v.shape[0] != B:
        raise ValueError(f"batch sizes differ: q {B}, k {k.shape[0]}, v {v.shape[0]}")
    if k.shape[3] != D:
        raise ValueError(f"k head dim {k.shape[3]} != q head dim {D}")
    if v.shape[1] != k.shape[1] or v.shape[2] != k.shape[2]:
        raise ValueError(f"v (B, Hkv, Lk, Dv) = {tuple(v.shape)} does not match "
                         f"k {tuple(k.shape)} in heads and length")
    if Hq % k.shape[1] != 0:
        raise ValueError(f"q heads {Hq} must be a multiple of k/v heads {k.shape[1]}")
    if max(D, v.shape[3]) > MAX_HEAD_DIM:
        raise ValueError(f"head dims (D={D}, Dv={v.shape[3]}) must be <= {MAX_HEAD_DIM}")
    if B * Hq > _MAX_GRID_Y:
        raise ValueError(f"B * Hq = {B * Hq} exceeds the launch grid's limit of {_MAX_GRID_Y}")
    if not isinstance(spec, KernelSpec):
        raise TypeError(f"spec must be a KernelSpec, got {type(spec).__name__}")
    check_float(scale, "scale")
    slopes = spec.score.alibi_slopes
    if slopes is not None and (slopes.dim() != 1 or slopes.shape[0] < Hq):
        raise ValueError(f"alibi slopes must hold one entry per query head ({Hq}), "
                         f"got shape {tuple(slopes.shape)}")
    mask = spec.mask
    if mask.kv_lengths is not None and tuple(mask.kv_lengths.shape) != (B,):
        raise ValueError(f"kv_lengths must have shape ({B},), got {tuple(mask.kv_lengths.shape)}")
    if (mask.q_doc_ids is None) != (mask.kv_doc_ids is None):
        raise ValueError("q_doc_ids and kv_doc_ids must be given together")
    if mask.q_doc_ids is not None and (tuple(mask.q_doc_ids.shape) != (B, Lq)
                                       or tuple(mask.kv_doc_ids.shape) != (B, k.shape[2])):
        raise ValueError(f"doc ids must have shapes ({B}, {Lq}) and ({B}, {k.shape[2]}), got "
                         f"{tuple(mask.q_doc_ids.shape)} and {tuple(mask.kv_doc_ids.shape)}")
    if mask.window is not None and mask.window[0] < 1:
        raise ValueError(f"window size must be >= 1, got {mask.window[0]}")


def _spec_args(spec: KernelSpec, q: torch.Tensor, kv_len: int) -> tuple[list, dict]:
    """Device tensors and scalar/constexpr arguments shared by the attention kernels."""
    device = q.device
    placeholder = torch.zeros(1, dtype=torch.int32, device=device)
    mask, score = spec.mask, spec.score
    slopes = (placeholder.float() if score.alibi_slopes is None else
              score.alibi_slopes.to(device=device, dtype=torch.float32).contiguous())
    kv_lengths = (placeholder if mask.kv_lengths is None else
                  mask.kv_lengths.to(device).clamp(0, kv_len).to(torch.int32).contiguous())
    has_doc = mask.q_doc_ids is not None
    q_doc = (mask.q_doc_ids.to(device=device, dtype=torch.int64).contiguous() if has_doc
             else placeholder)
    kv_doc = (mask.kv_doc_ids.to(device=device, dtype=torch.int64).contiguous() if has_doc
              else placeholder)
    size, window_causal, window_offset = mask.window if mask.window is not None else (1, True, 0)
    scalars = dict(
        causal_offset=int(mask.causal_offset or 0), win_size=int(size),
        win_offset=int(window_offset), alibi_q_offset=int(score.alibi_q_offset),
        softcap=float(score.softcap or 1.0),
        HAS_CAUSAL=mask.causal_offset is not None, HAS_WINDOW=mask.window is not None,
        WINDOW_CAUSAL=bool(window_causal), HAS_KV_LENGTHS=mask.kv_lengths is not None,
        HAS_DOC=has_doc, HAS_ALIBI=score.alibi_slopes is not None,
        ALIBI_SYMMETRIC=bool(score.alibi_symmetric), HAS_SOFTCAP=score.softcap is not None,
        DTYPE=_TL_DTYPES[q.dtype],
        # The interpreter's dot multiplies raw bfloat16 bits: give it float32 operands.
        OP_DTYPE=tl.float32 if interpreted() else _TL_DTYPES[q.dtype],
        # float32 inputs: full-precision products, not TF32 (torch's matmul default too).
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
    )
    return [slopes, kv_lengths, q_doc, kv_doc], scalars


_TL_DTYPES = {} if tl is None else {
    torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


def _head_blocks(q: torch.Tensor, v: torch.Tensor) -> dict:
    return dict(BLOCK_D=max(16, triton.next_power_of_2(q.shape[3])),
                BLOCK_DV=max(16, triton.next_power_of_2(v.shape[3])))


def _forward(q, k, v, spec, scale, tiles):
    """``out, lse`` and, for the backward, each row's max logit and 1 / sum of weights."""
    _require_triton()
    _check_inputs(q, k, v, spec, scale)
    B, Hq, Lq, D = q.shape
    Hkv, Lk, Dv = k.shape[1], k.shape[2], v.shape[3]
    tiles = tiles or default_tiles(q.dtype, max(D, Dv), backward=False)
    out = torch.empty(B, Hq, Lq, Dv, dtype=q.dtype, device=q.device)
    lse, row_max, row_inv_sum = torch.empty(3, B, Hq, Lq, dtype=torch.float32,
                                            device=q.device)  # each (B, Hq, Lq)
    if out.numel() == 0:
        return out.zero_(), lse.fill_(float("-inf")), row_max.fill_(float("inf")), \
            row_inv_sum.zero_()
    tensors, scalars = _spec_args(spec, q, Lk)
    grid = (triton.cdiv(Lq, tiles.block_m), B * Hq)
    fwd_kernel[grid](
        q, k, v, out, lse, row_max, row_inv_sum, *tensors,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        Hq, Hq // Hkv, Lq, Lk, D, Dv, float(scale), **scalars,
        BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n, **_head_blocks(q, v),
        num_warps=tiles.num_warps, num_stages=tiles.num_stages)
    return out, lse, row_max, row_inv_sum


def triton_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             spec: KernelSpec, scale: float, *,
                             tiles: TileSizes | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused attention forward, without an autograd graph.

    Args:
        q: ``(B, Hq, Lq, D)``; k: ``(B, Hkv, Lk, D)``; v: ``(B, Hkv, Lk, Dv)``;
            one dtype (float16, bfloat16 or float32), any strides. Query head ``h``
            reads key/value head ``h // (Hq // Hkv)``.
        spec: mask and score_mod description (see :mod:`attnkit.kernels.spec`).
        scale: logit multiplier.
        tiles: tile sizes; :func:`default_tiles` when None.

    Returns:
        ``out (B, Hq, Lq, Dv)`` in the input dtype (zeros on rows with nothing to
        attend to) and ``lse (B, Hq, Lq)`` float32, the natural-log log-sum-exp of
        the scaled, score-modded, masked logits (``-inf`` on those rows).
    """
    out, lse, _, _ = _forward(q, k, v, spec, scale, tiles)
    return out, lse


def _backward(dout, q, k, v, out, row_max, row_inv_sum, spec, scale, tiles):
    B, Hq, Lq, D = q.shape
    Hkv, Lk, Dv = k.shape[1], k.shape[2], v.shape[3]
    tiles = tiles or default_tiles(q.dtype, max(D, Dv), backward=True)
    dq = torch.empty_like(q, memory_format=torch.contiguous_format)
    dk = torch.empty_like(k, memory_format=torch.contiguous_format)
    dv = torch.empty_like(v, memory_format=torch.contiguous_format)
    if q.numel() == 0 or k.numel() == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    tensors, scalars = _spec_args(spec, q, Lk)
    delta = torch.empty(B, Hq, Lq, dtype=torch.float32, device=q.device)
    bwd_delta_kernel[(triton.cdiv(Lq, tiles.block_m), B * Hq)](
        out, dout, delta, *out.stride(), *dout.stride(), Hq, Lq, Dv,
        BLOCK_M=tiles.block_m, BLOCK_DV=_head_blocks(q, v)["BLOCK_DV"],
        ACC_DTYPE=tl.float64 if q.dtype == torch.float32 else tl.float32)
    common = dict(**scalars, BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n,
                  **_head_blocks(q, v), num_warps=tiles.num_warps, num_stages=tiles.num_stages)
    sizes = (Hq, Hq // Hkv, Lq, Lk, D, Dv, float(scale))
    bwd_kv_kernel[(triton.cdiv(Lk, tiles.block_n), B * Hkv)](
        q, k, v, dout, row_max, row_inv_sum, delta, dk, dv, *tensors,
        *q.stride(), *k.stride(), *v.stride(), *dout.stride(), *dk.stride(), *dv.stride(),
        *sizes, **common)
    bwd_q_kernel[(triton.cdiv(Lq, tiles.block_m), B * Hq)](
        q, k, v, dout, row_max, row_inv_sum, delta, dq, *tensors,
        *q.stride(), *k.stride(), *v.stride(), *dout.stride(), *dq.stride(),
        *sizes, **common)
    return dq, dk, dv


class _TritonAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, spec, scale, tiles):
        out, lse, row_max, row_inv_sum = _forward(q, k, v, spec, scale, tiles)
        ctx.save_for_backward(q, k, v, out, row_max, row_inv_sum)
        ctx.spec, ctx.scale, ctx.tiles = spec, scale, tiles
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, row_max, row_inv_sum = ctx.saved_tensors
        dq, dk, dv = _backward(dout, q, k, v, out, row_max, row_inv_sum, ctx.spec, ctx.scale,
                               ctx.tiles)
        return dq, dk, dv, None, None, None


def triton_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: KernelSpec,
                     scale: float, *, tiles: TileSizes | None = None,
                     return_lse: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Fused attention with autograd (FlashAttention-2 forward and backward).

    Args:
        q: ``(B, Hq, Lq, D)``; k: ``(B, Hkv, Lk, D)``; v: ``(B, Hkv, Lk, Dv)``;
            one dtype (float16, bfloat16 or float32), any strides, ``Hq % Hkv == 0``
            (query head ``h`` reads key/value head ``h // (Hq // Hkv)``).
        spec: mask and score_mod description (see :mod:`attnkit.kernels.spec`).
        scale: logit multiplier.
        tiles: tile sizes for forward and backward; per-pass defaults when None.
        return_lse: also return ``lse (B, Hq, Lq)`` float32 (no gradient), as
            :func:`triton_attention_forward` does, e.g. to rebuild chosen weights.

    Returns:
        ``out (B, Hq, Lq, Dv)`` in the input dtype (or ``(out, lse)``). Gradients
        reach ``q``, ``k`` and ``v`` (not the ALiBi slopes); rows with nothing to
        attend to give zeros in the output and in the gradients.

    Example (needs triton and a CUDA device, or ``TRITON_INTERPRET=1``)::

        spec = KernelSpec(MaskSpec(causal_offset=0), ScoreSpec())
        out = triton_attention(q, k, v, spec, scale=q.shape[-1] ** -0.5)
    """
    _require_triton()
    out, lse = _TritonAttention.apply(q, k, v, spec, scale, tiles)
    return (out, lse) if return_lse else out
