"""The snail report: data and split, the goal check, test accuracy with 95% intervals per
setting, validation curves, and a sample episode; written with
:class:`attnkit.experiments.report.Report`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnkit.experiments.report import Report

__all__ = ["write_report"]

_EXPLAINED = [
    "**episode**: N classes drawn from all classes of one split (a class is a glyph, or a "
    "glyph turned by 90/180/270 degrees), K support drawings of each with their labels, and "
    "query drawings to classify. A drawing is the glyph under a random affine distortion "
    "with 1% of the pixels flipped (Unifont has one bitmap per glyph).",
    "**split**: Unicode blocks are the alphabets; training, validation and test alphabets "
    "are disjoint, and a bitmap shared by two code points is kept once.",
    "**equal budget**: every model gets the same number of updates on the same training "
    "episodes (same seed); the validation evaluation with the best accuracy picks the "
    "weights that are tested.",
    "**test accuracy**: mean over test episodes of the fraction of queries right, with a "
    "normal 95% interval (1.96 standard errors over episodes).",
]


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _summary(m: dict[str, Any]) -> list[str]:
    c, d, mach = m["config"], m["data"], m["machine"]
    alphabets = d["alphabets"]
    return [
        f"data: GNU Unifont bitmaps ({d['path']}); alphabets = Unicode blocks; "
        + "; ".join(f"{s}: {len(alphabets[s])} alphabets, {d['glyphs'][s]} glyphs, "
                    f"{d['classes'][s]} classes" for s in ("train", "valid", "test")),
        f"budget: {c['steps']} updates of {c['episodes_per_step']} episodes x {c['queries']} "
        f"queries per model and setting (cap {c['minutes']:g} min each); AdamW lr {c['lr']:g}, "
        f"cosine decay; {c['valid_episodes']} validation episodes at {c['eval_points']} points; "
        f"{c['test_episodes']} test episodes",
        f"models: embedding CNN of {c['channels']} filters per block for all; SNAIL block "
        f"sizes x{c['width']:g} of the paper's",
        f"machine: {mach['processor']}, {mach['cpus']} CPUs, torch {mach['torch']} with "
        f"{mach['threads']} threads; 1-min load average {mach['load_average_1min']:.1f} at the "
        f"start, {mach['load_average_1min_end']:.1f} at the end; whole run "
        f"{m['wall_s'] / 60:.1f} min",
    ]


def _findings(m: dict[str, Any]) -> list[str]:
    """The run's headline numbers, read from the metrics (nothing here is fixed text)."""
    lines = []
    for name, runs in m["settings"].items():
        ranked = sorted(runs.items(), key=lambda item: -item[1]["test"]["accuracy"])
        lines.append(f"{name}: " + " > ".join(
            f"{kind} {_pct(r['test']['accuracy']):.1f}% (+-{_pct(r['test']['ci95']):.1f})"
            for kind, r in ranked))
        for kind, r in runs.items():
            curve = [p["valid_accuracy"] for p in r["training"]["curve"]]
            if len(curve) >= 2 and curve[-1] > max(curve[:-1]):
                lines.append(f"{name}, {kind}: validation accuracy still rising at the last "
                             f"evaluation ({_pct(curve[-2]):.1f}% -> {_pct(curve[-1]):.1f}% "
                             f"at update {r['training']['curve'][-1]['step']}): a longer "
                             f"budget would help it")
    return lines


def _goal(report: Report, goal: dict[str, Any] | None) -> None:
    if goal is None:
        report.add_text("The goal (SNAIL at 5-way 1-shot above both ablations and the "
                        "prototypical network) was not measured: this run did not train "
                        "SNAIL at 5-way 1-shot.")
        return
    report.add_table(
        ["goal at " + goal["setting"], "SNAIL test %", "other test %", "met",
         "95% intervals overlap"],
        [[f"SNAIL > {r['other']}", _pct(r["snail"]), _pct(r["measured"]),
          "yes" if r["met"] else "**no**", "yes" if r["intervals_overlap"] else "no"]
         for r in goal["rows"]],
        title=f"The goal: {'met' if goal['met'] else 'NOT met'}")


def _accuracy_figure(settings: dict[str, Any]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(settings)
    kinds = list(next(iter(settings.values())))
    width = 0.8 / len(kinds)
    for j, kind in enumerate(kinds):
        xs = [i + (j - (len(kinds) - 1) / 2) * width for i in range(len(names))]
        ys = [100 * settings[s][kind]["test"]["accuracy"] for s in names]
        errs = [100 * settings[s][kind]["test"]["ci95"] for s in names]
        ax.bar(xs, ys, width, yerr=errs, capsize=3, label=kind)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("test accuracy, %")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _curve_figure(runs: dict[str, Any], setting: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for kind, r in runs.items():
        curve = r["training"]["curve"]
        ax.plot([p["step"] for p in curve], [100 * p["valid_accuracy"] for p in curve],
                marker="o", label=kind)
    ax.set_xlabel("update")
    ax.set_ylabel("validation accuracy, %")
    ax.set_title(setting)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _episode_figure(splits, config):
    """The support set and queries of test episode 0 at the first setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnkit.data.glyphs import Episodes

    ways, shots = config.settings[0]
    episode = Episodes(splits["test"], ways=ways, shots=shots, queries=min(ways, 8),
                       rotations=config.rotations, strength=config.strength,
                       seed=1002).episode(0)
    images = [*episode["support"], *episode["query"]]
    labels = [*episode["support_labels"].tolist(), *episode["query_labels"].tolist()]
    count = len(images)
    fig, axes = plt.subplots(1, count, figsize=(0.9 * count, 1.3))
    for k, (ax, image, label) in enumerate(zip(axes, images, labels, strict=True)):
        ax.imshow(image[0].numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{'S' if k < ways * shots else 'Q'} {label}", fontsize=8)
        ax.axis("off")
    return fig


def write_report(out: Path, metrics: dict[str, Any], splits, config) -> Path:
    """Write the report of a snail run (``metrics`` from
    :func:`~attnkit.experiments.snail.run.run`, ``splits`` its glyph sets) to ``out``."""
    report = Report(out, title="attnkit snail: few-shot classification of Unifont glyphs")
    report.add_list(_summary(metrics))
    report.add_text("Does SNAIL (Mishra et al. 2018, arXiv:1707.03141), which reads an episode "
                    "as a sequence with dilated causal convolutions and causal attention, beat "
                    "its own ablations and a prototypical network (Snell et al. 2017, "
                    "arXiv:1703.05175) when all get the same training budget?")
    _goal(report, metrics["goal"])
    report.add_heading("What this run measured")
    report.add_list(_findings(metrics))
    settings = metrics["settings"]
    report.add_heading("Test accuracy")
    report.add_table(
        ["setting", "model", "parameters", "updates", "train s", "selected at",
         "valid %", "test %", "95% +-"],
        [[name, kind, r["parameters"], r["training"]["steps"]
          if not r["training"]["capped"] else f"{r['training']['steps']} (time cap)",
          round(r["training"]["elapsed_s"]), r["selected"]["step"],
          _pct(r["selected"]["valid_accuracy"]), _pct(r["test"]["accuracy"]),
          _pct(r["test"]["ci95"])]
         for name, runs in settings.items() for kind, r in runs.items()])
    report.add_figure("test_accuracy", _accuracy_figure(settings),
                      caption="test accuracy per setting and model, with 95% intervals")
    for name, runs in settings.items():
        report.add_figure(f"valid_curve_{name.replace(' ', '_')}", _curve_figure(runs, name),
                          caption=f"{name}: validation accuracy during training")
    report.add_figure("episode", _episode_figure(splits, config),
                      caption="test episode 0: support drawings (S, with labels) and queries "
                              "(Q, with the true label)")
    report.add_heading("Definitions")
    report.add_list(_EXPLAINED)
    report.add_heading("Alphabets per split")
    report.add_table(["split", "alphabets (Unicode blocks)"],
                     [[s, ", ".join(names)] for s, names in metrics["data"]["alphabets"].items()])
    return report.write(metrics)
