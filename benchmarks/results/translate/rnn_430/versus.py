"""rnn-attention after 430 budget minutes against the Transformer after 220 (where it had
been flat since 110 minutes), by sacreBLEU's paired bootstrap on the same test and
test-long sentences. Unequal budgets: this answers "which model is better once trained
on", not the equal-budget question of ``../compare_220/``.

    python benchmarks/results/translate/rnn_430/versus.py

reads ``rnn-attention/translations.json`` here and ``../compare_220/transformer/``; writes
``versus.json`` and ``VERSUS.md`` next to itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from attnkit._io import atomic_write_json, atomic_write_text
from attnkit.experiments.translate.compare import significance


def main() -> None:
    here = Path(__file__).resolve().parent
    rnn = json.loads((here / "rnn-attention" / "translations.json").read_text())
    transformer = json.loads(
        (here.parent / "compare_220" / "transformer" / "translations.json").read_text())
    a, b = "transformer@220", "rnn-attention@430"
    found = significance({a: transformer, b: rnn})
    lines = ["# rnn-attention at 430 budget minutes against the Transformer at 220", "",
             "Paired bootstrap (sacreBLEU, 1000 resamples, seed 12345); delta = rnn-attention "
             "minus Transformer on the same sentences.", "",
             "| split | bucket | sentences | Transformer @220 | rnn-attention @430 | delta | p |",
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
    atomic_write_json(here / "versus.json", found)
    atomic_write_text(here / "VERSUS.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
