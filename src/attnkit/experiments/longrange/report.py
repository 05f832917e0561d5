"""The longrange report: what was run, the goal check, accuracy by length and by distance,
gradient flow, step time and sequential steps; tables, figures and metrics.json, written
with :class:`attnkit.experiments.report.Report`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnkit.experiments.longrange.data import bucket_index, bucket_label, buckets
from attnkit.experiments.longrange.probes import sequential_formula
from attnkit.experiments.report import Report

__all__ = ["write_report", "gradient_rows", "far_near_ratio"]

_EXPLAINED = [
    "**token accuracy**: output token i equals target token i (greedy decoding, no gold "
    "prefix); a missing token is wrong. **exact match**: the whole output equals the target.",
    "**distance** of an output token: d = (L - j) + i for output position i copying source "
    "position j of an L-token source, the steps between reading the token and writing it when "
    "source and output are one sequence. Copy: d = L for every token; reverse: d = 2i + 1.",
    "**gradient flow**: mean L2 norm of d loss_i / d e_j (loss of output token i, e_j the "
    "source token embedding j) at each distance d = (L - j) + i, L fixed, eval mode; the "
    "figure divides each curve by its own mean so the shapes compare across models.",
    "**step time**: median seconds of one AdamW training step at a fixed number of source "
    "tokens per batch; seconds per epoch = train-split tokens / tokens per step x step time "
    "(derived, not timed). **sequential steps per layer**: from the architecture (Vaswani et "
    "al. 2017, Table 1), not measured.",
]


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _sci(value: float) -> str:
    return f"{value:.2e}"


def gradient_rows(flow: dict[str, Any], bucket_list: list[tuple[int, int]]) -> list[float | None]:
    """The mean of ``flow["norm"]`` over the distances of each bucket (None: none there)."""
    sums = [0.0] * len(bucket_list)
    counts = [0] * len(bucket_list)
    for distance, norm in zip(flow["distances"], flow["norm"], strict=True):
        k = bucket_index(distance, bucket_list)
        sums[k] += norm
        counts[k] += 1
    return [s / c if c else None for s, c in zip(sums, counts, strict=True)]


def far_near_ratio(flow: dict[str, Any]) -> float:
    """Mean gradient norm over the farthest tenth of the distances over the nearest tenth's
    (below 1: the gradient fades with distance)."""
    norms = flow["norm"]
    k = max(1, len(norms) // 10)
    return (sum(norms[-k:]) / k) / (sum(norms[:k]) / k)


def _findings(m: dict[str, Any]) -> list[str]:
    """The run's headline numbers, read from the metrics (nothing here is fixed text)."""
    lines = []
    for task, runs in m["tasks"].items():
        for kind, r in runs.items():
            rows = [b for b in r["test"]["by_length"] if b["token_accuracy"] is not None]
            first, last = rows[0], rows[-1]
            lines.append(f"{task}, {kind}: token accuracy {_pct(first['token_accuracy']):.1f}% "
                         f"at {first['bucket']} tokens, {_pct(last['token_accuracy']):.1f}% at "
                         f"{last['bucket']} ({r['training']['steps']} updates)")
        ratios = ", ".join(f"{kind} {far_near_ratio(r['gradient_flow']['init']):.2g} -> "
                           f"{far_near_ratio(r['gradient_flow']['trained']):.2g}"
                           for kind, r in runs.items())
        lines.append(f"{task}: gradient norm at the farthest tenth of distances over the "
                     f"nearest tenth, at initialization -> after training: {ratios}")
    timing = m["timing"]
    lo, hi = timing["lengths"][0], timing["lengths"][-1]
    if hi > lo:
        growth = ", ".join(
            f"{kind} x{rows[-1]['seconds_per_step'] / rows[0]['seconds_per_step']:.2f}"
            for kind, rows in timing["models"].items())
        lines.append(f"step time from L={lo} to L={hi} at {timing['tokens']} tokens per step: "
                     f"{growth}")
    return lines


def _summary(m: dict[str, Any]) -> list[str]:
    c, d, mach = m["config"], m["data"], m["machine"]
    params = ", ".join(f"{k} {v:,}" for k, v in m["parameters"].items())
    hidden = ", ".join(f"{k} {r['model']['hidden']}" for k, r in
                       m["tasks"][c["tasks"][0]].items() if "hidden" in r["model"])
    return [
        f"data: English side of the gettext corpus ({d['corpus']}), characters as tokens "
        f"({d['vocab_size']} ids with PAD/BOS/EOS/UNK); train {d['tokens']['train']:,} / "
        f"valid {d['tokens']['valid']:,} / test {d['tokens']['test']:,} tokens "
        f"({d['sentences']['train']:,} / {d['sentences']['valid']:,} / "
        f"{d['sentences']['test']:,} sentences); windows of consecutive sentences",
        f"sources of {c['min_len']}-{c['max_len']} tokens; training batches of "
        f"{c['max_tokens']} source tokens, one length per batch; test: {c['test_per_length']} "
        f"windows per length from the test split",
        f"parameters: {params} (RNN hidden sizes: {hidden}; Transformer d_model "
        f"{c['d_model']}, {c['layers']}+{c['layers']} layers, {c['heads']} heads)",
        f"budget: {c['minutes']:g} min of training per model and task, teacher forcing, "
        f"AdamW, linear warmup {c['warmup_steps']} then linear decay over the budget; "
        f"learning rate {c['lr_transformer']:g} (Transformer), {c['lr_rnn']:g} (RNNs)",
        f"machine: {mach['processor']}, {mach['cpus']} CPUs, {mach['threads']} torch threads, "
        f"torch {mach['torch']}, load average {mach['load_average_1min']} at the start and "
        f"{mach['load_average_1min_end']} at the end; whole run {m['wall_s'] / 60:.1f} min",
    ]


def _figure_by_bucket(series: dict[str, list[dict]], key: str, ylabel: str, title: str,
                      long_min: int | None = None):
    from attnkit.interp.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 3.6), layout="constrained")
    for kind, rows in series.items():
        rows = [r for r in rows if r.get(key) is not None]
        ax.plot([r["bucket"] for r in rows], [100 * r[key] for r in rows], marker="o",
                label=kind)
    if long_min is not None:
        ax.axhline(95, color="grey", lw=0.8, ls="--")
        ax.axhline(50, color="grey", lw=0.8, ls=":")
    ax.set(xlabel=title, ylabel=ylabel, ylim=(-2, 102))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    return fig


def _gradient_figure(task_runs: dict[str, Any], task: str):
    from attnkit.interp.figures import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6), layout="constrained", sharey=True)
    for ax, state, when in zip(axes, ("init", "trained"), ("at initialization", "after training"),
                               strict=True):
        for kind, run in task_runs.items():
            flow = run["gradient_flow"][state]
            mean = sum(flow["norm"]) / len(flow["norm"])
            ax.plot(flow["distances"], [n / mean for n in flow["norm"]], label=kind)
        ax.set_yscale("log")
        ax.set(xlabel="distance d = (L - j) + i", title=f"{task}: {when}",
               ylabel="||d loss_i / d e_j|| / its mean")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def _timing_figure(timing: dict[str, Any]):
    from attnkit.interp.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 3.6), layout="constrained")
    for kind, rows in timing["models"].items():
        ax.plot([r["length"] for r in rows], [1e3 * r["seconds_per_step"] for r in rows],
                marker="o", label=kind)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(xlabel=f"sequence length (batches of {timing['tokens']} source tokens)",
           ylabel="ms per training step")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def _curve_figure(task_runs: dict[str, Any], task: str):
    from attnkit.interp.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 3.6), layout="constrained")
    for kind, run in task_runs.items():
        curve = run["training"]["curve"]
        ax.plot([p["minutes"] for p in curve], [100 * p["valid_accuracy"] for p in curve],
                marker="o", label=kind)
    ax.set(xlabel="minutes of training", ylabel="valid token accuracy (teacher-forced), %",
           title=task, ylim=(-2, 102))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _task_section(report: Report, task: str, runs: dict[str, Any], config: dict) -> None:
    report.add_heading(f"Task: {task}")
    length_labels = [r["bucket"] for r in next(iter(runs.values()))["test"]["by_length"]]
    report.add_table(
        ["model", "params", "updates", "s/update", "valid acc. %", "test acc. %",
         "exact match %", "acc. % at >= 40"],
        [[kind, r["model"]["parameters"], r["training"]["steps"],
          round(r["training"]["seconds_per_step"], 3),
          _pct(r["training"]["curve"][-1]["valid_accuracy"]) if r["training"]["curve"] else None,
          _pct(r["test"]["token_accuracy"]), _pct(r["test"]["exact_match"]),
          _pct(r["test"]["long"]["token_accuracy"]) if r["test"]["long"] else None]
         for kind, r in runs.items()], title=f"{task}: training and test totals")
    for key, name in (("token_accuracy", "Token accuracy"), ("exact_match", "Exact match")):
        report.add_table(["model", *length_labels],
                         [[kind, *[_pct(b[key]) for b in r["test"]["by_length"]]]
                          for kind, r in runs.items()],
                         title=f"{task}: {name.lower()} (%) by source length (tokens)")
        report.add_figure(f"{key}_by_length_{task}", _figure_by_bucket(
            {k: r["test"]["by_length"] for k, r in runs.items()}, key, f"{name}, %",
            "source length (tokens)", long_min=40),
            caption=f"{task}: {name.lower()} by source length on the test windows (dashed: "
                    f"95%, dotted: 50%)")
    distance_labels = [b["bucket"] for b in next(iter(runs.values()))["test"]["by_distance"]]
    report.add_table(["model", *distance_labels],
                     [[kind, *[_pct(b["accuracy"]) for b in r["test"]["by_distance"]]]
                      for kind, r in runs.items()],
                     title=f"{task}: token accuracy (%) by distance d = (L - j) + i")
    report.add_figure(f"accuracy_by_distance_{task}", _figure_by_bucket(
        {k: r["test"]["by_distance"] for k, r in runs.items()}, "accuracy", "token accuracy, %",
        "distance between an output token and the source token it copies"),
        caption=f"{task}: token accuracy by copy distance")
    length = config["grad_length"]
    grad_buckets = buckets(1, 2 * length - 1)
    rows = []
    for kind, r in runs.items():
        for state in ("init", "trained"):
            flow = r["gradient_flow"][state]
            rows.append([kind, state, *[None if v is None else _sci(v)
                                        for v in gradient_rows(flow, grad_buckets)],
                         _sci(flow["at_copied"]), _sci(flow["elsewhere"])])
    report.add_table(["model", "state", *[bucket_label(b) for b in grad_buckets],
                      "at copied token", "elsewhere"], rows,
                     title=f"{task}: gradient norm ||d loss_i / d e_j|| by distance "
                           f"(L = {length})")
    report.add_figure(f"gradient_flow_{task}", _gradient_figure(runs, task),
                      caption=f"{task}: gradient norm by distance, each curve divided by its "
                              f"mean (log scale), at initialization and after training")
    report.add_figure(f"valid_curve_{task}", _curve_figure(runs, task),
                      caption=f"{task}: teacher-forced validation token accuracy over the "
                              f"budget")
    report.add_table(["model", "source", "output"],
                     [[kind, s["source"], s["output"]] for kind, r in runs.items()
                      for s in r["samples"]], title=f"{task}: the longest test windows")


def _timing_section(report: Report, timing: dict[str, Any]) -> None:
    report.add_heading("Training time and parallelism")
    lengths = timing["lengths"]
    report.add_table(["model", *[f"L={n}" for n in lengths]],
                     [[kind, *[round(1e3 * r["seconds_per_step"], 1) for r in rows]]
                      for kind, rows in timing["models"].items()],
                     title=f"ms per training step, batches of {timing['tokens']} source tokens "
                           f"(median of {timing['repeats']})")
    report.add_table(["model", *[f"L={n}" for n in lengths]],
                     [[kind, *[round(r["seconds_per_epoch"], 1) for r in rows]]
                      for kind, rows in timing["models"].items()],
                     title="seconds per epoch of the train split (derived from the step time)")
    report.add_figure("step_time", _timing_figure(timing),
                      caption="seconds per training step against sequence length at a fixed "
                              "token count")
    report.add_table(["model", "encoder", "decoder (training)", "decoder (generation)"],
                     [[kind, *sequential_formula(kind).values()] for kind in timing["models"]],
                     title="sequential steps per layer for a source of L tokens")


def write_report(out: Path, metrics: dict[str, Any]) -> Path:
    """Write the report of a longrange run (``metrics`` from
    :func:`~attnkit.experiments.longrange.run.run`) to ``out``."""
    config = metrics["config"]
    report = Report(out, title="attnkit longrange: copy and reverse on real English text")
    report.add_list(_summary(metrics))
    report.add_text("Does attention remove the fixed vector's decline with length, and what "
                    "does the Transformer change for long-range dependencies, gradient flow "
                    "and training time? Every model gets the same data, parameter count and "
                    "wall-clock budget.")
    if metrics["goal"]:
        report.add_table(["model", "goal: copy token accuracy at >= 40 tokens", "measured %",
                          "met"],
                         [[g["model"], g["goal"], _pct(g["measured"]),
                           "yes" if g["met"] else "**no**"] for g in metrics["goal"]],
                         title="The goal")
    report.add_heading("What this run measured")
    report.add_list(_findings(metrics))
    report.add_heading("Definitions")
    report.add_list(_EXPLAINED)
    for task, runs in metrics["tasks"].items():
        _task_section(report, task, runs, config)
    _timing_section(report, metrics["timing"])
    return report.write(metrics)
