"""The fused GRU decoders (additive_gru_decode: Bahdanau; luong_gru_decode: Luong with input
feeding): their hand-written backward against autograd's numerical check, RNNSeq2Seq's fast
paths against the step-by-step decoder (values and every parameter's gradient, with padded
sources and targets, float64 and float32), and when each path applies."""

from __future__ import annotations

import pytest
import torch

from attnkit.models import RNNSeq2SeqConfig, build_rnn_seq2seq, rnn_seq2seq
from attnkit.nn.seq2seq.additive_gru import additive_gru_decode
from attnkit.nn.seq2seq.luong_gru import luong_gru_decode
from attnkit.testing import assert_oracle_close

PAD, BOS = 0, 1


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def inputs(B=3, T=5, S=6, H=4, d=5, lengths=(6, 2, 4), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.5):
        return (scale * torch.randn(*shape, generator=g, dtype=dtype)).requires_grad_()

    mask = torch.arange(S) < torch.tensor(lengths)[:, None]  # (B, S), padded rows
    return (rand(T, B, 3 * H), rand(B, H), rand(B, S, H), rand(B, S, d), mask,
            rand(3 * H, H), rand(3 * H), rand(d, H), rand(3 * H, H), rand(d))


def luong_inputs(B=3, T=5, S=6, H=4, lengths=(6, 2, 4), seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.5):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()

    mask = torch.arange(S) < torch.tensor(lengths)[:, None]
    return (rand(T, B, 3 * H), rand(B, H), rand(B, H), rand(B, S, H), rand(B, S, H), mask,
            rand(3 * H, H), rand(3 * H), rand(3 * H, H), rand(H, 2 * H))


@pytest.mark.parametrize("lengths", [(6, 2, 4), (6, 6, 6)])  # with and without padding
def test_backward_passes_gradcheck(lengths):
    """Every differentiable input, both outputs (float64 finite differences)."""
    args = inputs(lengths=lengths)
    assert torch.autograd.gradcheck(additive_gru_decode, args, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("lengths", [(6, 2, 4), (6, 6, 6)])  # with and without padding
def test_luong_backward_passes_gradcheck(lengths):
    args = luong_inputs(lengths=lengths)
    assert torch.autograd.gradcheck(luong_gru_decode, args, eps=1e-6, atol=1e-7)


def test_one_output_alone():
    """A loss on the states only (the contexts' gradient is None) or the contexts only."""
    for pick in (0, 1):
        args = inputs(seed=pick)
        additive_gru_decode(*args)[pick].square().sum().backward()
        assert all(torch.isfinite(a.grad).all() for a in args if a.requires_grad)
        assert args[1].grad.abs().sum() > 0  # the initial state matters in both cases


FUSED = {"bahdanau": "additive_gru_decode", "luong-general": "luong_gru_decode",
         "luong-dot": "luong_gru_decode"}


def make(dtype=torch.float64, kind="bahdanau", **overrides):
    fields = {"embed_dim": 6, "hidden_dim": 8, "num_layers": 1, "cell": "gru",
              "dropout": 0.0, **overrides}
    config = RNNSeq2SeqConfig(src_vocab_size=11, tgt_vocab_size=13, **fields)
    return build_rnn_seq2seq(config, kind).to(dtype)


def refuse_fused(monkeypatch):
    for name in set(FUSED.values()):
        monkeypatch.setattr(rnn_seq2seq, name, lambda *a: pytest.fail("fused path taken"))


def batch(B=4, S=7, T=6, lengths=(7, 3, 5, 1)):
    g = torch.Generator().manual_seed(1)
    src_lengths = torch.tensor(lengths[:B])
    src = torch.randint(4, 11, (B, S), generator=g)
    src = src.masked_fill(torch.arange(S) >= src_lengths[:, None], PAD)
    tgt_in = torch.randint(4, 13, (B, T), generator=g)
    tgt_in[:, 0] = BOS
    tgt_in[3, 4:] = PAD  # a padded target too
    return src, src_lengths, tgt_in


def stepped_logits(model, src, src_lengths, tgt_in):
    state = model.start_decoding(src, src_lengths)
    logits = []
    for i in range(tgt_in.shape[1]):
        step, state, _ = model.decode_step(tgt_in[:, i], state)
        logits.append(step)
    return torch.stack(logits, 1)


@pytest.mark.parametrize("kind", sorted(FUSED))
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, {"rtol": 1e-9, "atol": 1e-11}),
                                            (torch.float32, {"rtol": 1e-4, "atol": 1e-5})])
def test_fast_path_equals_step_loop(monkeypatch, kind, dtype, tol):
    model = make(dtype, kind)
    src, src_lengths, tgt_in = batch()
    weights = torch.randn(4, 6, 13, dtype=dtype, generator=torch.Generator().manual_seed(2))
    calls = []
    fused = getattr(rnn_seq2seq, FUSED[kind])
    monkeypatch.setattr(rnn_seq2seq, FUSED[kind], lambda *a: calls.append(1) or fused(*a))

    def run(logits):
        model.zero_grad(set_to_none=True)
        (logits * weights).sum().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                 if p.grad is not None}

    for mode in (model.train, model.eval):  # dropout 0: training mode must agree as well
        mode()
        fast, fast_grads = run(model(src, src_lengths, tgt_in))
        assert calls, "the fused path was not taken"
        calls.clear()
        slow, slow_grads = run(stepped_logits(model, src, src_lengths, tgt_in))
        assert not calls
        torch.testing.assert_close(fast, slow, **tol)
        assert fast_grads.keys() == slow_grads.keys() and "decoder.weight_hh_l0" in fast_grads
        for name in fast_grads:
            torch.testing.assert_close(fast_grads[name], slow_grads[name], **tol, msg=name)


@pytest.mark.parametrize(("kind", "overrides"), [
    ("bahdanau", {"cell": "lstm"}), ("bahdanau", {"num_layers": 2}),
    ("bahdanau", {"input_feeding": True}), ("luong-general", {"cell": "lstm"}),
    ("luong-general", {"num_layers": 2}), ("luong-general", {"input_feeding": False}),
    ("luong-concat", {}), ("location", {}), ("none", {})])
def test_other_configurations_keep_the_generic_loop(monkeypatch, kind, overrides):
    refuse_fused(monkeypatch)
    model = make(kind=kind, **overrides).eval()
    src, src_lengths, tgt_in = batch()
    torch.testing.assert_close(model(src, src_lengths, tgt_in),
                               stepped_logits(model, src, src_lengths, tgt_in),
                               rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", sorted(FUSED))
def test_autocast_keeps_the_generic_loop(monkeypatch, kind):
    refuse_fused(monkeypatch)
    model = make(torch.float32, kind)
    src, src_lengths, tgt_in = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(src, src_lengths, tgt_in).shape == (4, 6, 13)


@pytest.mark.parametrize("kind", sorted(FUSED))
def test_checkpoint_of_the_generic_model_loads(kind):
    """Parameter names are unchanged, so a state dict moves between the two paths."""
    model, other = make(kind=kind), make(kind=kind)
    other.load_state_dict(model.state_dict())
    src, src_lengths, tgt_in = batch()
    torch.testing.assert_close(other.eval()(src, src_lengths, tgt_in),
                               stepped_logits(model.eval(), src, src_lengths, tgt_in),
                               rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", sorted(FUSED))
def test_a_hooked_attention_runs_step_by_step(monkeypatch, kind):
    """attnkit.interp.capture hooks the attention module: the fused path, which never calls
    it, must step aside so that the hook sees every step."""
    refuse_fused(monkeypatch)
    model = make(kind=kind).eval()
    src, src_lengths, tgt_in = batch()
    seen = []
    handle = model.attention.register_forward_hook(lambda m, args, out: seen.append(out[1]))
    try:
        model(src, src_lengths, tgt_in)
    finally:
        handle.remove()
    assert len(seen) == tgt_in.shape[1] and seen[0].shape == (4, 1, 7)


@pytest.mark.parametrize("kind", sorted(FUSED))
def test_without_gradients_the_step_loop_runs(monkeypatch, kind):
    """Evaluation and capture run without gradients: there the loop runs, so a hook on the
    attention module (what capture adds, and what sends the call to the loop) leaves the
    outputs bitwise unchanged; with gradients the fused path agrees to rounding."""
    model = make(torch.float32, kind).eval()
    src, src_lengths, tgt_in = batch()
    fused = model(src, src_lengths, tgt_in).detach()  # gradients recorded: fused path
    refuse_fused(monkeypatch)
    with torch.no_grad():
        plain = model(src, src_lengths, tgt_in)
        handle = model.attention.register_forward_hook(lambda module, args, out: None)
        try:
            hooked = model(src, src_lengths, tgt_in)
        finally:
            handle.remove()
    assert torch.equal(plain, hooked)
    torch.testing.assert_close(plain, fused, rtol=1e-4, atol=1e-5)


def check_float32_oracle_rule(kind, embed_dim, hidden_dim, seed):
    """The fused float32 path against the float64 step loop, within 2x (logits) and 3x
    (every gradient) of the float32 step loop's own error (DESIGN section 4)."""
    torch.manual_seed(seed)
    golden_model = make(torch.float64, kind, embed_dim=embed_dim, hidden_dim=hidden_dim)
    single = make(torch.float32, kind, embed_dim=embed_dim, hidden_dim=hidden_dim)
    single.load_state_dict({k: v.float() for k, v in golden_model.state_dict().items()})
    src, src_lengths, tgt_in = batch(B=4, S=23, T=17, lengths=(23, 9, 16, 1))
    weights = torch.randn(4, 17, 13, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(seed))

    def run(model, stepped):
        model.zero_grad(set_to_none=True)
        logits = (stepped_logits(model, src, src_lengths, tgt_in) if stepped
                  else model(src, src_lengths, tgt_in))
        (logits * weights.to(logits.dtype)).sum().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                 if p.grad is not None}

    golden, golden_grads = run(golden_model, stepped=True)
    reference, reference_grads = run(single, stepped=True)
    fused, fused_grads = run(single, stepped=False)
    assert_oracle_close(fused, reference, golden, what="logits")
    assert fused_grads.keys() == golden_grads.keys()
    for name in golden_grads:
        assert_oracle_close(fused_grads[name], reference_grads[name], golden_grads[name],
                            kind="backward", what=name)


@pytest.mark.parametrize("kind", sorted(FUSED))
def test_float32_fast_path_within_the_oracle_rule(kind):
    """At a less tiny size (hidden and attention 48, sources up to 23 tokens). The fused
    additive energy is 2 sigmoid(2x) - 1 where the step loop takes tanh."""
    check_float32_oracle_rule(kind, embed_dim=24, hidden_dim=48, seed=3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float32_additive_gradients_at_full_width(seed):
    """Bahdanau at the translate job's width (hidden and attention 384, the kernels'
    float32 logistic function over whole vectors), three initialisations."""
    check_float32_oracle_rule("bahdanau", embed_dim=64, hidden_dim=384, seed=seed)
