"""The Triton FlashAttention-2 kernel against the float64 oracle (DESIGN.md section 4).

Without CUDA the kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1``,
set below before the kernel module is imported), which is slow: the shapes here
stay small (L <= 48, D <= 64, B * H <= 4) and use 16 x 16 tiles, so every problem
still spans several tiles and exercises block skipping. The ``gpu`` tests run
realistic sizes on a CUDA device.

Every case is checked three ways: the kernel and the same-dtype reference against
a float64 golden run of :func:`attnkit.functional.reference.reference_attention`
with the equivalent dense mask (``conftest.assert_oracle_close``), for the output
and for dq, dk, dv.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable

import pytest
import torch

if not torch.cuda.is_available():
    # Triton reads TRITON_INTERPRET when it defines a jit function: its own library
    # functions (tl.max, tl.sum) at `import triton`, ours when the kernel module is
    # imported. Both must happen after this line.
    _lang = sys.modules.get("triton.language")
    if _lang is not None and type(_lang.standard.max).__name__ != "InterpretedFunction":
        pytest.fail("triton was imported before TRITON_INTERPRET=1 was set (importing "
                    "torch.nn.attention does that), so the interpreter cannot run its "
                    "kernels on CPU: set os.environ['TRITON_INTERPRET'] = '1' at the top of "
                    "tests/conftest.py when CUDA is unavailable", pytrace=False)
    os.environ["TRITON_INTERPRET"] = "1"

pytest.importorskip("triton")

from attnkit.functional import masks, score_mods  # noqa: E402
from attnkit.functional._plan import CallPlan  # noqa: E402
from attnkit.functional.masks import index_grids, materialize  # noqa: E402
from attnkit.functional.reference import reference_attention  # noqa: E402
from attnkit.kernels.spec import KernelSpec, MaskSpec, ScoreSpec  # noqa: E402
from attnkit.kernels.triton import launch as ta  # noqa: E402
from attnkit.testing import assert_oracle_close  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SMALL_TILES = ta.TileSizes(16, 16)


def _dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ---------------------------------------------------------------------------
# cases


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    batch: int = 1
    q_heads: int = 1
    kv_heads: int = 1
    q_len: int = 32
    kv_len: int = 32
    head_dim: int = 32
    v_dim: int = 32
    mask: Callable | None = None  # Case -> mask_mod
    score: Callable | None = None  # Case -> score_mod
    layout: str = "bhld"  # "blhd": q, k, v are transposed (B, L, H, D) views
    tiles: ta.TileSizes = SMALL_TILES

    def mask_mod(self):
        return None if self.mask is None else self.mask(self)

    def score_mod(self):
        return None if self.score is None else self.score(self)


def _lower_right(c: Case):
    return masks.causal("lower_right", q_len=c.q_len, kv_len=c.kv_len)


def _packed_documents(c: Case):
    ids = torch.tensor([0] * 10 + [1] * 21 + [2] * (c.q_len - 31))  # (L,)
    return masks.document(ids) & masks.causal()


def _cross_documents(c: Case):
    # Query document 3 has no keys: its rows are empty.
    q_ids = torch.tensor([0] * 8 + [3] * 6 + [1] * (c.q_len - 14))  # (Lq,)
    kv_ids = torch.tensor([0] * 15 + [1] * (c.kv_len - 15))  # (Lk,)
    return masks.document(q_ids[None].expand(c.batch, -1), kv_ids[None].expand(c.batch, -1))


CASES = [
    Case("dense-H2-Lq40-Lk33", q_heads=2, kv_heads=2, q_len=40, kv_len=33),
    Case("d59-dv40-Lq35-Lk46", q_len=35, kv_len=46, head_dim=59, v_dim=40),
    Case("causal-upper_left-Lq37-Lk45", q_len=37, kv_len=45, mask=lambda c: masks.causal()),
    Case("causal-square-L48", q_len=48, kv_len=48, mask=lambda c: masks.causal()),
    Case("causal-lower_right-Lq20<Lk45", q_len=20, kv_len=45, mask=_lower_right),
    Case("causal-lower_right-Lq45>Lk20-empty-rows", q_len=45, kv_len=20, mask=_lower_right,
         tiles=ta.TileSizes(32, 16)),
    Case("window12-causal-L48", q_len=48, kv_len=48,
         mask=lambda c: masks.sliding_window(12)),
    Case("window20-bidirectional-lower_right-Lq30-Lk44", q_len=30, kv_len=44,
         mask=lambda c: masks.sliding_window(20, causal=False, alignment="lower_right",
                                             q_len=c.q_len, kv_len=c.kv_len)),
    Case("key_padding-zero-length-B2", batch=2, q_heads=1, kv_heads=1, q_len=24, kv_len=40,
         mask=lambda c: masks.key_padding(torch.tensor([0, 27]))),
    Case("key_padding-and-lower_right-B2", batch=2, q_heads=1, kv_heads=1, q_len=30,
         kv_len=41, mask=lambda c: masks.key_padding(torch.tensor([41, 17])) & _lower_right(c)),
    Case("documents-causal-L44", q_len=44, kv_len=44, mask=_packed_documents),
    Case("documents-cross-empty-rows-Lq30-Lk36", q_len=30, kv_len=36, mask=_cross_documents),
    Case("alibi-causal-q_offset-H2", q_heads=2, kv_heads=2, q_len=36, kv_len=36,
         mask=lambda c: masks.causal(),
         score=lambda c: score_mods.alibi(score_mods.alibi_slopes(c.q_heads) * 4, q_offset=3)),
    Case("alibi-symmetric-H2-Lq30-Lk40", q_heads=2, kv_heads=2, q_len=30, kv_len=40,
         score=lambda c: score_mods.alibi(score_mods.alibi_slopes(c.q_heads), symmetric=True)),
    Case("softcap2-Lq40-Lk36", q_len=40, kv_len=36, score=lambda c: score_mods.softcap(2.0)),
    Case("gqa4to1-causal-blhd-strides", q_heads=4, kv_heads=1, q_len=32, kv_len=32,
         mask=lambda c: masks.causal(), layout="blhd"),
]


def _inputs(c: Case, dtype: torch.dtype):
    """q (B, Hq, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv), dout (B, Hq, Lq, Dv)."""
    def make(batch, heads, length, dim):
        if c.layout == "blhd":
            return torch.randn(batch, length, heads, dim).to(dtype).transpose(1, 2)
        return torch.randn(batch, heads, length, dim).to(dtype)

    q = make(c.batch, c.q_heads, c.q_len, c.head_dim)
    k = make(c.batch, c.kv_heads, c.kv_len, c.head_dim)
    v = make(c.batch, c.kv_heads, c.kv_len, c.v_dim)
    dout = torch.randn(c.batch, c.q_heads, c.q_len, c.v_dim).to(dtype)
    return tuple(t.to(DEVICE) for t in (q, k, v, dout))


def _spec(c: Case, q: torch.Tensor) -> KernelSpec:
    """The spec attention() hands the kernel for this case's mask_mod and score_mod."""
    spec = CallPlan.build(q, c.kv_len, c.mask_mod(), None, c.score_mod()).kernel_spec()
    assert isinstance(spec, KernelSpec), spec
    return spec


def _dense(c: Case) -> torch.Tensor | None:
    mod = c.mask_mod()
    if mod is None:
        return None
    return materialize(mod, c.batch, c.q_heads, c.q_len, c.kv_len, DEVICE)  # (B|1, H|1, Lq, Lk)


def _grads(out, inputs, dout):
    return torch.autograd.grad(out, inputs, dout)


def _reference_run(q, k, v, dout, dense, scale, score_mod):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out, _ = reference_attention(q, k, v, mask=dense, scale=scale, score_mod=score_mod)
    return out.detach(), _grads(out, (q, k, v), dout)


def _triton_run(q, k, v, dout, spec, scale, tiles, return_lse=False):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out, lse = ta.triton_attention(q, k, v, spec, scale, tiles=tiles, return_lse=True)
    grads = _grads(out, (q, k, v), dout)
    return (out.detach(), grads, lse) if return_lse else (out.detach(), grads)


def _check_three_ways(q, k, v, dout, spec, dense, score_mod, scale, tiles):
    """Run the kernel, the same-dtype reference and the float64 golden reference;
    assert the three-way rule on out, dq, dk, dv.

    Returns:
        The kernel's ``(out, (dq, dk, dv), lse)`` and the golden ``(out, (dq, dk, dv))``.
    """
    out, grads, lse = _triton_run(q, k, v, dout, spec, scale, tiles, return_lse=True)
    ref_out, ref_grads = _reference_run(q, k, v, dout, dense, scale, score_mod)
    gold_out, gold_grads = _reference_run(q.double(), k.double(), v.double(), dout.double(),
                                          dense, scale, score_mod)
    assert out.dtype == q.dtype and out.shape == gold_out.shape
    assert_oracle_close(out, ref_out, gold_out, kind="forward", what="out")
    for name, cand, ref, gold in zip(("dq", "dk", "dv"), grads, ref_grads, gold_grads,
                                     strict=True):
        assert cand.dtype == q.dtype
        assert_oracle_close(cand, ref, gold, kind="backward", what=name)
    return (out, grads, lse), (gold_out, gold_grads)


def _reference_lse(q, k, dense, scale, score_mod) -> torch.Tensor:
    """``logsumexp`` of the masked, score-modded logits, ``(B, Hq, Lq)``."""
    B, Hq, Lq, _ = q.shape
    group = Hq // k.shape[1]
    k = k.repeat_interleave(group, dim=1)  # (B, Hq, Lk, D)
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, Hq, Lq, Lk)
    if score_mod is not None:
        scores = score_mod(scores, *index_grids(B, Hq, Lq, k.shape[2], q.device))
    if dense is not None:
        scores = scores.masked_fill(~dense, float("-inf"))
    return torch.logsumexp(scores, dim=-1)


# ---------------------------------------------------------------------------
# numerics, three ways


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=_dtype_id)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_output_and_grads_match_oracle_three_ways(case, dtype):
    q, k, v, dout = _inputs(case, dtype)
    dense, score_mod, scale = _dense(case), case.score_mod(), case.head_dim ** -0.5

    (out, grads, lse), _ = _check_three_ways(q, k, v, dout, _spec(case, q), dense,
                                             score_mod, scale, case.tiles)

    # lse: natural log-sum-exp of the masked logits, -inf exactly on empty rows,
    # where the output and dq are zeros.
    gold_lse = _reference_lse(q.double(), k.double(), dense, scale, score_mod)
    ref_lse = _reference_lse(q.float(), k.float(), dense, scale, score_mod)
    empty = torch.isneginf(gold_lse)  # (B, Hq, Lq)
    assert lse.dtype == torch.float32 and torch.equal(torch.isneginf(lse), empty)
    assert_oracle_close(lse[~empty], ref_lse[~empty], gold_lse[~empty], what="lse")
    assert (out[empty] == 0).all() and (grads[0][empty] == 0).all()


def test_float16_matches_oracle_three_ways():
    case = Case("gqa2-causal-fp16", q_heads=2, kv_heads=1, q_len=32, kv_len=32,
                mask=lambda c: masks.causal())
    q, k, v, dout = _inputs(case, torch.float16)
    _check_three_ways(q, k, v, dout, _spec(case, q), _dense(case), None,
                      case.head_dim ** -0.5, case.tiles)


def _alibi_then_softcap(slopes, cap):
    alibi = score_mods.alibi(slopes)
    softcap = score_mods.softcap(cap)
    return lambda score, b, h, q_idx, kv_idx: softcap(alibi(score, b, h, q_idx, kv_idx),
                                                      b, h, q_idx, kv_idx)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=_dtype_id)
def test_alibi_then_softcap_with_every_mask_term(dtype):
    """A spec no single mask_mod/score_mod yields: every term at once, built directly."""
    case = Case("all-terms", batch=2, q_heads=2, kv_heads=1, q_len=32, kv_len=36)
    q, k, v, dout = _inputs(case, dtype)
    slopes = torch.tensor([0.25, 0.0625])  # (Hq,)
    lengths = torch.tensor([36, 25])
    q_ids = torch.tensor([[0] * 16 + [1] * 16, [0] * 32])  # (B, Lq)
    kv_ids = torch.tensor([[0] * 20 + [1] * 16, [0] * 36])  # (B, Lk)
    offset = case.kv_len - case.q_len
    spec = KernelSpec(
        MaskSpec(causal_offset=offset, window=(24, False, offset), kv_lengths=lengths,
                 q_doc_ids=q_ids, kv_doc_ids=kv_ids),
        ScoreSpec(alibi_slopes=slopes, alibi_q_offset=0, softcap=3.0))
    mask_mod = (_lower_right(case) & masks.sliding_window(
        24, causal=False, alignment="lower_right", q_len=case.q_len, kv_len=case.kv_len)
        & masks.key_padding(lengths) & masks.document(q_ids, kv_ids))
    dense = materialize(mask_mod, case.batch, case.q_heads, case.q_len, case.kv_len, DEVICE)
    score_mod, scale = _alibi_then_softcap(slopes, 3.0), case.head_dim ** -0.5

    (out, _, lse), _ = _check_three_ways(q, k, v, dout, spec, dense, score_mod, scale,
                                         SMALL_TILES)

    forward_out, forward_lse = ta.triton_attention_forward(q, k, v, spec, scale,
                                                           tiles=SMALL_TILES)
    assert torch.equal(forward_out, out) and torch.equal(forward_lse, lse)


# ---------------------------------------------------------------------------
# block skipping: tiles outside a block's range are never read


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter computes on NaN
@pytest.mark.parametrize("mask_name", ["causal", "window12"])
def test_skipped_tiles_are_never_read(mask_name):
    """NaN in key/value tiles that a block must skip leaves that block's rows exact.

    With 16 x 16 tiles and L = 48 the causal first query block (rows 0-15) needs
    key tile 0 only and the last key block (keys 32-47) is seen by the last query
    block only; a causal window of 12 lets the last query block (rows 32-47) skip
    key tile 0 (keys 0-15), and the first key block is seen by query blocks 0-1.
    """
    case = Case(mask_name, q_len=48, kv_len=48,
                mask=(lambda c: masks.causal()) if mask_name == "causal"
                else (lambda c: masks.sliding_window(12)))
    q, k, v, dout = _inputs(case, torch.float32)
    spec, scale = _spec(case, q), case.head_dim ** -0.5
    clean_out, (clean_dq, clean_dk, clean_dv) = _triton_run(q, k, v, dout, spec, scale,
                                                            SMALL_TILES)
    if mask_name == "causal":
        rows, keys = slice(0, 16), slice(16, 48)  # query rows vs the key tiles they skip
        key_rows, query_tiles = slice(32, 48), slice(0, 32)  # keys vs query tiles they skip
    else:
        rows, keys = slice(32, 48), slice(0, 16)
        key_rows, query_tiles = slice(0, 16), slice(32, 48)
    poisoned_k, poisoned_v = k.clone(), v.clone()
    poisoned_k[:, :, keys] = float("nan")
    poisoned_v[:, :, keys] = float("nan")
    out, (dq, _, _) = _triton_run(q, poisoned_k, poisoned_v, dout, spec, scale, SMALL_TILES)
    assert torch.equal(out[:, :, rows], clean_out[:, :, rows])
    assert torch.equal(dq[:, :, rows], clean_dq[:, :, rows])

    poisoned_q, poisoned_dout = q.clone(), dout.clone()
    poisoned_q[:, :, query_tiles] = float("nan")
    poisoned_dout[:, :, query_tiles] = float("nan")
    # The saved out/lse of the poisoned rows are NaN, so their delta is NaN too:
    # only the kernel that walks query tiles per key block can keep dk, dv clean.
    out, (_, dk, dv) = _triton_run(poisoned_q, k, v, poisoned_dout, spec, scale, SMALL_TILES)
    assert torch.equal(dk[:, :, key_rows], clean_dk[:, :, key_rows])
    assert torch.equal(dv[:, :, key_rows], clean_dv[:, :, key_rows])


# ---------------------------------------------------------------------------
# refusals and input checks


def test_refusal_reasons():
    spec = KernelSpec(MaskSpec(causal_offset=0), ScoreSpec())
    assert ta.triton_refusal(torch.bfloat16, DEVICE, spec) is None
    assert ta.triton_refusal(torch.float32, DEVICE, spec, head_dim=59, v_dim=256) is None
    assert "float64" in ta.triton_refusal(torch.float64, DEVICE, spec)
    reason = "a dense tensor mask has no structure a kernel can use; pass a mask_mod"
    assert ta.triton_refusal(torch.float16, DEVICE, reason) == reason
    assert "head_dim 512" in ta.triton_refusal(torch.float16, DEVICE, spec, head_dim=512)


def test_module_imports_and_refuses_without_triton(monkeypatch):
    for name in [n for n in sys.modules if n == "triton" or n.startswith("triton.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import triton` now fails
    monkeypatch.setitem(sys.modules, "triton", None)
    # Import the backend package afresh (the originals come back after the test).
    package = sys.modules["attnkit.kernels.triton"]
    for name in [n for n in sys.modules if n.startswith("attnkit.kernels.triton")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys.modules["attnkit.kernels"], "triton", package)
    module = importlib.import_module("attnkit.kernels.triton.launch")
    backend = importlib.import_module("attnkit.kernels.triton.backend").BACKEND
    assert module is not ta
    spec = KernelSpec(MaskSpec(), ScoreSpec())
    assert "install attnkit[triton]" in module.triton_refusal(torch.float16, "cuda", spec)
    q = torch.randn(1, 1, 4, 8)
    with pytest.raises(ImportError, match=r"attnkit\[triton\]"):
        module.triton_attention(q, q, q, spec, 1.0)
    assert "install attnkit[triton]" in backend.availability()


def test_bad_inputs_raise_with_the_argument_name():
    spec = KernelSpec(MaskSpec(), ScoreSpec())
    q = torch.randn(1, 3, 8, 16, device=DEVICE)
    kv = torch.randn(1, 2, 8, 16, device=DEVICE)
    with pytest.raises(ValueError, match="multiple of k/v heads"):
        ta.triton_attention_forward(q, kv, kv, spec, 0.25)
    with pytest.raises(TypeError, match="q must be float16, bfloat16 or float32"):
        ta.triton_attention_forward(q.double(), kv, kv, spec, 0.25)
    with pytest.raises(ValueError, match="k head dim"):
        ta.triton_attention_forward(q, kv[..., :8], kv, spec, 0.25)
    with pytest.raises(ValueError, match="alibi slopes"):
        ta.triton_attention_forward(kv, kv, kv, KernelSpec(MaskSpec(), ScoreSpec(
            alibi_slopes=torch.ones(1))), 0.25)
    with pytest.raises(ValueError, match="block_m must be a power of two"):
        ta.TileSizes(24, 16)


# ---------------------------------------------------------------------------
# GPU: realistic sizes


GPU_CASES = [
    # B, Hq, Hkv, L, D, causal
    (2, 8, 8, 1024, 64, False),
    (1, 8, 2, 2048, 128, True),
    (1, 4, 4, 4096, 64, True),
]


@pytest.mark.gpu
@pytest.mark.parametrize("batch,q_heads,kv_heads,length,head_dim,causal", GPU_CASES)
def test_gpu_bf16_matches_reference_and_sdpa(batch, q_heads, kv_heads, length, head_dim,
                                             causal):
    dtype = torch.bfloat16
    q = torch.randn(batch, q_heads, length, head_dim, device="cuda").to(dtype)
    k = torch.randn(batch, kv_heads, length, head_dim, device="cuda").to(dtype)
    v = torch.randn(batch, kv_heads, length, head_dim, device="cuda").to(dtype)
    dout = torch.randn(batch, q_heads, length, head_dim, device="cuda").to(dtype)
    mask_mod = masks.causal() if causal else None
    spec = CallPlan.build(q, length, mask_mod, None, None).kernel_spec()
    dense = None if mask_mod is None else materialize(mask_mod, 1, 1, length, length, "cuda")
    scale = head_dim ** -0.5

    (out, grads, _), (gold_out, gold_grads) = _check_three_ways(q, k, v, dout, spec, dense,
                                                                None, scale, None)

    group = q_heads // kv_heads
    sdpa_inputs = [t.detach().clone().requires_grad_(True) for t in
                   (q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1))]
    sdpa_out = torch.nn.functional.scaled_dot_product_attention(*sdpa_inputs, is_causal=causal,
                                                                scale=scale)
    sdpa_dq = torch.autograd.grad(sdpa_out, sdpa_inputs[0], dout)[0]
    assert_oracle_close(out, sdpa_out.detach(), gold_out, kind="forward", what="out vs sdpa")
    assert_oracle_close(grads[0], sdpa_dq, gold_grads[0], kind="backward", what="dq vs sdpa")
