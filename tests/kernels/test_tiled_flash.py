"""The tiled backend's fused path: dense and upper-left causal calls run on ATen's CPU
flash kernel (:mod:`attnkit.kernels._tiled_flash`) and must give what the batched tile
kernel gives: the same output and an exact log-sum-exp, for the backward and for ring
attention's merges."""

from __future__ import annotations

import math

import pytest
import torch

import attnkit
from attnkit import masks, score_mods
from attnkit.functional._plan import CallPlan
from attnkit.kernels import tiled
from attnkit.kernels._tiled_batch import batch_forward
from attnkit.kernels._tiled_flash import flash_causal
from attnkit.kernels.tiled import TileFns, tiled_forward
from attnkit.testing import assert_oracle_close


def _qkv(B, Hq, Hkv, Lq, Lk, D, Dv, dtype=torch.float32):
    g = torch.Generator().manual_seed(Lq * 31 + Lk)
    q = torch.randn(B, Hq, Lq, D, generator=g).to(dtype)
    k = torch.randn(B, Hkv, Lk, D, generator=g).to(dtype)
    v = torch.randn(B, Hkv, Lk, Dv, generator=g).to(dtype)
    return q, k, v


def _fns(q, kv_len, mask=None, causal=None, score_mod=None, block=(32, 32)):
    plan = CallPlan.build(q, kv_len, mask, causal, score_mod)
    fns = plan.tile_fns(*block)
    spec = plan.kernel_spec()
    fns.terms = None if isinstance(spec, str) else spec
    return fns


@pytest.mark.parametrize("kind,expected", [
    ("dense", False), ("dense-gqa", False), ("causal", True), ("causal-gqa", True),
    ("lower_right-Lq<Lk", None), ("sliding", None), ("alibi", None), ("dv", None),
    ("all-true-tensor", False), ("tensor", None), ("score-callable", None),
])
def test_which_calls_take_the_fused_kernel(kind, expected):
    Hkv = 2 if kind.endswith("gqa") else 4
    Lq = 20 if kind == "lower_right-Lq<Lk" else 40
    Dv = 24 if kind == "dv" else 16
    q, k, v = _qkv(1, 4, Hkv, Lq, 40, 16, Dv)
    mask = causal = score_mod = None
    if kind.startswith("causal"):
        causal = "upper_left"
    elif kind == "lower_right-Lq<Lk":
        causal = "lower_right"
    elif kind == "sliding":
        mask = masks.sliding_window(8)
    elif kind == "alibi":
        score_mod = score_mods.alibi(score_mods.alibi_slopes(4))
    elif kind == "all-true-tensor":
        mask = torch.ones(Lq, 40, dtype=torch.bool)
    elif kind == "tensor":
        mask = torch.rand(Lq, 40) < 0.9
    elif kind == "score-callable":
        def score_mod(s, b, h, qi, ki):
            return s * 2
    fns = _fns(q, 40, mask, causal, score_mod)
    assert flash_causal(q, k, v, fns, fns.terms, 0.25) is expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("B,Hq,Hkv,Lq,Lk,D,causal", [
    (2, 4, 4, 97, 97, 59, None),
    (1, 8, 2, 33, 97, 64, None),  # GQA: query heads stacked along the rows
    (2, 4, 4, 97, 97, 64, "upper_left"),
    (1, 2, 2, 97, 33, 59, "upper_left"),  # Lq > Lk: later rows see every key
    (2, 6, 2, 50, 70, 32, "upper_left"),  # causal GQA: one call per head of a group
    (1, 2, 2, 1, 1, 16, None),
])
def test_fused_forward_equals_the_tile_kernel_and_the_oracle(B, Hq, Hkv, Lq, Lk, D, causal,
                                                             dtype):
    q, k, v = _qkv(B, Hq, Hkv, Lq, Lk, D, D, dtype)
    fns = _fns(q, Lk, causal=causal)
    assert flash_causal(q, k, v, fns, fns.terms, 1.0) is not None
    scale = 1 / math.sqrt(D)
    out, lse = tiled_forward(q, k, v, fns, scale, 32, 32)
    want_out, want_lse = batch_forward(q, k, v, fns, scale, 32, 32, fns.terms)
    assert out.dtype == want_out.dtype and lse.dtype == want_lse.dtype
    assert out.shape == want_out.shape and lse.shape == want_lse.shape
    # The oracle: float64 logits, the same mask.
    qd, kd, vd = q.double(), k.double(), v.double()
    kd, vd = (t.repeat_interleave(Hq // Hkv, dim=1) for t in (kd, vd))
    s = qd @ kd.transpose(-1, -2) * scale  # (B, Hq, Lq, Lk)
    if causal:
        s = s.masked_fill(torch.ones(Lq, Lk, dtype=torch.bool).triu(1), float("-inf"))
    golden_lse, golden_out = s.logsumexp(-1), s.softmax(-1) @ vd
    tol = {torch.float64: 1e-12, torch.float32: 2e-5, torch.bfloat16: 2e-5}[dtype]
    torch.testing.assert_close(lse.double(), golden_lse, atol=tol, rtol=0)
    torch.testing.assert_close(out.double(), golden_out, atol=tol, rtol=0)
    torch.testing.assert_close(out, want_out, atol=tol, rtol=0)
    torch.testing.assert_close(lse, want_lse, atol=tol, rtol=0)


@pytest.mark.parametrize("scale", [0.0, -0.0, -1.5, math.inf, math.nan])
def test_scales_the_fused_kernel_cannot_take_stay_on_the_tiles(scale):
    q, k, v = _qkv(1, 2, 2, 8, 8, 16, 16)
    assert flash_causal(q, k, v, _fns(q, 8), None, scale) is None


def test_attention_uses_the_fused_kernel_and_trains_exactly(monkeypatch):
    """``attention(backend="tiled")`` without a mask goes through the fused kernel, and
    its gradients (the O(L) tiled backward from the fused lse) match the reference."""
    calls = []
    original = tiled.flash_forward

    def counting(*args):
        calls.append(args[-1])
        return original(*args)

    monkeypatch.setattr(tiled, "flash_forward", counting)
    q, k, v = _qkv(1, 4, 2, 130, 130, 32, 32, torch.float32)
    dout = torch.randn(1, 4, 130, 32)

    def run(backend, cast):
        leaves = [cast(t).requires_grad_(True) for t in (q, k, v)]
        out, _ = attnkit.attention(*leaves, backend=backend)
        return out.detach(), torch.autograd.grad(out, leaves, cast(dout))

    golden = run("reference", torch.Tensor.double)
    reference = run("reference", torch.Tensor.clone)
    candidate = run("tiled", torch.Tensor.clone)
    assert calls == [False]
    assert_oracle_close(candidate[0], reference[0], golden[0], kind="forward", what="out")
    for name, c, r, g in zip("qkv", candidate[1], reference[1], golden[1], strict=True):
        assert_oracle_close(c, r, g, kind="backward", what=f"d{name}")


def test_full_blocks_of_a_masked_problem_use_the_fused_kernel():
    """A tile function set whose plan is all FULL (an interior block of a causal ring
    schedule, say) needs no mask: fused, same answer as the tiles."""
    q, k, v = _qkv(1, 2, 2, 64, 64, 16, 16)
    fns = TileFns(mask=lambda q0, q1, k0, k1: torch.ones(1, 1, q1 - q0, k1 - k0, dtype=bool),
                  plan=torch.full((2, 2), 2, dtype=torch.int8))
    assert flash_causal(q, k, v, fns, None, 0.25) is False
    out, lse = tiled_forward(q, k, v, fns, 0.25, 32, 32)
    want_out, want_lse = batch_forward(q, k, v, fns, 0.25, 32, 32)
    torch.testing.assert_close(out, want_out, atol=2e-6, rtol=0)
    torch.testing.assert_close(lse, want_lse, atol=2e-6, rtol=0)
