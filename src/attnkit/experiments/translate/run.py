"""One translate run: corpus, tokenizer, model, training for a wall-clock budget, evaluation,
report.

The corpus is real software text (the English message ids and French/German translations of
gettext catalogs, :mod:`attnkit.data`), built from this system's catalogs on first use; the
tokenizer is a joint byte-level BPE trained on the train split. Training is
:class:`attnkit.train.Trainer` (fused AdamW, warmup then a linear decay laid over the
wall-clock budget, label smoothing, checkpoints that
resume exactly); evaluation is :func:`~attnkit.experiments.translate.evaluate.evaluate_split`
on the test split. Under torchrun every process trains on its share of each batch and
process 0 alone builds the corpus, evaluates and writes the report.

With ``hold_out_long`` the run trains (and trains its tokenizer) without the ``test-long``
pairs of the train split and is scored on test-long as well; every scored sentence's output
goes to ``translations.json`` for the paired significance tests of ``translate compare``.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from attnkit._io import atomic_write_json
from attnkit._validate import check_choice, output_dir
from attnkit.data import (
    CorpusNotFoundError,
    DataError,
    TranslationBatches,
    build_corpus,
    default_roots,
    load_corpus,
)
from attnkit.errors import UserError
from attnkit.experiments.translate.config import RESUME_FIXED, USABLE_EPOCHS, TranslateConfig
from attnkit.experiments.translate.evaluate import evaluate_split
from attnkit.experiments.translate.model import build_model, num_parameters
from attnkit.experiments.translate.report import write_run_report
from attnkit.experiments.translate.translator import Translator
from attnkit.train import (
    CheckpointError,
    TrainConfig,
    Trainer,
    distributed,
    latest_checkpoint,
    load_checkpoint,
    seq2seq_loss_fn,
    token_cross_entropy,
)

__all__ = ["train", "fit", "FitResult", "ensure_corpus", "check_run_dir", "training_pairs",
           "TRANSLATIONS_FILE"]

TRANSLATIONS_FILE = "translations.json"  # split -> sources, references, hypotheses

#: RESUME_FIXED fields added after runs were first written: what an older checkpoint meant
_RESUME_DEFAULTS = {"hold_out_long": False}


def ensure_corpus(lang: str, data_dir: str | None, *, log: Callable[[str], None] = print):
    """Load the cached corpus, building it from this system's catalogs if it is missing."""
    try:
        return load_corpus(lang, data_dir)
    except CorpusNotFoundError:
        pass
    roots = default_roots()  # the same build as `attnkit data build`
    if not roots:
        raise DataError(f"no {lang} corpus cached and no system catalog folder (such as "
                        f"/usr/share/locale) to build one from; run `attnkit data build "
                        f"--lang {lang} --roots DIR`")
    log(f"no {lang} corpus cached yet: building it from this system's gettext catalogs "
        f"(`attnkit data fetch --lang {lang}` adds Debian's catalogs, about 4x more pairs)")
    build_corpus(lang, roots, data_dir=data_dir, log=log)
    return load_corpus(lang, data_dir)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_run_dir(config: TranslateConfig, *, resume: bool) -> None:
    """Refuse, before any work, a report directory this run cannot use: unwritable, holding
    another run (without ``resume``), or holding a run whose model or data differ from
    ``config`` (with ``resume``). Raises :class:`UserError` naming the flag."""
    report = output_dir(config.report_dir, "--out")
    if config.data_dir is not None:
        output_dir(config.data_dir, "--data-dir")
    latest = latest_checkpoint(report / "checkpoints") if report.is_dir() else None
    if latest is None:
        return
    if not resume:
        raise UserError(f"{report} already holds a run; pass --resume to continue it or "
                        f"--out to write somewhere else")
    try:
        stored = load_checkpoint(latest).state.get("model_config") or {}
    except CheckpointError as exc:
        raise UserError(f"--resume: {exc}") from None
    saved = stored.get("translate_config")
    if not isinstance(saved, dict):
        raise UserError(f"--resume: {latest} was not written by `attnkit translate`")
    wanted = asdict(config)
    saved = {**_RESUME_DEFAULTS, **saved}
    changed = [name for name in RESUME_FIXED if saved.get(name) != wanted[name]]
    if changed:
        was = ", ".join(f"{_flag(n)} {saved.get(n)}" for n in changed)
        now = ", ".join(f"{_flag(n)} {wanted[n]}" for n in changed)
        raise UserError(f"--resume: {report} was trained with {was}, not {now}; these must "
                        f"match to resume (use another --out for a new run)")


def _valid_fn(pairs, tokenizer, config: TranslateConfig) -> Callable[[Any], dict]:
    """The validation split's loss, perplexity and greedy BLEU (the quality curve)."""
    from attnkit.experiments.translate.evaluate import corpus_bleu

    batches = TranslationBatches(pairs, tokenizer, max_tokens=config.max_tokens,
                                 max_len=config.max_len, seed=0)
    scored = list(pairs)[:config.valid_bleu_limit]  # decoding all of them would cost minutes
    sources, references = [p[0] for p in scored], [p[1] for p in scored]

    def evaluate_valid(model) -> dict[str, float]:
        started = time.perf_counter()
        total, tokens = 0.0, 0
        device = next(model.parameters()).device
        for step in range(len(batches)):
            batch = {k: v.to(device) for k, v in batches(step).items()}
            logits = model(batch["src"], batch["src_lengths"], batch["tgt_in"])
            loss, count = token_cross_entropy(logits, batch["tgt_out"], pad_id=0)
            total, tokens = total + float(loss), tokens + int(count)
        loss = total / max(tokens, 1)
        translator = Translator(model, tokenizer, config.model, beam_size=1)
        hypotheses, _ = translator.translate(sources)
        return {"valid_loss": loss, "valid_ppl": math.exp(min(loss, 50.0)),
                "valid_bleu": corpus_bleu(hypotheses, references),
                "eval_s": time.perf_counter() - started}

    return evaluate_valid


def _plan_logger(config: TranslateConfig, batches, log: Callable[[str], None]):
    """What the job expects on this machine, said once the step time is measured; a warning,
    with the --minutes that would do, when that is too little for a usable model."""

    def announce(plan: dict[str, float]) -> None:
        per_epoch = len(batches) * plan["step_time"]
        updates, epochs = plan["expected_steps"], plan["expected_steps"] / len(batches)
        log(f"measured {plan['step_time']:.2f} s per update on this machine: expect about "
            f"{updates:.0f} updates ({epochs:.1f} epochs) in the {config.minutes:g}-minute "
            f"budget")
        if epochs < USABLE_EPOCHS:
            needed = math.ceil(USABLE_EPOCHS * per_epoch / 60 * 1.1)  # evaluations: +10%
            log(f"warning: this machine is too slow for a usable translator in "
                f"{config.minutes:g} minutes (it needs about {USABLE_EPOCHS:g} epochs); "
                f"--minutes {needed} would do")

    return announce


def _prepare(config: TranslateConfig, report: Path, log: Callable[[str], None]):
    """Process 0 builds the corpus and the tokenizer; then every process loads them."""
    checkpoints = report / "checkpoints"
    hold_out = config.hold_out_long
    if distributed.is_main_process():
        corpus = ensure_corpus(config.lang, config.data_dir, log=log)
        corpus.tokenizer(vocab_size=config.vocab_size, hold_out_long=hold_out)
        checkpoints.mkdir(parents=True, exist_ok=True)
        cached = corpus.tokenizer_path(config.vocab_size, hold_out_long=hold_out)
        shutil.copyfile(cached, checkpoints / "tokenizer.json")
        shutil.copyfile(cached, report / "tokenizer.json")
    distributed.barrier()
    corpus = load_corpus(config.lang, config.data_dir)
    return corpus, corpus.tokenizer(vocab_size=config.vocab_size, train=False,
                                    hold_out_long=hold_out)


def training_pairs(corpus, config: TranslateConfig) -> list[tuple[str, str]]:
    """The ``(english, target)`` pairs a run trains on: the train split, less the test-long
    pairs when ``config.hold_out_long``."""
    return corpus.split("train", hold_out_long=config.hold_out_long)


@dataclass
class FitResult:
    """What :func:`fit` leaves behind: the trained model and everything needed to use it."""

    model: torch.nn.Module
    tokenizer: Any  # attnkit.data.Tokenizer
    corpus: Any  # attnkit.data.Corpus
    batches: TranslationBatches
    summary: dict[str, Any]  # Trainer.fit's summary
    amp: str  # the autocast dtype training used ("off": float32)


def fit(config: TranslateConfig, *, resume: bool = False, horizon: str | None = None,
        log: Callable[[str], None] = print) -> FitResult:
    """Train ``config.model`` for the budget (no test-set evaluation, no report).

    Args:
        config: the run.
        resume: continue the run in ``config.report_dir`` from its newest checkpoint.
        horizon: where the ``linear``/``cosine`` decay ends: ``"time"`` (the wall-clock
            budget, the default) or ``"steps"`` (``config.max_steps`` updates, whatever the
            time; the sweep in benchmarks/ uses it to replay a budget's number of updates
            on a loaded machine). ``inverse_sqrt`` has no horizon.

    Raises:
        UserError, KeyboardInterrupt: as :func:`train`.
    """
    if not isinstance(config, TranslateConfig):
        raise TypeError(f"config: expected a TranslateConfig, got {type(config).__name__}")
    if horizon is None:
        horizon = "steps" if config.schedule == "inverse_sqrt" else "time"
    check_choice(horizon, "horizon", ("time", "steps"))
    check_run_dir(config, resume=resume)
    report = config.report_dir
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not distributed.is_distributed():
        distributed.init_distributed()
    corpus, tokenizer = _prepare(config, report, log)

    torch.manual_seed(config.seed)
    model, description = build_model(config.model, tokenizer.vocab_size, config.size,
                                     width=config.width, layers=config.layers,
                                     dropout=config.dropout)
    if torch.cuda.is_available():
        model = model.to(f"cuda:{os.environ.get('LOCAL_RANK', '0')}")
    pairs = training_pairs(corpus, config)
    batches = TranslationBatches(pairs, tokenizer, max_tokens=config.max_tokens,
                                 max_len=config.max_len, seed=config.seed)
    held = (f" ({len(corpus.train) - len(pairs)} test-long pairs held out of train)"
            if config.hold_out_long else "")
    log(f"{config.model}: {num_parameters(model) / 1e6:.2f}M parameters; corpus "
        f"{len(pairs)}/{len(corpus.valid)}/{len(corpus.test)} train/valid/test pairs{held} "
        f"({batches.num_dropped} train pairs over {config.max_len} tokens dropped), "
        f"{len(batches)} batches per epoch, vocabulary {tokenizer.vocab_size}")
    train_config = TrainConfig(
        max_steps=config.max_steps, max_time_s=config.minutes * 60.0, lr=config.peak_lr,
        warmup_steps=config.warmup_steps, schedule=config.schedule, horizon=horizon,
        eval_every_s=config.eval_minutes * 60.0,
        label_smoothing=config.label_smoothing, eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every, out_dir=str(report / "checkpoints"),
        seed=config.seed, log_every=50, progress=config.progress, amp=config.amp)
    model_config = {"kind": config.model, "size": config.size, "lang": config.lang,
                    "vocab_size": tokenizer.vocab_size, **description,
                    "translate_config": asdict(config)}
    trainer = Trainer(model, train_config, batches,
                      seq2seq_loss_fn(pad_id=0, label_smoothing=config.label_smoothing),
                      eval_fn=_valid_fn(corpus.valid, tokenizer, config),
                      model_config=model_config, resume=resume,
                      on_plan=_plan_logger(config, batches, log))
    summary = trainer.fit()
    if summary.get("interrupted"):
        raise KeyboardInterrupt
    return FitResult(model=model, tokenizer=tokenizer, corpus=corpus, batches=batches,
                     summary=summary, amp=str(trainer.amp_dtype or "off"))


def train(config: TranslateConfig, *, resume: bool = False,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``config.model`` for the budget, evaluate it, write the report; return metrics.

    Raises:
        UserError: an unusable report or data directory (checked before any work), or a
            ``resume`` whose checkpoint was trained with another model or data.
        KeyboardInterrupt: training was interrupted (SIGINT/SIGTERM) after a checkpoint.
    """
    result = fit(config, resume=resume, log=log)
    if not distributed.is_main_process():
        return {"rank": distributed.get_rank(), "training": result.summary}
    report = config.report_dir
    translator = Translator(result.model.eval(), result.tokenizer, config.model)
    metrics = evaluate_split(translator, result.corpus.test, config, log=log)
    translations = {"test": metrics.pop("translations")}
    if config.hold_out_long:
        long_pairs = result.corpus.split("test-long")
        if long_pairs:
            metrics["test_long"] = evaluate_split(translator, long_pairs, config,
                                                  split="test-long", log=log)
            translations["test-long"] = metrics["test_long"].pop("translations")
        else:
            log("test-long: empty in this corpus (no train pair is selected), not scored")
    atomic_write_json(report / TRANSLATIONS_FILE, translations)
    metrics["training"] = _training_metrics(result.summary, result.batches, result.model)
    metrics["training"]["autocast"] = result.amp
    metrics["corpus"] = _corpus_metrics(result.corpus, config)
    metrics["config"] = asdict(config)
    write_run_report(report, metrics, translator, result.corpus.test)
    log(f"wrote {report}/ (metrics.json, README.md, report.html, alignments.png, "
        f"{TRANSLATIONS_FILE}, checkpoints/)")
    return metrics


def _training_metrics(summary: dict, batches, model) -> dict[str, Any]:
    elapsed = summary["elapsed"]
    return {"step": summary["step"], "elapsed_s": elapsed,
            "paused_s": summary.get("paused", 0.0), "tokens": summary["tokens"],
            "tokens_per_s": summary["tokens"] / max(elapsed, 1e-9), "loss": summary["loss"],
            "out_of_time": summary.get("out_of_time", False), **(summary.get("eval") or {}),
            "parameters": num_parameters(model),
            "epochs": summary.get("step", 0) / max(len(batches), 1),
            "threads": torch.get_num_threads(), "curve": quality_curve(summary["metrics"])}


def quality_curve(records: list[dict]) -> list[dict[str, float]]:
    """The evaluation records of a run as the quality curve: minutes of training (evaluations
    included), update, validation loss and greedy validation BLEU."""
    return [{"minutes": r["elapsed"] / 60.0, "step": r["step"], "valid_loss": r["valid_loss"],
             "valid_bleu": r["valid_bleu"]}
            for r in records if r.get("event") == "eval" and "valid_bleu" in r]


def _corpus_metrics(corpus, config: TranslateConfig) -> dict[str, Any]:
    manifest = corpus.manifest
    found = {"path": str(corpus.path), "lang": corpus.lang,
             "pairs": {name: len(corpus.split(name)) for name in ("train", "valid", "test")},
             "catalogs": len(manifest.get("sources", [])),
             "splits_sha256": {k: v.get("sha256")
                               for k, v in manifest.get("splits", {}).items()}}
    if config.hold_out_long:
        found["test_long"] = corpus.test_long_counts()
    return found
