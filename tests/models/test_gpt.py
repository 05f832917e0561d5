"""GPT: shapes, causality, KV-cache decoding, generation, parameter count, config checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from attnkit.models.gpt import GPT, GPTConfig

F64 = torch.float64
VOCAB = 17


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: on a shared CPU, extra threads cost more in contention than they save."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(**overrides) -> GPTConfig:
    fields = dict(vocab_size=VOCAB, context_len=12, num_layers=2, num_heads=4, d_model=16,
                  ffn_dim=24, dropout=0.0)
    return GPTConfig(**{**fields, **overrides})


def _model(**overrides) -> GPT:
    return GPT(_config(**overrides)).to(F64).eval()


VARIANTS = [
    dict(positional="learned"),
    dict(positional="sinusoidal", num_kv_heads=2, bias=False),
    dict(positional="rotary", num_kv_heads=1, tie_embeddings=False),
]
VARIANT_IDS = ["learned", "sinusoidal-gqa-nobias", "rotary-mqa-untied"]


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_shapes_and_gradients(variant):
    model = GPT(_config(**variant))
    idx = torch.randint(0, VOCAB, (3, 12))
    logits = model(idx)
    assert logits.shape == (3, 12, VOCAB) and torch.isfinite(logits).all()
    F.cross_entropy(logits[:, :-1].flatten(0, 1), idx[:, 1:].flatten()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == [], f"parameters without gradient: {missing}"


def test_tied_head_and_parameter_count():
    E, F_, V, C, L = 16, 24, VOCAB, 12, 2
    per_block = (4 * E * E + 4 * E) + (E * F_ + F_ + F_ * E + E) + 2 * 2 * E
    expected = V * E + C * E + L * per_block + 2 * E  # tied head adds nothing
    tied, untied = GPT(_config()), GPT(_config(tie_embeddings=False))
    assert tied.lm_head.weight is tied.embed.token.weight
    assert tied.num_parameters() == expected
    assert untied.num_parameters() == expected + V * E
    assert tied.num_parameters(non_embedding=True) == L * per_block + 2 * E
    assert untied.num_parameters(non_embedding=True) == L * per_block + 2 * E


def test_gpt2_initialization():
    model = GPT(_config(d_model=64, num_heads=4, ffn_dim=256, num_layers=8, vocab_size=300))
    assert abs(model.embed.token.weight.std().item() - 0.02) < 0.002
    assert abs(model.blocks[0].ffn.fc.weight.std().item() - 0.02) < 0.002
    residual = 0.02 / math.sqrt(2 * 8)
    assert abs(model.blocks[0].ffn.proj.weight.std().item() - residual) < 0.001
    assert abs(model.blocks[3].self_attn.out_proj.weight.std().item() - residual) < 0.001
    assert torch.all(model.blocks[0].self_attn.q_proj.bias == 0)


def test_init_std_replaces_gpt2s_everywhere():
    std = 0.8 / math.sqrt(64)  # TransformerLens's default for d_model 64
    model = GPT(_config(d_model=64, num_heads=4, ffn_dim=256, num_layers=8, vocab_size=300,
                        init_std=std))
    assert abs(model.embed.token.weight.std().item() - std) < 0.01
    assert abs(model.blocks[0].ffn.fc.weight.std().item() - std) < 0.01
    assert abs(model.blocks[0].self_attn.q_proj.weight.std().item() - std) < 0.01
    residual = std / math.sqrt(2 * 8)
    assert abs(model.blocks[0].ffn.proj.weight.std().item() - residual) < 0.003
    assert abs(model.blocks[3].self_attn.out_proj.weight.std().item() - residual) < 0.003
    assert GPTConfig(vocab_size=10).init_std is None  # GPT-2's 0.02 (test above)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_never_sees_the_future(variant):
    model = _model(**variant)
    idx = torch.randint(0, VOCAB, (2, 10))
    with torch.no_grad():
        logits = model(idx)
        for t in range(1, 10):
            changed = idx.clone()
            changed[:, t:] = (idx[:, t:] + 1 + torch.randint(0, VOCAB - 1, (2, 10 - t))) % VOCAB
            after = model(changed)
            torch.testing.assert_close(after[:, :t], logits[:, :t], atol=1e-12, rtol=0)
    assert not torch.allclose(after[:, -1], logits[:, -1])


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("chunks", [[1] * 12, [5, 1, 1, 3, 2]], ids=["tokens", "mixed"])
def test_forward_with_caches_equals_without(variant, chunks):
    model = _model(**variant)
    idx = torch.randint(0, VOCAB, (2, 12))
    caches = model.make_kv_caches()
    with torch.no_grad():
        full = model(idx)
        pieces, start = [], 0
        for size in chunks:
            pieces.append(model(idx[:, start:start + size], kv_caches=caches))
            start += size
    assert [cache.length for cache in caches] == [12, 12]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-10, rtol=0)


def _greedy_by_hand(model, idx, steps):
    for _ in range(steps):
        next_token = model(idx[:, -model.config.context_len:])[:, -1].argmax(-1, keepdim=True)
        idx = torch.cat([idx, next_token], dim=1)
    return idx


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_greedy_generation(variant):
    model = _model(**variant)
    prompt = torch.randint(0, VOCAB, (3, 4))
    with torch.no_grad():
        expected = _greedy_by_hand(model, prompt, 8)
    for kwargs in (dict(top_k=1), dict(top_k=1, temperature=5.0), dict(temperature=0.0),
                   dict(top_k=1, use_cache=False)):
        assert torch.equal(model.generate(prompt, 8, **kwargs), expected), kwargs


def test_seeded_sampling_is_reproducible_and_cache_independent():
    model = _model(positional="rotary")
    prompt = torch.randint(0, VOCAB, (4, 3))

    def sample(seed, **kwargs):
        generator = torch.Generator().manual_seed(seed)
        return model.generate(prompt, 9, temperature=1.5, generator=generator, **kwargs)

    first = sample(1)
    assert first.shape == (4, 12) and torch.equal(first[:, :3], prompt)
    assert torch.equal(sample(1), first)
    assert torch.equal(sample(1, use_cache=False), first)
    assert not torch.equal(sample(2), first)


def test_top_k_samples_only_among_the_k_most_likely():
    model = _model()
    prompt = torch.randint(0, VOCAB, (8, 2))
    out = model.generate(prompt, 10, top_k=3, temperature=3.0,
                         generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(out[:, :-1])[:, 1:]  # (B, 10, V): the logits each new token came from
    top3 = logits.topk(3, dim=-1).indices
    assert (top3 == out[:, 2:, None]).any(-1).all()
    assert len(out[:, 2:].unique()) > 3  # sampling, not argmax


def test_context_length_limits():
    model = _model()
    prompt = torch.randint(0, VOCAB, (2, 5))
    assert model.generate(prompt, 8, top_k=1).shape == (2, 13)  # 5 + 8 - 1 = 12 positions
    with pytest.raises(ValueError, match="context_len is 12.*use_cache=False"):
        model.generate(prompt, 9)
    # Without a cache the input is cropped to the last context_len tokens.
    long = model.generate(prompt, 20, top_k=1, use_cache=False)
    assert long.shape == (2, 25)
    with torch.no_grad():
        expected = model(long[:, -13:-1])[:, -1].argmax(-1)
    assert torch.equal(long[:, -1], expected)
    with pytest.raises(ValueError, match="context_len"):
        model(torch.zeros(1, 13, dtype=torch.long))
    caches = model.make_kv_caches()
    with torch.no_grad():
        model(torch.zeros(1, 10, dtype=torch.long), kv_caches=caches)
        with pytest.raises(ValueError, match="10 cached.*context_len"):
            model(torch.zeros(1, 3, dtype=torch.long), kv_caches=caches)
    assert torch.equal(model.generate(prompt, 0), prompt)


def test_input_validation_names_the_argument():
    model = _model()
    idx = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(TypeError, match="idx must be an integer"):
        model(idx.double())
    with pytest.raises(ValueError, match=r"idx must be a non-empty 2-D \(B, T\)"):
        model(idx[0])
    with pytest.raises(TypeError, match="kv_caches"):
        model(idx, kv_caches=model.make_kv_caches()[:1])
    for kwargs, word in [(dict(max_new_tokens=-1), "max_new_tokens"),
                         (dict(max_new_tokens=2, temperature=-1.0), "temperature"),
                         (dict(max_new_tokens=2, top_k=0), "top_k")]:
        with pytest.raises(ValueError, match=word):
            model.generate(idx, **kwargs)
    with pytest.raises(TypeError, match="generator"):
        model.generate(idx, 2, generator=0)


@pytest.mark.parametrize("field, value, error", [
    ("vocab_size", 0, ValueError),
    ("context_len", 0, ValueError),
    ("num_layers", 0, ValueError),
    ("num_heads", 3, ValueError),  # does not divide d_model=16
    ("num_kv_heads", 3, ValueError),  # does not divide num_heads=4
    ("d_model", -16, ValueError),
    ("ffn_dim", 0, ValueError),
    ("dropout", 1.5, ValueError),
    ("positional", "alibi", ValueError),
    ("bias", "no", TypeError),
    ("tie_embeddings", None, TypeError),
    ("context_len", 12.0, TypeError),
    ("rotary_base", 1.0, ValueError),
    ("rotary_base", "large", TypeError),
    ("init_std", 0.0, ValueError),
    ("init_std", "wide", TypeError),
])
def test_bad_config_names_the_field(field, value, error):
    with pytest.raises(error, match=field):
        _config(**{field: value})


def test_config_defaults():
    config = GPTConfig(vocab_size=50257)
    assert config.ffn_dim == 4 * 768 and config.positional == "learned"
    assert GPTConfig(**config.to_dict()) == config
    with pytest.raises(ValueError, match="positional='rotary'"):
        _config(positional="rotary", d_model=12, num_heads=4)


def test_rotary_base_reaches_every_layer_and_old_configs_keep_10000():
    from attnkit.nn.positional import RotaryEmbedding

    torch.manual_seed(0)
    model = GPT(_config(positional="rotary", rotary_base=500000.0))
    bases = {m.base for m in model.modules() if isinstance(m, RotaryEmbedding)}
    assert bases == {500000.0}
    idx = torch.randint(0, VOCAB, (2, 9))
    other = GPT(_config(positional="rotary"))
    other.load_state_dict(model.state_dict())  # same weights, base 10000
    with torch.no_grad():
        assert not torch.allclose(model(idx)[:, 1:], other(idx)[:, 1:])
        assert torch.equal(model(idx)[:, 0], other(idx)[:, 0])  # position 0 is not rotated
    saved = model.config.to_dict()
    assert saved["rotary_base"] == 500000.0
    del saved["rotary_base"]  # a checkpoint written before the field existed
    assert GPTConfig(**saved).rotary_base == 10000.0


def test_tiny_gpt_learns_a_repeated_sequence():
    torch.manual_seed(0)
    sequence = torch.randint(0, VOCAB, (1, 12))
    model = GPT(_config(d_model=32, num_heads=2, ffn_dim=64))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        logits = model(sequence[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), sequence[0, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1
    out = model.eval().generate(sequence[:, :1], 11, top_k=1)
    assert torch.equal(out, sequence)


def test_forward_dispatches_no_more_aten_ops_than_a_plain_sdpa_gpt():
    """The small-model hot path, counted instead of timed: attnkit's GPT forward (fused
    q/k/v projection, SDPA's causal flag, no mask tensor) dispatches no more ATen
    operators than the plain-torch SDPA GPT of ``attnkit bench train``."""
    from attnkit.bench.train import PlainGPT, aten_ops

    config = GPTConfig(vocab_size=65, context_len=16, num_layers=2, num_heads=4, d_model=32)
    ours, plain = GPT(config).train(), PlainGPT(config, use_sdpa=True).train()
    x = torch.randint(65, (2, 16))
    ours(x)  # first calls fill the caches
    ours_ops, plain_ops = aten_ops(lambda: ours(x)), aten_ops(lambda: plain(x))
    assert 0 < ours_ops <= plain_ops


def test_zero_dropout_builds_no_dropout_modules_and_keeps_the_checkpoint_layout():
    """dropout=0 is the identity, so the layers hold no nn.Dropout (none is called or walked
    by parameters()); the state dict is the same either way and loads across both."""
    plain, dropping = GPT(_config()), GPT(_config(dropout=0.25))
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())
    # per block: the residual dropout and the MLP's; one on the embeddings
    assert sum(isinstance(m, torch.nn.Dropout) for m in dropping.modules()) == 2 * 2 + 1
    assert list(plain.state_dict()) == list(dropping.state_dict())
    dropping.load_state_dict(plain.state_dict())
    x = torch.randint(VOCAB, (2, 12))
    assert torch.equal(dropping.eval()(x), plain.eval()(x))
    dropping.train()
    torch.manual_seed(0)
    first = dropping(x)
    assert not torch.equal(first, dropping(x))  # dropout is active in training
    torch.manual_seed(0)
    assert torch.equal(first, dropping(x))
    with pytest.raises(ValueError, match="dropout"):
        GPTConfig(vocab_size=VOCAB, dropout=-0.1)


@pytest.mark.parametrize("mlp", [True, False])
def test_zero_dropout_blocks_equal_the_written_out_formula(mlp):
    """Pre-norm block ``x + attn(norm1(x))`` (+ ``ffn(norm2(x))``) with nothing skipped but
    the identity dropouts."""
    model = _model(mlp=mlp)
    block, x = model.blocks[0], torch.randn(2, 5, 16, dtype=F64)
    h = x + block.self_attn(block.norm1(x), causal=True)[0]
    if mlp:
        ffn = block.ffn
        h = h + ffn.proj(F.gelu(ffn.fc(block.norm2(h))))
    torch.testing.assert_close(block(x, causal=True), h, rtol=0, atol=1e-12)


def test_training_step_calls_no_more_modules_than_needed():
    """nn.Module calls of one GPT forward, counted (deterministic): per block the layer,
    two LayerNorms, the attention with its output projection and the MLP with its three
    parts; around them the model, its embedding (token, positions) and the final norm and
    head. No dropout module is called at p=0 and the fused q/k/v projection calls no view."""
    import sys

    model = GPT(_config(num_layers=3)).train()
    x = torch.randint(VOCAB, (2, 12))
    model(x)
    calls = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code is torch.nn.Module._call_impl.__code__:
            calls.append(type(frame.f_locals["self"]).__name__)

    sys.setprofile(profile)
    try:
        model(x)
    finally:
        sys.setprofile(None)
    per_block = ["EncoderLayer", "LayerNorm", "MultiHeadAttention", "Linear", "LayerNorm",
                 "FeedForward", "Linear", "GELU", "Linear"]
    assert calls == (["GPT", "TokenEmbedding", "Embedding", "LearnedPositionalEmbedding"]
                     + 3 * per_block + ["LayerNorm", "Linear"])
