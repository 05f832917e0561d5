"""The claims a translation comparison tests, read off its runs and bootstrap statistics.

Two claims of attention's history, as issue 12 states them:

* the fixed vector is a bottleneck on long sentences (Bahdanau et al. 2014, arXiv
  1409.0473, Figure 2): ``rnn-attention`` above ``rnn-none`` on test-long's 21-50-word
  sentences, by sacreBLEU's paired bootstrap at p < 0.05;
* the Transformer is better and cheaper to train (Vaswani et al. 2017, arXiv 1706.03762):
  ``transformer`` above ``rnn-attention`` on the whole test split at p < 0.05, with fewer
  training minutes per BLEU point.

Besides the verdicts this module computes what makes them readable: training minutes per
test BLEU point, the minutes each model needed to first reach a validation BLEU, and how
much each model's validation BLEU still rose over the last quarter of its budget (whether
the run had flattened). All of it comes from the runs' ``metrics.json`` (``training.curve``:
minutes, update, validation loss and greedy validation BLEU at each evaluation).
"""

from __future__ import annotations

from typing import Any

from attnkit.data.translation.split import TEST_LONG

__all__ = ["claims", "minutes_to_reach", "late_gain", "quality_figure", "SIGNIFICANCE"]

#: the p-value under which a paired-bootstrap difference counts
SIGNIFICANCE = 0.05


def _curve(result: dict[str, Any]) -> list[dict[str, float]]:
    return [point for point in result["training"].get("curve") or []
            if point.get("valid_bleu") is not None]


def minutes_to_reach(result: dict[str, Any], bleu: float) -> float | None:
    """Training minutes at the first evaluation whose validation BLEU is at least ``bleu``.

    ``None`` when no evaluation of the run reached it. Resolution: the run's evaluation
    interval (``--eval-minutes``).
    """
    for point in _curve(result):
        if point["valid_bleu"] >= bleu:
            return float(point["minutes"])
    return None


def late_gain(result: dict[str, Any], fraction: float = 0.25) -> float | None:
    """How much validation BLEU rose over the last ``fraction`` of the run's evaluated time.

    The last evaluation's BLEU minus that of the last evaluation at or before
    ``(1 - fraction)`` of the final evaluation's minutes; ``None`` with fewer than two
    evaluations. Near zero (or negative) means the curve had flattened.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction: expected a number in (0, 1), got {fraction!r}")
    curve = _curve(result)
    if len(curve) < 2:
        return None
    cutoff = (1.0 - fraction) * curve[-1]["minutes"]
    earlier = [p for p in curve[:-1] if p["minutes"] <= cutoff]
    if not earlier:
        return None
    return float(curve[-1]["valid_bleu"] - earlier[-1]["valid_bleu"])


def _pair(bootstrap: dict[str, Any], split: str, bucket: str, better: str,
          worse: str) -> dict[str, Any] | None:
    """``better``'s BLEU minus ``worse``'s in a bucket, with the bootstrap p-value."""
    entry = bootstrap.get("splits", {}).get(split, {}).get(bucket, {})
    for pair in entry.get("pairs", []):
        if (pair["a"], pair["b"]) == (worse, better):
            return {"delta": pair["delta"], "p": pair["p"], "sentences": entry["sentences"]}
        if (pair["a"], pair["b"]) == (better, worse):
            return {"delta": -pair["delta"], "p": pair["p"], "sentences": entry["sentences"]}
    return None


def _significantly_better(found: dict[str, Any] | None) -> bool | None:
    if found is None:
        return None
    return bool(found["delta"] > 0 and found["p"] < SIGNIFICANCE)


def claims(results: dict[str, dict[str, Any]], bootstrap: dict[str, Any]) -> dict[str, Any]:
    """The comparison's verdicts and the figures they rest on.

    Args:
        results: model -> its run's ``metrics.json`` (``bleu``, ``training`` with
            ``elapsed_s`` and ``curve``).
        bootstrap: :func:`attnkit.experiments.translate.compare.significance`'s result.

    Returns:
        ``per_model``: model -> ``train_minutes``, ``minutes_per_bleu`` (training minutes
        per test BLEU point; ``None`` at BLEU 0), ``final_valid_bleu``, ``late_gain``
        (:func:`late_gain`); ``reach``: the validation BLEU of the weakest final model and
        each model's minutes to reach it; ``verdicts``: a list of ``claim``, ``evidence``
        (a dict) and ``met`` (``True``/``False``, or ``None`` when a model the claim needs
        was not in the comparison).
    """
    per_model: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        minutes = result["training"].get("elapsed_s", 0.0) / 60.0
        curve = _curve(result)
        per_model[name] = {
            "train_minutes": minutes,
            "minutes_per_bleu": minutes / result["bleu"] if result["bleu"] > 0 else None,
            "final_valid_bleu": curve[-1]["valid_bleu"] if curve else None,
            "late_gain": late_gain(result)}
    finals = [m["final_valid_bleu"] for m in per_model.values()
              if m["final_valid_bleu"] is not None]
    reach: dict[str, Any] = {}
    if finals:
        target = min(finals)
        reach = {"valid_bleu": target,
                 "minutes": {name: minutes_to_reach(r, target) for name, r in results.items()}}

    verdicts = []
    long = _pair(bootstrap, TEST_LONG, "21-50", "rnn-attention", "rnn-none")
    verdicts.append({"claim": "rnn-attention above rnn-none on test-long's 21-50-word "
                              f"sentences (paired bootstrap p < {SIGNIFICANCE})",
                     "evidence": long, "met": _significantly_better(long)})
    overall = _pair(bootstrap, "test", "all", "transformer", "rnn-attention")
    verdicts.append({"claim": f"transformer above rnn-attention on the whole test split "
                              f"(paired bootstrap p < {SIGNIFICANCE})",
                     "evidence": overall, "met": _significantly_better(overall)})
    if {"transformer", "rnn-attention"} <= per_model.keys():
        ours, theirs = (per_model[n]["minutes_per_bleu"] for n in ("transformer", "rnn-attention"))
        cheaper = None if ours is None else bool(theirs is None or ours < theirs)
        verdicts.append({"claim": "transformer needs fewer training minutes per test BLEU "
                                  "point than rnn-attention",
                         "evidence": {"transformer": ours, "rnn-attention": theirs},
                         "met": cheaper})
    return {"per_model": per_model, "reach": reach, "verdicts": verdicts}


def quality_figure(results: dict[str, dict[str, Any]]):
    """Validation BLEU (greedy) against training minutes, one line per model (a Figure)."""
    from attnkit.interp import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, result in results.items():
        curve = _curve(result)
        ax.plot([p["minutes"] for p in curve], [p["valid_bleu"] for p in curve], marker="o",
                markersize=3, label=name)
    ax.set_xlabel("training minutes (evaluations included)")
    ax.set_ylabel("validation BLEU (greedy)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
