"""One model's outputs against another's, by sacreBLEU's paired bootstrap on the same test
and test-long sentences. Default: rnn-attention after 430 budget minutes against the
Transformer after 220 (where it had been flat since 110 minutes). Unequal budgets: this
answers "which model is better once trained on", not the equal-budget question of
``../compare_220/``.

    python benchmarks/results/translate/rnn_430/versus.py
    python benchmarks/results/translate/rnn_430/versus.py \\
        A_DIR MODEL_A MINUTES_A B_DIR MODEL_B MINUTES_B OUT_DIR NAME

Folders are relative to this file's and hold ``<model>/translations.json``; delta = B minus A.
Writes ``NAME.json`` and ``NAME-in-capitals.md`` (default ``versus``) into OUT_DIR (default: here).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from attnkit._io import atomic_write_json, atomic_write_text
from attnkit.experiments.translate.compare import significance

DEFAULT = ("../compare_220", "transformer", "220", ".", "rnn-attention", "430", ".", "versus")


def main(argv: list[str]) -> None:
    here = Path(__file__).resolve().parent
    if argv and len(argv) != len(DEFAULT):
        raise SystemExit("usage: versus.py [A_DIR MODEL_A MINUTES_A B_DIR MODEL_B MINUTES_B "
                         "OUT_DIR NAME]")
    a_dir, model_a, min_a, b_dir, model_b, min_b, out_dir, name = argv or DEFAULT
    first = json.loads((here / a_dir / model_a / "translations.json").read_text())
    second = json.loads((here / b_dir / model_b / "translations.json").read_text())
    column_a = "Transformer" if model_a == "transformer" else model_a
    title_a = "the Transformer" if model_a == "transformer" else model_a
    a, b = f"{model_a}@{min_a}", f"{model_b}@{min_b}"
    found = significance({a: first, b: second})
    lines = [f"# {model_b} at {min_b} budget minutes against {title_a} at {min_a}", "",
             f"Paired bootstrap (sacreBLEU, 1000 resamples, seed 12345); delta = {model_b} "
             f"minus {column_a} on the same sentences.", "",
             f"| split | bucket | sentences | {column_a} @{min_a} | {model_b} @{min_b} | delta "
             f"| p |",
             "|---|---|---|---|---|---|---|"]
    for split, buckets in found["splits"].items():
        for bucket, entry in buckets.items():
            if "pairs" not in entry:
                continue
            (pair,) = entry["pairs"]
            systems = entry["systems"]
            lines.append(f"| {split} | {bucket} | {entry['sentences']} | "
                         f"{systems[a]['bleu']:.2f} | {systems[b]['bleu']:.2f} | "
                         f"{pair['delta']:+.2f} | {pair['p']:.3f} |")
    out = (here / out_dir).resolve()
    atomic_write_json(out / f"{name}.json", found)
    atomic_write_text(out / f"{name.upper()}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
