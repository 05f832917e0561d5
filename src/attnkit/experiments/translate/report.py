"""The report of one translate run: summary, BLEU by length, samples, alignment plots.

Written with the shared :class:`attnkit.experiments.report.Report`: ``metrics.json``,
``README.md``, ``alignments.png`` and ``report.html`` in the run's report directory, and
``viewer.html``, the offline attention viewer on one test sentence (models with attention).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnkit.experiments.report import Report
from attnkit.experiments.translate.evaluate import alignment_sentences
from attnkit.experiments.translate.translator import Translator
from attnkit.interp import alignment_figure

__all__ = ["write_run_report", "by_length_rows", "attention_viewer", "viewer_source_ids",
           "VIEWER_FILE"]

VIEWER_FILE = "viewer.html"


def viewer_source_ids(translator: Translator, text: str) -> list[int]:
    """``text``'s token ids; ValueError naming ``text`` if it encodes to no token or does
    not fit the model's positions (with room for EOS)."""
    if not isinstance(translator, Translator):
        raise TypeError(f"translator: expected a Translator, got {type(translator).__name__}")
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    source_ids = translator.tokenizer.encode(text)
    limit = translator.max_source_tokens
    if not source_ids:
        raise ValueError("text: it encodes to no token")
    if limit is not None and len(source_ids) + 1 > limit:
        raise ValueError(f"text: {len(source_ids)} tokens, but this {translator.kind} has "
                         f"positions for {limit - 1}; shorten it")
    return source_ids


def attention_viewer(translator: Translator, text: str, *, layers=None,
                     notes: tuple[str, ...] = ()) -> str:
    """The offline attention viewer (:func:`attnkit.interp.viewer.inspect_html`) of one
    translation: greedy decode ``text``, then capture the encoder's and decoder's
    self-attention and the cross-attention of the forced decode of that output.

    Args:
        translator: a trained model with its tokenizer.
        text: the English source; it must fit ``translator.max_source_tokens``.
        layers: attention modules to show (paths or indices; None: all).
        notes: extra lines shown above the views.

    Returns:
        the HTML page. ValueError if ``text`` encodes to no token or is too long.
    """
    import torch

    from attnkit.data.tokenizer import BOS_ID
    from attnkit.interp.viewer import inspect_html
    from attnkit.train import greedy_decode

    source_ids = viewer_source_ids(translator, text)  # checks translator and text first
    model, tokenizer = translator.model.eval(), translator.tokenizer
    limit = translator.max_source_tokens
    device = next(model.parameters()).device
    src = torch.tensor([source_ids], device=device)
    lengths = torch.tensor([len(source_ids)], device=device)
    steps = 2 * len(source_ids) + 10
    if limit is not None:
        steps = min(steps, limit - 1)
    with torch.no_grad():
        result = greedy_decode(model, src, lengths, max_len=steps)
        tgt_in = torch.tensor([[BOS_ID, *result.tokens[0]]], device=device)
        predicted = model(src, lengths, tgt_in)[0].argmax(-1)  # (T,) what each row predicts
    notes = (f"source: {text}", f"greedy translation: {tokenizer.decode(result.tokens[0])}",
             "Decoder rows are labelled by their input token (self-attention) and by the "
             "token they predict (cross-attention).", *notes)
    return inspect_html(model, tgt_in.cpu(), tokenizer.tokens(tgt_in[0].tolist()),
                        source_ids=src.cpu(), source_tokens=tokenizer.tokens(source_ids),
                        output_tokens=tokenizer.tokens(predicted.tolist()), layers=layers,
                        title=f"attnkit inspect: {translator.kind}", notes=notes)


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
    if _has_attention(translator.model):
        from attnkit.interp.viewer import write_viewer

        write_viewer(Path(out) / VIEWER_FILE, attention_viewer(translator, sentences[0]))
        metrics["viewer"] = {"file": VIEWER_FILE, "sentence": sentences[0]}
        report.add_heading("Attention viewer")
        report.add_text(f"{VIEWER_FILE} in this folder shows every attention head of the model "
                        f"on the test sentence \"{sentences[0]}\" (one self-contained page; "
                        f"open it in a browser, no network needed).")
    return report.write(metrics)


def _has_attention(model) -> bool:
    """Whether the model has an attention module to show (not the fixed-vector RNN)."""
    from attnkit.interp.capture import attention_modules

    return bool(attention_modules(model))
