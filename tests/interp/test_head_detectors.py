"""Head detectors: known scores on hand-made patterns, and a hand-wired induction circuit."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attnkit.interp.heads import (
    HeadTable,
    copying_scores,
    detect_heads,
    duplicate_token_targets,
    induction_targets,
    pattern_score,
    pattern_table,
    previous_token_targets,
    repeated_random_tokens,
)
from attnkit.nn import MultiHeadAttention

# ------------------------------------------------------------------ known patterns


def _previous_pattern(length: int) -> torch.Tensor:
    pattern = torch.zeros(length, length)
    pattern[0, 0] = 1
    pattern[torch.arange(1, length), torch.arange(length - 1)] = 1
    return pattern


def _uniform_causal(length: int) -> torch.Tensor:
    causal = torch.ones(length, length).tril()
    return causal / causal.sum(-1, keepdim=True)


def test_previous_token_scores_of_known_patterns():
    L = 9
    mixed = 0.3 * _previous_pattern(L) + 0.7 * torch.eye(L)
    pattern = torch.stack([_previous_pattern(L), mixed, _uniform_causal(L)])[None]  # (1, 3, L, L)
    scores = pattern_score(pattern, previous_token_targets(L))
    expected_uniform = sum(1 / (t + 1) for t in range(1, L)) / (L - 1)
    torch.testing.assert_close(scores, torch.tensor([1.0, 0.3, expected_uniform],
                                                    dtype=torch.float64))


def test_duplicate_and_induction_scores_of_known_patterns():
    tokens = torch.tensor([[5, 6, 5, 7, 6, 5]])
    pattern = torch.stack([_uniform_causal(6), _previous_pattern(6)])[None]  # (1, 2, 6, 6)
    # rows with an earlier copy: t=2 (copy at 0), t=4 (at 1), t=5 (at 0 and 2)
    duplicate = pattern_score(pattern, duplicate_token_targets(tokens))
    torch.testing.assert_close(duplicate, torch.tensor([(1 / 3 + 1 / 5 + 2 / 6) / 3, 0.0],
                                                       dtype=torch.float64))
    # induction targets: t=2 -> key 1; t=4 -> key 2; t=5 -> keys 1 and 3
    induction = pattern_score(pattern, induction_targets(tokens))
    torch.testing.assert_close(induction, torch.tensor([(1 / 3 + 1 / 5 + 2 / 6) / 3, 1 / 3],
                                                       dtype=torch.float64))
    assert induction_targets(tokens)[0].nonzero().tolist() == [[2, 1], [4, 2], [5, 1], [5, 3]]


def test_rows_without_targets_are_left_out_and_no_target_gives_nan():
    tokens = torch.tensor([[1, 2, 3, 4]])
    pattern = _uniform_causal(4)[None, None]
    assert math.isnan(pattern_score(pattern, duplicate_token_targets(tokens)).item())
    # prefix matching on a repeated sequence: only the second copy's rows count
    repeated = repeated_random_tokens(50, 5, batch=3, generator=torch.Generator().manual_seed(0))
    assert repeated.shape == (3, 10) and torch.equal(repeated[:, :5], repeated[:, 5:])
    shifted = torch.zeros(1, 1, 10, 10)
    for t in range(10):
        shifted[0, 0, t, max(t - 4, 0)] = 1  # row t of the second copy looks at t - n + 1
    assert pattern_score(shifted.expand(3, 1, 10, 10), induction_targets(repeated)).item() \
        == pytest.approx(1.0)


def test_repeated_random_tokens_draw_from_the_given_choices():
    choices = torch.tensor([7, 11, 13])
    tokens = repeated_random_tokens(50, 40, batch=2, prefix=[1], choices=choices,
                                    generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (2, 81) and (tokens[:, 0] == 1).all()
    assert torch.equal(tokens[:, 1:41], tokens[:, 41:])
    assert set(tokens[:, 1:].unique().tolist()) == {7, 11, 13}
    with pytest.raises(ValueError, match="choices"):
        repeated_random_tokens(50, 4, choices=torch.tensor([3, 50]))
    with pytest.raises(ValueError, match="choices"):
        repeated_random_tokens(50, 4, choices=torch.tensor([], dtype=torch.long))


# ------------------------------------------------------------------ a hand-wired circuit

V, P, N = 24, 16, 7  # vocabulary, position slots, tokens per copy (BOS + 2 N <= P)
E, H = 2 * V + P, 2  # residual stream: [token | position | previous token]
DH = E // H
TOKEN, POSITION, PREVIOUS = 0, V, V + P  # slot offsets
SHARP = 30.0  # logit of a match


class InductionCircuit(nn.Module):
    """Two attention-only layers wired by hand (Elhage et al. 2021's induction circuit).

    Layer 0 head 0 is a previous-token head: its query at position t matches the key of
    position t - 1 and it copies that token into the PREVIOUS slot. Layer 1 head 0 is an
    induction head: its query (the current token) matches keys whose PREVIOUS slot holds the
    same token, and it adds the attended token to the TOKEN slot, twice as strongly as the
    residual copy of the current token. Both heads 1 are zero
    (uniform causal attention, no write)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MultiHeadAttention(E, H, bias=False) for _ in range(2))
        self.embedding = torch.zeros(V, E)
        self.embedding[:, TOKEN:TOKEN + V] = torch.eye(V)
        self.unembedding = self.embedding.clone()
        sharp = SHARP * math.sqrt(DH)  # undo the 1/sqrt(Dh) scale
        with torch.no_grad():
            for p in self.parameters():
                p.zero_()
            prev, ind = self.layers
            for pos in range(P):
                prev.q_proj.weight[pos, POSITION + pos] = sharp
                if pos + 1 < DH:
                    prev.k_proj.weight[pos + 1, POSITION + pos] = 1
            for tok in range(V):
                prev.v_proj.weight[tok, TOKEN + tok] = 1
                prev.out_proj.weight[PREVIOUS + tok, tok] = 1
                ind.q_proj.weight[tok, TOKEN + tok] = sharp
                ind.k_proj.weight[tok, PREVIOUS + tok] = 1
                ind.v_proj.weight[tok, TOKEN + tok] = 1
                ind.out_proj.weight[TOKEN + tok, tok] = 2  # outvotes the residual token

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens (B, L)`` -> logits ``(B, L, V)``."""
        L = tokens.shape[1]
        x = self.embedding[tokens] + torch.eye(E)[POSITION:POSITION + L]  # (B, L, E)
        for layer in self.layers:
            x = x + layer(x, causal=True)[0]
        return x @ self.unembedding.T


def _probe() -> torch.Tensor:
    # BOS (id 0) first, so that no real token's "previous token" is empty
    return repeated_random_tokens(V, N, batch=4, low=1, prefix=[0],
                                  generator=torch.Generator().manual_seed(0))


def test_hand_wired_induction_circuit_is_found():
    model = InductionCircuit().eval()
    tables = detect_heads(model, _probe())
    induction, previous = tables["induction"], tables["previous_token"]
    assert induction.layers == ("layers.0", "layers.1")
    assert induction.best()[:2] == ("layers.1", 0)
    assert induction["layers.1", 0] > 0.95
    others = [induction[layer, head] for layer, head in
              (("layers.0", 0), ("layers.0", 1), ("layers.1", 1))]
    assert max(others) < 0.2, induction.format()
    assert previous["layers.0", 0] > 0.95
    assert max(previous["layers.0", 1], previous["layers.1", 0], previous["layers.1", 1]) < 0.3
    # the circuit works: on the second copy of distinct tokens, it predicts the next token
    generator = torch.Generator().manual_seed(1)
    half = torch.stack([torch.randperm(V - 1, generator=generator)[:N] + 1 for _ in range(4)])
    tokens = torch.cat([torch.zeros(4, 1, dtype=torch.long), half, half], dim=1)
    with torch.no_grad():
        predicted = model(tokens).argmax(-1)
    assert torch.equal(predicted[:, N + 1:-1], tokens[:, N + 2:])


def test_copying_scores_of_the_hand_wired_circuit():
    model = InductionCircuit()
    table = copying_scores(model, embedding=model.embedding, unembedding=model.unembedding)
    expected = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(table.scores, expected)
    flipped = copying_scores(model, embedding=model.embedding, unembedding=-model.unembedding)
    assert flipped["layers.1", 0] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="embedding"):
        copying_scores(model)  # not a GPT: the matrices must be passed


def test_copying_scores_match_the_full_vocabulary_circuit():
    torch.manual_seed(0)
    attn = MultiHeadAttention(8, 2, num_kv_heads=1, bias=False)
    model = nn.ModuleDict({"attn": attn})
    w_e, w_u = torch.randn(11, 8, dtype=torch.float64), torch.randn(11, 8, dtype=torch.float64)
    table = copying_scores(model, embedding=w_e, unembedding=w_u)
    for head in range(2):
        w_o = attn.out_proj.weight.double()[:, head * 4:(head + 1) * 4]
        w_v = attn.v_proj.weight.double()  # one key/value head serves both query heads
        eig = torch.linalg.eigvals(w_u @ w_o @ w_v @ w_e.T)  # the (V, V) circuit
        expected = (eig.real.sum() / eig.abs().sum()).item()
        assert table["attn", head] == pytest.approx(expected, abs=1e-9)


def test_pattern_table_and_head_table():
    tokens = _probe()
    L = tokens.shape[1]
    patterns = {"a": _previous_pattern(L).expand(4, 2, L, L),
                "b": _uniform_causal(L).expand(4, 1, L, L)}
    table = pattern_table(patterns, tokens, "previous_token")
    assert table.scores.shape == (2, 2) and math.isnan(table["b", 1])
    assert table.best() == ("a", 0, 1.0)
    assert table.to_dict()["scores"][1][1] is None
    assert "previous_token" in table.format() and " -" in table.format()
    with pytest.raises(ValueError, match="detector"):
        pattern_table(patterns, tokens, "copying")
    with pytest.raises(ValueError, match="square"):
        pattern_table({"x": torch.zeros(1, 1, L, 3)}, tokens, "induction")
    with pytest.raises(ValueError, match="length"):
        pattern_table(patterns, tokens[:, :5], "induction")
    with pytest.raises(ValueError, match="scores"):
        HeadTable("x", ("a",), torch.zeros(2, 2))
    with pytest.raises(TypeError, match="tokens"):
        induction_targets(torch.zeros(3))
