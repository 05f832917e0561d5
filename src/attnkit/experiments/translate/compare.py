"""Several models under one budget: the same corpus, tokenizer and wall-clock time each.

:func:`compare` trains and evaluates each model in turn (one run directory per model, each
resumable), then writes one report: a table of BLEU, chrF, parameters, updates and
throughput; BLEU by source length as a table and a curve; and the same test sentences'
alignments under every model side by side.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnkit._validate import output_dir
from attnkit.experiments.report import Report
from attnkit.experiments.translate.config import CompareConfig, TranslateConfig
from attnkit.experiments.translate.run import check_run_dir, train
from attnkit.experiments.translate.translator import load_translator
from attnkit.interp import alignment_figure, pyplot

__all__ = ["compare", "length_curve_figure"]


def _run_configs(config: CompareConfig) -> dict[str, TranslateConfig]:
    out = Path(config.out)
    return {name: TranslateConfig(**{**config.base, "model": name, "minutes": config.minutes,
                                     "out": str(out / name)})
            for name in config.models}


def compare(config: CompareConfig, *, resume: bool = False,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and evaluate each model in turn, then write the comparison report.

    Returns:
        the summary written to ``metrics.json``: per-model scores and training figures,
        BLEU by length, the budget.
    """
    if not isinstance(config, CompareConfig):
        raise TypeError(f"config: expected a CompareConfig, got {type(config).__name__}")
    out = output_dir(config.out, "--out")
    runs = _run_configs(config)
    pending = {}
    for name, run_config in runs.items():  # every run directory checked before any training
        existing = out / name / "metrics.json"
        if resume and existing.is_file():
            continue
        check_run_dir(run_config, resume=resume)
        pending[name] = run_config
    results = {}
    for name, run_config in runs.items():
        if name not in pending:
            log(f"{name}: already evaluated, reusing {out / name / 'metrics.json'}")
            results[name] = json.loads((out / name / "metrics.json").read_text(encoding="utf-8"))
            continue
        results[name] = train(run_config, resume=resume, log=log)
    summary = {"models": {name: _row(r) for name, r in results.items()},
               "by_length": {name: r["by_length"] for name, r in results.items()},
               "minutes_per_model": config.minutes}
    _report(out, results, config, summary).write(summary)
    log(f"wrote {out}/ (README.md, report.html, metrics.json, bleu_by_length.png, "
        f"alignments.png)")
    return summary


def _row(r: dict[str, Any]) -> dict[str, Any]:
    t = r["training"]
    return {"bleu": r["bleu"], "chrf": r["chrf"], "parameters": t["parameters"],
            "updates": t.get("step"), "epochs": t["epochs"], "train_s": t.get("elapsed_s"),
            "tokens_per_s": t.get("tokens_per_s"), "valid_loss": t.get("valid_loss")}


def _report(out: Path, results: dict[str, dict], config: CompareConfig,
            summary: dict[str, Any]) -> Report:
    first = next(iter(results.values()))
    report = Report(out, title=f"attnkit translate compare (en->{first['corpus']['lang']})")
    report.add_text(f"Corpus: {first['corpus']['pairs']['train']} train / "
                    f"{first['corpus']['pairs']['test']} test pairs; budget {config.minutes} min "
                    f"of training per model; beam {first['beam_size']}.")
    report.add_table(
        ["model", "params", "updates", "epochs", "train min", "tokens/s", "valid loss", "BLEU",
         "chrF"],
        [[name, f"{row['parameters'] / 1e6:.2f}M", row["updates"], row["epochs"],
          (row["train_s"] or 0) / 60, f"{row['tokens_per_s'] or 0:.0f}", row["valid_loss"],
          row["bleu"], row["chrf"]] for name, row in summary["models"].items()])
    report.add_table(
        ["model"] + [f"{b['bucket']} ({b['sentences']})" for b in first["by_length"]],
        [[name] + [b.get("bleu") for b in r["by_length"]] for name, r in results.items()],
        title="BLEU by English source length (words; sentences per bucket in brackets)")
    report.add_figure("bleu_by_length", length_curve_figure(results),
                      caption="BLEU by English source length")
    report.add_figure("alignments", _alignments_figure(out, results),
                      caption="the same test sentences under every model (one column each)")
    report.add_text(f"Signature: `{first['bleu_signature']}`")
    return report


def _alignments_figure(out: Path, results: dict[str, dict]):
    sentences = next(iter(results.values()))["alignment_sentences"]
    grid: list[list] = [[] for _ in sentences]
    for name in results:
        translator, _ = load_translator(out / name)
        _, alignments = translator.translate(sentences, return_alignment=True)
        for i, alignment in enumerate(alignments):
            grid[i].append(alignment)
    return alignment_figure(grid)


def length_curve_figure(results: dict[str, dict]):
    """BLEU against source-length bucket, one line per model (a matplotlib Figure)."""
    plt = pyplot()
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
    return fig
