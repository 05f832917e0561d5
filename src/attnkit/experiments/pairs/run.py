"""One ``attnkit pairs`` run: the task from the corpus, the trivial-feature baseline, each
model trained for the same budget of CPU (or wall) time (equal compute) with valid-split
selection and scored on test, the goal check, the alignment heatmaps and the report."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from attnkit._validate import output_dir
from attnkit.data.translation.pairs import TRAIN_BLOCK, make_examples, overlap_words
from attnkit.errors import UserError
from attnkit.experiments.pairs import shortcuts
from attnkit.experiments.pairs.config import BASELINE, MODEL_KINDS, PairsConfig
from attnkit.experiments.pairs.data import collate, encode_split
from attnkit.experiments.pairs.report import write_report
from attnkit.experiments.pairs.train import (
    bootstrap_accuracy,
    build_model,
    count_parameters,
    paired_bootstrap,
    predict,
    train_model,
)

__all__ = ["run", "prepare_examples", "negative_stats"]

SPLIT_NAMES = ("train", "valid", "test")
_HEATMAP_LENGTHS = (4, 14)  # tokens per side of the pairs drawn (readable heatmaps)


def prepare_examples(corpus, train_pairs: int | None) -> dict[str, list]:
    """Split name -> balanced examples (train: its first ``train_pairs`` pairs)."""
    out = {}
    for name in SPLIT_NAMES:
        pairs = corpus.split(name)
        if name == "train" and train_pairs is not None:
            pairs = pairs[:train_pairs]
        out[name] = make_examples(pairs, block=TRAIN_BLOCK if name == "train" else None)
        if not out[name]:
            raise UserError(f"the {name} split of {corpus.path} has {len(pairs)} pair(s) and no "
                            f"hard negative: the task needs two distinct messages per split")
    return out


def negative_stats(examples) -> dict[str, float]:
    """How hard the negatives are: mean Jaccard word overlap of the negative French with the
    true French, share with no overlap, share whose placeholders/numbers match the English."""
    overlaps, zero, slots = [], 0, 0
    for pos, neg in zip(examples[0::2], examples[1::2], strict=True):
        a, b = overlap_words(pos.french), overlap_words(neg.french)
        jac = len(a & b) / max(len(a | b), 1)
        overlaps.append(jac)
        zero += jac == 0
        slots += shortcuts.features(neg)[4] == 1.0
    n = max(len(overlaps), 1)
    return {"negatives": len(overlaps), "mean_jaccard": sum(overlaps) / n,
            "zero_overlap": zero / n, "slots_match": slots / n}


def _load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _machine() -> dict[str, Any]:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "load_average_1min": _load_average()}


def _scores(probabilities: torch.Tensor, split, config: PairsConfig,
            shortcut_wrong: torch.Tensor | None = None) -> dict[str, Any]:
    """Accuracy with its interval, on each class, and (given ``shortcut_wrong (N,)`` bool)
    on the examples the trivial-feature regression gets wrong."""
    correct = ((probabilities > 0.5).float() == split.labels).float()
    low, high = bootstrap_accuracy(correct, split.pairs, resamples=config.bootstrap,
                                   seed=config.seed)
    positive = split.labels == 1
    return {"accuracy": float(correct.mean()), "ci95": [low, high],
            "accuracy_positive": float(correct[positive].mean()),
            "accuracy_negative": float(correct[~positive].mean()),
            "accuracy_where_shortcut_wrong": None if shortcut_wrong is None or not
            shortcut_wrong.any() else float(correct[shortcut_wrong].mean()),
            "examples": len(split), "correct": [int(c) for c in correct.tolist()]}


def _heatmaps(model, split, tokenizer, count: int) -> list[dict[str, Any]]:
    """Alignment weights (English rows x French columns) of ``count`` test pairs, each with
    its positive and its hard negative: the first in hash order whose three sentences all
    have a readable length, then (if too few do) the shortest others."""
    low, high = _HEATMAP_LENGTHS
    starts = range(0, len(split), 2)

    def longest(k: int) -> int:
        return max(len(split.english[k]), len(split.french[k]), len(split.french[k + 1]))

    fits = [k for k in starts if low <= min(len(split.english[k]), len(split.french[k]),
                                            len(split.french[k + 1])) and longest(k) <= high]
    fitting = set(fits)
    rest = sorted((k for k in starts if k not in fitting), key=longest)
    out: list[dict[str, Any]] = []
    model.eval()
    for k in (fits + rest)[:count]:
        for j in (k, k + 1):
            a, a_mask, b, b_mask, _ = collate(split, [j])
            with torch.no_grad():
                result = model(a, a_mask, b, b_mask, return_weights=True)
            out.append({"english": split.examples[j].english,
                        "french": split.examples[j].french, "label": split.examples[j].label,
                        "probability": float(torch.sigmoid(result.logits[0])),
                        "english_tokens": tokenizer.tokens(split.english[j]),
                        "french_tokens": tokenizer.tokens(split.french[j]),
                        "weights": [[round(w, 4) for w in row]
                                    for row in result.weights_a[0].tolist()]})
    return out


def _selected(config: PairsConfig, models: dict[str, Any]) -> str | None:
    """The decomposable variant with the best valid accuracy (a tie goes to the smaller)."""
    kinds = [k for k in ("decomposable", "decomposable-intra") if k in models]
    if not kinds:
        return None
    return max(kinds, key=lambda k: (models[k]["training"]["best"]["valid_accuracy"],
                                     -models[k]["parameters"]["total"]))


def _goal(models: dict[str, Any], selected: str | None, config: PairsConfig,
          test) -> dict[str, Any] | None:
    if selected is None or BASELINE not in models:
        return None
    mine, base = models[selected], models[BASELINE]
    ratio = mine["parameters"]["total"] / base["parameters"]["total"]
    ratio_other = mine["parameters"]["other"] / base["parameters"]["other"]
    paired = paired_bootstrap(torch.tensor(mine["test"]["correct"]),
                              torch.tensor(base["test"]["correct"]), test.pairs,
                              resamples=config.bootstrap, seed=config.seed)
    accuracy_met = mine["test"]["accuracy"] >= base["test"]["accuracy"]
    return {"model": selected, "baseline": BASELINE,
            "accuracy": mine["test"]["accuracy"], "baseline_accuracy": base["test"]["accuracy"],
            "accuracy_met": bool(accuracy_met), "difference": paired,
            "parameter_ratio": ratio, "parameter_ratio_without_embeddings": ratio_other,
            "parameters_met": bool(ratio <= 0.5), "met": bool(accuracy_met and ratio <= 0.5)}


def run(config: PairsConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the task, train and score every model, write the report; return the metrics.

    Raises:
        UserError: an unusable report directory (checked before any work) or a corpus whose
            splits cannot make the task.
    """
    if not isinstance(config, PairsConfig):
        raise TypeError(f"config: expected a PairsConfig, got {type(config).__name__}")
    report_dir = output_dir(config.report_dir, "--out")
    if config.data_dir is not None:
        output_dir(config.data_dir, "--data-dir")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    from attnkit.experiments.translate.run import ensure_corpus

    started = time.perf_counter()
    machine = _machine()
    corpus = ensure_corpus("fr", config.data_dir, log=log)
    tokenizer = corpus.tokenizer(vocab_size=config.vocab_size)
    examples = prepare_examples(corpus, config.train_pairs)
    encoded = {name: encode_split(ex, tokenizer, config.max_len)
               for name, ex in examples.items()}
    data = {"corpus": str(corpus.path), "vocab_size": tokenizer.vocab_size,
            "train_block": TRAIN_BLOCK,
            "pairs": {n: len(corpus.split(n)) for n in SPLIT_NAMES},
            "examples": {n: len(ex) for n, ex in examples.items()},
            "negatives": {n: negative_stats(ex) for n, ex in examples.items()},
            "prepare_s": time.perf_counter() - started}
    log(f"pairs task: {data['examples']['train']:,} train / {data['examples']['valid']:,} "
        f"valid / {data['examples']['test']:,} test examples (half hard negatives), "
        f"{data['prepare_s']:.0f} s")
    predict_shortcut, weights = shortcuts.fit_logistic(examples["train"])
    shortcut = {"weights": weights,
                "valid_accuracy": shortcuts.accuracy(predict_shortcut(examples["valid"]),
                                                     examples["valid"]),
                "test": _scores(predict_shortcut(examples["test"]).float(), encoded["test"],
                                config)}
    shortcut_wrong = torch.tensor(shortcut["test"]["correct"]) == 0  # (N,) bool
    log(f"trivial features (logistic regression): test accuracy "
        f"{shortcut['test']['accuracy']:.4f}")
    models: dict[str, Any] = {}
    trained: dict[str, Any] = {}
    budget_s = config.minutes * 60.0  # the same for every model: equal compute
    for kind in config.models:
        torch.manual_seed(config.seed)
        model = build_model(kind, tokenizer.vocab_size, config)
        params = count_parameters(model)
        log(f"{kind}: {params['total']:,} parameters ({params['other']:,} without the "
            f"embedding table), {config.minutes:g} min of {config.clock} time of training "
            f"(at most {config.epochs} epoch(s), {config.max_minutes:g} min wall)")
        load_start = _load_average()
        training = train_model(model, encoded["train"], encoded["valid"], config,
                               budget_s=budget_s, log=log, name=kind)
        training["load_average_1min"] = [load_start, _load_average()]
        test = _scores(predict(model, encoded["test"]), encoded["test"], config,
                       shortcut_wrong)
        log(f"{kind}: {training['epochs']:.2f} epoch(s) in {training['elapsed_s'] / 60:.1f} "
            f"min wall, {training['cpu_s'] / 60:.1f} min CPU (stopped by "
            f"{training['stopped_by']}); best valid accuracy "
            f"{training['best']['valid_accuracy']:.4f} at epoch "
            f"{training['best']['epoch']:.2f}; test accuracy {test['accuracy']:.4f} "
            f"[{test['ci95'][0]:.4f}, {test['ci95'][1]:.4f}]")
        models[kind] = {"description": MODEL_KINDS[kind], "parameters": params,
                        "training": training, "test": test}
        trained[kind] = model
    selected = _selected(config, models)
    heatmaps = [] if selected is None else _heatmaps(trained[selected], encoded["test"],
                                                      tokenizer, config.heatmaps)
    machine["load_average_1min_end"] = _load_average()
    metrics = {"config": asdict(config), "data": data, "machine": machine,
               "shortcut": shortcut, "models": models, "selected": selected,
               "goal": _goal(models, selected, config, encoded["test"]),
               "heatmaps": heatmaps, "wall_s": time.perf_counter() - started}
    write_report(report_dir, metrics)
    log(f"wrote {report_dir}/ (metrics.json, README.md, report.html and the figures)")
    return metrics
