"""The pairs report: the task and its negatives, the compute rule (an equal budget of CPU or
wall time per model), the goal check, every model's parameters, epochs reached and test
accuracy with its interval, the trivial-feature line, valid curves and the alignment heatmaps;
written with :class:`attnkit.experiments.report.Report`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnkit.experiments.pairs.config import CLOCKS
from attnkit.experiments.pairs.shortcuts import FEATURES
from attnkit.experiments.report import Report

__all__ = ["write_report"]


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _load(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _interval(scores: dict[str, Any]) -> str:
    low, high = scores["ci95"]
    return f"{100 * scores['accuracy']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def _summary(m: dict[str, Any]) -> list[str]:
    c, d, mach = m["config"], m["data"], m["machine"]
    neg = d["negatives"]
    return [
        f"data: EN->FR gettext corpus ({d['corpus']}): {d['pairs']['train']:,} / "
        f"{d['pairs']['valid']:,} / {d['pairs']['test']:,} train / valid / test pairs; the "
        f"run trains on the first {c['train_pairs'] or d['pairs']['train']:,} train pairs "
        f"(hash order); examples (one positive and one hard negative per English sentence): "
        f"{d['examples']['train']:,} / {d['examples']['valid']:,} / {d['examples']['test']:,}",
        "hard negative: the French side of another pair of the same split with the highest "
        "Jaccard overlap of lower-cased words and placeholders with the true French side "
        f"(train: searched in blocks of {d.get('train_block', 640):,} pairs, about the size of "
        "valid and test; never a translation of the same message); "
        "mean overlap " + ", ".join(f"{n} {neg[n]['mean_jaccard']:.2f}" for n in neg)
        + "; no overlap at all " + ", ".join(f"{n} {100 * neg[n]['zero_overlap']:.1f}%"
                                             for n in neg),
        f"tokens: the corpus's joint BPE ({d['vocab_size']} ids), sentences cut at "
        f"{c['max_len']} tokens; embeddings {c['embed_dim']}-d in every model",
        f"features: the exact-match indicator (a token's id occurs in the other sentence) is "
        f"{'given to every model' if c.get('exact_match') else 'off'}; decomposable "
        f"aggregate: {c.get('aggregate', 'sum')}; dropout {c['dropout']:g} in every model",
        f"training: Adam lr {c['lr']:g}, batches of {c['batch_size']} examples; every model "
        f"gets the same budget, {c['minutes']:g} minutes of "
        f"{CLOCKS[c.get('clock', 'wall')]} (valid checks included), or {c['epochs']} "
        f"epoch(s) if it gets there first, and at most {c.get('max_minutes', '-')} minutes of "
        f"wall-clock time; valid accuracy "
        f"{c['evals_per_epoch']} times per epoch (and once at the stop), the best valid state "
        f"is tested",
        "test accuracy with a 95% interval: percentile bootstrap over the test English "
        f"sentences (each with its positive and its negative), {c['bootstrap']} resamples",
        f"machine: {mach['processor']}, {mach['cpus']} CPUs, {mach['threads']} torch threads, "
        f"load average {_load(mach['load_average_1min'])} at the start and "
        f"{_load(mach['load_average_1min_end'])} at the end (other work on the same cores); "
        f"whole run {m['wall_s'] / 60:.1f} min",
    ]


def _budget_text(m: dict[str, Any]) -> str:
    """The compute rule of the run and what it means for the numbers."""
    trainings = {k: r["training"] for k, r in m["models"].items()}
    if trainings and all(t["stopped_by"] == "epochs" for t in trainings.values()):
        return (f"Every model trained for the same number of epochs ({m['config']['epochs']}) "
                f"before its {m['config']['minutes']:g}-minute budget ran out: equal work in "
                f"examples seen, not equal compute (an epoch of the BiGRU costs several of the "
                f"decomposable model's).")
    clock = m["config"].get("clock", "wall")
    text = (f"Equal compute: every model trains for the same budget of "
            f"{CLOCKS[clock]}, a rule fixed before this run (not chosen from test numbers), "
            f"so a cheaper model sees more epochs. The epochs each one reached depend on the "
            f"machine's speed and, for wall time, its load (the table gives each model's "
            f"wall and CPU minutes and the load average at the start and the end of its "
            f"training); on another machine they differ. With several threads, CPU time also "
            f"counts what the threads spend waiting for each other. Test accuracies of earlier "
            f"runs (fixed-epoch runs, and an equal-budget run without the exact-match "
            f"feature: decomposable 82.8% vs bigru 85.0%) were seen before this default was "
            f"set; its options were chosen on valid accuracy (benchmarks/results/pairs/"
            f"TUNING.md).")
    capped = [k for k, t in trainings.items() if t["stopped_by"] == "wall cap"]
    if capped:
        text += (f" **Not equal here**: {', '.join(capped)} hit the "
                 f"{m['config'].get('max_minutes')}-minute wall-clock cap before its budget "
                 f"(a loaded machine) and got less compute than the others.")
    return text


def _findings(m: dict[str, Any]) -> list[str]:
    """The run's headline numbers, read from the metrics (no fixed claims)."""
    short = m["shortcut"]["test"]["accuracy"]
    lines = []
    for kind, r in m["models"].items():
        acc, test = r["test"]["accuracy"], r["test"]
        low, high = test["ci95"]
        side = "lies above" if low > short else "lies below" if high < short else "contains"
        lines.append(f"{kind}: test accuracy {100 * acc:.1f}%; its 95% interval "
                     f"({100 * low:.1f}-{100 * high:.1f}) {side} the trivial features' "
                     f"{100 * short:.1f}%; {100 * test['accuracy_positive']:.1f}% on real "
                     f"pairs, {100 * test['accuracy_negative']:.1f}% on negatives")
    if m["heatmaps"]:
        peak = [max(row) for item in m["heatmaps"] for row in item["weights"]]
        uniform = [1.0 / len(item["french_tokens"]) for item in m["heatmaps"]
                   for _ in item["weights"]]
        lines.append(f"alignment sharpness of {m['selected']} on the drawn test pairs: the "
                     f"largest weight of an English token's row is {sum(peak) / len(peak):.2f} "
                     f"on average, against {sum(uniform) / len(uniform):.2f} for uniform "
                     f"attention")
    return lines


def _curve_figure(models: dict[str, Any], clock: str):
    from attnkit.interp.figures import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6), sharey=True, layout="constrained")
    for kind, r in models.items():
        curve = r["training"]["curve"]
        valid = [100 * p["valid_accuracy"] for p in curve]
        spent = [p.get("cpu_minutes", p["minutes"]) if clock == "cpu" else p["minutes"]
                 for p in curve]
        axes[0].plot(spent, valid, marker="o", ms=3, label=kind)
        axes[1].plot([p["epoch"] for p in curve], valid, marker="o", ms=3, label=kind)
    axes[0].set(xlabel=f"training minutes ({CLOCKS[clock]})", ylabel="valid accuracy, %")
    axes[1].set(xlabel="epochs")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def _heatmap_figure(item: dict[str, Any]):
    from attnkit.interp.figures import pyplot

    plt = pyplot()
    rows, cols = item["english_tokens"], item["french_tokens"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.42 * len(cols), 1.2 + 0.36 * len(rows)),
                           layout="constrained")
    ax.imshow(item["weights"], cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=70, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    kind = "real pair" if item["label"] else "hard negative"
    ax.set_title(f"{kind}: p(translation) = {item['probability']:.2f}", fontsize=9)
    return fig


def write_report(out: Path, metrics: dict[str, Any]) -> Path:
    """Write the report of a pairs run (``metrics`` from
    :func:`~attnkit.experiments.pairs.run.run`) to ``out``."""
    models, goal = metrics["models"], metrics["goal"]
    report = Report(out, title="attnkit pairs: decomposable attention on EN/FR translation "
                               "pairs")
    report.add_text("Is this French sentence a translation of this English one? Real gettext "
                    "pairs against hard negatives. Decomposable attention (Parikh et al. 2016, "
                    "arXiv:1606.01933) aligns the two sentences token by token; the baseline "
                    "encodes each sentence alone with a BiGRU and compares the two vectors.")
    report.add_list(_summary(metrics))
    if goal is not None:
        diff = goal["difference"]
        report.add_table(
            ["goal", "measured", "met"],
            [[f"{goal['model']} test accuracy >= {goal['baseline']}'s",
              f"{100 * goal['accuracy']:.1f}% vs {100 * goal['baseline_accuracy']:.1f}% "
              f"(difference {100 * diff['difference']:+.1f} points, 95% paired bootstrap "
              f"[{100 * diff['low']:+.1f}, {100 * diff['high']:+.1f}])",
              "yes" if goal["accuracy_met"] else "**no**"],
             [f"{goal['model']} parameters <= half of {goal['baseline']}'s",
              f"ratio {goal['parameter_ratio']:.3f} "
              f"({goal['parameter_ratio_without_embeddings']:.3f} without the embedding "
              f"tables)",
              "yes" if goal["parameters_met"] else "**no**"]],
            title="The goal")
        report.add_text(_budget_text(metrics))
        report.add_text(f"The decomposable variant compared is the one with the better valid "
                        f"accuracy (**{metrics['selected']}**); test numbers were not used to "
                        f"choose anything.")
    report.add_heading("What this run measured")
    report.add_list(_findings(metrics))
    short = metrics["shortcut"]
    rows = [["trivial features (logistic regression)", None, None, None, None, None, None,
             _pct(short["valid_accuracy"]), _interval(short["test"]),
             _pct(short["test"]["accuracy_positive"]), _pct(short["test"]["accuracy_negative"]),
             None]]
    for kind, r in models.items():
        t = r["training"]
        rows.append([kind, r["parameters"]["total"], r["parameters"]["other"],
                     f"{t['epochs']:.2f} ({t['stopped_by']})", round(t["elapsed_s"] / 60, 2),
                     None if t.get("cpu_s") is None else round(t["cpu_s"] / 60, 2),
                     " / ".join(_load(v) for v in t.get("load_average_1min", [None, None])),
                     _pct(t["best"]["valid_accuracy"]), _interval(r["test"]),
                     _pct(r["test"]["accuracy_positive"]), _pct(r["test"]["accuracy_negative"]),
                     _pct(r["test"]["accuracy_where_shortcut_wrong"])])
    wrong = round(len(short["test"]["correct"]) * (1 - short["test"]["accuracy"]))
    report.add_table(["model", "params", "params w/o embeddings", "epochs reached (stop)",
                      "training wall min", "CPU min", "load avg start / end",
                      "best valid acc. %", "test acc. [95% CI]", "test acc. on real pairs %",
                      "test acc. on negatives %", "test acc. where trivial features fail %"],
                     rows, title="Results")
    report.add_text(f"The last column is the accuracy on the {wrong} test examples the "
                    f"trivial-feature regression gets wrong: what reading the words adds.")
    report.add_table(["feature", "weight (standardized)"],
                     [[name, round(short["weights"][name], 3)] for name in (*FEATURES, "bias")],
                     title="Trivial features: what length and copied tokens alone give")
    report.add_figure("valid_curve", _curve_figure(models, metrics["config"].get("clock", "wall")),
                      caption="valid accuracy during training, against the budget's minutes "
                              "and epochs (the best point is tested)")
    if metrics["heatmaps"]:
        report.add_heading(f"Alignments of {metrics['selected']} on test pairs")
        report.add_text("Rows: English tokens; columns: French tokens; each row is the "
                        "softmax over the French tokens (attend step, beta). Each real pair is "
                        "followed by its hard negative.")
        for k, item in enumerate(metrics["heatmaps"]):
            report.add_figure(f"alignment_{k}", _heatmap_figure(item),
                              caption=f"{item['english']} / {item['french']}")
    return report.write(metrics)
