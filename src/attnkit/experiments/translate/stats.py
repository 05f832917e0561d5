"""Paired bootstrap resampling of BLEU between translation systems, with sacreBLEU's own test.

Koehn (2004, "Statistical significance tests for machine translation evaluation") resamples
the test sentences with replacement, scores every system on the same resamples, and asks how
often the difference in BLEU between two systems is as large as the one observed under the
null hypothesis of no difference. sacreBLEU 2.x (Post 2018, arXiv:1804.08771) implements it
as ``sacrebleu.significance.PairedTest(test_type="bs")``, the ``--paired-bs`` of its command
line; this module calls it unchanged and only fixes its seed and resample count, so a report
is reproducible:

- the 95% interval of a system is sacreBLEU's: ``mean +- ci``, where ``mean`` is its mean
  resampled BLEU and ``ci`` half the distance between the 2.5th and 97.5th percentiles of
  it (the lower end clipped at 0, BLEU's floor);
- the p-value of a pair is sacreBLEU's: ``(c + 1) / (n + 1)`` where ``c`` counts resamples
  whose centred absolute difference exceeds the observed one. It does not depend on which
  system is the baseline, and every system is scored on the same resamples (one seed).

One deviation: a pair whose observed BLEU difference is exactly zero (identical outputs,
or both at 0 BLEU) gets ``p = 1``. sacreBLEU's strict ``>`` count would give ``1 / (n + 1)``
whenever the resampled differences are all zero too, which reads as a significant
difference between a system and itself. A bootstrap needs enough sentences to resample:
one sentence has a single resample value and the same degenerate p-value, so callers
should not test tiny buckets (compare skips those under
:data:`~attnkit.experiments.translate.compare.MIN_STATS_SENTENCES`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from attnkit._validate import check_int

__all__ = ["BOOTSTRAP_SAMPLES", "BOOTSTRAP_SEED", "paired_bootstrap"]

BOOTSTRAP_SAMPLES = 1000  # sacreBLEU's default for the paired bootstrap
#: sacreBLEU's default SACREBLEU_SEED; not 0, which PairedTest would treat as "unseeded"
BOOTSTRAP_SEED = 12345


def paired_bootstrap(systems: Mapping[str, Sequence[str]], references: Sequence[str], *,
                     samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """BLEU with 95% intervals for every system and a p-value for every pair of them.

    Args:
        systems: M >= 1 system names -> their N hypotheses, in the order of ``references``.
        references: the N reference translations (one reference per sentence).
        samples: bootstrap resamples (sacreBLEU's default 1000).
        seed: the resampling seed (>= 1); the same seed gives the same report.

    Returns:
        ``sentences`` (N), ``samples``, ``seed``, ``signature`` (sacreBLEU's, with the seed
        and resample count), ``systems`` (name -> ``bleu``, the bootstrap ``mean``, ``ci``
        (the interval's half-width), ``low``/``high`` = ``mean -+ ci``, ``low`` clipped at
        0) and ``pairs`` (one
        entry per unordered pair, in the order of ``systems``: ``a``, ``b``, ``delta`` =
        BLEU(b) - BLEU(a), ``p``).
    """
    from attnkit.experiments.translate.evaluate import _sacrebleu

    sacrebleu = _sacrebleu()
    from sacrebleu.significance import PairedTest

    check_int(samples, "samples", minimum=1)
    check_int(seed, "seed", minimum=1)
    if not isinstance(systems, Mapping) or not systems:
        raise ValueError("systems: expected a non-empty mapping of name -> hypotheses")
    references = list(references)
    if not references:
        raise ValueError("references: expected at least one reference, got none")
    named = [(str(name), list(hyps)) for name, hyps in systems.items()]
    for name, hyps in named:
        if len(hyps) != len(references) or not all(isinstance(h, str) for h in hyps):
            raise ValueError(f"systems[{name!r}]: expected {len(references)} hypothesis "
                             f"strings (one per reference), got {len(hyps)}")
    scores: dict[str, dict[str, float]] = {}
    pairs: list[dict[str, Any]] = []
    signature = ""
    previous = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)  # PairedTest reads its seed from here
    try:
        # One test per baseline against the systems after it: every unordered pair once.
        # A single system still gets its interval (a test with no other system).
        for index in range(max(len(named) - 1, 1)):
            test = PairedTest(named[index:], {"BLEU": sacrebleu.metrics.BLEU()},
                              [references], test_type="bs", n_samples=samples)
            signatures, results = test()
            signature = str(next(iter(signatures.values())))
            baseline = named[index][0]
            outputs = dict(named)
            for name, result in zip(results["System"], results["BLEU"], strict=True):
                mean, ci = float(result.mean), float(result.ci)
                scores.setdefault(name, {"bleu": float(result.score), "mean": mean, "ci": ci,
                                         "low": max(mean - ci, 0.0), "high": mean + ci})
                if name != baseline:
                    delta = scores[name]["bleu"] - scores[baseline]["bleu"]
                    same = delta == 0.0 or outputs[name] == outputs[baseline]
                    pairs.append({"a": baseline, "b": name, "delta": delta,
                                  "p": 1.0 if same else float(result.p_value)})
    finally:
        if previous is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = previous
    return {"sentences": len(references), "samples": samples, "seed": seed,
            "signature": signature, "systems": {name: scores[name] for name, _ in named},
            "pairs": pairs}
