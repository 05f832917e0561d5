"""attnkit inside Hugging Face transformers (attnkit.hf): parity with attn_implementation=
"eager" on MiniLM-L6 and on tiny random GPT-2, Llama (GQA) and Mistral (sliding window,
GQA) models, with padded batches and a KV cache; the mask translation checked against
transformers' own dense masks."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")

import attnkit.hf as hf  # noqa: E402
from attnkit.functional.masks.diagonal import Causal, SlidingWindow  # noqa: E402
from attnkit.functional.masks.document import Document  # noqa: E402
from attnkit.functional.masks.padding import KeyPadding  # noqa: E402

TOL = 1e-5
VOCAB = 97


@pytest.fixture(scope="module", autouse=True)
def registered():
    return hf.register()


def _configs():
    from transformers import (
        GPT2Config,
        GPT2Model,
        LlamaConfig,
        LlamaModel,
        MistralConfig,
        MistralModel,
    )

    small = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return {
        "gpt2": (GPT2Model, GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=64,
                                       **small)),
        "llama": (LlamaModel, LlamaConfig(num_hidden_layers=2, num_attention_heads=4,
                                          num_key_value_heads=2, hidden_size=32,
                                          intermediate_size=48, **small)),
        "mistral": (MistralModel, MistralConfig(num_hidden_layers=2, num_attention_heads=4,
                                                num_key_value_heads=1, hidden_size=32,
                                                intermediate_size=48, sliding_window=5,
                                                **small)),
    }


def _pair(name: str):
    cls, config = _configs()[name]
    torch.manual_seed(0)
    eager = cls._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    ours = cls._from_config(copy.deepcopy(config), attn_implementation="attnkit").eval()
    ours.load_state_dict(eager.state_dict())
    assert ours.config._attn_implementation == "attnkit"
    assert eager.config._attn_implementation == "eager"
    return eager, ours


def _padding(kind: str, batch: int = 3, length: int = 17) -> torch.Tensor | None:
    if kind == "none":
        return None
    mask = torch.ones(batch, length, dtype=torch.long)
    if kind == "right":
        mask[1, 12:] = 0
        mask[2, 4:] = 0
    else:  # left
        mask[1, :5] = 0
        mask[2, :13] = 0
    return mask


class _Spy:
    """Records the mask kind attnkit.attention receives inside the HF attention function."""

    def __init__(self, monkeypatch):
        self.masks = []
        real = hf.attention

        def spy(q, k, v, **kwargs):
            self.masks.append(kwargs["mask"])
            return real(q, k, v, **kwargs)

        monkeypatch.setattr(hf, "attention", spy)


@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral"])
@pytest.mark.parametrize("padding", ["none", "right", "left"])
def test_random_models_match_eager(name, padding, monkeypatch):
    eager, ours = _pair(name)
    spy = _Spy(monkeypatch)
    ids = torch.randint(1, VOCAB, (3, 17), generator=torch.Generator().manual_seed(1))
    mask = _padding(padding)
    with torch.no_grad():
        want = eager(ids, attention_mask=mask).last_hidden_state  # (B, L, E)
        got = ours(ids, attention_mask=mask).last_hidden_state
    valid = torch.ones(3, 17, dtype=torch.bool) if mask is None else mask.bool()
    assert (got - want).abs()[valid].max().item() <= TOL
    # Every layer got a structured mask, never a dense tensor.
    assert len(spy.masks) == 2 and all(callable(m) for m in spy.masks)
    if name == "mistral":  # the window is part of the mask
        kinds = spy.masks[0].mods if hasattr(spy.masks[0], "mods") else (spy.masks[0],)
        assert any(isinstance(m, SlidingWindow) and m.size == 5 for m in kinds)


@pytest.mark.parametrize("name", ["llama", "mistral"])
def test_kv_cache_decoding_matches_eager(name):
    """Prefill, then two single-token steps on a cache: the mask's diagonal offset."""
    eager, ours = _pair(name)
    ids = torch.randint(1, VOCAB, (2, 11), generator=torch.Generator().manual_seed(2))
    results = []
    for model in (eager, ours):
        with torch.no_grad():
            out = model(ids[:, :9], use_cache=True)
            steps = [out.last_hidden_state]
            cache = out.past_key_values
            for t in (9, 10):
                out = model(ids[:, t:t + 1], cache=cache, use_cache=True)
                cache = out.past_key_values
                steps.append(out.last_hidden_state)
        results.append(torch.cat(steps, dim=1))
    assert (results[0] - results[1]).abs().max().item() <= TOL


def test_output_attentions_match_eager():
    eager, ours = _pair("llama")
    ids = torch.randint(1, VOCAB, (3, 17), generator=torch.Generator().manual_seed(3))
    mask = _padding("right")
    with torch.no_grad():
        want = eager(ids, attention_mask=mask, output_attentions=True).attentions
        got = ours(ids, attention_mask=mask, output_attentions=True).attentions
    assert len(got) == len(want) == 2
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape == (3, 4, 17, 17)
        assert (g - w).abs().max().item() <= TOL


def test_minilm_matches_eager():
    from attnkit.models.bert_hf import minilm_path

    try:
        path = minilm_path()
    except (ImportError, FileNotFoundError) as exc:
        pytest.skip(str(exc))
    from transformers import AutoModel

    eager = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    ours = AutoModel.from_pretrained(path, attn_implementation="attnkit").eval()
    ids = torch.randint(1000, 5000, (2, 12), generator=torch.Generator().manual_seed(4))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 7:] = 0
    with torch.no_grad():
        want = eager(ids, attention_mask=mask).last_hidden_state
        got = ours(ids, attention_mask=mask).last_hidden_state
    assert (got - want).abs().max().item() <= TOL


# -- the mask translation, against transformers' dense masks ------------------------------

def _reference(batch, q_len, kv_len, q_off, kv_off, function, padding):
    from transformers import masking_utils as mu

    return mu.sdpa_mask(batch_size=batch, q_length=q_len, kv_length=kv_len, q_offset=q_off,
                        kv_offset=kv_off, mask_function=function, attention_mask=padding,
                        allow_is_causal_skip=False)


def _functions():
    from transformers import masking_utils as mu

    return {
        "causal": (mu.causal_mask_function, Causal),
        "full": (mu.bidirectional_mask_function, type(None)),
        "window": (mu.sliding_window_causal_mask_function(3), SlidingWindow),
        "window_bidirectional": (mu.sliding_window_bidirectional_mask_function(2),
                                 SlidingWindow),
    }


@pytest.mark.parametrize("kind", ["causal", "full", "window", "window_bidirectional"])
@pytest.mark.parametrize("shape", [(7, 7, 0, 0), (2, 9, 7, 0), (1, 6, 10, 4)])
@pytest.mark.parametrize("padding", ["none", "right", "left"])
def test_structured_masks_equal_transformers_dense_masks(kind, shape, padding):
    q_len, kv_len, q_off, kv_off = shape
    function, mask_type = _functions()[kind]
    pad = None
    if padding != "none":
        pad = torch.ones(2, kv_off + kv_len, dtype=torch.bool)
        if padding == "right":
            pad[1, kv_off + kv_len - 3:] = False
        else:
            pad[1, :kv_off + 2] = False
    got = hf.mask_interface(2, q_len, kv_len, q_off, kv_off, function, pad)
    assert isinstance(got, hf.StructuredMask) and got.shape == (2, 1, q_len, kv_len)
    want = _reference(2, q_len, kv_len, q_off, kv_off, function, pad)
    dense = got.dense().expand(2, 1, q_len, kv_len)
    assert torch.equal(dense, want)
    parts = getattr(got.mask_mod, "mods", (got.mask_mod,))
    if padding == "none":
        assert isinstance(got.mask_mod, mask_type)
    else:
        assert any(isinstance(p, KeyPadding if padding == "right" else Document)
                   for p in parts)


def test_unknown_mask_functions_fall_back_to_the_dense_mask():
    from transformers import masking_utils as mu

    packed = mu.and_masks(mu.causal_mask_function, lambda b, h, q, kv: (q // 3) == (kv // 3))
    got = hf.mask_interface(2, 6, 6, 0, 0, packed, None)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.bool
    assert torch.equal(got, _reference(2, 6, 6, 0, 0, packed, None))


# -- the attention function on its own -----------------------------------------------------

class _Layer(torch.nn.Module):
    is_causal = True


def _qkv(heads=4, kv_heads=2, length=6, dim=8):
    g = torch.Generator().manual_seed(5)
    return (torch.randn(2, heads, length, dim, generator=g),
            torch.randn(2, kv_heads, length, dim, generator=g),
            torch.randn(2, kv_heads, length, dim, generator=g))


def test_softcap_scaling_and_gqa_match_the_formula():
    q, k, v = _qkv()
    out, weights = hf.attention_forward(_Layer(), q, k, v, None, scaling=0.3, softcap=2.0)
    assert weights is None and out.shape == (2, 6, 4, 8)
    kk, vv = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    scores = 2.0 * torch.tanh(q @ kk.transpose(-1, -2) * 0.3 / 2.0)
    scores = scores.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
    want = (scores.softmax(-1) @ vv).transpose(1, 2)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)


def test_a_float_mask_of_zeros_and_minus_inf_is_a_bool_mask():
    q, k, v = _qkv()
    keep = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(6)) > 0.3
    keep[..., 0] = True
    additive = torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)
    a, _ = hf.attention_forward(_Layer(), q, k, v, additive)
    b, _ = hf.attention_forward(_Layer(), q, k, v, keep)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_unsupported_inputs_raise_naming_the_argument():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="position_bias"):
        hf.attention_forward(_Layer(), q, k, v, None, position_bias=torch.zeros(1, 4, 6, 6))
    with pytest.raises(ValueError, match="attention_mask: an additive float mask"):
        hf.attention_forward(_Layer(), q, k, v, torch.full((1, 1, 6, 6), 0.5))
    with pytest.raises(TypeError, match="attention_mask must be"):
        hf.attention_forward(_Layer(), q, k, v, "causal")
    with pytest.raises(TypeError, match="name must be"):
        hf.register("")


def test_register_is_idempotent_and_visible_to_transformers():
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    assert hf.register() == "attnkit"
    assert AttentionInterface._global_mapping["attnkit"] is hf.attention_forward
    assert ALL_ATTENTION_FUNCTIONS["attnkit"] is hf.attention_forward
    assert ALL_MASK_ATTENTION_FUNCTIONS["attnkit"] is hf.mask_interface


# -- attnkit bench hf ----------------------------------------------------------------------

def test_bench_hf_quick_runs_end_to_end(tmp_path, capsys):
    import json

    from attnkit import cli

    assert cli.main(["bench", "hf", "--quick", "--out", str(tmp_path), "--name", "hfq"]) == 0
    report = json.loads((tmp_path / "hfq.json").read_text())
    rows = report["rows"]
    assert {(r["L"], r["implementation"]) for r in rows} == {
        (L, i) for L in (256, 512) for i in ("attnkit", "sdpa", "eager")}
    for row in rows:
        assert row["forward_ms"] > 0 and row["max_abs_diff_vs_sdpa"] <= 1e-4
    assert report["command"].startswith("attnkit bench hf")
    assert (tmp_path / "hfq.md").is_file()


@pytest.mark.parametrize("argv, flag", [
    (["--lengths", "0"], "--lengths"),
    (["--window", "-3"], "--window"),
    (["--implementations", "flash"], "--implementations"),
    (["--name", "../x"], "--name"),
])
def test_bench_hf_bad_arguments_exit_2(argv, flag, tmp_path, capsys):
    from attnkit import cli
    from attnkit.bench import hf as bench_hf

    called = []
    real = bench_hf.run
    bench_hf.run = lambda **kw: called.append(kw)
    try:
        with pytest.raises(SystemExit) as exc:
            code = cli.main(["bench", "hf", *argv, "--out", str(tmp_path)])
            raise SystemExit(code)
    finally:
        bench_hf.run = real
    assert exc.value.code == 2 and not called
    assert flag in capsys.readouterr().err


def test_bench_hf_library_refuses_bad_arguments(tmp_path):
    from attnkit.bench import hf as bench_hf

    with pytest.raises(ValueError, match="implementations"):
        bench_hf.run(implementations=["flash"], out_dir=str(tmp_path), write=False)
    with pytest.raises(ValueError, match="window"):
        bench_hf.run(window=0, out_dir=str(tmp_path), write=False)
    # quick sets its own sizes: a size given beside it would be silently replaced
    for name, value in (("lengths", [4096]), ("window", 8), ("repeats", 5)):
        with pytest.raises(ValueError, match=f"^{name}: quick sets its own"):
            bench_hf.run(quick=True, out_dir=str(tmp_path), write=False, **{name: value})


def test_head_hooks_observe_and_ablate_heads():
    eager, ours = _pair("llama")
    ids = torch.randint(1, VOCAB, (2, 9), generator=torch.Generator().manual_seed(7))
    layer = ours.layers[1].self_attn
    seen = []

    def observe(module, call, out):
        seen.append((module, call.q.shape, call.k.shape, call.scale, out.shape))

    def ablate(module, call, out):
        out = out.clone()
        out[:, 2] = 0.0
        return out

    with torch.no_grad():
        clean = ours(ids).last_hidden_state
        handle = hf.register_head_hook(layer, observe)
        observed = ours(ids).last_hidden_state
        assert seen == [(layer, (2, 4, 9, 8), (2, 2, 9, 8), layer.scaling, (2, 4, 9, 8))]
        assert torch.equal(observed, clean)  # observing changes nothing
        second = hf.register_head_hook(layer, ablate)
        ablated = ours(ids).last_hidden_state
        second.remove()
        handle.remove()
        restored = ours(ids).last_hidden_state
    assert (ablated - clean).abs().max() > 1e-4
    assert torch.equal(restored, clean)
    with pytest.raises(ValueError, match="head hook must return None or a tensor"):
        hf.register_head_hook(layer, lambda m, c, o: o[:, :1])
        with torch.no_grad():
            ours(ids)
    with pytest.raises(TypeError, match="hook must be callable"):
        hf.register_head_hook(layer, 3)


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_generate_with_left_padding_matches_eager(cache):
    """generate() prepares the mask before the forward (the prepared StructuredMask must
    pass through unchanged); a static cache gives a key length beyond the tokens seen."""
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           hidden_size=32, intermediate_size=48, vocab_size=VOCAB,
                           sliding_window=4, bos_token_id=0, eos_token_id=VOCAB - 1,
                           pad_token_id=0)
    torch.manual_seed(0)
    eager = MistralForCausalLM._from_config(copy.deepcopy(config),
                                            attn_implementation="eager").eval()
    ours = MistralForCausalLM._from_config(copy.deepcopy(config),
                                           attn_implementation="attnkit").eval()
    ours.load_state_dict(eager.state_dict())
    ids = torch.randint(1, VOCAB - 1, (2, 6), generator=torch.Generator().manual_seed(8))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, :2] = 0
    options = dict(attention_mask=mask, max_new_tokens=8, do_sample=False)
    if cache == "static":
        options["cache_implementation"] = "static"
    assert torch.equal(eager.generate(ids, **options), ours.generate(ids, **options))
