"""``attnkit induction``: induction heads forming on real code.

The question (issue 13). Olsson et al. 2022 ("In-context Learning and Induction Heads",
arXiv:2209.11895) found that transformers with two or more layers go through a phase
change early in training: induction heads form (a head that attends to the token after an
earlier copy of the current token, ``[A][B] ... [A] -> [B]``, composed with a previous-token
head in an earlier layer; Elhage et al. 2021), the in-context learning score drops at the
same time, and the loss curve shows a bump; one-layer attention-only models have neither.
This experiment trains the models on a corpus every machine has and measures it.

Data (:mod:`.data`): the ``*.py`` files of the running Python's standard library (a sorted
file list without site-packages, test suites and generated tables; split by a hash of the
path), byte-level BPE trained on the train files and cached under the data directory.

Models (:mod:`.run`): attnkit's GPT with ``mlp=False`` and one (``attn-1``) or two
(``attn-2``) layers, and two layers with MLPs (``mlp-2``), the same width and heads. Each
trains with :class:`attnkit.train.Trainer` for ``steps`` AdamW updates (or until its share
of the ``--minutes`` cap), measured every ``eval_every`` updates (:mod:`.evaluate`): the
validation loss by position, the ICL score, every head's prefix-matching, previous-token and
copying scores.

What the report holds (:mod:`.report`; ``metrics.json``, ``README.md``, ``report.html``, the
PNG figures, ``viewer.html`` and one checkpoint per model with the tokenizer, which
``attnkit inspect`` reads): the loss curve with the phase change marked (found in the data,
where prefix matching rises fastest), the ICL score over training, head-score heatmaps, the
induction head's attention on a repeated random sequence, the loss by position, and the
issue's goals checked as measured (``metrics["goals"]``).

Commands::

    attnkit induction                  # the default: 3 models
    attnkit induction --quick          # smoke run, seconds
    attnkit induction --models attn-2 --steps 3000 --minutes 60 --out runs/ind-long
"""

from attnkit.experiments.induction.config import (
    MODEL_KINDS,
    PRESETS,
    InductionConfig,
    preset,
)

__all__ = ["MODEL_KINDS", "PRESETS", "InductionConfig", "preset"]
