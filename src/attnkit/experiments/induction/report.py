"""The induction report: what was run, the goal checks, the phase change, and the figures
(loss curve with the phase change marked, ICL score over training, head-score heatmaps, the
induction head's attention on a repeated sequence, loss by position), plus the offline
attention viewer (``viewer.html``); written with :class:`attnkit.experiments.report.Report`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from attnkit.experiments.induction.evaluate import MIN_RISE
from attnkit.experiments.report import Report
from attnkit.interp.figures import pyplot

__all__ = ["write_report", "findings"]

_COLORS = {"attn-1": "tab:blue", "attn-2": "tab:red", "mlp-2": "tab:green"}
_DETECTORS = (("prefix_matching", "prefix matching", (0.0, 1.0)),
              ("previous_token", "previous token", (0.0, 1.0)),
              ("copying", "copying (OV eigenvalues)", (-1.0, 1.0)))

_EXPLAINED = [
    "**ICL score** (Olsson et al. 2022, arXiv:2209.11895): loss at the 500th token of a "
    "validation context minus the loss at the 50th; each is averaged over the 11 positions "
    "centred on it (the paper uses the single positions), over the validation contexts. "
    "Negative: the model predicts better the more of the file it has read.",
    "**prefix matching**: attention of a head, on the second copy of a random token "
    "sequence repeated twice, on the token that followed the current token's first "
    "occurrence (the induction pattern [A][B] ... [A] -> [B]); 1 = all of it.",
    "**previous token**: attention on position t - 1. **copying**: sum(eigenvalues) / "
    "sum(|eigenvalues|) of the head's OV circuit W_U W_O W_V W_E (Elhage et al. 2021), "
    "direct path, LayerNorms not folded in; positive = the head raises the logit of the "
    "token it attends to.",
    "**phase change**: the measurement interval in which the best head's prefix matching "
    "rises fastest (found in the data); the ICL score's steepest fall is found the same way.",
]


def _best_series(run: dict[str, Any]) -> tuple[list[int], list[float]]:
    steps = [r["step"] for r in run["measurements"]]
    return steps, [r["best_prefix_matching"]["score"] for r in run["measurements"]]


def findings(m: dict[str, Any]) -> list[str]:
    """The run's headline numbers, read from the metrics."""
    lines = []
    for kind, run in m["models"].items():
        final, train = run["final"], run["training"]
        best = final["best_prefix_matching"]
        lines.append(f"{kind} ({run['model']['parameters']:,} parameters): "
                     f"{train['steps']} updates in {train['elapsed_s'] / 60:.1f} min "
                     f"({train['process_cpu_s'] / max(train['steps'], 1):.3f} CPU s per "
                     f"update with measurements)"
                     f"{', stopped by the time cap' if train['out_of_time'] else ''}; "
                     f"valid loss {final['valid_loss']:.3f}, ICL score "
                     f"{final['icl_score']:+.3f} nats, best prefix matching "
                     f"{best['score']:.3f} ({best['layer']} head {best['head']})")
        rise = run["phase_change"]["prefix_matching_rise"]
        drop = run["phase_change"]["icl_score_drop"]
        if rise is None and run["model"]["layers"] >= 2:
            lines.append(f"{kind}: no phase change in {train['steps']} updates (the best "
                         f"head's prefix matching never rose by more than {MIN_RISE} between two "
                         f"measurements): induction heads did not form within this budget; "
                         f"a longer run (`--steps`, `--minutes`) is needed, and how much "
                         f"longer is not measured by this run")
        if rise is not None and drop is not None:
            lines.append(f"{kind}: prefix matching rises fastest between updates "
                         f"{rise['start']} and {rise['end']} ({rise['before']:.2f} -> "
                         f"{rise['after']:.2f}); the ICL score falls fastest between "
                         f"{drop['start']} and {drop['end']} ({drop['before']:+.2f} -> "
                         f"{drop['after']:+.2f})")
    for check in m["goals"]:
        lines.append(f"goal: {check['goal']}: measured {check['measured']:+.3f} "
                     f"({'met' if check['met'] else 'NOT met'})")
    return lines


def _mark_phase(ax, run: dict[str, Any], color: str) -> None:
    rise = run["phase_change"]["prefix_matching_rise"]
    if rise is not None:
        ax.axvspan(rise["start"], rise["end"], color=color, alpha=0.15, lw=0)


def _loss_figure(m: dict[str, Any]):
    plt = pyplot()
    fig, (ax, ax_pm) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 2]})
    for kind, run in m["models"].items():
        color = _COLORS.get(kind)
        curve = run["training"]["curve"]
        ax.plot([r["step"] for r in curve], [r["loss"] for r in curve], color=color, lw=1,
                alpha=0.8, label=f"{kind} train")
        steps = [r["step"] for r in run["measurements"]]
        ax.plot(steps, [r["valid_loss"] for r in run["measurements"]], "o--", color=color,
                ms=3, lw=1, label=f"{kind} valid")
        ax_pm.plot(*_best_series(run), "o-", color=color, ms=3, lw=1.2, label=kind)
        for axis in (ax, ax_pm):
            _mark_phase(axis, run, color)
    losses = [r["loss"] for run in m["models"].values() for r in run["training"]["curve"]]
    if losses:
        low = min(losses)
        ax.set_ylim(low - 0.1, min(max(losses), low + 3.0))
    ax.set_ylabel("loss (nats / token)")
    ax.set_title("loss; shaded: the phase change (fastest rise of prefix matching)")
    ax.legend(fontsize=7, ncol=2)
    ax_pm.set_ylabel("best head's\nprefix matching")
    ax_pm.set_xlabel("update")
    ax_pm.set_ylim(0, 1)
    ax_pm.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _icl_figure(m: dict[str, Any]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for kind, run in m["models"].items():
        color = _COLORS.get(kind)
        steps = [r["step"] for r in run["measurements"]]
        ax.plot(steps, [r["icl_score"] for r in run["measurements"]], "o-", color=color, ms=3,
                label=kind)
        _mark_phase(ax, run, color)
    ax.axhline(-0.4, color="gray", ls=":", lw=1, label="goal for attn-2: -0.4")
    ax.axhline(0.0, color="black", lw=0.5)
    ax.set_xlabel("update")
    ax.set_ylabel("ICL score (nats)")
    ax.set_title("in-context learning score: loss(token 500) - loss(token 50)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _heatmap_figure(m: dict[str, Any]):
    plt = pyplot()
    kinds = list(m["models"])
    fig, axes = plt.subplots(len(kinds), len(_DETECTORS),
                             figsize=(3.4 * len(_DETECTORS), 1.3 + 1.1 * len(kinds)),
                             squeeze=False)
    for row, kind in enumerate(kinds):
        final = m["models"][kind]["final"]
        for col, (key, label, (low, high)) in enumerate(_DETECTORS):
            ax = axes[row][col]
            table = final[key]
            scores = torch.tensor([[math.nan if v is None else v for v in r]
                                   for r in table["scores"]])
            image = ax.imshow(scores.numpy(), vmin=low, vmax=high,
                              cmap="viridis" if low == 0 else "RdBu_r", aspect="auto")
            for i in range(scores.shape[0]):
                for j in range(scores.shape[1]):
                    value = float(scores[i, j])
                    if not math.isnan(value):
                        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                                color="white" if low == 0 and value < 0.6 else "black")
            ax.set_yticks(range(scores.shape[0]))
            ax.set_yticklabels([f"layer {k}" for k in range(scores.shape[0])], fontsize=7)
            ax.set_xticks(range(scores.shape[1]))
            ax.set_xticklabels([f"h{h}" for h in range(scores.shape[1])], fontsize=7)
            ax.set_title(f"{kind}: {label}", fontsize=8)
            fig.colorbar(image, ax=ax, fraction=0.05)
    fig.tight_layout()
    return fig


def _pattern(model: torch.nn.Module, layer: str, head: int, probe: torch.Tensor):
    from attnkit.interp.capture import capture

    with torch.no_grad(), capture(model, layers=[layer], heads=[head],
                                  store=("weights",)) as cap:
        model.eval()(probe.to(next(model.parameters()).device))
    return cap.records[layer][0].weights[0, 0].float().cpu()  # (L, L)


def _attention_figure(m: dict[str, Any], models: dict[str, torch.nn.Module],
                      probe: torch.Tensor):
    plt = pyplot()
    kinds = [k for k in ("attn-2", "mlp-2", "attn-1") if k in models]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 4.2), squeeze=False)
    n = (probe.shape[1] - 1) // 2
    for ax, kind in zip(axes[0], kinds, strict=True):
        best = m["models"][kind]["final"]["best_prefix_matching"]
        weights = _pattern(models[kind], best["layer"], best["head"], probe[:1])
        ax.imshow(weights.clamp_min(1e-3).log10().numpy(), cmap="magma", vmin=-3, vmax=0)
        ax.plot([1 + n, 2 * n], [1 + n, 2 * n], alpha=0)  # keep the axes square
        ax.axvline(n + 0.5, color="white", lw=0.5)
        ax.axhline(n + 0.5, color="white", lw=0.5)
        ax.set_title(f"{kind}: {best['layer']} head {best['head']}\nprefix matching "
                     f"{best['score']:.2f} (log10 weight)", fontsize=8)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
    fig.suptitle(f"the best prefix-matching head on <s> + {n} random tokens repeated twice: "
                 f"an induction head attends to the diagonal at offset {n - 1}", fontsize=9)
    fig.tight_layout()
    return fig


def _position_figure(m: dict[str, Any]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for kind, run in m["models"].items():
        losses = torch.tensor(run["measurements"][-1]["loss_by_position"])
        window = 9
        smooth = torch.nn.functional.avg_pool1d(losses[None, None], window, 1,
                                                padding=window // 2,
                                                count_include_pad=False)[0, 0]
        ax.plot(range(1, len(losses) + 1), smooth.numpy(), color=_COLORS.get(kind), label=kind)
    ax.set_xscale("log")
    ax.set_xlabel("position p (token predicted from the p before it)")
    ax.set_ylabel("valid loss (nats)")
    ax.set_title("loss by position after training (moving mean over 9 positions)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _viewer(report_dir: Path, models: dict[str, torch.nn.Module], probe: torch.Tensor,
            tokenizer, m: dict[str, Any]) -> str | None:
    """viewer.html for the two-layer attention-only model (else the first), on the probe."""
    from attnkit.interp.viewer import inspect_html, write_viewer

    kind = "attn-2" if "attn-2" in models else next(iter(models))
    ids = probe[0]
    best = m["models"][kind]["final"]["best_prefix_matching"]
    page = inspect_html(models[kind], ids, tokenizer.tokens(ids.tolist()),
                        title=f"attnkit induction: {kind}",
                        notes=[f"<s> + {(ids.numel() - 1) // 2} random tokens, repeated twice",
                               f"best prefix-matching head: {best['layer']} head "
                               f"{best['head']} ({best['score']:.2f})"])
    write_viewer(report_dir / "viewer.html", page)
    return kind


def write_report(report_dir: Path, m: dict[str, Any], models: dict[str, torch.nn.Module],
                 probe: torch.Tensor, tokenizer) -> Path:
    """Write metrics.json, README.md, report.html, the PNGs and viewer.html."""
    c, d = m["config"], m["data"]
    report = Report(report_dir, title="attnkit induction: induction heads forming on Python "
                                      "source")
    report.add_list(findings(m))
    report.add_heading("Setup")
    report.add_list([
        f"data: the Python {d['python']} standard library, {d['files']} *.py files "
        f"({d['train_files']} train, {d['valid_files']} valid by path hash; test suites, "
        f"site-packages and encodings left out), {d['train_tokens']:,} train tokens, "
        f"byte-level BPE of {d['vocab_size']} tokens ({d['bytes_per_token']:.2f} bytes per "
        f"token)",
        f"models: GPT, d_model {c['d_model']}, {c['heads']} heads, {c['positional']} "
        f"positions, context {c['context_len']}; attn-1 and attn-2 have no MLPs, mlp-2 has "
        f"GELU MLPs of width {4 * c['d_model']}",
        f"training: {c['steps']} AdamW updates of {c['rows']} x {c['context_len']} tokens per "
        f"model (cap {c['minutes']:g} min for all), lr {c['lr']:g} with {c['warmup_steps']} "
        f"warmup updates and a cosine decay to lr / 10; measurements every "
        f"{c['eval_every']} updates on {c['valid_contexts']} validation contexts and "
        f"{c['probe_rows']} repeated random sequences of 2 x {c['probe_len']} tokens "
        f"(drawn from the {m['probe'].get('choices', '?')} token ids seen at least "
        f"{m['probe'].get('min_train_count', '?')} times in the train files)",
        f"machine: {m['machine']['processor']}, {m['machine']['cpus']} CPUs, "
        f"{m['machine']['threads']} torch threads, torch {m['machine']['torch']}; load "
        f"average {m['machine']['load_average_1min']} at the start; run took "
        f"{m['wall_s'] / 60:.1f} min",
    ])
    report.add_list(_EXPLAINED)
    report.add_table(
        ["model", "updates", "valid loss", "ICL score", "best prefix matching", "head",
         "phase change (updates)"],
        [[kind, r["training"]["steps"], r["final"]["valid_loss"], r["final"]["icl_score"],
          r["final"]["best_prefix_matching"]["score"],
          f"{r['final']['best_prefix_matching']['layer']} h"
          f"{r['final']['best_prefix_matching']['head']}",
          "-" if r["phase_change"]["prefix_matching_rise"] is None else
          f"{r['phase_change']['prefix_matching_rise']['start']}-"
          f"{r['phase_change']['prefix_matching_rise']['end']}"]
         for kind, r in m["models"].items()], title="Results")
    report.add_figure("loss_curve", _loss_figure(m),
                      caption="Training loss (lines), validation loss (dashed) and the best "
                              "head's prefix matching; the shaded band is where prefix "
                              "matching rises fastest.")
    report.add_figure("icl_score", _icl_figure(m),
                      caption="In-context learning score over training.")
    report.add_figure("head_scores", _heatmap_figure(m),
                      caption="Every head's score after training.")
    report.add_figure("induction_attention", _attention_figure(m, models, probe),
                      caption="Attention of each model's best prefix-matching head on a "
                              "repeated random sequence.")
    report.add_figure("loss_by_position", _position_figure(m),
                      caption="Validation loss by position in the context after training.")
    shown = _viewer(report_dir, models, probe, tokenizer, m)
    report.add_heading("Attention viewer")
    report.add_text(f"`viewer.html` (one offline page, no network) shows every head of "
                    f"{shown} on the first repeated random sequence; `attnkit inspect "
                    f"{report_dir}/checkpoints/{shown} \"some code\"` draws it on any text.")
    return report.write(m)
