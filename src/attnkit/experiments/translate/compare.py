"""Several models under one budget: the same corpus, tokenizer and wall-clock time each.

:func:`compare` trains and evaluates each model in turn (one run directory per model, each
resumable), then writes one report: a table of BLEU, chrF, parameters, updates and
throughput; BLEU by source length as a table and a curve; and the same test sentences'
alignments under every model side by side.

Every model trains with ``hold_out_long`` (without the ``test-long`` pairs, see
:mod:`attnkit.data.translation.split`) and is scored on the test split and on test-long.
In every length bucket of both, sacreBLEU's paired bootstrap
(:func:`~attnkit.experiments.translate.stats.paired_bootstrap`, fixed seed, 1000 resamples)
gives each model's BLEU a 95% interval (the error bars of the BLEU-by-length plot) and each
pair of models a p-value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnkit._validate import output_dir
from attnkit.data.translation.split import TEST_LONG, TEST_LONG_MIN_SENTENCES
from attnkit.errors import UserError
from attnkit.experiments.report import Report
from attnkit.experiments.translate.claims import claims, quality_figure
from attnkit.experiments.translate.config import CompareConfig, TranslateConfig
from attnkit.experiments.translate.evaluate import EVAL_SPLITS, SPLIT_BUCKETS
from attnkit.experiments.translate.run import TRANSLATIONS_FILE, check_run_dir, train
from attnkit.experiments.translate.stats import (
    BOOTSTRAP_SAMPLES,
    BOOTSTRAP_SEED,
    paired_bootstrap,
)
from attnkit.experiments.translate.translator import load_translator
from attnkit.interp import alignment_figure, pyplot

__all__ = ["compare", "length_curve_figure", "significance", "STATS_BUCKETS",
           "MIN_STATS_SENTENCES"]

#: buckets with fewer sentences get BLEU only: resampling a handful of sentences gives an
#: interval and a p-value that mean nothing (one sentence: a single resample value)
MIN_STATS_SENTENCES = 10

#: the buckets (English words) of each split that get intervals and p-values: the whole
#: split, its by-length buckets and, on test-long, 21-50 words together (the long sentences
#: of Bahdanau et al.'s claim)
STATS_BUCKETS: dict[str, tuple[tuple[int, int] | None, ...]] = {
    "test": (None, *SPLIT_BUCKETS["test"]),
    TEST_LONG: (None, *SPLIT_BUCKETS[TEST_LONG], (21, 50)),
}


def _label(bucket: tuple[int, int] | None) -> str:
    return "all" if bucket is None else f"{bucket[0]}-{bucket[1]}"


def _run_configs(config: CompareConfig) -> dict[str, TranslateConfig]:
    out = Path(config.out)
    return {name: TranslateConfig(**{**config.base, "model": name, "minutes": config.minutes,
                                     "out": str(out / name), "hold_out_long": True})
            for name in config.models}


def _check_reused(run_dir: Path) -> None:
    """An evaluated run that compare may reuse: trained without test-long, with its
    translations kept for the significance tests."""
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    if not (metrics.get("config") or {}).get("hold_out_long"):
        raise UserError(f"--resume: {run_dir} was trained on the test-long pairs (a compare "
                        f"from before the hold-out); use another --out")
    if not (run_dir / TRANSLATIONS_FILE).is_file():
        raise UserError(f"--resume: {run_dir} has no {TRANSLATIONS_FILE} for the paired "
                        f"tests; use another --out")


def significance(translations: dict[str, dict[str, dict]], *,
                 samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
                 ) -> dict[str, Any]:
    """Paired bootstrap of every pair of models in every bucket of :data:`STATS_BUCKETS`.

    Args:
        translations: model -> split ("test", "test-long") -> ``sources``, ``references``,
            ``hypotheses`` (N strings each; what ``translations.json`` holds). Every model
            must have been scored on the same sentences of a split; a split some model
            lacks is left out.
        samples, seed: of the bootstrap (see :func:`paired_bootstrap`).

    Returns:
        ``samples``, ``seed``, ``signature`` and ``splits``: split -> bucket label ("all",
        "3-5", ...) -> ``sentences`` and, where there are at least
        :data:`MIN_STATS_SENTENCES`, ``systems`` (BLEU, mean, ci, low, high per model) and
        ``pairs`` (``a``, ``b``, ``delta`` = BLEU(b) - BLEU(a), ``p``), as
        :func:`paired_bootstrap` returns them.
    """
    if not translations:
        raise ValueError("translations: expected at least one model")
    splits: dict[str, dict[str, Any]] = {}
    signature = ""
    for split in EVAL_SPLITS:
        if not all(split in by_split for by_split in translations.values()):
            continue
        first_name, first = next((n, t[split]) for n, t in translations.items())
        for name, by_split in translations.items():
            ours = by_split[split]
            if ours["sources"] != first["sources"] or ours["references"] != first["references"]:
                raise UserError(f"{name} and {first_name} were scored on different {split} "
                                f"sentences (another corpus or --test-limit); rerun them "
                                f"into a new --out")
        words = [len(source.split()) for source in first["sources"]]
        splits[split] = {}
        for bucket in STATS_BUCKETS[split]:
            rows = [i for i, n in enumerate(words)
                    if bucket is None or bucket[0] <= n <= bucket[1]]
            entry: dict[str, Any] = {"sentences": len(rows)}
            if len(rows) >= MIN_STATS_SENTENCES:
                result = paired_bootstrap(
                    {name: [t[split]["hypotheses"][i] for i in rows]
                     for name, t in translations.items()},
                    [first["references"][i] for i in rows], samples=samples, seed=seed)
                signature = result["signature"]
                entry.update(systems=result["systems"], pairs=result["pairs"])
            splits[split][_label(bucket)] = entry
    return {"samples": samples, "seed": seed, "signature": signature, "splits": splits}


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
            _check_reused(out / name)
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
    translations = {name: json.loads((out / name / TRANSLATIONS_FILE).read_text(
        encoding="utf-8")) for name in results}
    stats = significance(translations)
    summary = {"models": {name: _row(r) for name, r in results.items()},
               "by_length": {name: r["by_length"] for name, r in results.items()},
               "test_long": next(iter(results.values()))["corpus"].get("test_long"),
               "by_length_test_long": {name: r["test_long"]["by_length"]
                                       for name, r in results.items() if "test_long" in r},
               "bootstrap": stats, "minutes_per_model": config.minutes}
    summary["claims"] = claims(results, stats)
    _report(out, results, config, summary).write(summary)
    log(f"wrote {out}/ (README.md, report.html, metrics.json, bleu_by_length.png, "
        f"alignments.png)")
    return summary


def _row(r: dict[str, Any]) -> dict[str, Any]:
    t = r["training"]
    long = r.get("test_long") or {}
    return {"bleu": r["bleu"], "chrf": r["chrf"], "bleu_test_long": long.get("bleu"),
            "parameters": t["parameters"],
            "updates": t.get("step"), "epochs": t["epochs"], "train_s": t.get("elapsed_s"),
            "tokens_per_s": t.get("tokens_per_s"), "valid_loss": t.get("valid_loss")}


def _report(out: Path, results: dict[str, dict], config: CompareConfig,
            summary: dict[str, Any]) -> Report:
    first = next(iter(results.values()))
    report = Report(out, title=f"attnkit translate compare (en->{first['corpus']['lang']})")
    report.add_text(f"Corpus: {first['corpus']['pairs']['train']} train / "
                    f"{first['corpus']['pairs']['test']} test pairs; budget {config.minutes} min "
                    f"of training per model; beam {first['beam_size']}.")
    report.add_text(_test_long_text(summary.get("test_long")))
    report.add_table(
        ["model", "params", "updates", "epochs", "train min", "tokens/s", "valid loss", "BLEU",
         "chrF", "test-long BLEU"],
        [[name, f"{row['parameters'] / 1e6:.2f}M", row["updates"], row["epochs"],
          (row["train_s"] or 0) / 60, f"{row['tokens_per_s'] or 0:.0f}", row["valid_loss"],
          row["bleu"], row["chrf"], row.get("bleu_test_long")]
         for name, row in summary["models"].items()])
    report.add_table(
        ["model"] + [f"{b['bucket']} ({b['sentences']})" for b in first["by_length"]],
        [[name] + [b.get("bleu") for b in r["by_length"]] for name, r in results.items()],
        title="BLEU by English source length (words; sentences per bucket in brackets)")
    stats = summary["bootstrap"]
    for split, buckets in stats["splits"].items():
        labels = [label for label, entry in buckets.items() if "systems" in entry]
        if not labels:
            continue
        headers = [f"{label} ({buckets[label]['sentences']})" for label in labels]
        report.add_table(
            ["model", *headers],
            [[name] + [_interval(buckets[label]["systems"][name]) for label in labels]
             for name in results],
            title=f"{split}: BLEU [95% interval] by English source length (words; sentences "
                  f"in brackets)")
        pairs = buckets["all"]["pairs"] if "all" in labels else []
        if pairs:
            report.add_table(
                ["B - A", *headers],
                [[f"{pair['b']} - {pair['a']}"]
                 + [_difference(buckets[label]["pairs"][k]) for label in labels]
                 for k, pair in enumerate(pairs)],
                title=f"{split}: BLEU difference and paired-bootstrap p-value per pair of models")
    report.add_text(f"Intervals and p-values: sacreBLEU's paired bootstrap resampling (Koehn "
                    f"2004), {stats['samples']} resamples, seed {stats['seed']}; the interval "
                    f"is the mean resampled BLEU +- half the distance between its 2.5th and "
                    f"97.5th percentiles; p < 0.05 marks a difference unlikely to be chance. "
                    f"Buckets under {MIN_STATS_SENTENCES} sentences get no interval"
                    f"{_too_small(stats['splits'])}. Signature: `{stats['signature']}`")
    report.add_figure("bleu_by_length", length_curve_figure(results, stats["splits"]),
                      caption=f"BLEU by English source length: the test split, and "
                              f"test-long where held out; error bars are 95% bootstrap "
                              f"intervals (none under {MIN_STATS_SENTENCES} sentences)")
    _claims_section(report, results, summary["claims"])
    report.add_figure("alignments", _alignments_figure(out, results),
                      caption="the same test sentences under every model (one column each)")
    report.add_text(f"Signature: `{first['bleu_signature']}`")
    return report


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _claims_section(report: Report, results: dict[str, dict], found: dict[str, Any]) -> None:
    report.add_figure("quality_curve", quality_figure(results),
                      caption="validation BLEU (greedy) against training minutes, every model "
                              "under the same budget")
    reach = found["reach"]
    target = reach.get("valid_bleu")
    report.add_table(
        ["model", "train min", "min per test BLEU point", "final valid BLEU",
         "valid BLEU gain, last quarter", f"min to valid BLEU {_number(target)}"],
        [[name, _number(row["train_minutes"], 1), _number(row["minutes_per_bleu"]),
          _number(row["final_valid_bleu"]), _number(row["late_gain"]),
          _number((reach.get("minutes") or {}).get(name), 1)]
         for name, row in found["per_model"].items()],
        title="Training time against quality (a small gain over the last quarter of the "
              "budget means the curve had flattened)")
    rows = []
    for verdict in found["verdicts"]:
        evidence = verdict["evidence"]
        if evidence is None:
            shown = "models not compared"
        elif "delta" in evidence:
            shown = (f"{evidence['delta']:+.2f} BLEU, p {evidence['p']:.3f} "
                     f"({evidence['sentences']} sentences)")
        else:
            shown = ", ".join(f"{name} {_number(v)} min/point" for name, v in evidence.items())
        met = {True: "yes", False: "**no**", None: "-"}[verdict["met"]]
        rows.append([verdict["claim"], shown, met])
    report.add_table(["claim", "measured", "holds"], rows, title="The claims")


def _alignments_figure(out: Path, results: dict[str, dict]):
    sentences = next(iter(results.values()))["alignment_sentences"]
    grid: list[list] = [[] for _ in sentences]
    for name in results:
        translator, _ = load_translator(out / name)
        _, alignments = translator.translate(sentences, return_alignment=True)
        for i, alignment in enumerate(alignments):
            grid[i].append(alignment)
    return alignment_figure(grid)


def _too_small(splits: dict[str, dict[str, dict]]) -> str:
    small = [f"{split} {label}" for split, buckets in splits.items()
             for label, entry in buckets.items() if 0 < entry["sentences"] < MIN_STATS_SENTENCES]
    return f" (here: {', '.join(small)})" if small else ""


def _interval(system: dict[str, float]) -> str:
    return f"{system['bleu']:.2f} [{system['low']:.2f}, {system['high']:.2f}]"


def _difference(pair: dict[str, Any]) -> str:
    return f"{pair['delta']:+.2f} (p {pair['p']:.3f})"


def _test_long_text(counts: dict[str, Any] | None) -> str:
    if counts is None:
        return "test-long: not held out."
    strata = ", ".join(f"{n} of {name} words" for name, n in counts["by_length"].items())
    short = (f"; under {TEST_LONG_MIN_SENTENCES} in this corpus: {', '.join(counts['short'])}"
             if counts["short"] else "")
    return (f"test-long: {counts['pairs']} long train-split pairs held out of every model's "
            f"training ({strata}, {counts['outside']} outside 13-50{short}); "
            f"{counts['train_kept']} train pairs left.")


def length_curve_figure(results: dict[str, dict],
                        intervals: dict[str, dict[str, dict]] | None = None):
    """BLEU against source-length bucket, one line per model (a matplotlib Figure).

    Args:
        results: model -> its run metrics (``by_length``, and ``test_long`` when held out).
        intervals: ``significance(...)["splits"]``; when given, each point gets its 95%
            bootstrap interval as an error bar.

    One panel for the test split and, when every model was scored on it, one for test-long.
    """
    plt = pyplot()
    panels = [("test", {name: r["by_length"] for name, r in results.items()})]
    if all("test_long" in r for r in results.values()):
        panels.append((TEST_LONG, {name: r["test_long"]["by_length"]
                                   for name, r in results.items()}))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (split, by_model) in zip(axes[0], panels, strict=True):
        shift = 0.08  # models side by side within a bucket, so the error bars do not overlap
        for k, (name, buckets) in enumerate(by_model.items()):
            offset = (k - (len(by_model) - 1) / 2) * shift
            xs, ys, below, above = [], [], [], []
            for i, b in enumerate(buckets):
                if "bleu" not in b:
                    continue
                xs.append(i + offset)
                ys.append(b["bleu"])
                system = ((intervals or {}).get(split, {}).get(b["bucket"], {})
                          .get("systems", {}).get(name))
                below.append(max(b["bleu"] - system["low"], 0.0) if system else 0.0)
                above.append(max(system["high"] - b["bleu"], 0.0) if system else 0.0)
            ax.errorbar(xs, ys, yerr=[below, above] if intervals else None, marker="o",
                        capsize=3, label=name)
        labels = [f"{b['bucket']}\n({b['sentences']})" for b in next(iter(by_model.values()))]
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_xlabel(f"English source length in words ({split} sentences)")
        ax.set_ylabel("BLEU")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
