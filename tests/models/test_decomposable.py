"""Decomposable attention and the BiGRU pair baseline: shapes, attention weights that are
zero on padding and sum to one elsewhere, logits invariant to padding, the intra-sentence
distance bias, the parameter budget, and argument errors."""

from __future__ import annotations

import pytest
import torch

from attnkit.experiments.pairs.config import PairsConfig
from attnkit.experiments.pairs.train import build_model, count_parameters
from attnkit.models.bigru_pair import BiGRUPairClassifier, BiGRUPairConfig
from attnkit.models.decomposable import DecomposableAttention, DecomposableConfig, exact_match

VOCAB = 50


def _batch(lengths_a, lengths_b, seed=0):
    """Right-padded random ids (pad id 0) and their masks for the given lengths."""
    g = torch.Generator().manual_seed(seed)
    la, lb = max(lengths_a), max(lengths_b)
    a = torch.randint(4, VOCAB, (len(lengths_a), la), generator=g)
    b = torch.randint(4, VOCAB, (len(lengths_b), lb), generator=g)
    a_mask = torch.arange(la)[None] < torch.tensor(lengths_a)[:, None]
    b_mask = torch.arange(lb)[None] < torch.tensor(lengths_b)[:, None]
    return a.masked_fill(~a_mask, 0), a_mask, b.masked_fill(~b_mask, 0), b_mask


def _decomposable(intra, **options):
    torch.manual_seed(0)
    return DecomposableAttention(DecomposableConfig(VOCAB, embed_dim=8, hidden=12,
                                                    intra=intra, **options)).eval()


def test_exact_match_marks_ids_found_among_the_other_sentences_real_tokens():
    a = torch.tensor([[5, 6, 7, 0], [8, 8, 9, 9]])
    b = torch.tensor([[7, 5, 0], [9, 4, 7]])
    a_mask, b_mask = a != 0, torch.tensor([[True, True, False], [True, True, True]])
    ma, mb = exact_match(a, a_mask, b, b_mask)
    assert ma.shape == (2, 4, 1) and mb.shape == (2, 3, 1)
    assert ma[..., 0].tolist() == [[1, 0, 1, 0], [0, 0, 1, 1]]  # padding id 0 never matches
    assert mb[..., 0].tolist() == [[1, 1, 0], [1, 0, 0]]


@pytest.mark.parametrize("intra", [False, True])
def test_shapes_and_weights_are_zero_on_padding(intra):
    model = _decomposable(intra)
    a, a_mask, b, b_mask = _batch([5, 2, 7], [3, 6, 1])
    out = model(a, a_mask, b, b_mask, return_weights=True)
    assert out.logits.shape == (3,)
    assert out.weights_a.shape == (3, 7, 6) and out.weights_b.shape == (3, 6, 7)
    pair_a = a_mask[:, :, None] & b_mask[:, None, :]  # (B, La, Lb)
    assert (out.weights_a[~pair_a] == 0).all()
    assert (out.weights_b[~pair_a.transpose(1, 2)] == 0).all()
    torch.testing.assert_close(out.weights_a.sum(-1)[a_mask], torch.ones(int(a_mask.sum())))
    torch.testing.assert_close(out.weights_b.sum(-1)[b_mask], torch.ones(int(b_mask.sum())))
    assert model(a, a_mask, b, b_mask).weights_a is None


@pytest.mark.parametrize("kind, options", [
    ("decomposable", {}), ("decomposable-intra", {}), ("bigru", {}),
    ("decomposable", {"exact_match": True, "aggregate": "sum+max"}),
    ("decomposable-intra", {"exact_match": True}), ("bigru", {"exact_match": True})])
def test_logits_do_not_depend_on_padding(kind, options):
    torch.manual_seed(0)
    if kind == "bigru":
        model = BiGRUPairClassifier(BiGRUPairConfig(VOCAB, embed_dim=8, hidden=6,
                                                    **options)).eval()
    else:
        model = _decomposable(kind == "decomposable-intra", **options)
    a, a_mask, b, b_mask = _batch([5, 2, 7], [3, 6, 1])
    full = model(a, a_mask, b, b_mask)
    full = full if isinstance(full, torch.Tensor) else full.logits
    for k in range(3):
        la, lb = int(a_mask[k].sum()), int(b_mask[k].sum())
        alone = model(a[k:k + 1, :la], a_mask[k:k + 1, :la], b[k:k + 1, :lb],
                      b_mask[k:k + 1, :lb])
        alone = alone if isinstance(alone, torch.Tensor) else alone.logits
        torch.testing.assert_close(alone[0], full[k], atol=1e-5, rtol=1e-5)
    # padding ids other than PAD change nothing either: the masks decide
    noisy_a = torch.where(a_mask, a, torch.full_like(a, 7))
    noisy = model(noisy_a, a_mask, b, b_mask)
    noisy = noisy if isinstance(noisy, torch.Tensor) else noisy.logits
    torch.testing.assert_close(noisy, full, atol=1e-5, rtol=1e-5)


def test_intra_attention_distance_bias_learns():
    model = _decomposable(True).train()
    a, a_mask, b, b_mask = _batch([5, 4], [3, 6])
    model(a, a_mask, b, b_mask).logits.sum().backward()
    grad = model.distance_bias.grad
    assert grad.shape == (1, 21) and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_an_empty_sentence_gives_a_finite_logit():
    model = _decomposable(True)
    a, a_mask, b, b_mask = _batch([3, 2], [2, 4])
    b_mask[1] = False
    out = model(a, a_mask, b, b_mask, return_weights=True)
    assert torch.isfinite(out.logits).all()
    assert (out.weights_a[1] == 0).all()


@pytest.mark.parametrize("kind", ["decomposable", "bigru"])
def test_the_exact_match_feature_reaches_the_logit(kind):
    """Same ids, same embeddings: only the feature differs between a pair whose tokens recur
    in the other sentence and one whose do not, and the logits differ."""
    torch.manual_seed(0)
    if kind == "bigru":
        model = BiGRUPairClassifier(BiGRUPairConfig(VOCAB, embed_dim=8, hidden=6,
                                                    exact_match=True)).eval()
    else:
        model = _decomposable(False, exact_match=True, aggregate="sum+max")
    with torch.no_grad():
        model.embed.weight[6] = model.embed.weight[5]  # ids 5 and 6: the same vector
    a = torch.tensor([[5, 9], [5, 9]])
    b = torch.tensor([[5, 8], [6, 8]])  # the first pair shares id 5, the second does not
    mask = torch.ones(2, 2, dtype=torch.bool)
    out = model(a, mask, b, mask)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    assert (logits[0] - logits[1]).abs() > 1e-6


def test_default_decomposable_models_have_at_most_half_the_baseline_parameters():
    config = PairsConfig()
    base = count_parameters(build_model("bigru", config.vocab_size, config))
    for kind in ("decomposable", "decomposable-intra"):
        mine = count_parameters(build_model(kind, config.vocab_size, config))
        assert mine["total"] <= 0.5 * base["total"], kind
        assert mine["embedding"] == base["embedding"] == config.vocab_size * config.embed_dim


def test_bad_arguments_name_themselves():
    model = _decomposable(False)
    a, a_mask, b, b_mask = _batch([3], [2])
    with pytest.raises(ValueError, match="a_mask"):
        model(a, a_mask.long(), b, b_mask)
    with pytest.raises(ValueError, match="batch size"):
        model(a, a_mask, torch.cat([b, b]), torch.cat([b_mask, b_mask]))
    with pytest.raises(ValueError, match="hidden"):
        DecomposableConfig(VOCAB, hidden=0)
    with pytest.raises(ValueError, match="aggregate"):
        DecomposableConfig(VOCAB, aggregate="mean")
    with pytest.raises(TypeError, match="exact_match"):
        BiGRUPairConfig(VOCAB, exact_match="yes")
    with pytest.raises(TypeError, match="config"):
        DecomposableAttention(BiGRUPairConfig(VOCAB))
    with pytest.raises(ValueError, match="b_mask"):
        BiGRUPairClassifier(BiGRUPairConfig(VOCAB))(a, a_mask, b, b_mask[:, :1])
