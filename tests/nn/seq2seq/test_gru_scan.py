"""gru_scan, the fused one-layer GRU recurrence: its hand-written backward against
finite differences, its values and gradients against nn.GRU (plain and packed,
bidirectional), and its argument checks."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnkit.nn.seq2seq.gru_scan import gru_scan


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def scan_inputs(T=5, D=2, B=3, H=4, masked=True, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return (0.5 * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()

    mask = (torch.arange(T)[:, None] < torch.tensor([5, 2, 4])[:B]) if masked else None
    return rand(T, D, B, 3 * H), rand(D, B, H), rand(D, 3 * H, H), rand(D, 3 * H), mask


@pytest.mark.parametrize("masked", [True, False])
def test_backward_passes_gradcheck(masked):
    args = scan_inputs(masked=masked)
    assert torch.autograd.gradcheck(gru_scan, args, eps=1e-6, atol=1e-7)


def _reference(gru, x, lengths, h0):
    """nn.GRU on the packed batch: outputs (B, S, D H) zero past lengths, final (D, B, H)."""
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, final = gru(packed, h0)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, final


def _scanned(gru, x, lengths, h0):
    """The same with gru_scan: the reverse direction reads each row back to front."""
    batch, steps, _ = x.shape
    positions = torch.arange(steps)[:, None]  # (S, 1)
    mask = positions < lengths  # (S, B)
    reverse = torch.where(mask, lengths - 1 - positions, positions)  # (S, B) involution
    xt = x.transpose(0, 1)  # (S, B, E)
    forward = torch.nn.functional.linear(xt, gru.weight_ih_l0, gru.bias_ih_l0)
    backward = torch.nn.functional.linear(xt, gru.weight_ih_l0_reverse, gru.bias_ih_l0_reverse)
    backward = backward.gather(0, reverse[:, :, None].expand_as(backward))
    gates = torch.stack([forward, backward], 1)  # (S, 2, B, 3H)
    weight = torch.stack([gru.weight_hh_l0, gru.weight_hh_l0_reverse])
    bias = torch.stack([gru.bias_hh_l0, gru.bias_hh_l0_reverse])
    states = gru_scan(gates, h0, weight, bias, mask)  # (S, 2, B, H)
    back = states[:, 1].gather(0, reverse[:, :, None].expand_as(states[:, 1]))
    out = torch.cat([states[:, 0], back], -1) * mask[:, :, None]  # (S, B, 2H)
    return out.transpose(0, 1), states[-1]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_equals_packed_bidirectional_nn_gru(dtype, tol):
    torch.manual_seed(0)
    gru = torch.nn.GRU(6, 5, batch_first=True, bidirectional=True).to(dtype)
    x = torch.randn(4, 7, 6, dtype=dtype, requires_grad=True)
    lengths = torch.tensor([7, 3, 5, 1])
    h0 = 0.3 * torch.randn(2, 4, 5, dtype=dtype)
    weights = torch.randn(4, 7, 10, dtype=dtype)
    results = []
    for run in (_reference, _scanned):
        gru.zero_grad()
        x.grad = None
        out, final = run(gru, x, lengths, h0)
        ((out * weights).sum() + final.square().sum()).backward()
        results.append((out.detach(), final.detach(), x.grad.clone(),
                        [p.grad.clone() for p in gru.parameters()]))
    (out_a, fin_a, gx_a, gp_a), (out_b, fin_b, gx_b, gp_b) = results
    torch.testing.assert_close(out_b, out_a, atol=tol, rtol=tol)
    torch.testing.assert_close(fin_b, fin_a, atol=tol, rtol=tol)
    torch.testing.assert_close(gx_b, gx_a, atol=tol, rtol=tol)
    for a, b in zip(gp_a, gp_b, strict=True):
        torch.testing.assert_close(b, a, atol=tol, rtol=tol)


def test_unmasked_equals_nn_gru_one_direction():
    torch.manual_seed(1)
    gru = torch.nn.GRU(3, 4).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    h0 = torch.randn(1, 2, 4, dtype=torch.float64)
    expected, final = gru(x, h0)
    gates = torch.nn.functional.linear(x, gru.weight_ih_l0, gru.bias_ih_l0)[:, None]
    states = gru_scan(gates, h0, gru.weight_hh_l0[None], gru.bias_hh_l0[None])
    torch.testing.assert_close(states[:, 0], expected, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(states[-1], final, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("change,message", [
    (lambda a: (a[0][..., :-1],) + a[1:], "disagree"),
    (lambda a: a[:2] + (a[2][:, :, :-1],) + a[3:], "weight_hh"),
    (lambda a: a[:4] + (a[4].int(),), "mask"),
    (lambda a: a[:4] + (a[4][:-1],), "mask"),
])
def test_bad_arguments_name_themselves(change, message):
    args = change(scan_inputs())
    with pytest.raises(ValueError, match=message):
        gru_scan(*args)


# ------------------------------------------------------------ inside RNNSeq2Seq


def _model(kind, dtype, **overrides):
    from attnkit.models import RNNSeq2SeqConfig, build_rnn_seq2seq

    fields = {"embed_dim": 6, "hidden_dim": 8, "num_layers": 1, "cell": "gru",
              "dropout": 0.0, **overrides}
    torch.manual_seed(3)
    config = RNNSeq2SeqConfig(src_vocab_size=11, tgt_vocab_size=13, **fields)
    return build_rnn_seq2seq(config, kind).to(dtype)


def _batch():
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([7, 3, 5, 1])
    src = torch.randint(4, 11, (4, 7), generator=g)
    src = src.masked_fill(torch.arange(7) >= lengths[:, None], 0)
    tgt_in = torch.randint(4, 13, (4, 6), generator=g)
    tgt_in[3, 4:] = 0
    return src, lengths, tgt_in


@pytest.mark.parametrize("kind", ["none", "bahdanau", "luong-general"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, {"rtol": 1e-9, "atol": 1e-11}),
                                            (torch.float32, {"rtol": 1e-4, "atol": 1e-5})])
def test_model_training_path_equals_nn_gru(monkeypatch, kind, bidirectional, dtype, tol):
    """The encoder (every kind) and rnn-none's decoder run gru_scan while training; the
    logits and every parameter's gradient equal the nn.GRU path's."""
    from attnkit.models import rnn_seq2seq

    model = _model(kind, dtype, bidirectional=bidirectional)
    src, lengths, tgt_in = _batch()
    weights = torch.randn(4, 6, 13, dtype=dtype, generator=torch.Generator().manual_seed(2))
    calls = []
    monkeypatch.setattr(rnn_seq2seq, "gru_scan", lambda *a: calls.append(1) or gru_scan(*a))

    def run():
        model.zero_grad(set_to_none=True)
        logits = model(src, lengths, tgt_in)
        (logits * weights).sum().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                 if p.grad is not None}

    fast, fast_grads = run()
    assert len(calls) == (2 if kind == "none" else 1)  # encoder (+ fixed-vector decoder)
    monkeypatch.setattr(rnn_seq2seq, "_fused_pays", lambda *a: False)
    calls.clear()
    slow, slow_grads = run()
    assert not calls
    torch.testing.assert_close(fast, slow, **tol)
    assert fast_grads.keys() == slow_grads.keys() and "encoder.weight_hh_l0" in fast_grads
    for name in fast_grads:
        torch.testing.assert_close(fast_grads[name], slow_grads[name], **tol, msg=name)


@pytest.mark.parametrize("kind", ["none", "bahdanau"])
def test_hooked_modules_run_nn_gru(monkeypatch, kind):
    """A forward hook on the encoder (and on rnn-none's decoder, which runs as one nn.GRU
    call) must see the module run, so the fused paths step aside."""
    from attnkit.models import rnn_seq2seq

    monkeypatch.setattr(rnn_seq2seq, "gru_scan", lambda *a: pytest.fail("gru_scan ran"))
    model = _model(kind, torch.float64)
    seen = []
    model.encoder.register_forward_hook(lambda module, args, out: seen.append("encoder"))
    model.decoder.register_forward_hook(lambda module, args, out: seen.append("decoder"))
    model(*_batch()).sum().backward()
    assert seen == (["encoder", "decoder"] if kind == "none" else ["encoder"])
