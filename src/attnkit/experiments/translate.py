"""English->French translation on gettext catalogs: train, evaluate, inspect, compare.

The experiment behind ``attnkit translate``. The corpus is real software text (the English
message ids and French translations of gettext catalogs, :mod:`attnkit.data.corpus`), the
tokenizer a joint byte-level BPE trained on the train split, the models

- ``transformer``: :class:`attnkit.models.Transformer` (Vaswani et al. 2017), pre-norm,
  shared embeddings;
- ``rnn-attention``: bidirectional GRU encoder-decoder with Bahdanau's additive attention
  (Bahdanau et al. 2014, arXiv:1409.0473);
- ``rnn-luong``: the same with Luong's global "general" attention and input feeding
  (Luong et al. 2015, arXiv:1508.04025); ``rnn-local-p``: Luong's predictive local attention;
- ``rnn-none``: the fixed-vector encoder-decoder (Cho et al. 2014, arXiv:1406.1078;
  Sutskever et al. 2014, arXiv:1409.3215), the baseline attention was invented to beat.

Every run trains for a wall-clock budget, evaluates on the test split with beam search
(sacreBLEU BLEU and chrF, with their signatures, overall and by source length) and writes a
report directory: ``metrics.json``, ``README.md``, ``alignments.png``, ``tokenizer.json`` and
``checkpoints/`` (resumable). :func:`compare` runs several models under the same budget and
writes one table and side-by-side plots.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from attnkit._io import atomic_write_json, atomic_write_text

__all__ = ["TranslateConfig", "MODEL_KINDS", "train", "evaluate", "translate_text",
           "load_translator", "compare", "Translator", "TranslateError", "LENGTH_BUCKETS"]

# Source-length buckets in English words (the corpus keeps 3-50 words), for the
# BLEU-by-length table: the analogue of Bahdanau et al.'s Figure 2.
LENGTH_BUCKETS: tuple[tuple[int, int], ...] = ((3, 5), (6, 8), (9, 12), (13, 20), (21, 50))


class TranslateError(Exception):
    """A problem the command line reports as one line (bad checkpoint, missing corpus)."""


def _transformer(vocab: int, size: str):
    from attnkit.models.transformer import Transformer, TransformerConfig

    width = {"tiny": 32, "small": 256}[size]
    config = TransformerConfig(
        src_vocab_size=vocab, tgt_vocab_size=vocab, d_model=width,
        num_heads=4 if size == "small" else 2, num_encoder_layers=3 if size == "small" else 1,
        num_decoder_layers=3 if size == "small" else 1, ffn_dim=4 * width, dropout=0.1,
        norm_first=True, share_embeddings=True, positional="sinusoidal", max_len=512)
    return Transformer(config), {"config": asdict(config)}


def _rnn(attention: str) -> Callable[[int, str], Any]:
    def build(vocab: int, size: str):
        from attnkit.models.rnn_seq2seq import RNNSeq2SeqConfig, build_rnn_seq2seq

        # "small" keeps the parameter count near the Transformer's (most of it is the
        # three vocabulary-sized matrices: two embeddings and the output layer).
        embed, hidden = {"tiny": (32, 64), "small": (256, 384)}[size]
        config = RNNSeq2SeqConfig(src_vocab_size=vocab, tgt_vocab_size=vocab,
                                  embed_dim=embed, hidden_dim=hidden, num_layers=1,
                                  cell="gru", bidirectional=True, dropout=0.1)
        return build_rnn_seq2seq(config, attention), {"config": asdict(config),
                                                      "attention": attention}
    return build


# Model name -> builder(vocab_size, size) -> (model, JSON-able description).
MODEL_KINDS: dict[str, Callable[[int, str], Any]] = {
    "transformer": _transformer,
    "rnn-attention": _rnn("bahdanau"),
    "rnn-luong": _rnn("luong-general"),
    "rnn-local-p": _rnn("local-p"),
    "rnn-none": _rnn("none"),
}

_DEFAULT_LR = {"transformer": 7e-4}  # the recurrent models use TranslateConfig.lr's default


@dataclass
class TranslateConfig:
    """One training run of ``attnkit translate train``."""

    model: str = "transformer"  # one of MODEL_KINDS
    lang: str = "fr"  # target language of the corpus ("fr" or "de")
    minutes: float = 12.0  # training wall-clock budget (evaluation comes after)
    max_steps: int = 200_000  # stop earlier than the budget after this many updates
    size: str = "small"  # "small" (the reported runs) or "tiny" (tests, smoke runs)
    vocab_size: int = 8000  # joint BPE vocabulary, specials included
    max_tokens: int = 3000  # padded tokens per batch
    max_len: int = 96  # longest sentence kept for training, in tokens
    lr: float | None = None  # peak learning rate (None: 7e-4 transformer, 1e-3 RNNs)
    warmup_steps: int = 300  # linear warmup updates, then inverse-sqrt decay
    label_smoothing: float = 0.1  # on the training loss
    eval_every: int = 500  # validation loss every N updates
    checkpoint_every: int = 500  # checkpoint every N updates (and at the end / on Ctrl-C)
    beam_size: int = 4  # test-set decoding (1: greedy)
    length_penalty: float = 0.6  # GNMT length-penalty alpha for beam search
    seed: int = 0  # seeds model init, batch order and dropout
    data_dir: str | None = None  # corpus cache (None: $ATTNKIT_DATA or ~/.cache/attnkit)
    out: str | None = None  # report directory (None: runs/translate-<model>)
    progress: bool = True  # tqdm progress bar when stderr is a terminal
    amp: str = "auto"  # bf16 autocast where the hardware has native bf16 (see TrainConfig)
    test_limit: int | None = None  # evaluate on the first N test pairs only (None: all)

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ValueError(f"model: expected one of {sorted(MODEL_KINDS)}, got {self.model!r}")
        if self.size not in ("tiny", "small"):
            raise ValueError(f"size: expected 'tiny' or 'small', got {self.size!r}")
        if not isinstance(self.minutes, (int, float)) or not self.minutes > 0:
            raise ValueError(f"minutes: expected a number > 0, got {self.minutes!r}")
        for name in ("max_steps", "vocab_size", "max_tokens", "max_len", "eval_every",
                     "checkpoint_every", "beam_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        if self.test_limit is not None and (not isinstance(self.test_limit, int)
                                            or self.test_limit < 1):
            raise ValueError(f"test_limit: expected None or an int >= 1, got "
                             f"{self.test_limit!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr: expected a number > 0, got {self.lr!r}")

    @property
    def report_dir(self) -> Path:
        return Path(self.out if self.out is not None else f"runs/translate-{self.model}")


# ------------------------------------------------------------------------------ corpus

def ensure_corpus(lang: str, data_dir: str | None, *, log: Callable[[str], None] = print):
    """Load the cached corpus, building it from this system's catalogs if it is missing."""
    from attnkit.data.corpus import CorpusNotFoundError, load_corpus

    try:
        return load_corpus(lang, data_dir)
    except CorpusNotFoundError:
        pass
    from attnkit.data.cli import DEFAULT_ROOTS, default_roots
    from attnkit.data.corpus import DataError, build_corpus

    roots = default_roots()  # the same build as `attnkit data build`
    if not roots:
        raise DataError(f"no corpus cached and none of {', '.join(DEFAULT_ROOTS)} exist to "
                        f"build one from; run `attnkit data build --lang {lang} --roots DIR`")
    log(f"no {lang} corpus cached yet: building it from this system's gettext catalogs "
        f"(`attnkit data fetch --lang {lang}` adds Debian's catalogs, about 4x more pairs)")
    build_corpus(lang, roots, data_dir=data_dir, log=log)
    return load_corpus(lang, data_dir)


# ---------------------------------------------------------------------------- training

def _valid_loss_fn(pairs, tokenizer, config: TranslateConfig) -> Callable[[Any], dict]:
    from attnkit.data.corpus import TranslationBatches
    from attnkit.train.losses import token_cross_entropy

    batches = TranslationBatches(pairs, tokenizer, max_tokens=config.max_tokens,
                                 max_len=config.max_len, seed=0)

    def evaluate_loss(model) -> dict[str, float]:
        total, tokens = 0.0, 0
        device = next(model.parameters()).device
        for step in range(len(batches)):
            batch = {k: v.to(device) for k, v in batches(step).items()}
            logits = model(batch["src"], batch["src_lengths"], batch["tgt_in"])
            loss, count = token_cross_entropy(logits, batch["tgt_out"], pad_id=0)
            total, tokens = total + float(loss), tokens + int(count)
        loss = total / max(tokens, 1)
        return {"valid_loss": loss, "valid_ppl": math.exp(min(loss, 50.0))}

    return evaluate_loss


def train(config: TranslateConfig, *, resume: bool = False,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``config.model`` for the budget, evaluate it, write the report; return metrics."""
    from attnkit.data.corpus import TranslationBatches, load_corpus
    from attnkit.train import distributed
    from attnkit.train.losses import seq2seq_loss_fn
    from attnkit.train.trainer import TrainConfig, Trainer

    report = config.report_dir
    checkpoints = report / "checkpoints"
    if not resume and checkpoints.exists() and any(checkpoints.glob("ckpt-*")):
        raise TranslateError(f"{report} already holds a run; pass --resume to continue it or "
                             f"--out to write somewhere else")
    # Under torchrun (WORLD_SIZE > 1) every process trains on its share of each batch;
    # process 0 alone builds the corpus, evaluates and writes the report.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not distributed.is_distributed():
        distributed.init_distributed()
    main = distributed.is_main_process()
    if main:
        corpus = ensure_corpus(config.lang, config.data_dir, log=log)
        corpus.tokenizer(vocab_size=config.vocab_size)
        report.mkdir(parents=True, exist_ok=True)
        checkpoints.mkdir(exist_ok=True)
        shutil.copyfile(corpus.tokenizer_path, checkpoints / "tokenizer.json")
        shutil.copyfile(corpus.tokenizer_path, report / "tokenizer.json")
    distributed.barrier()
    corpus = load_corpus(config.lang, config.data_dir)
    tokenizer = corpus.tokenizer(vocab_size=config.vocab_size, train=False)

    torch.manual_seed(config.seed)
    model, description = MODEL_KINDS[config.model](tokenizer.vocab_size, config.size)
    if torch.cuda.is_available():
        model = model.to(f"cuda:{os.environ.get('LOCAL_RANK', '0')}")
    batches = TranslationBatches(corpus.train, tokenizer, max_tokens=config.max_tokens,
                                 max_len=config.max_len, seed=config.seed)
    log(f"{config.model}: {_num_params(model) / 1e6:.2f}M parameters; corpus "
        f"{len(corpus.train)}/{len(corpus.valid)}/{len(corpus.test)} train/valid/test pairs "
        f"({batches.num_dropped} train pairs over {config.max_len} tokens dropped), "
        f"{len(batches)} batches per epoch, vocabulary {tokenizer.vocab_size}")
    train_config = TrainConfig(
        max_steps=config.max_steps, max_time_s=config.minutes * 60.0,
        lr=config.lr or _DEFAULT_LR.get(config.model, 1e-3), warmup_steps=config.warmup_steps,
        schedule="inverse_sqrt", label_smoothing=config.label_smoothing,
        eval_every=config.eval_every, checkpoint_every=config.checkpoint_every,
        out_dir=str(checkpoints), seed=config.seed, log_every=50, progress=config.progress,
        amp=config.amp)
    model_config = {"kind": config.model, "size": config.size, "lang": config.lang,
                    "vocab_size": tokenizer.vocab_size, **description,
                    "translate_config": asdict(config)}
    trainer = Trainer(model, train_config, batches,
                      seq2seq_loss_fn(pad_id=0, label_smoothing=config.label_smoothing),
                      eval_fn=_valid_loss_fn(corpus.valid, tokenizer, config),
                      model_config=model_config, resume=resume)
    summary = trainer.fit()
    if summary.get("interrupted"):
        raise KeyboardInterrupt
    if not main:
        return {"rank": distributed.get_rank(), "training": summary}
    translator = Translator(model.eval(), tokenizer, config.model)
    metrics = evaluate_split(translator, corpus.test, config, log=log)
    metrics["training"] = _training_metrics(summary, batches, model)
    metrics["training"]["autocast"] = str(trainer.amp_dtype or "off")
    metrics["corpus"] = _corpus_metrics(corpus)
    metrics["config"] = asdict(config)
    _write_report(report, metrics, translator, corpus.test, config)
    log(f"wrote {report}/ (metrics.json, README.md, alignments.png, checkpoints/)")
    return metrics


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _training_metrics(summary: dict, batches, model) -> dict[str, Any]:
    elapsed = summary["elapsed"]
    out = {"step": summary["step"], "elapsed_s": elapsed, "tokens": summary["tokens"],
           "tokens_per_s": summary["tokens"] / max(elapsed, 1e-9), "loss": summary["loss"],
           "out_of_time": summary.get("out_of_time", False), **(summary.get("eval") or {})}
    out["parameters"] = _num_params(model)
    out["epochs"] = summary.get("step", 0) / max(len(batches), 1)
    out["threads"] = torch.get_num_threads()
    return out


def _corpus_metrics(corpus) -> dict[str, Any]:
    manifest = corpus.manifest
    return {"path": str(corpus.path), "lang": corpus.lang,
            "pairs": {name: len(corpus.split(name)) for name in ("train", "valid", "test")},
            "catalogs": len(manifest.get("sources", [])),
            "splits_sha256": {k: v.get("sha256") for k, v in manifest.get("splits", {}).items()}}


# ---------------------------------------------------------------------------- decoding

class Translator:
    """A trained model with its tokenizer: text in, text (and alignment) out."""

    def __init__(self, model, tokenizer, kind: str, *, beam_size: int = 4,
                 length_penalty: float = 0.6) -> None:
        self.model, self.tokenizer, self.kind = model, tokenizer, kind
        self.beam_size, self.length_penalty = beam_size, length_penalty

    @torch.no_grad()
    def translate(self, sentences: Sequence[str], *, batch_size: int = 64,
                  return_alignment: bool = False):
        """Translate N sentences. Returns (N translations, N alignments or None)."""
        from attnkit.interp.alignment import Alignment
        from attnkit.train.decoding import beam_search

        self.model.eval()
        encoded = self.tokenizer.encode_batch(list(sentences))
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        outputs: list[str | None] = [None] * len(encoded)
        alignments: list[Any] = [None] * len(encoded)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            lengths = torch.tensor([max(len(encoded[i]), 1) for i in rows])
            src = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
            for r, i in enumerate(rows):
                src[r, :len(encoded[i])] = torch.tensor(encoded[i], dtype=torch.long)
            device = next(self.model.parameters()).device
            src, lengths = src.to(device), lengths.to(device)
            result = beam_search(self.model, src, lengths, beam_size=self.beam_size,
                                 max_len=lambda n: 2 * n + 10,
                                 length_penalty=self.length_penalty,
                                 return_alignment=return_alignment)
            for r, i in enumerate(rows):
                outputs[i] = self.tokenizer.decode(result.tokens[r])
                if return_alignment:
                    weights = None if result.alignments is None else result.alignments[r]
                    target = self.tokenizer.tokens(result.tokens[r])
                    if result.reached_eos[r]:  # the EOS step has an alignment row too
                        target.append("</s>")
                    source = self.tokenizer.tokens(encoded[i])
                    if weights is not None:
                        weights = weights[:len(target), :len(source)].float().cpu()
                    alignments[i] = Alignment(source, target, weights, title=self.kind)
        return outputs, (alignments if return_alignment else None)


def _bucket_name(low: int, high: int) -> str:
    return f"{low}-{high}"


def evaluate_split(translator: Translator, pairs, config: TranslateConfig, *,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """BLEU and chrF (sacreBLEU) on ``pairs``, overall and by English length bucket."""
    try:
        import sacrebleu
    except ImportError as exc:
        raise ImportError("evaluation needs sacrebleu: pip install 'attnkit[data]'") from exc
    pairs = list(pairs)[:config.test_limit] if config.test_limit else list(pairs)
    if not pairs:
        raise TranslateError("the test split is empty: the corpus is too small to evaluate on")
    translator.beam_size, translator.length_penalty = config.beam_size, config.length_penalty
    start = time.perf_counter()
    hypotheses, _ = translator.translate([p[0] for p in pairs])
    decode_s = time.perf_counter() - start
    references = [p[1] for p in pairs]
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    buckets = []
    for low, high in LENGTH_BUCKETS:
        idx = [i for i, p in enumerate(pairs) if low <= len(p[0].split()) <= high]
        entry: dict[str, Any] = {"bucket": _bucket_name(low, high), "sentences": len(idx)}
        if idx:
            entry["bleu"] = sacrebleu.metrics.BLEU().corpus_score(
                [hypotheses[i] for i in idx], [[references[i] for i in idx]]).score
            entry["chrf"] = sacrebleu.metrics.CHRF().corpus_score(
                [hypotheses[i] for i in idx], [[references[i] for i in idx]]).score
        buckets.append(entry)
    log(f"test: BLEU {bleu_score.score:.2f}  chrF {chrf_score.score:.2f}  "
        f"({len(pairs)} sentences, beam {config.beam_size}, {decode_s:.1f} s)")
    samples = [{"source": pairs[i][0], "reference": references[i], "output": hypotheses[i]}
               for i in range(min(8, len(pairs)))]
    return {"model": translator.kind, "test_sentences": len(pairs), "bleu": bleu_score.score,
            "bleu_signature": str(bleu.get_signature()), "chrf": chrf_score.score,
            "chrf_signature": str(chrf.get_signature()), "by_length": buckets,
            "decode_s": decode_s, "beam_size": config.beam_size,
            "length_penalty": config.length_penalty, "samples": samples}


def alignment_sentences(pairs, count: int = 4) -> list[str]:
    """A fixed handful of test sentences of moderate length for the alignment plots."""
    chosen = [p[0] for p in pairs if 5 <= len(p[0].split()) <= 10]
    return chosen[:count] if len(chosen) >= count else [p[0] for p in list(pairs)[:count]]


def _write_report(report: Path, metrics: dict, translator: Translator, pairs,
                  config: TranslateConfig) -> None:
    from attnkit.interp.alignment import plot_alignments

    sentences = alignment_sentences(pairs)
    _, alignments = translator.translate(sentences, return_alignment=True)
    plot_alignments([[a] for a in alignments], report / "alignments.png")
    metrics["alignment_sentences"] = sentences
    atomic_write_json(report / "metrics.json", metrics)
    atomic_write_text(report / "README.md", _report_markdown(metrics))


def _report_markdown(m: dict) -> str:
    t = m["training"]
    lines = [f"# attnkit translate: {m['model']} (en->{m['corpus']['lang']})", "",
             f"- corpus: {m['corpus']['pairs']['train']} train / {m['corpus']['pairs']['valid']}"
             f" valid / {m['corpus']['pairs']['test']} test pairs from "
             f"{m['corpus']['catalogs']} gettext catalogs ({m['corpus']['path']})",
             f"- model: {t['parameters'] / 1e6:.2f}M parameters, {t.get('step', 0)} updates "
             f"({t['epochs']:.2f} epochs) in {t.get('elapsed_s', 0) / 60:.1f} min, "
             f"{t.get('tokens_per_s', 0):.0f} tokens/s, {t['threads']} torch threads, "
             f"autocast {t.get('autocast', 'off')}",
             f"- test: **BLEU {m['bleu']:.2f}**, **chrF {m['chrf']:.2f}** on "
             f"{m['test_sentences']} sentences (beam {m['beam_size']}, length penalty "
             f"{m['length_penalty']})",
             f"- signatures: `{m['bleu_signature']}`, `{m['chrf_signature']}`", "",
             "## BLEU by English source length (words)", "",
             "| words | sentences | BLEU | chrF |", "|---|---|---|---|"]
    for b in m["by_length"]:
        bleu = f"{b['bleu']:.2f}" if "bleu" in b else "-"
        chrf = f"{b['chrf']:.2f}" if "chrf" in b else "-"
        lines.append(f"| {b['bucket']} | {b['sentences']} | {bleu} | {chrf} |")
    lines += ["", "## Samples", "", "| source | reference | output |", "|---|---|---|"]
    for s in m["samples"]:
        row = [s[k].replace("|", "\\|") for k in ("source", "reference", "output")]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "![alignments](alignments.png)", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------- loading a checkpoint

def _resolve_checkpoint(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise TranslateError(f"checkpoint: {path} does not exist")
    if (path / "checkpoints").is_dir():  # a report directory
        path = path / "checkpoints"
    if not (path / "state.json").is_file():  # a checkpoints folder: take the newest
        from attnkit.train.checkpoint import latest_checkpoint

        newest = latest_checkpoint(path)
        if newest is None:
            raise TranslateError(f"checkpoint: {path} holds no checkpoint (expected a report "
                                 f"directory, its checkpoints/ folder or a ckpt-* folder)")
        path = Path(newest)
    return path


def load_translator(path: str | os.PathLike) -> tuple[Translator, dict]:
    """A :class:`Translator` from a report directory, a checkpoints folder or a ckpt-* folder.

    Returns the translator and the checkpoint's ``model_config`` (with its TranslateConfig).
    """
    from attnkit.data.tokenizer import load_tokenizer
    from attnkit.train.checkpoint import CheckpointError, load_checkpoint

    ckpt_dir = _resolve_checkpoint(path)
    try:
        checkpoint = load_checkpoint(ckpt_dir)
    except CheckpointError as exc:
        raise TranslateError(f"checkpoint: {exc}") from None
    model_config = checkpoint.state.get("model_config") or {}
    kind, size = model_config.get("kind"), model_config.get("size")
    if kind not in MODEL_KINDS or size not in ("tiny", "small"):
        raise TranslateError(f"checkpoint: {ckpt_dir} was not written by `attnkit translate` "
                             f"(its model_config names no known model)")
    tokenizer_path = next((p / "tokenizer.json" for p in (ckpt_dir, ckpt_dir.parent)
                           if (p / "tokenizer.json").is_file()), None)
    if tokenizer_path is None:
        raise TranslateError(f"checkpoint: no tokenizer.json in {ckpt_dir} or its parent")
    tokenizer = load_tokenizer(tokenizer_path)
    if tokenizer.vocab_size != model_config.get("vocab_size"):
        raise TranslateError(f"checkpoint: {tokenizer_path} has {tokenizer.vocab_size} tokens "
                             f"but the model was trained with {model_config.get('vocab_size')}")
    model, _ = MODEL_KINDS[kind](tokenizer.vocab_size, size)
    try:
        model.load_state_dict(checkpoint.model_state)
    except RuntimeError as exc:
        raise TranslateError(f"checkpoint: weights in {ckpt_dir} do not fit a {kind} "
                             f"({str(exc).splitlines()[0]})") from None
    return Translator(model.eval(), tokenizer, kind), model_config


def _config_from(model_config: dict, **overrides) -> TranslateConfig:
    stored = dict(model_config.get("translate_config") or {})
    known = {f.name for f in fields(TranslateConfig)}
    stored = {k: v for k, v in stored.items() if k in known}
    stored.update({k: v for k, v in overrides.items() if v is not None})
    return TranslateConfig(**stored)


def evaluate(path: str | os.PathLike, *, beam_size: int | None = None,
             test_limit: int | None = None, data_dir: str | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate a checkpoint on its corpus's test split (BLEU, chrF, by length)."""
    from attnkit.data.corpus import load_corpus

    translator, model_config = load_translator(path)
    config = _config_from(model_config, beam_size=beam_size, test_limit=test_limit,
                          data_dir=data_dir)
    corpus = load_corpus(config.lang, config.data_dir)
    return evaluate_split(translator, corpus.test, config, log=log)


def translate_text(path: str | os.PathLike, text: str, *, beam_size: int = 4):
    """Translate one sentence with a checkpoint; returns (translation, Alignment)."""
    if not isinstance(text, str) or not text.strip():
        raise TranslateError("text: expected a non-empty sentence")
    translator, _ = load_translator(path)
    translator.beam_size = beam_size
    outputs, alignments = translator.translate([text], return_alignment=True)
    return outputs[0], alignments[0]


# ---------------------------------------------------------------------------- comparison

@dataclass
class CompareConfig:
    """``attnkit translate compare``: several models, same corpus/tokenizer/budget."""

    models: list[str] = field(default_factory=lambda: ["rnn-none", "rnn-attention",
                                                       "transformer"])
    minutes: float = 10.0  # training budget per model
    out: str = "runs/translate-compare"  # report directory (one subfolder per model)
    base: dict[str, Any] = field(default_factory=dict)  # other TranslateConfig fields


def compare(config: CompareConfig, *, resume: bool = False,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and evaluate each model in turn, then write the comparison report."""
    from attnkit.interp.alignment import plot_alignments

    for name in config.models:
        if name not in MODEL_KINDS:
            raise ValueError(f"models: expected names from {sorted(MODEL_KINDS)}, got {name!r}")
    out = Path(config.out)
    results = {}
    for name in config.models:
        run_config = TranslateConfig(**{**config.base, "model": name,
                                        "minutes": config.minutes, "out": str(out / name)})
        existing = out / name / "metrics.json"
        if resume and existing.is_file():
            log(f"{name}: already evaluated, reusing {existing}")
            results[name] = json.loads(existing.read_text(encoding="utf-8"))
            continue
        results[name] = train(run_config, resume=resume and (out / name).exists(), log=log)
    # Side-by-side alignments: the same test sentences under every model.
    translators = {name: load_translator(out / name)[0] for name in config.models}
    sentences = next(iter(results.values()))["alignment_sentences"]
    grid = [[] for _ in sentences]
    for translator in translators.values():
        _, alignments = translator.translate(sentences, return_alignment=True)
        for i, alignment in enumerate(alignments):
            grid[i].append(alignment)
    plot_alignments(grid, out / "alignments.png")
    _plot_length_curve(results, out / "bleu_by_length.png")
    summary = {"models": {name: _compare_row(r) for name, r in results.items()},
               "by_length": {name: r["by_length"] for name, r in results.items()},
               "minutes_per_model": config.minutes}
    atomic_write_json(out / "comparison.json", summary)
    atomic_write_text(out / "README.md", _compare_markdown(results, config))
    log(f"wrote {out}/ (README.md, comparison.json, bleu_by_length.png, alignments.png)")
    return summary


def _compare_row(r: dict) -> dict[str, Any]:
    t = r["training"]
    return {"bleu": r["bleu"], "chrf": r["chrf"], "parameters": t["parameters"],
            "updates": t.get("step"), "epochs": t["epochs"], "train_s": t.get("elapsed_s"),
            "tokens_per_s": t.get("tokens_per_s"), "valid_loss": t.get("valid_loss")}


def _compare_markdown(results: dict, config: CompareConfig) -> str:
    first = next(iter(results.values()))
    lines = [f"# attnkit translate compare (en->{first['corpus']['lang']})", "",
             f"Corpus: {first['corpus']['pairs']['train']} train / "
             f"{first['corpus']['pairs']['test']} test pairs; budget {config.minutes} min of "
             f"training per model; beam {first['beam_size']}.", "",
             "| model | params | updates | epochs | train min | tokens/s | valid loss | BLEU "
             "| chrF |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        row = _compare_row(r)
        lines.append(f"| {name} | {row['parameters'] / 1e6:.2f}M | {row['updates']} | "
                     f"{row['epochs']:.2f} | {(row['train_s'] or 0) / 60:.1f} | "
                     f"{row['tokens_per_s'] or 0:.0f} | {row['valid_loss'] or float('nan'):.3f}"
                     f" | {row['bleu']:.2f} | {row['chrf']:.2f} |")
    lines += ["", "BLEU by English source length (words; sentences per bucket in brackets):",
              "", "| model | " + " | ".join(
                  f"{b['bucket']} ({b['sentences']})" for b in first["by_length"]) + " |",
              "|---|" + "---|" * len(first["by_length"])]
    for name, r in results.items():
        cells = [f"{b['bleu']:.2f}" if "bleu" in b else "-" for b in r["by_length"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "![BLEU by length](bleu_by_length.png)", "",
              "![alignments](alignments.png)", "",
              f"Signature: `{first['bleu_signature']}`", ""]
    return "\n".join(lines)


def _plot_length_curve(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnkit.interp.alignment import save_png

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        points = [(i, b["bleu"]) for i, b in enumerate(r["by_length"]) if "bleu" in b]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    labels = [f"{b['bucket']}\n({b['sentences']})"
              for b in next(iter(results.values()))["by_length"]]
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_xlabel("English source length in words (test sentences)")
    ax.set_ylabel("BLEU")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
