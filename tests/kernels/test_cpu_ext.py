"""attnkit.kernels.cpu_ext: the compiled additive-attention and GRU-cell steps against the
same formulas in PyTorch operations (float64 values and gradients, the float32 oracle
rule), each caller's two paths against each other, the argument checks, and how loading
falls back (disabled, failed build)."""

from __future__ import annotations

import shutil
import sys
import warnings

import pytest
import torch
from torch.utils import cpp_extension

from attnkit.kernels import cpu_ext
from attnkit.nn.seq2seq.additive_gru import additive_gru_decode
from attnkit.nn.seq2seq.gru_scan import gru_scan
from attnkit.nn.seq2seq.luong_gru import luong_gru_decode
from attnkit.testing import assert_oracle_close
from attnkit.train.losses import linear_cross_entropy

BUILDABLE = (sys.platform == "linux" and shutil.which("c++") is not None
             and cpp_extension.is_ninja_available())


@pytest.fixture(scope="module")
def ext():
    module = cpu_ext.load()
    if BUILDABLE:
        # a machine that can build it must have built it: a silent fallback would hide a
        # broken kernel (and the speed it is there for)
        assert module is not None, cpu_ext.status()
    else:
        assert module is None and cpu_ext.status() != "compiled"
        pytest.skip(f"no C++ toolchain here: {cpu_ext.status()}")
    return module


def weighted_grads(outputs, inputs):
    """``outputs`` and the gradients of ``inputs`` under a fixed weighting of its last dim."""
    weights = torch.linspace(-1, 1, outputs.shape[-1], dtype=outputs.dtype)
    return (outputs, *torch.autograd.grad((outputs * weights).sum(), inputs))


def leaves(generator):
    """``rand(*shape)``: float64 leaves that require gradients, scale 0.5."""
    def rand(*shape):
        return (0.5 * torch.randn(*shape, generator=generator, dtype=torch.float64)
                ).requires_grad_()
    return rand


def assert_paths_agree(monkeypatch, run):
    """``run()`` (a tuple of tensors) with the compiled kernels, then with ``cpu_ext.load``
    answering None (every caller's PyTorch operations): equal to float64 rounding."""
    fused = run()
    monkeypatch.setattr(cpu_ext, "load", lambda: None)
    assert cpu_ext.for_tensor(torch.zeros(1, dtype=torch.float64)) is None
    plain = run()
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)


def problem(B=5, S=7, d=37, lengths=(7, 3, 1, 6, 7), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(B, S, d, generator=g, dtype=dtype)
    # the query as the fused loop passes it: a column block of a wider (B, 3H + d) product
    wide = torch.randn(B, 11 + d, generator=g, dtype=dtype)
    query = wide[:, 11:]
    score = torch.randn(d, generator=g, dtype=dtype)
    mask = torch.arange(S) < torch.tensor(lengths)[:, None]
    return keys, query, score, mask


def reference_weights(keys, query, score, mask):
    energy = torch.tanh(keys + query[:, None]) @ score  # (B, S)
    return torch.softmax(energy.masked_fill(~mask, float("-inf")), -1)


@pytest.mark.parametrize("d", [37, 64, 1])  # a vector tail, whole vectors only, one lane
def test_forward_equals_the_formula(ext, d):
    keys, query, score, mask = problem(d=d)
    weights = torch.full(mask.shape, float("nan"), dtype=keys.dtype)
    ext.additive_forward((2 * keys).contiguous(), query, 2 * score, mask, weights)
    torch.testing.assert_close(weights, reference_weights(keys, query, score, mask),
                               rtol=1e-12, atol=1e-14)
    assert (weights[~mask] == 0).all()


@pytest.mark.parametrize("d", [37, 64])
def test_backward_equals_autograd(ext, d):
    keys, query, score, mask = problem(d=d, seed=1)
    keys, query, score = (t.clone().requires_grad_() for t in (keys, query, score))
    weights = reference_weights(keys, query, score, mask)
    grad_weights = torch.randn(weights.shape, dtype=weights.dtype,
                               generator=torch.Generator().manual_seed(2))
    want = torch.autograd.grad(weights, (keys, query, score), grad_weights)
    start = torch.randn(keys.shape, dtype=keys.dtype)  # the kernel adds to what is there
    grad_keys = start.clone()
    grad_query = torch.full((keys.shape[0], 5 + d), float("nan"), dtype=keys.dtype)[:, 5:]
    grad_rows = torch.zeros(keys.shape[0], d, dtype=keys.dtype)
    with torch.no_grad():
        ext.additive_backward((2 * keys).contiguous(), query, 4 * score, weights.contiguous(),
                              grad_weights, grad_keys, grad_query, grad_rows)
        got_keys = (grad_keys - start) * (4 * score)
        got_score = 2 * grad_rows.sum(0)
    for got, expected, name in ((got_keys, want[0], "keys"), (grad_query, want[1], "query"),
                                (got_score, want[2], "score vector")):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12, msg=name)


def test_float32_within_the_oracle_rule(ext):
    """2 sigmoid(2x) - 1 in float32 against tanh in float64, within 2x of float32 tanh."""
    keys, query, score, mask = problem(B=16, S=40, d=96, lengths=tuple(range(25, 41)), seed=3)
    golden = reference_weights(keys, query, score, mask)
    reference = reference_weights(keys.float(), query.float(), score.float(), mask)
    weights = torch.empty(mask.shape)
    ext.additive_forward((2 * keys).float().contiguous(), query.float(), 2 * score.float(),
                         mask, weights)
    assert_oracle_close(weights, reference, golden, what="attention weights")


def test_float32_backward_within_the_oracle_rule(ext):
    """The backward kernel in float32 at the translate job's width (d = 384, 60 keys)
    against autograd of the tanh formula in float64, within 3x of float32 autograd."""
    keys, query, score, mask = problem(B=16, S=60, d=384, lengths=tuple(range(45, 61)), seed=4)
    grad_weights = torch.randn(mask.shape, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(5))

    def autograd(dtype):
        inputs = [t.to(dtype).requires_grad_() for t in (keys, query, score)]
        weights = reference_weights(*inputs, mask)
        return torch.autograd.grad(weights, inputs, grad_weights.to(dtype))

    golden, reference = autograd(torch.float64), autograd(torch.float32)
    doubled_keys = (2 * keys).float().contiguous()
    weights = torch.empty(mask.shape)
    ext.additive_forward(doubled_keys, query.float(), 2 * score.float(), mask, weights)
    grad_keys, grad_query = torch.zeros(keys.shape), torch.empty(query.shape)
    grad_rows = torch.zeros(query.shape)
    ext.additive_backward(doubled_keys, query.float(), 4 * score.float(), weights,
                          grad_weights.float(), grad_keys, grad_query, grad_rows)
    got = (grad_keys * (4 * score.float()), grad_query, 2 * grad_rows.sum(0))
    for name, *values in zip(("keys", "query", "score vector"), got, reference, golden,
                             strict=True):
        assert_oracle_close(*values, kind="backward", what=name)


def test_float32_logistic_function(ext):
    """The kernels' own float32 exp (range reduction and polynomial, clamped at +-87): the
    GRU step's r and z gates against the float64 logistic function within 2 float32 ulps
    over [-30, 30] (tails included: vector and scalar paths), 0/1 in saturation, no NaN."""
    H = 4099  # a scalar tail after the vectors
    saturating = torch.tensor([-1e4, -200.0, -88.0, 88.0, 200.0, 1e4], dtype=torch.float64)
    x = torch.stack([torch.linspace(-30, 30, 2 * H, dtype=torch.float64),
                     saturating.repeat(2 * H // 6 + 1)[:2 * H]])  # (2, 2H)
    rows = x.shape[0]
    gates = torch.cat([x, torch.zeros(rows, H, dtype=torch.float64)], 1).float()
    outputs = [torch.empty(rows, width) for width in (2 * H, H, H, H)]
    ext.gru_forward(gates, torch.zeros(rows, 3 * H), torch.zeros(rows, H), None, *outputs)
    got, want = outputs[0].double(), torch.sigmoid(x.float().double())
    assert not got.isnan().any()
    eps = torch.finfo(torch.float32).eps
    assert ((got[0] - want[0]).abs() <= 2 * eps * want[0]).all()
    saturated = want[1]
    assert ((got[1] - saturated).abs() <= 2e-38 + 2 * eps * saturated).all()
    assert got[1][x[1] > 0].eq(1).all()


def test_arguments_are_checked(ext):
    keys, query, score, mask = problem()
    weights = torch.empty(mask.shape, dtype=keys.dtype)
    with pytest.raises(RuntimeError, match="contiguous"):
        ext.additive_forward((2 * keys).transpose(0, 1), query, score, mask, weights)
    with pytest.raises(RuntimeError, match="dtype"):
        ext.additive_forward(2 * keys, query.float(), score, mask, weights)
    with pytest.raises(RuntimeError, match="mask"):
        ext.additive_forward(2 * keys, query, score, mask[:, :3].contiguous(), weights)


def test_decoder_paths_agree(ext, monkeypatch):
    """additive_gru_decode with the kernels and without (the PyTorch operations)."""
    g = torch.Generator().manual_seed(4)
    B, T, S, H, d = 3, 6, 9, 8, 37

    rand = leaves(g)

    mask = torch.arange(S) < torch.tensor([9, 4, 1])[:, None]
    args = (rand(T, B, 3 * H), rand(B, H), rand(B, S, H), rand(B, S, d), mask,
            rand(3 * H, H), rand(3 * H), rand(d, H), rand(3 * H, H), rand(d))
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]

    def run():
        states, contexts = additive_gru_decode(*args)
        loss = (states * torch.linspace(-1, 1, H, dtype=torch.float64)).sum() + contexts.sum()
        return (states, contexts, *torch.autograd.grad(loss, inputs))

    assert_paths_agree(monkeypatch, run)



def test_disabled_by_the_environment(monkeypatch):
    monkeypatch.setattr(cpu_ext, "_state", {})
    monkeypatch.setenv("ATTNKIT_CPU_EXT", "0")
    monkeypatch.setattr(cpu_ext, "_build", lambda: pytest.fail("built although disabled"))
    assert cpu_ext.load() is None
    assert "ATTNKIT_CPU_EXT=0" in cpu_ext.status()


def test_a_failed_build_falls_back_with_a_warning(monkeypatch):
    monkeypatch.setattr(cpu_ext, "_state", {})
    monkeypatch.delenv("ATTNKIT_CPU_EXT", raising=False)
    monkeypatch.setattr(cpu_ext.sys, "platform", "linux")

    def broken():
        raise OSError("no compiler\nsecond line")

    monkeypatch.setattr(cpu_ext, "_build", broken)
    message = r"C\+\+ build failed \(OSError: no compiler\); the fused CPU kernels fall back"
    with pytest.warns(RuntimeWarning, match=message):
        assert cpu_ext.load() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # decided once per process: no second attempt or warning
        assert cpu_ext.load() is None
    assert cpu_ext.status().startswith("the C++ build failed")


def test_gru_scan_paths_agree(ext, monkeypatch):
    """gru_scan (both directions, padded rows, a width with a vector tail) with the GRU
    cell kernel and without it."""
    g = torch.Generator().manual_seed(5)
    T, D, B, H = 6, 2, 3, 37

    rand = leaves(g)

    mask = torch.arange(T)[:, None] < torch.tensor([6, 2, 4])  # (T, B)
    args = (rand(T, D, B, 3 * H), rand(D, B, H), rand(D, 3 * H, H), rand(D, 3 * H), mask)
    inputs = [a for a in args if a.requires_grad]

    def run():
        return weighted_grads(gru_scan(*args), inputs)

    assert_paths_agree(monkeypatch, run)


def test_gru_arguments_are_checked(ext):
    N, H = 4, 8
    rows = [torch.zeros(N, width) for width in (3 * H, 3 * H, H)]
    outputs = [torch.empty(N, width) for width in (2 * H, H, H, H)]
    with pytest.raises(RuntimeError, match="keep must be"):
        ext.gru_forward(*rows, torch.ones(3, dtype=torch.bool), *outputs)
    with pytest.raises(RuntimeError, match="hidden gates must be"):
        ext.gru_forward(rows[0], rows[1][:, :H], rows[2], None, *outputs)
    ext.gru_forward(*rows, torch.ones(2, dtype=torch.bool), *outputs)  # 4 rows, period 2
    assert torch.equal(outputs[3], torch.zeros(N, H))  # s' = n + z (0 - n), with n = 0



def test_luong_decoder_paths_agree(ext, monkeypatch):
    """luong_gru_decode (its GRU cell step) with the kernel and without it."""
    g = torch.Generator().manual_seed(6)
    B, T, S, H = 3, 5, 7, 37

    rand = leaves(g)

    mask = torch.arange(S) < torch.tensor([7, 3, 1])[:, None]
    args = (rand(T, B, 3 * H), rand(B, H), rand(B, H), rand(B, S, H), rand(B, S, H), mask,
            rand(3 * H, H), rand(3 * H), rand(3 * H, H), rand(H, 2 * H))
    inputs = [a for a in args if a.requires_grad]

    def run():
        return weighted_grads(luong_gru_decode(*args), inputs)

    assert_paths_agree(monkeypatch, run)


@pytest.mark.parametrize("vocab", [53, 64])  # whole vectors and a tail
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_chunk_paths_agree(ext, monkeypatch, vocab, smoothing):
    """linear_cross_entropy with the compiled chunk epilogue and without it: the loss and
    every gradient, padded rows included, chunks of 4 rows over 10 (a short last chunk)."""
    g = torch.Generator().manual_seed(7)
    features = torch.randn(2, 5, 9, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(vocab, 9, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(vocab, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, vocab, (2, 5), generator=g)
    targets[1, 3:] = 0  # padding

    def run():
        loss, count = linear_cross_entropy(features, weight, bias, targets, pad_id=0,
                                           label_smoothing=smoothing, chunk_rows=4)
        return (loss, *torch.autograd.grad(loss, (features, weight, bias)))

    assert_paths_agree(monkeypatch, run)


def test_cross_entropy_chunk_float32_within_the_oracle_rule(ext, monkeypatch):
    """The float32 loss and gradients of the compiled path against float64, within 2x / 3x
    of the float32 PyTorch path's error (a vocabulary of 1,000, 48 rows, 3 padded)."""
    g = torch.Generator().manual_seed(8)
    features = torch.randn(48, 32, generator=g, dtype=torch.float64)
    weight = 0.3 * torch.randn(1000, 32, generator=g, dtype=torch.float64)
    bias = 0.1 * torch.randn(1000, generator=g, dtype=torch.float64)
    targets = torch.randint(1, 1000, (48,), generator=g)
    targets[-3:] = 0

    def run(dtype):
        leaves = [t.to(dtype).requires_grad_() for t in (features, weight, bias)]
        loss, _ = linear_cross_entropy(*leaves, targets, pad_id=0, label_smoothing=0.1,
                                       chunk_rows=16)
        return (loss, *torch.autograd.grad(loss, leaves))

    fused = run(torch.float32)
    monkeypatch.setattr(cpu_ext, "load", lambda: None)
    golden, reference = run(torch.float64), run(torch.float32)
    names = ("loss", "features", "weight", "bias")
    for i, name in enumerate(names):
        assert_oracle_close(fused[i], reference[i], golden[i],
                            kind="forward" if i == 0 else "backward", what=name)


def test_cross_entropy_chunk_checks_its_arguments(ext):
    logits, bias = torch.randn(3, 20), torch.randn(20)
    with pytest.raises(RuntimeError, match=r"targets of kept rows must lie in \[0, V = 20\)"):
        ext.cross_entropy_chunk(logits, bias, torch.tensor([1, 20, 3]),
                                torch.ones(3, dtype=torch.bool), 0.0, True, torch.empty(3),
                                torch.zeros(20))
    with pytest.raises(RuntimeError, match=r"bias must be a contiguous \(V,\)"):
        ext.cross_entropy_chunk(logits, bias[:19], torch.tensor([1, 2, 3]),
                                torch.ones(3, dtype=torch.bool), 0.0, True, torch.empty(3),
                                torch.zeros(20))
    # a padded row's id is never read
    ext.cross_entropy_chunk(logits, bias, torch.tensor([1, 99, 3]),
                            torch.tensor([True, False, True]), 0.0, True, torch.empty(3),
                            torch.zeros(20))
    assert (logits[1] == 0).all()
