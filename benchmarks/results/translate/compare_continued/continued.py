"""Did more training still help? Each model's later run against its own earlier one (here:
165 against 110 minutes; ``../compare_220/``: 220 against 165), by sacreBLEU's paired
bootstrap on the same test and test-long sentences.

The 165-minute runs are the 110-minute runs of ``../compare/`` resumed with
``attnkit translate train --resume --minutes 165`` (RUN.md). Both ends' outputs are in the
runs' ``translations.json``; this script only reads them:

    python benchmarks/results/translate/compare_continued/continued.py \
        ../compare 110 . 165 [OUT [MODEL ...]]  # folders holding <model>/translations.json

writes ``continued.json`` and ``CONTINUED.md`` into ``OUT`` (default: next to itself), for
the given models (default: all three).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from attnkit._io import atomic_write_json, atomic_write_text
from attnkit.experiments.translate.compare import significance

MODELS = ("rnn-none", "rnn-attention", "transformer")


def main(argv: list[str]) -> None:
    here = Path(__file__).resolve().parent
    early_dir, early_min, late_dir, late_min, *rest = argv
    early_dir, late_dir = (here / early_dir).resolve(), (here / late_dir).resolve()
    out = (here / rest[0]).resolve() if rest else here
    models = tuple(rest[1:]) or MODELS
    found: dict[str, dict] = {}
    lines = [f"# {late_min} against {early_min} training minutes, per model",
             "",
             f"Paired bootstrap (sacreBLEU, 1000 resamples, seed 12345) of each model's "
             f"{late_min}-minute outputs against its own {early_min}-minute outputs on the "
             f"same sentences; delta = BLEU at {late_min} min minus BLEU at {early_min} min.",
             "",
             "| model | split | bucket | sentences | BLEU at "
             f"{early_min} min | BLEU at {late_min} min | delta | p |",
             "|---|---|---|---|---|---|---|---|"]
    for model in models:
        early = json.loads((early_dir / model / "translations.json").read_text())
        late = json.loads((late_dir / model / "translations.json").read_text())
        a, b = f"{model}@{early_min}", f"{model}@{late_min}"
        found[model] = significance({a: early, b: late})
        for split, buckets in found[model]["splits"].items():
            for bucket, entry in buckets.items():
                if "pairs" not in entry:
                    continue
                (pair,) = entry["pairs"]
                systems = entry["systems"]
                lines.append(f"| {model} | {split} | {bucket} | {entry['sentences']} | "
                             f"{systems[a]['bleu']:.2f} | {systems[b]['bleu']:.2f} | "
                             f"{pair['delta']:+.2f} | {pair['p']:.3f} |")
    atomic_write_json(out / "continued.json", found)
    atomic_write_text(out / "CONTINUED.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
