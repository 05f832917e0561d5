"""Batched greedy and beam-search decoding for encoder-decoder models.

Beam search as used for neural machine translation since Sutskever, Vinyals & Le (2014,
"Sequence to Sequence Learning with Neural Networks", arXiv:1409.3215), ranked with the length
penalty of Wu et al. (2016, "Google's Neural Machine Translation System", arXiv:1609.08144, sec. 7):

    lp(T) = ((5 + T) / 6) ** alpha          score(Y) = log P(Y | X) / lp(T)

Deviations from GNMT: no coverage penalty and no score-window pruning; T counts the generated
tokens including the final EOS; the stopping rule is exact (see :func:`beam_search`).

Both decoders drive any model that implements the seq2seq decoding protocol (the Transformer
and the RNN seq2seq of :mod:`attnkit.models`), and use nothing else from it::

    start_decoding(src (B, S), src_lengths (B,)) -> state
    decode_step(tokens (R,), state, *, return_alignment)
        -> (logits (R, V), state, alignment (R, S) or None)
    reorder_state(state, index (R',)) -> state       # new row j = old row index[j]

Rows are compacted as sentences finish: a finished sentence is never fed to ``decode_step``
again, and its rows are dropped with ``reorder_state`` (which therefore receives indices that
repeat rows for beam expansion and skip rows of finished sentences). The state handed to
``reorder_state`` is never used again, so models may reorder their caches in place.

Log-softmax runs in float32 (float64 for float64 logits). PAD and BOS get log-probability
``-inf`` after the log-softmax, so scores are the model's own log-probabilities (not renormalized
over the allowed tokens) and neither token is ever generated. Ties go to the lower token id
(beam search: to the higher-ranked parent hypothesis first, then the lower token id).
Decoding runs under ``torch.no_grad()``; put the model in ``eval()`` mode first (dropout).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch

from attnkit._validate import check_bool, check_float, check_int
from attnkit.nn._inputs import check_source

__all__ = ["DecodeResult", "beam_search", "gnmt_length_penalty", "greedy_decode"]

MaxLen = int | torch.Tensor | Callable[[torch.Tensor], "int | torch.Tensor"]


@dataclass
class DecodeResult:
    """The output of :func:`greedy_decode` / :func:`beam_search` for B source sentences.

    ``T_i`` is the number of decoding steps behind sentence i: ``len(tokens[i]) + 1`` when it
    ended with EOS, ``len(tokens[i])`` when ``max_len`` cut it (``reached_eos[i]`` is False).
    """

    tokens: list[list[int]]  # B lists of output ids, without BOS and without the final EOS
    scores: torch.Tensor  # (B,) sum of the log-probs of the T_i chosen tokens, EOS included
    alignments: list[torch.Tensor] | None  # B tensors (T_i, S_i): row t = step t's weights over
    # the S_i real source positions (the EOS step included); None unless asked for and given
    normalized_scores: torch.Tensor  # (B,) scores / lp(T_i), beam search's ranking score;
    # greedy: equal to scores (no length penalty)
    reached_eos: list[bool]  # B flags: True = ended with EOS, False = cut at max_len


def gnmt_length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ``((5 + length) / 6) ** alpha`` (Wu et al. 2016, arXiv:1609.08144).

    ``length`` counts the generated tokens including EOS; ``alpha = 0`` gives 1 (no penalty).
    """
    return ((5 + length) / 6) ** alpha


# --- argument checks ------------------------------------------------------------------------

def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_model(model: object) -> None:
    missing = [name for name in ("start_decoding", "decode_step", "reorder_state")
               if not callable(getattr(model, name, None))]
    if missing:
        raise TypeError(f"model must implement the seq2seq decoding protocol (start_decoding, "
                        f"decode_step, reorder_state); {type(model).__name__} has no "
                        f"{', '.join(missing)}")


def _check_token_ids(bos_id: object, eos_id: object, pad_id: object) -> None:
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
        check_int(value, name, minimum=0)
    if eos_id in (bos_id, pad_id):
        raise ValueError(f"eos_id must differ from bos_id and pad_id (those are never "
                         f"generated), got eos_id={eos_id}, bos_id={bos_id}, pad_id={pad_id}")


def _max_lengths(max_len: object, src_lengths: torch.Tensor) -> list[int]:
    """Per-sentence step limits from an int, a (B,) tensor or a callable of src_lengths."""
    batch = src_lengths.shape[0]
    where = "max_len"
    if callable(max_len):
        where = "max_len(src_lengths)"
        max_len = max_len(src_lengths)
    if isinstance(max_len, torch.Tensor) and max_len.dim() == 0:
        max_len = max_len.item()
    if _is_int(max_len):
        limits = [int(max_len)] * batch
    elif isinstance(max_len, torch.Tensor):
        if max_len.dtype.is_floating_point or max_len.dtype.is_complex \
                or max_len.dtype == torch.bool:
            raise TypeError(f"{where} must hold integers, got {max_len.dtype} "
                            f"(round and call .long() first)")
        if tuple(max_len.shape) != (batch,):
            raise ValueError(f"{where} must be an int or a (B,) = ({batch},) tensor, got shape "
                             f"{tuple(max_len.shape)}")
        limits = [int(v) for v in max_len.tolist()]
    else:
        raise TypeError(f"{where} must be an int, a (B,) integer tensor or a callable of "
                        f"src_lengths returning one, got {type(max_len).__name__}")
    if limits and min(limits) < 1:
        raise ValueError(f"{where} must be >= 1 for every sentence, got {limits}")
    return limits


# --- one decoding step ----------------------------------------------------------------------

def _decode_step(model, tokens: torch.Tensor, state, return_alignment: bool, rows: int,
                 width: int, step: int) -> tuple[torch.Tensor, object, torch.Tensor | None]:
    """Call ``model.decode_step`` and check what comes back (alignment None unless asked)."""
    out = model.decode_step(tokens, state, return_alignment=return_alignment)
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError(f"model.decode_step must return (logits, state, alignment), got "
                        f"{type(out).__name__} at step {step}")
    logits, state, align = out
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != rows:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"model.decode_step must return logits (R, V) with R = {rows} rows at "
                         f"step {step}, got {got}")
    if not return_alignment or align is None:
        return logits, state, None
    if not isinstance(align, torch.Tensor) or tuple(align.shape) != (rows, width):
        got = tuple(align.shape) if isinstance(align, torch.Tensor) else type(align).__name__
        raise ValueError(f"model.decode_step must return an alignment (R, S) = ({rows}, "
                         f"{width}) or None at step {step}, got {got}")
    return logits, state, align


def _log_probs(logits: torch.Tensor, step: int, bos_id: int, eos_id: int,
               pad_id: int) -> torch.Tensor:
    """(R, V) log-softmax in float32 (float64 for float64 logits), PAD and BOS set to -inf."""
    if not logits.dtype.is_floating_point:
        raise TypeError(f"model.decode_step must return floating-point logits, got "
                        f"{logits.dtype}")
    vocab = logits.shape[1]
    if max(bos_id, eos_id, pad_id) >= vocab:
        raise ValueError(f"bos_id, eos_id and pad_id must be < V = {vocab} (the logits' last "
                         f"dimension), got {bos_id}, {eos_id}, {pad_id}")
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logp = torch.log_softmax(logits.to(dtype), dim=-1)  # (R, V)
    if bool(torch.isnan(logp).any()):
        raise ValueError(f"model.decode_step returned logits that give NaN log-probs at step "
                         f"{step} (NaN or +inf logits)")
    logp[:, pad_id] = -math.inf
    logp[:, bos_id] = -math.inf
    return logp


def _alignment_consistency(align: torch.Tensor | None, wanted: bool, step: int) -> None:
    if (align is not None) != wanted:
        raise ValueError(f"model.decode_step returned an alignment on some steps and None on "
                         f"others (step {step}); it must do one or the other")


@dataclass
class _Start:
    """What both decoders start from once the arguments are checked and the source encoded."""

    state: object  # the model's decoding state for the B sentences
    width: int  # S, the padded source length
    limits: list[int]  # B per-sentence step limits
    sentence: torch.Tensor  # (B,) the sentence of each row (rows are compacted later)
    limit: torch.Tensor  # (B,) limits as a tensor
    tokens: torch.Tensor  # (B,) BOS, the first input of every row


def _start(model, src: object, src_lengths: object, max_len: object,
           special_ids: tuple[object, object, object], return_alignment: object,
           ) -> _Start | None:
    """Check the arguments both decoders share and encode the source (under no_grad);
    None for an empty batch."""
    _check_model(model)
    _check_token_ids(*special_ids)
    check_bool(return_alignment, "return_alignment")
    batch, width = check_source(src, src_lengths, allow_empty=True)
    limits = _max_lengths(max_len, src_lengths)
    if batch == 0:
        return None
    device = src.device
    with torch.no_grad():
        state = model.start_decoding(src, src_lengths)
    return _Start(state=state, width=width, limits=limits,
                  sentence=torch.arange(batch, device=device),
                  limit=torch.tensor(limits, device=device),
                  tokens=torch.full((batch,), special_ids[0], dtype=torch.long, device=device))


def _empty_result(return_alignment: bool) -> DecodeResult:
    return DecodeResult(tokens=[], scores=torch.zeros(0), alignments=[] if return_alignment
                        else None, normalized_scores=torch.zeros(0), reached_eos=[])


# --- greedy -----------------------------------------------------------------------------------

def greedy_decode(model, src: torch.Tensor, src_lengths: torch.Tensor, *, max_len: MaxLen,
                  bos_id: int = 1, eos_id: int = 2, pad_id: int = 0,
                  return_alignment: bool = False) -> DecodeResult:
    """Decode every sentence of the batch by taking the most probable token at each step.

    Args:
        model: implements the seq2seq decoding protocol (module docstring).
        src: (B, S) int64/int32 source ids, padded with ``pad_id``.
        src_lengths: (B,) int64/int32 real source lengths, in [1, S] (the rule of
            :func:`attnkit.nn._inputs.check_source`, shared with the models).
        max_len: the most decoding steps (generated tokens, EOS included) per sentence: an int,
            a (B,) integer tensor, or a callable ``src_lengths (B,) -> int | (B,) tensor``
            (e.g. ``lambda lengths: 2 * lengths + 10``). Every value must be >= 1.
        bos_id, eos_id, pad_id: special ids; PAD and BOS are never generated.
        return_alignment: collect the model's per-step alignments (None if it has none).

    Returns:
        :class:`DecodeResult`; ``scores`` = ``normalized_scores`` = the sum of the chosen
        tokens' log-probs. A sentence stops at its first EOS or after ``max_len`` steps.
    """
    start = _start(model, src, src_lengths, max_len, (bos_id, eos_id, pad_id), return_alignment)
    if start is None:
        return _empty_result(return_alignment)
    state, width, limits = start.state, start.width, start.limits
    sentence, limit, tokens = start.sentence, start.limit, start.tokens  # (R,), (B,), (R,)
    batch, device, max_steps = len(limits), src.device, max(limits)
    with torch.no_grad():
        out = torch.full((batch, max_steps), pad_id, dtype=torch.long, device=device)
        steps = torch.zeros(batch, dtype=torch.long, device=device)  # (B,) T_i so far
        scores = aligns = None
        for step in range(1, max_steps + 1):
            logits, state, align = _decode_step(model, tokens, state, return_alignment,
                                                sentence.numel(), width, step)
            logp = _log_probs(logits, step, bos_id, eos_id, pad_id)  # (R, V)
            if step == 1:
                scores = torch.zeros(batch, dtype=logp.dtype, device=device)
                if align is not None:
                    aligns = align.new_zeros(batch, max_steps, width)  # (B, T, S)
            _alignment_consistency(align, aligns is not None, step)
            choice = logp.argmax(dim=-1)  # (R,) the first maximum = the lowest id on ties
            scores[sentence] = scores[sentence] + logp.gather(1, choice[:, None]).squeeze(1)
            out[sentence, step - 1] = choice
            steps[sentence] = step
            if aligns is not None:
                aligns[sentence, step - 1] = align
            done = (choice == eos_id) | (limit[sentence] <= step)  # (R,)
            if bool(done.all()):
                break
            if bool(done.any()):
                keep = (~done).nonzero().squeeze(1)  # (R',)
                state = model.reorder_state(state, keep)
                sentence, choice = sentence[keep], choice[keep]
            tokens = choice
    lengths = steps.tolist()
    rows = out.tolist()
    src_len = src_lengths.tolist()
    reached = [rows[i][lengths[i] - 1] == eos_id for i in range(batch)]
    return DecodeResult(
        tokens=[rows[i][:lengths[i] - reached[i]] for i in range(batch)],
        scores=scores,
        alignments=None if aligns is None else
        [aligns[i, :lengths[i], :src_len[i]] for i in range(batch)],
        normalized_scores=scores.clone(),
        reached_eos=reached,
    )


# --- beam search ------------------------------------------------------------------------------

def _topk_stable(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` of each row of ``scores (N, M)``, best first, equal scores by lower index.

    ``torch.topk`` leaves the choice among equal values at the cut unspecified, so it only
    finds the threshold; the kept entries are then chosen and ordered by (score, -index).
    """
    rows = scores.shape[0]
    threshold = scores.topk(k, dim=-1).values[:, -1:]  # (N, 1) the k-th largest value
    above = scores > threshold  # (N, M)
    equal = scores == threshold  # (N, M)
    room = k - above.sum(dim=-1, keepdim=True)  # (N, 1) how many ties at the cut fit
    take = above | (equal & (equal.cumsum(dim=-1) <= room))  # exactly k per row
    index = take.nonzero()[:, 1].view(rows, k)  # (N, k) ascending within each row
    values = scores.gather(1, index)  # (N, k)
    order = values.argsort(dim=-1, descending=True, stable=True)  # (N, k)
    return values.gather(1, order), index.gather(1, order)


def beam_search(model, src: torch.Tensor, src_lengths: torch.Tensor, *, beam_size: int = 4,
                max_len: MaxLen, length_penalty: float = 1.0, bos_id: int = 1,
                eos_id: int = 2, pad_id: int = 0,
                return_alignment: bool = False) -> DecodeResult:
    """Beam search over the whole batch at once; returns the best hypothesis per sentence.

    Each sentence keeps ``beam_size`` live hypotheses, flattened to ``(n * beam_size)`` rows
    (one row per sentence at the first step). At every step the candidates (live hypothesis,
    next token) are ranked by summed log-prob, ties going to the higher-ranked hypothesis and
    then the lower token id. EOS candidates among the best ``beam_size`` end (the usual NMT
    rule); the best ``beam_size`` non-EOS candidates become the next live hypotheses. At a
    sentence's ``max_len`` every candidate ends. Ended hypotheses compete by
    ``normalized score = log P / lp(T)`` with ``lp`` = :func:`gnmt_length_penalty`; among equal
    normalized scores the one that ended first wins.

    Stopping rule (exact): every log-prob is <= 0, so a live hypothesis with score ``s`` after
    ``t`` steps can only end with a score <= ``s`` at a length T in [t + 1, max_len_i], i.e.
    with a normalized score <= ``max(s / lp(t + 1), s / lp(max_len_i))`` (lp is monotone in T,
    so the maximum over T sits at an end; for alpha >= 0 it is ``s / lp(max_len_i)``). A
    sentence stops as soon as its best ended hypothesis reaches that bound for its best live
    one, so the result equals running it to ``max_len``: the rule "``beam_size`` ended
    hypotheses that no live one can beat", specialized to the single best hypothesis returned
    (only an n-best list would need more). With alpha > 0 the bound is loose (it assumes the
    live hypothesis loses nothing more until ``max_len``), so search may run longer than with
    heuristic rules; with alpha = 0 it stops as soon as the best ended beats every live score.
    With ``length_penalty=0`` and ``beam_size=1`` the result equals :func:`greedy_decode`.

    Args:
        model: implements the seq2seq decoding protocol (module docstring).
        src: (B, S) int64/int32 source ids, padded with ``pad_id``.
        src_lengths: (B,) int64/int32 real source lengths, in [1, S] (the rule of
            :func:`attnkit.nn._inputs.check_source`, shared with the models).
        beam_size: live hypotheses per sentence, >= 1.
        max_len: the most decoding steps (generated tokens, EOS included) per sentence: an int,
            a (B,) integer tensor, or a callable ``src_lengths (B,) -> int | (B,) tensor``
            (e.g. ``lambda lengths: 2 * lengths + 10``). Every value must be >= 1.
        length_penalty: alpha of the GNMT penalty (0 = rank by raw log-prob; finite).
        bos_id, eos_id, pad_id: special ids; PAD and BOS are never generated.
        return_alignment: collect each returned hypothesis's per-step alignments.

    Returns:
        :class:`DecodeResult`: ``scores`` (B,) = summed log-probs of the returned hypothesis
        before the length penalty; ``normalized_scores`` (B,) = ``scores / lp(T_i)``, the
        score it was ranked by.
    """
    check_int(beam_size, "beam_size", minimum=1)
    length_penalty = check_float(length_penalty,
                                 "length_penalty (alpha of ((5 + T) / 6) ** alpha)")
    start = _start(model, src, src_lengths, max_len, (bos_id, eos_id, pad_id), return_alignment)
    if start is None:
        return _empty_result(return_alignment)
    # sentence (n,): original index of the active sentences; tokens (n * beams,)
    sentence, limit, tokens, width = start.sentence, start.limit, start.tokens, start.width
    state, limits, device = start.state, start.limits, src.device
    batch, max_steps = len(limits), max(limits)
    with torch.no_grad():
        beams = 1  # live hypotheses per active sentence
        live = None  # (n, beams) summed log-probs of the live hypotheses
        # Best ended hypothesis per sentence: it ended at step best_step, extending input row
        # best_row of that step with best_token. Rows are traced back through the history.
        best_step = torch.zeros(batch, dtype=torch.long, device=device)
        best_row = torch.zeros(batch, dtype=torch.long, device=device)
        best_token = torch.zeros(batch, dtype=torch.long, device=device)
        has_best = torch.zeros(batch, dtype=torch.bool, device=device)
        parents, chosen, aligns = [], [], []  # per step: (R',) input row, (R',) token, (R, S)
        for step in range(1, max_steps + 1):
            n = sentence.numel()
            logits, state, align = _decode_step(model, tokens, state, return_alignment,
                                                n * beams, width, step)
            logp = _log_probs(logits, step, bos_id, eos_id, pad_id)  # (n * beams, V)
            vocab = logp.shape[1]
            if step == 1:
                dtype = logp.dtype
                penalty = torch.tensor([gnmt_length_penalty(t, length_penalty)
                                        for t in range(max_steps + 2)],
                                       dtype=torch.float64).to(device=device, dtype=dtype)
                best_raw = torch.full((batch,), -math.inf, dtype=dtype, device=device)
                best_norm = best_raw.clone()
                live = torch.zeros(n, 1, dtype=dtype, device=device)
                collect = align is not None
            _alignment_consistency(align, collect, step)
            if collect:
                aligns.append(align)
            cand = (live.reshape(-1, 1) + logp).view(n, beams * vocab)  # index = beam * V + token
            first_row = torch.arange(n, device=device) * beams  # (n,)
            at_limit = limit[sentence] <= step  # (n,)

            # Hypotheses that end now: EOS among the best beam_size, everything at max_len.
            top, top_index = _topk_stable(cand, min(beam_size, beams * vocab))  # (n, k)
            ends_eos = (top_index % vocab == eos_id) & torch.isfinite(top)  # (n, k)
            pick = torch.where(at_limit, 0, ends_eos.long().argmax(dim=1))  # (n,) rank
            ending = at_limit | ends_eos.any(dim=1)
            end_raw = top.gather(1, pick[:, None]).squeeze(1)  # (n,)
            end_norm = end_raw / penalty[step]
            better = ending & (~has_best[sentence] | (end_norm > best_norm[sentence]))
            if bool(better.any()):
                who = sentence[better]
                end_index = top_index.gather(1, pick[:, None]).squeeze(1)  # (n,)
                best_raw[who] = end_raw[better]
                best_norm[who] = end_norm[better]
                best_step[who] = step
                best_row[who] = (first_row + end_index // vocab)[better]
                best_token[who] = (end_index % vocab)[better]
                has_best[who] = True

            # The next live hypotheses: the best beam_size continuations other than EOS.
            no_eos = cand.view(n, beams, vocab).clone()
            no_eos[:, :, eos_id] = -math.inf
            next_beams = min(beam_size, beams * vocab)
            live, live_index = _topk_stable(no_eos.view(n, -1), next_beams)  # (n, beams')

            # Stop sentences whose best ended hypothesis no live one can still beat.
            best_live = live[:, 0]
            bound = torch.maximum(best_live / penalty[step + 1],
                                  best_live / penalty[limit[sentence]])  # (n,)
            done = at_limit | (has_best[sentence] & (best_norm[sentence] >= bound))
            keep = (~done).nonzero().squeeze(1)  # (n',)
            rows = (first_row[keep, None] + live_index[keep] // vocab).reshape(-1)  # (n'*b',)
            tokens = (live_index[keep] % vocab).reshape(-1)  # (n' * beams',)
            parents.append(rows)
            chosen.append(tokens)
            if keep.numel() == 0:
                break
            state = model.reorder_state(state, rows)
            live, sentence, beams = live[keep], sentence[keep], next_beams
    return _trace_back(best_step, best_row, best_token, best_raw, best_norm, parents, chosen,
                       aligns if collect else None, src_lengths, eos_id)


def _trace_back(best_step: torch.Tensor, best_row: torch.Tensor, best_token: torch.Tensor,
                best_raw: torch.Tensor, best_norm: torch.Tensor, parents: list[torch.Tensor],
                chosen: list[torch.Tensor], aligns: list[torch.Tensor] | None,
                src_lengths: torch.Tensor, eos_id: int) -> DecodeResult:
    """Rebuild each sentence's best hypothesis from the per-step back-pointers.

    ``parents[s - 1][r]`` is the input row of step s that live row r after step s extends,
    ``chosen[s - 1][r]`` its token, and ``aligns[s - 1]`` the alignments of step s's input rows.
    """
    parent_rows = [p.tolist() for p in parents]
    chosen_tokens = [c.tolist() for c in chosen]
    flat_aligns = offsets = None
    if aligns is not None:
        flat_aligns = torch.cat(aligns)  # (sum of R over steps, S)
        offsets = [0]
        for a in aligns:
            offsets.append(offsets[-1] + a.shape[0])
    src_len = src_lengths.tolist()
    tokens, reached, alignments = [], [], []
    for i, (end, row, last) in enumerate(zip(best_step.tolist(), best_row.tolist(),
                                             best_token.tolist(), strict=True)):
        sequence, path = [last], [row]  # path: the input row of steps end, end - 1, ..., 1
        for s in range(end - 1, 0, -1):
            sequence.append(chosen_tokens[s - 1][row])
            row = parent_rows[s - 1][row]
            path.append(row)
        sequence.reverse()
        path.reverse()
        reached.append(last == eos_id)
        tokens.append(sequence[:-1] if last == eos_id else sequence)
        if flat_aligns is not None:
            index = torch.tensor([offsets[s] + r for s, r in enumerate(path)],
                                 device=flat_aligns.device)
            alignments.append(flat_aligns.index_select(0, index)[:, :src_len[i]])  # (T_i, S_i)
    return DecodeResult(tokens=tokens, scores=best_raw, normalized_scores=best_norm,
                        alignments=alignments if flat_aligns is not None else None,
                        reached_eos=reached)
