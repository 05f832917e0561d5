"""Test-set scores of a translator: sacreBLEU BLEU and chrF, overall and by source length.

BLEU (Papineni et al. 2002) and chrF (Popović 2015) come from sacreBLEU (Post 2018,
arXiv:1804.08771) with their signatures, so the numbers are comparable across runs. The
by-length table buckets test sentences by their English length in words: the analogue of
Bahdanau et al.'s Figure 2 (arXiv:1409.0473).

Two held-out sets can be scored: the test split, and ``test-long``, the length-stratified
long sentences carved out of the train split (:mod:`attnkit.data.translation.split`), which
only a run trained with ``hold_out_long`` may be scored on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from attnkit._validate import check_choice, check_int
from attnkit.data import load_corpus
from attnkit.data.translation.split import TEST_LONG, TEST_LONG_BUCKETS
from attnkit.errors import UserError
from attnkit.experiments.translate.config import MAX_BEAM, TranslateConfig
from attnkit.experiments.translate.translator import Translator, load_translator

__all__ = ["LENGTH_BUCKETS", "SPLIT_BUCKETS", "EVAL_SPLITS", "evaluate", "evaluate_split",
           "alignment_sentences", "corpus_bleu", "check_held_out"]

# Source-length buckets in English words (the corpus keeps 3-50 words).
LENGTH_BUCKETS: tuple[tuple[int, int], ...] = ((3, 5), (6, 8), (9, 12), (13, 20), (21, 50))
EVAL_SPLITS = ("test", TEST_LONG)  # what a checkpoint can be scored on
#: the by-length buckets of each split: test-long has its own strata
SPLIT_BUCKETS: dict[str, tuple[tuple[int, int], ...]] = {"test": LENGTH_BUCKETS,
                                                         TEST_LONG: TEST_LONG_BUCKETS}


def _sacrebleu() -> ModuleType:
    try:
        import sacrebleu
    except ImportError as exc:
        raise ImportError("evaluation needs sacrebleu: pip install 'attnkit[data]'") from exc
    return sacrebleu


def _scores(sacrebleu: ModuleType, hypotheses: list[str], references: list[str]):
    bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
    return (bleu, bleu.corpus_score(hypotheses, [references]),
            chrf, chrf.corpus_score(hypotheses, [references]))


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """sacreBLEU's corpus BLEU (default signature) of N hypotheses against N references."""
    return _sacrebleu().metrics.BLEU().corpus_score(hypotheses, [references]).score


def check_held_out(config: TranslateConfig, split: str, where: str = "checkpoint") -> None:
    """Refuse to score a model on ``split`` when it was trained on that split's pairs (the
    leakage guard): test-long needs a run trained with ``hold_out_long``."""
    check_choice(split, "split", EVAL_SPLITS)
    if split == TEST_LONG and not config.hold_out_long:
        raise UserError(f"{where}: this model was trained on the test-long pairs (its run did "
                        f"not pass --hold-out-long), so a test-long score would be inflated; "
                        f"score it on the test split, or train with --hold-out-long")


def evaluate_split(translator: Translator, pairs: Sequence[tuple[str, str]],
                   config: TranslateConfig, *, split: str = "test",
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """BLEU and chrF of ``translator`` on ``pairs`` (first ``config.test_limit`` of them),
    decoded with ``config.beam_size`` and ``config.length_penalty``.

    Args:
        split: which split ``pairs`` are, one of :data:`EVAL_SPLITS`: it names the
            by-length buckets (:data:`SPLIT_BUCKETS`) and, for "test-long", requires
            ``config.hold_out_long`` (:func:`check_held_out`).

    Returns:
        metrics: ``split``, ``bleu``, ``chrf``, their signatures, ``by_length`` (one entry per
        bucket of the split), ``samples`` (eight outputs), decoding time, and
        ``translations``: ``sources``, ``references`` and ``hypotheses``, N strings each in
        the order scored (what paired significance tests need).
    """
    check_held_out(config, split, where="split")
    sacrebleu = _sacrebleu()
    pairs = list(pairs)[:config.test_limit] if config.test_limit else list(pairs)
    if not pairs:
        raise UserError(f"the {split} split is empty: the corpus is too small to evaluate on")
    translator.beam_size, translator.length_penalty = config.beam_size, config.length_penalty
    start = time.perf_counter()
    hypotheses, _ = translator.translate([p[0] for p in pairs])
    decode_s = time.perf_counter() - start
    references = [p[1] for p in pairs]
    bleu, bleu_score, chrf, chrf_score = _scores(sacrebleu, hypotheses, references)
    buckets = []
    for low, high in SPLIT_BUCKETS[split]:
        idx = [i for i, p in enumerate(pairs) if low <= len(p[0].split()) <= high]
        entry: dict[str, Any] = {"bucket": f"{low}-{high}", "sentences": len(idx)}
        if idx:
            _, bucket_bleu, _, bucket_chrf = _scores(
                sacrebleu, [hypotheses[i] for i in idx], [references[i] for i in idx])
            entry["bleu"], entry["chrf"] = bucket_bleu.score, bucket_chrf.score
        buckets.append(entry)
    log(f"{split}: BLEU {bleu_score.score:.2f}  chrF {chrf_score.score:.2f}  "
        f"({len(pairs)} sentences, beam {config.beam_size}, {decode_s:.1f} s)")
    samples = [{"source": pairs[i][0], "reference": references[i], "output": hypotheses[i]}
               for i in range(min(8, len(pairs)))]
    return {"model": translator.kind, "split": split, "test_sentences": len(pairs),
            "bleu": bleu_score.score,
            "bleu_signature": str(bleu.get_signature()), "chrf": chrf_score.score,
            "chrf_signature": str(chrf.get_signature()), "by_length": buckets,
            "decode_s": decode_s, "beam_size": config.beam_size,
            "length_penalty": config.length_penalty, "samples": samples,
            "translations": {"sources": [p[0] for p in pairs], "references": references,
                             "hypotheses": list(hypotheses)}}


def evaluate(path: str | os.PathLike, *, split: str = "test", beam_size: int | None = None,
             test_limit: int | None = None, data_dir: str | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate a checkpoint on its corpus's test split (BLEU, chrF, by length).

    Args:
        path: a report directory, its checkpoints/ folder or a ckpt-* folder.
        split: "test", or "test-long" for a run trained with ``hold_out_long`` (any other
            run raises :class:`UserError`: it has trained on those pairs).
        beam_size, test_limit, data_dir: override the values the run was trained with.
    """
    check_choice(split, "split", EVAL_SPLITS)
    if beam_size is not None:
        check_int(beam_size, "beam_size", minimum=1, maximum=MAX_BEAM)
    if test_limit is not None:
        check_int(test_limit, "test_limit", minimum=1)
    translator, model_config = load_translator(path)
    stored = model_config.get("translate_config") or {}
    try:
        config = TranslateConfig.from_dict(stored, beam_size=beam_size, test_limit=test_limit,
                                           data_dir=data_dir)
    except (TypeError, ValueError) as exc:  # the stored config was edited or damaged
        raise UserError(f"checkpoint: {path} holds an invalid translate_config ({exc})") \
            from None
    check_held_out(config, split, where=f"--split {split}")
    corpus = load_corpus(config.lang, config.data_dir)
    return evaluate_split(translator, corpus.split(split), config, split=split, log=log)


def alignment_sentences(pairs: Sequence[tuple[str, str]], count: int = 4) -> list[str]:
    """A fixed handful of test sentences of moderate length for the alignment plots."""
    chosen = [p[0] for p in pairs if 5 <= len(p[0].split()) <= 10]
    return chosen[:count] if len(chosen) >= count else [p[0] for p in list(pairs)[:count]]
