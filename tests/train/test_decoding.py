"""Greedy and beam-search decoding (attnkit.train.decoding) on toy models of the protocol.

Toy models implement the seq2seq decoding protocol exactly:
- TableModel: next-token logits are a fixed random float64 table indexed by (source key,
  previous token, step), so the best sequence can be found by brute-force enumeration and a
  readable per-sentence beam search (no early stop) serves as the oracle.
- GRUAttentionModel: a tiny random GRU decoder with dot-product attention over source
  embeddings; state = hidden tensor + memory + mask, so reorder_state moves real tensors.
- ScriptedModel: each sentence emits a fixed script then EOS with near certainty.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attnkit.train.decoding import (
    DecodeResult,
    beam_search,
    gnmt_length_penalty,
    greedy_decode,
)

PAD, BOS, EOS = 0, 1, 2


def _batch(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad lists of ids into src (B, S) and src_lengths (B,)."""
    width = max(len(r) for r in rows)
    src = torch.full((len(rows), width), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        src[i, :len(r)] = torch.tensor(r)
    return src, torch.tensor([len(r) for r in rows])


def _alone(src: torch.Tensor, src_lengths: torch.Tensor, i: int):
    length = int(src_lengths[i])
    return src[i:i + 1, :length], src_lengths[i:i + 1]


class TableModel:
    """logits = table[key(source), previous token, step]; optional one-hot fake alignments."""

    def __init__(self, vocab=6, max_steps=10, num_keys=7, seed=0, dtype=torch.float64,
                 alignment=False, table=None):
        g = torch.Generator().manual_seed(seed)
        self.table = table if table is not None else \
            2.0 * torch.randn(num_keys, vocab, max_steps, vocab, generator=g, dtype=torch.float64)
        self.table = self.table.to(dtype)
        self.num_keys = self.table.shape[0]
        self.alignment = alignment
        self.fed = []  # per step: (keys, tokens) of the rows fed to decode_step

    def key(self, src):
        return src.sum(dim=1) % self.num_keys  # padding adds 0, so batching does not change it

    def start_decoding(self, src, src_lengths):
        batch, width = src.shape
        return {"key": self.key(src), "step": torch.zeros(batch, dtype=torch.long),
                "lengths": src_lengths.clone(), "width": width}

    def decode_step(self, tokens, state, *, return_alignment=False):
        self.fed.append((state["key"].clone(), tokens.clone()))
        logits = self.table[state["key"], tokens, state["step"]]  # (R, V)
        align = None
        if self.alignment and return_alignment:
            position = state["step"] % state["lengths"].clamp(min=1)  # (R,)
            align = torch.zeros(tokens.shape[0], state["width"], dtype=logits.dtype)
            align[torch.arange(tokens.shape[0]), position] = 1.0
        return logits, {**state, "step": state["step"] + 1}, align

    def reorder_state(self, state, index):
        return {k: v.index_select(0, index) if isinstance(v, torch.Tensor) else v
                for k, v in state.items()}

    def forward(self, src, src_lengths, tgt_in):
        state = self.start_decoding(src, src_lengths)
        out = []
        for t in range(tgt_in.shape[1]):
            logits, state, _ = self.decode_step(tgt_in[:, t], state)
            out.append(logits)
        return torch.stack(out, dim=1)  # (B, T, V)

    def log_probs(self, key: int, prev: int, step: int) -> list[float]:
        return torch.log_softmax(self.table[key, prev, step].double(), -1).tolist()


class GRUAttentionModel(nn.Module):
    """A tiny random GRU decoder with dot-product attention over source embeddings."""

    def __init__(self, vocab=9, dim=8, seed=0, eos_bias=1.0):
        super().__init__()
        self.src_embed = nn.Embedding(vocab, dim)
        self.tgt_embed = nn.Embedding(vocab, dim)
        self.cell = nn.GRUCell(dim, dim)
        self.out = nn.Linear(2 * dim, vocab)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
            self.out.bias[EOS] += eos_bias
        self.double()
        self.rows_fed = []

    def start_decoding(self, src, src_lengths):
        memory = self.src_embed(src)  # (B, S, D)
        mask = torch.arange(src.shape[1])[None, :] < src_lengths[:, None]  # (B, S)
        hidden = (memory * mask[..., None]).sum(1) / src_lengths.clamp(min=1)[:, None].double()
        return {"hidden": torch.tanh(hidden), "memory": memory, "mask": mask}

    def decode_step(self, tokens, state, *, return_alignment=False):
        self.rows_fed.append(tokens.shape[0])
        hidden = self.cell(self.tgt_embed(tokens), state["hidden"])  # (R, D)
        scores = torch.einsum("rsd,rd->rs", state["memory"], hidden)  # (R, S)
        weights = torch.softmax(scores.masked_fill(~state["mask"], -math.inf), dim=-1)
        context = torch.einsum("rs,rsd->rd", weights, state["memory"])  # (R, D)
        logits = 2.0 * self.out(torch.cat([hidden, context], dim=-1))  # (R, V)
        return logits, {**state, "hidden": hidden}, weights if return_alignment else None

    def reorder_state(self, state, index):
        return {k: v.index_select(0, index) for k, v in state.items()}

    def forward(self, src, src_lengths, tgt_in):
        state = self.start_decoding(src, src_lengths)
        out = []
        for t in range(tgt_in.shape[1]):
            logits, state, _ = self.decode_step(tgt_in[:, t], state)
            out.append(logits)
        return torch.stack(out, dim=1)  # (B, T, V)


class ScriptedModel(TableModel):
    """Sentence with key k emits scripts[k] then EOS, each with probability ~1 - 1e-8."""

    def __init__(self, scripts: list[list[int]], vocab=7, max_steps=12):
        table = torch.zeros(len(scripts), vocab, max_steps, vocab, dtype=torch.float64)
        for k, script in enumerate(scripts):
            for t, tok in enumerate([*script, EOS]):
                table[k, :, t, tok] = 20.0
            for t in range(len(script) + 1, max_steps):
                table[k, :, t, EOS] = 20.0
        super().__init__(table=table, alignment=True)

    def key(self, src):
        return src[:, 0] - 3  # sentence k has first source token 3 + k


SCRIPTS = [[3, 4], [5], [4, 4, 5, 6, 3], [], [6, 6, 6]]


def _scripted_batch():
    # Sentence k starts with token 3 + k; lengths differ so S_i are trimmed differently.
    return _batch([[3 + k] + [4] * (k % 3) for k in range(len(SCRIPTS))])


# --- oracles ------------------------------------------------------------------------------

def _exhaustive(model: TableModel, key: int, limit: int, alpha: float):
    """Best (normalized, raw, tokens, reached_eos) over every sequence the decoder can emit."""
    vocab = model.table.shape[-1]
    words = [w for w in range(vocab) if w not in (PAD, BOS, EOS)]
    best = None

    def consider(norm, raw, tokens, reached):
        nonlocal best
        if best is None or norm > best[0]:
            best = (norm, raw, tokens, reached)

    def walk(prefix, prev, score):
        t = len(prefix)  # tokens generated so far; the next one is step t + 1
        logp = model.log_probs(key, prev, t)
        raw = score + logp[EOS]
        consider(raw / gnmt_length_penalty(t + 1, alpha), raw, prefix, True)
        for w in words:
            if t + 1 == limit:
                raw = score + logp[w]
                consider(raw / gnmt_length_penalty(limit, alpha), raw, [*prefix, w], False)
            else:
                walk([*prefix, w], w, score + logp[w])

    walk([], BOS, 0.0)
    return best


def _reference_beam(model: TableModel, key: int, limit: int, beam: int, alpha: float):
    """Readable beam search for one sentence, run to max_len (no early stop)."""
    vocab = model.table.shape[-1]
    live = [(0.0, [])]  # (summed log-prob, tokens), best first
    ended = []  # (normalized, raw, tokens, reached_eos) in the order they end
    for step in range(1, limit + 1):
        candidates = []
        for rank, (score, tokens) in enumerate(live):
            logp = model.log_probs(key, tokens[-1] if tokens else BOS, step - 1)
            candidates += [(score + logp[w], rank, w, tokens) for w in range(vocab)
                           if w not in (PAD, BOS)]
        candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
        lp = gnmt_length_penalty(step, alpha)
        ended += [(s / lp, s, toks, True) for s, _, w, toks in candidates[:beam] if w == EOS]
        live = [(s, [*toks, w]) for s, _, w, toks in candidates if w != EOS][:beam]
        if step == limit:
            ended += [(s / lp, s, toks, False) for s, toks in live]
    return max(ended, key=lambda e: e[0])  # the first of equal maxima: the one that ended first


def _replay(model, src, src_lengths, i, tokens, reached):
    """Feed sentence i alone through the model with the given output: (score, alignments)."""
    src_i, len_i = _alone(src, src_lengths, i)
    state = model.start_decoding(src_i, len_i)
    inputs = [BOS, *tokens]
    targets = [*tokens, EOS] if reached else list(tokens)
    score, aligns = 0.0, []
    for prev, target in zip(inputs, targets, strict=False):
        logits, state, align = model.decode_step(torch.tensor([prev]), state,
                                                 return_alignment=True)
        score += torch.log_softmax(logits.double(), -1)[0, target].item()
        aligns.append(align[0])
    return score, torch.stack(aligns)


def _assert_same(a: DecodeResult, b: DecodeResult, exact=True):
    assert a.tokens == b.tokens
    assert a.reached_eos == b.reached_eos
    compare = torch.equal if exact else (lambda x, y: torch.allclose(x, y, atol=1e-10))
    assert compare(a.scores, b.scores)
    assert compare(a.normalized_scores, b.normalized_scores)
    assert (a.alignments is None) == (b.alignments is None)
    if a.alignments is not None:
        assert len(a.alignments) == len(b.alignments)
        for x, y in zip(a.alignments, b.alignments, strict=True):
            assert x.shape == y.shape and compare(x, y)


def _table_setup():
    model = TableModel(alignment=True)
    model.table[..., EOS] -= 2.0  # longer outputs
    src, src_lengths = _batch([[3, 4, 5], [4], [4, 4, 3, 5, 5], [3, 3], [5, 4]])
    assert len(set(model.key(src).tolist())) == 5  # five different tables
    return model, src, src_lengths


def _gru_setup(seed=0):
    model = GRUAttentionModel(seed=seed)
    src, src_lengths = _batch([[3, 4, 5, 6, 7], [8, 3], [4, 4, 5, 6, 7, 8, 3], [5, 6, 7]])
    return model, src, src_lengths


# --- beam_size=1 is greedy ----------------------------------------------------------------

@pytest.mark.parametrize("setup", [_table_setup, _gru_setup], ids=["table", "gru"])
def test_beam_of_one_equals_greedy(setup):
    model, src, src_lengths = setup()
    max_len = lambda lengths: lengths + 3  # noqa: E731
    greedy = greedy_decode(model, src, src_lengths, max_len=max_len, return_alignment=True)
    beam = beam_search(model, src, src_lengths, beam_size=1, max_len=max_len,
                       length_penalty=0.0, return_alignment=True)
    _assert_same(greedy, beam)
    assert not all(greedy.reached_eos) and any(greedy.reached_eos)  # both endings exercised


# --- beam search against oracles ----------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 2.0])
def test_large_beam_equals_exhaustive_search(alpha):
    model, src, src_lengths = _table_setup()
    limits = [5, 3, 5, 4, 2]
    # 3 words: every step has at most 4 * 3**3 = 108 finite candidates, so beam 128 keeps all.
    result = beam_search(model, src, src_lengths, beam_size=128, length_penalty=alpha,
                         max_len=torch.tensor(limits))
    keys = model.key(src).tolist()
    for i, (key, limit) in enumerate(zip(keys, limits, strict=True)):
        norm, raw, tokens, reached = _exhaustive(model, key, limit, alpha)
        assert result.tokens[i] == tokens
        assert result.reached_eos[i] == reached
        assert result.scores[i].item() == pytest.approx(raw, abs=1e-12)
        assert result.normalized_scores[i].item() == pytest.approx(norm, abs=1e-12)


@pytest.mark.parametrize("beam", [2, 3, 5])
@pytest.mark.parametrize("alpha", [0.0, 0.7, 1.5])
def test_beam_search_equals_reference_run_to_max_len(beam, alpha):
    """Early stopping is exact: same answer as a readable beam search that never stops early."""
    model = TableModel(vocab=7, max_steps=12, num_keys=11, seed=beam)
    src, src_lengths = _batch([[3, 4, 5], [5], [4, 4, 3, 5, 5], [3, 3], [6, 3], [6, 6, 6, 6]])
    max_len = lambda lengths: 2 * lengths + 1  # noqa: E731
    result = beam_search(model, src, src_lengths, beam_size=beam, length_penalty=alpha,
                         max_len=max_len)
    for i, (key, limit) in enumerate(zip(model.key(src).tolist(),
                                         max_len(src_lengths).tolist(), strict=True)):
        norm, raw, tokens, reached = _reference_beam(model, key, limit, beam, alpha)
        assert result.tokens[i] == tokens
        assert result.reached_eos[i] == reached
        assert result.scores[i].item() == pytest.approx(raw, abs=1e-12)
        assert result.normalized_scores[i].item() == pytest.approx(norm, abs=1e-12)


def test_stopping_rule_is_exact_with_a_length_penalty():
    """An EOS at step 1 beats every live score, but a long near-certain continuation of the
    worse first token wins once the length penalty divides it by lp(7): a rule that stops
    when the ended hypothesis beats s / lp(t + 1) would return the empty output."""
    table = torch.full((1, 6, 10, 6), -30.0, dtype=torch.float64)
    table[0, :, 0, EOS] = 0.0
    table[0, :, 0, 3] = -0.5  # log-probs: EOS -0.47, token 3 -0.97
    table[0, :, 1:6, 3] = 30.0  # then 3 3 3 3 3 EOS, each almost surely
    table[0, :, 6:, EOS] = 30.0
    model = TableModel(table=table)
    src, src_lengths = _batch([[3]])
    for alpha, expected in [(0.0, []), (2.0, [3] * 6)]:
        model.fed.clear()
        result = beam_search(model, src, src_lengths, beam_size=2, max_len=9,
                             length_penalty=alpha)
        assert result.tokens == [expected] == [_exhaustive(model, 0, 9, alpha)[2]]
        assert result.reached_eos == [True]
        assert len(model.fed) == (1 if alpha == 0 else 7)  # stops once the winner ends


def test_scores_and_alignments_match_a_replay_of_the_output():
    """Scores are the summed log-probs (EOS included) of the returned tokens and the alignments
    are the model's own for that hypothesis (checks back-pointers and reorder_state)."""
    model, src, src_lengths = _gru_setup(seed=3)
    for result in (greedy_decode(model, src, src_lengths, max_len=9, return_alignment=True),
                   beam_search(model, src, src_lengths, beam_size=4, max_len=9,
                               length_penalty=0.8, return_alignment=True)):
        for i in range(src.shape[0]):
            score, aligns = _replay(model, src, src_lengths, i, result.tokens[i],
                                    result.reached_eos[i])
            assert result.scores[i].item() == pytest.approx(score, abs=1e-10)
            assert torch.allclose(result.alignments[i], aligns[:, :int(src_lengths[i])])
    beam = beam_search(model, src, src_lengths, beam_size=4, max_len=9, length_penalty=0.8)
    steps = torch.tensor([len(t) + e for t, e in zip(beam.tokens, beam.reached_eos,
                                                     strict=True)], dtype=torch.float64)
    assert torch.allclose(beam.normalized_scores, beam.scores / ((5 + steps) / 6) ** 0.8)


# --- batching ---------------------------------------------------------------------------------

@pytest.mark.parametrize("decode", ["greedy", "beam"])
@pytest.mark.parametrize("setup", [_table_setup, _gru_setup], ids=["table", "gru"])
def test_batch_equals_each_sentence_alone(setup, decode):
    model, src, src_lengths = setup()

    def run(s, lengths):
        kwargs = dict(max_len=lambda n: n + 4, return_alignment=True)
        if decode == "greedy":
            return greedy_decode(model, s, lengths, **kwargs)
        return beam_search(model, s, lengths, beam_size=3, length_penalty=0.6, **kwargs)

    batched = run(src, src_lengths)
    for i in range(src.shape[0]):
        alone = run(*_alone(src, src_lengths, i))
        assert alone.tokens[0] == batched.tokens[i]
        assert alone.reached_eos[0] == batched.reached_eos[i]
        assert torch.allclose(alone.scores[0], batched.scores[i], atol=1e-12)
        assert torch.allclose(alone.normalized_scores[0], batched.normalized_scores[i],
                              atol=1e-12)
        assert torch.allclose(alone.alignments[0], batched.alignments[i], atol=1e-12)
    assert len({len(t) for t in batched.tokens}) > 1  # sentences end at different lengths


# --- stopping ---------------------------------------------------------------------------------

@pytest.mark.parametrize("decode", ["greedy", "beam0", "beam1"])
def test_sentences_stop_at_their_eos_and_are_not_extended(decode):
    model = ScriptedModel(SCRIPTS)
    src, src_lengths = _scripted_batch()
    if decode == "greedy":
        result = greedy_decode(model, src, src_lengths, max_len=11, return_alignment=True)
    else:
        result = beam_search(model, src, src_lengths, beam_size=3, max_len=11,
                             length_penalty=float(decode[-1]), return_alignment=True)
    assert result.tokens == SCRIPTS
    assert result.reached_eos == [True] * len(SCRIPTS)
    longest = max(len(s) for s in SCRIPTS) + 1
    assert len(model.fed) == longest  # stopped at the last EOS, not at max_len
    for step, (keys, _) in enumerate(model.fed, start=1):
        # A sentence is fed at step t only while its hypothesis has not ended.
        assert set(keys.tolist()) == {k for k, s in enumerate(SCRIPTS) if len(s) + 1 >= step}
    assert [tuple(a.shape) for a in result.alignments] == \
        [(len(s) + 1, int(n)) for s, n in zip(SCRIPTS, src_lengths, strict=True)]


@pytest.mark.parametrize("decode", ["greedy", "beam"])
def test_max_len_is_respected(decode):
    table = torch.randn(3, 6, 8, 6, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
    table[..., EOS] = -30.0  # EOS (almost) never wins
    model = TableModel(table=table, alignment=True)
    src, src_lengths = _batch([[3, 4], [4], [5, 5, 5, 5]])
    run = (lambda **kw: greedy_decode(model, src, src_lengths, return_alignment=True, **kw)) \
        if decode == "greedy" else \
        (lambda **kw: beam_search(model, src, src_lengths, beam_size=2, return_alignment=True,
                                  length_penalty=1.0, **kw))
    for max_len, limits in [(3, [3, 3, 3]), (lambda n: n + 1, [3, 2, 5]),
                            (lambda n: 1, [1, 1, 1]), (torch.tensor([1, 4, 2]), [1, 4, 2])]:
        model.fed.clear()
        result = run(max_len=max_len)
        assert [len(t) for t in result.tokens] == limits
        assert result.reached_eos == [False] * 3
        assert len(model.fed) == max(limits)
        assert [a.shape[0] for a in result.alignments] == limits
        for tokens in result.tokens:
            assert all(t not in (PAD, BOS, EOS) for t in tokens)


def test_pad_and_bos_are_never_generated():
    table = torch.zeros(2, 6, 8, 6, dtype=torch.float64)
    table[..., PAD] = 8.0  # the most likely tokens, if they were not masked
    table[..., BOS] = 6.0
    table[..., 4] = 1.0
    table[..., EOS] = -30.0
    table[:, :, 3, EOS] = 2.0  # EOS is likely only as the 4th token
    model = TableModel(table=table)
    src, src_lengths = _batch([[3], [4, 3]])
    for result in (greedy_decode(model, src, src_lengths, max_len=6),
                   beam_search(model, src, src_lengths, beam_size=4, max_len=6)):
        assert result.tokens == [[4, 4, 4], [4, 4, 4]]
        assert result.reached_eos == [True, True]
        assert torch.isfinite(result.scores).all()


# --- ties and determinism ---------------------------------------------------------------------

def test_ties_go_to_the_lowest_token_id():
    table = torch.zeros(1, 6, 8, 6, dtype=torch.float64)  # every token equally likely
    model = TableModel(table=table)
    src, src_lengths = _batch([[3, 4], [5]])
    for result in (greedy_decode(model, src, src_lengths, max_len=4),
                   beam_search(model, src, src_lengths, beam_size=3, max_len=4,
                               length_penalty=0.0)):
        assert result.tokens == [[], []]  # EOS (2) is the lowest id PAD and BOS leave
        assert result.reached_eos == [True, True]
    table[..., EOS] = -1.0
    for result in (greedy_decode(model, src, src_lengths, max_len=4),
                   beam_search(model, src, src_lengths, beam_size=3, max_len=4,
                               length_penalty=0.0)):
        assert result.tokens == [[3, 3, 3, 3]] * 2


def test_results_are_deterministic():
    model, src, src_lengths = _gru_setup(seed=5)
    for run in (lambda: greedy_decode(model, src, src_lengths, max_len=8,
                                      return_alignment=True),
                lambda: beam_search(model, src, src_lengths, beam_size=5, max_len=8,
                                    return_alignment=True)):
        _assert_same(run(), run())


# --- dtypes and alignments -------------------------------------------------------------------

def test_log_softmax_runs_in_float32_for_low_precision_logits():
    model, src, src_lengths = _table_setup()
    low = TableModel(table=model.table, dtype=torch.bfloat16)
    for result in (greedy_decode(low, src, src_lengths, max_len=4),
                   beam_search(low, src, src_lengths, beam_size=2, max_len=4)):
        assert result.scores.dtype == torch.float32
        assert result.normalized_scores.dtype == torch.float32
    assert greedy_decode(model, src, src_lengths, max_len=4).scores.dtype == torch.float64


def test_alignments_are_none_when_not_asked_or_not_given():
    model, src, src_lengths = _table_setup()
    no_align = TableModel(table=model.table, alignment=False)
    gru, gsrc, glengths = _gru_setup()
    for decode in (greedy_decode, lambda *a, **k: beam_search(*a, beam_size=2, **k)):
        assert decode(no_align, src, src_lengths, max_len=4,
                      return_alignment=True).alignments is None
        assert decode(model, src, src_lengths, max_len=4).alignments is None
        result = decode(gru, gsrc, glengths, max_len=6, return_alignment=True)
        for tokens, reached, align, length in zip(result.tokens, result.reached_eos,
                                                  result.alignments, glengths, strict=True):
            assert align.shape == (len(tokens) + reached, int(length))
            assert torch.allclose(align.sum(-1), torch.ones(align.shape[0], dtype=align.dtype))


def test_empty_batch():
    model = TableModel()
    src = torch.zeros(0, 3, dtype=torch.long)
    result = beam_search(model, src, torch.zeros(0, dtype=torch.long), max_len=5)
    assert result.tokens == [] and result.scores.shape == (0,) and result.alignments is None
    assert greedy_decode(model, src, torch.zeros(0, dtype=torch.long), max_len=5).tokens == []
    assert model.fed == []


# --- bad arguments -----------------------------------------------------------------------------

SRC, LENGTHS = _batch([[3, 4], [5]])
BAD_BEAM_ARGUMENTS = [
    (dict(beam_size=0), ValueError, "beam_size"),
    (dict(beam_size=2.0), TypeError, "beam_size"),
    (dict(beam_size=True), TypeError, "beam_size"),
    (dict(length_penalty=math.nan), ValueError, "length_penalty"),
    (dict(length_penalty="1"), TypeError, "length_penalty"),
]
BAD_ARGUMENTS = [
    (dict(max_len=0), ValueError, "max_len"),
    (dict(max_len="5"), TypeError, "max_len"),
    (dict(max_len=lambda n: n - 2), ValueError, r"max_len\(src_lengths\)"),
    (dict(max_len=lambda n: n * 1.5), TypeError, r"max_len\(src_lengths\)"),
    (dict(max_len=torch.tensor([3, 4, 5])), ValueError, "max_len"),
    (dict(src=SRC[0]), ValueError, "src"),
    (dict(src=SRC.float()), TypeError, "src"),
    (dict(src=SRC.tolist()), TypeError, "src"),
    (dict(src_lengths=LENGTHS[:1]), ValueError, "src_lengths"),
    (dict(src_lengths=LENGTHS.float()), TypeError, "src_lengths"),
    (dict(src_lengths=torch.tensor([2, 0])), ValueError, r"src_lengths must be in \[1, S\]"),
    (dict(src_lengths=torch.tensor([3, 1])), ValueError, "src_lengths"),
    (dict(src_lengths=torch.tensor([2, -1])), ValueError, "src_lengths"),
    (dict(eos_id=0), ValueError, "eos_id"),
    (dict(bos_id=-1), ValueError, "bos_id"),
    (dict(eos_id=6), ValueError, "V = 6"),
    (dict(return_alignment=1), TypeError, "return_alignment"),
    (dict(model=object()), TypeError, "model"),
]


@pytest.mark.parametrize("decode, kwargs, error, name",
                         [("greedy", *case) for case in BAD_ARGUMENTS]
                         + [("beam", *case) for case in BAD_ARGUMENTS + BAD_BEAM_ARGUMENTS])
def test_bad_arguments_raise_naming_the_argument(decode, kwargs, error, name):
    args = dict(model=TableModel(), src=SRC, src_lengths=LENGTHS, max_len=4)
    args.update(kwargs)
    model, src, src_lengths = args.pop("model"), args.pop("src"), args.pop("src_lengths")
    with pytest.raises(error, match=name):
        (greedy_decode if decode == "greedy" else beam_search)(model, src, src_lengths, **args)


class _BrokenModel(TableModel):
    def __init__(self, mode):
        super().__init__(alignment=True)
        self.table[..., EOS] = -30.0  # run to max_len
        self.mode = mode

    def decode_step(self, tokens, state, *, return_alignment=False):
        logits, state, align = super().decode_step(tokens, state,
                                                   return_alignment=return_alignment)
        if self.mode == "shape":
            logits = logits[:, None]
        elif self.mode == "nan":
            logits = logits.clone()
            logits[0, 3] = math.nan
        elif self.mode == "flaky_alignment" and int(state["step"][0]) == 2:
            align = None
        return logits, state, align


@pytest.mark.parametrize("mode", ["shape", "nan", "flaky_alignment"])
def test_bad_model_outputs_raise(mode):
    model = _BrokenModel(mode)
    for decode in (greedy_decode, beam_search):
        with pytest.raises(ValueError, match="decode_step"):
            decode(model, SRC, LENGTHS, max_len=4, return_alignment=True)
