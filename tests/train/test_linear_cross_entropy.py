"""linear_cross_entropy (the output layer fused with the loss, chunk by chunk) against
token_cross_entropy of F.linear: values and gradients, padding, smoothing, chunk sizes,
no-gradient use, argument checks; and seq2seq_loss_fn's use of it for RNNSeq2Seq."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit.train import seq2seq_loss_fn, token_cross_entropy
from attnkit.train.losses import linear_cross_entropy


def case(dtype=torch.float64, N=(3, 7), H=5, V=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*N, H, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(V, H, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(V, generator=g, dtype=dtype, requires_grad=True)
    t = torch.randint(1, V, N, generator=g)
    t[0, 4:] = 0
    t[2, 1] = 0
    return x, w, b, t


@pytest.mark.parametrize("chunk_rows", [1, 4, 512])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("pad_id", [0, None])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_equals_linear_then_token_cross_entropy(chunk_rows, smoothing, pad_id, dtype, tol):
    x, w, b, t = case(dtype)
    results = []
    for fused in (True, False):
        for p in (x, w, b):
            p.grad = None
        if fused:
            loss, count = linear_cross_entropy(x, w, b, t, pad_id=pad_id,
                                               label_smoothing=smoothing, chunk_rows=chunk_rows)
        else:
            loss, count = token_cross_entropy(F.linear(x, w, b), t, pad_id=pad_id,
                                              label_smoothing=smoothing)
        (2.5 * loss).backward()
        results.append((loss.detach(), count, x.grad.clone(), w.grad.clone(), b.grad.clone()))
    (la, ca, *ga), (lb, cb, *gb) = results
    assert ca == cb == (21 if pad_id is None else 17)
    torch.testing.assert_close(la, lb, rtol=tol, atol=tol)
    for a, c in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, c, rtol=tol, atol=tol)


def test_gradcheck_and_no_bias():
    x, w, _, t = case()
    assert torch.autograd.gradcheck(
        lambda x, w: linear_cross_entropy(x, w, None, t, label_smoothing=0.1,
                                          chunk_rows=3)[0], (x, w))


def test_without_gradients_only_the_loss():
    x, w, b, t = case()
    with torch.no_grad():
        loss, _ = linear_cross_entropy(x, w, b, t)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, token_cross_entropy(F.linear(x, w, b), t)[0].detach())


@pytest.mark.parametrize("change,error,message", [
    (lambda x, w, b, t: (x.long(), w, b, t), TypeError, "features"),
    (lambda x, w, b, t: (x, w[:, :-1], b, t), ValueError, "disagree"),
    (lambda x, w, b, t: (x, w, b[:-1], t), ValueError, "bias"),
    (lambda x, w, b, t: (x, w, b, t.float()), TypeError, "targets"),
    (lambda x, w, b, t: (x, w, b, t[:, :-1]), ValueError, "leading"),
    (lambda x, w, b, t: (x, w, b, t + 20), ValueError, "targets must lie"),
])
def test_bad_arguments_name_themselves(change, error, message):
    with pytest.raises(error, match=message):
        linear_cross_entropy(*change(*case()))


def test_bad_chunk_rows():
    with pytest.raises(ValueError, match="chunk_rows"):
        linear_cross_entropy(*case(), chunk_rows=0)


@pytest.mark.parametrize("kind", ["none", "bahdanau"])
def test_seq2seq_loss_fn_fuses_the_rnn_output_layer(monkeypatch, kind):
    from attnkit.models import RNNSeq2SeqConfig, build_rnn_seq2seq
    from attnkit.train import losses

    torch.manual_seed(0)
    config = RNNSeq2SeqConfig(src_vocab_size=11, tgt_vocab_size=13, embed_dim=6, hidden_dim=8,
                              dropout=0.0)
    model = build_rnn_seq2seq(config, kind).double()
    g = torch.Generator().manual_seed(1)
    batch = {"src": torch.randint(4, 11, (3, 5), generator=g),
             "src_lengths": torch.tensor([5, 2, 4]),
             "tgt_in": torch.randint(4, 13, (3, 6), generator=g),
             "tgt_out": torch.randint(4, 13, (3, 6), generator=g)}
    batch["src"][1, 2:] = 0
    batch["tgt_out"][2, 3:] = 0
    loss_fn = seq2seq_loss_fn(pad_id=0, label_smoothing=0.1)
    calls = []
    fused = losses.linear_cross_entropy
    monkeypatch.setattr(losses, "linear_cross_entropy",
                        lambda *a, **k: calls.append(1) or fused(*a, **k))
    results = []
    for use in (True, False):
        if not use:
            monkeypatch.setattr(losses, "_fused_output", lambda *a: False)
        model.zero_grad(set_to_none=True)
        loss, count = loss_fn(model, batch)
        loss.backward()
        results.append((loss.detach(), count,
                        {n: p.grad.clone() for n, p in model.named_parameters()}))
    assert calls == [1]
    (la, ca, ga), (lb, cb, gb) = results
    assert ca == cb == 15
    torch.testing.assert_close(la, lb, rtol=1e-10, atol=1e-10)
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-9, atol=1e-10, msg=name)


def test_scheduled_sampling_and_evaluation_take_the_logits_path(monkeypatch):
    from attnkit.models import RNNSeq2SeqConfig, build_rnn_seq2seq
    from attnkit.train import losses

    monkeypatch.setattr(losses, "linear_cross_entropy",
                        lambda *a, **k: pytest.fail("fused path taken"))
    config = RNNSeq2SeqConfig(src_vocab_size=11, tgt_vocab_size=13, embed_dim=6, hidden_dim=8,
                              teacher_forcing_ratio=0.5)
    model = build_rnn_seq2seq(config, "bahdanau")
    batch = {"src": torch.randint(4, 11, (2, 4)), "src_lengths": torch.tensor([4, 3]),
             "tgt_in": torch.randint(4, 13, (2, 5)), "tgt_out": torch.randint(4, 13, (2, 5))}
    loss_fn = seq2seq_loss_fn()
    assert model.output_features(batch["src"], batch["src_lengths"], batch["tgt_in"]) is None
    loss, _ = loss_fn(model, batch)  # scheduled sampling: forward's logits
    assert loss.requires_grad
    with torch.no_grad():
        loss_fn(model.eval(), batch)  # evaluation: no gradients, logits path
