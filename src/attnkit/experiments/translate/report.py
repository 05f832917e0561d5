"""The report of one translate run: summary, BLEU by length, samples, alignment plots.

Written with the shared :class:`attnkit.experiments.report.Report`: ``metrics.json``,
``README.md``, ``alignments.png`` and ``report.html`` in the run's report directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnkit.experiments.report import Report
from attnkit.experiments.translate.evaluate import alignment_sentences
from attnkit.experiments.translate.translator import Translator
from attnkit.interp import alignment_figure

__all__ = ["write_run_report", "by_length_rows"]


def by_length_rows(by_length: list[dict[str, Any]]) -> list[list[Any]]:
    """Rows (bucket, sentences, BLEU, chrF) of a ``by_length`` metrics list."""
    return [[b["bucket"], b["sentences"], b.get("bleu"), b.get("chrf")] for b in by_length]


def _summary(m: dict[str, Any]) -> list[str]:
    t, corpus = m["training"], m["corpus"]
    return [
        f"corpus: {corpus['pairs']['train']} train / {corpus['pairs']['valid']} valid / "
        f"{corpus['pairs']['test']} test pairs from {corpus['catalogs']} gettext catalogs "
        f"({corpus['path']})",
        f"model: {t['parameters'] / 1e6:.2f}M parameters, {t.get('step', 0)} updates "
        f"({t['epochs']:.2f} epochs) in {t.get('elapsed_s', 0) / 60:.1f} min, "
        f"{t.get('tokens_per_s', 0):.0f} tokens/s, {t['threads']} torch threads, "
        f"autocast {t.get('autocast', 'off')}",
        f"test: **BLEU {m['bleu']:.2f}**, **chrF {m['chrf']:.2f}** on {m['test_sentences']} "
        f"sentences (beam {m['beam_size']}, length penalty {m['length_penalty']})",
        f"signatures: `{m['bleu_signature']}`, `{m['chrf_signature']}`",
    ] + _test_long_summary(m)


def _test_long_summary(m: dict[str, Any]) -> list[str]:
    """The test-long line of a run trained with ``hold_out_long`` (none otherwise)."""
    counts = m["corpus"].get("test_long")
    if counts is None:
        return []
    strata = ", ".join(f"{n} of {name} words" for name, n in counts["by_length"].items())
    line = (f"test-long (held out of training): {counts['pairs']} pairs ({strata}; "
            f"{counts['outside']} outside)")
    long = m.get("test_long")
    if long is not None:
        line += (f": **BLEU {long['bleu']:.2f}**, chrF {long['chrf']:.2f} on "
                 f"{long['test_sentences']} sentences")
    return [line]


def curve_figure(curve: list[dict[str, Any]], title: str):
    """Greedy validation BLEU against minutes of training (one point per evaluation)."""
    from attnkit.interp.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
    ax.plot([p["minutes"] for p in curve], [p["valid_bleu"] for p in curve], marker="o")
    for point in curve:
        ax.annotate(f"{point['step']}", (point["minutes"], point["valid_bleu"]), fontsize=7,
                    textcoords="offset points", xytext=(0, 5), ha="center")
    ax.set(xlabel="minutes of training (evaluations included)",
           ylabel="validation BLEU (greedy)", title=title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    return fig


def write_run_report(out: Path, metrics: dict[str, Any], translator: Translator,
                     test_pairs) -> Path:
    """Plot the alignments of a few test sentences and write the run's report to ``out``.

    ``metrics`` (from training and :func:`~attnkit.experiments.translate.evaluate.evaluate_split`)
    gains ``alignment_sentences``, the sentences plotted.
    """
    sentences = alignment_sentences(test_pairs)
    _, alignments = translator.translate(sentences, return_alignment=True)
    metrics["alignment_sentences"] = sentences
    report = Report(out, title=f"attnkit translate: {metrics['model']} "
                               f"(en->{metrics['corpus']['lang']})")
    report.add_list(_summary(metrics))
    report.add_table(["words", "sentences", "BLEU", "chrF"], by_length_rows(metrics["by_length"]),
                     title="BLEU by English source length (words)")
    if "test_long" in metrics:
        report.add_table(["words", "sentences", "BLEU", "chrF"],
                         by_length_rows(metrics["test_long"]["by_length"]),
                         title="test-long (long train-split sentences held out of training): "
                               "BLEU by English source length")
    report.add_table(["source", "reference", "output"],
                     [[s["source"], s["reference"], s["output"]] for s in metrics["samples"]],
                     title="Samples")
    curve = metrics["training"].get("curve") or []
    if curve:
        report.add_table(["minutes", "update", "valid loss", "valid BLEU (greedy)"],
                         [[round(p["minutes"], 2), p["step"], round(p["valid_loss"], 3),
                           round(p["valid_bleu"], 2)] for p in curve],
                         title="Quality over the budget")
        report.add_figure("bleu_curve", curve_figure(curve, metrics["model"]),
                          caption="validation BLEU (greedy, the first "
                                  f"{metrics['config']['valid_bleu_limit']} valid pairs) at "
                                  "each evaluation, labelled with its update")
    report.add_figure("alignments", alignment_figure([[a] for a in alignments]),
                      caption="attention of the decoder over the source, one test sentence "
                              "per row")
    return report.write(metrics)
