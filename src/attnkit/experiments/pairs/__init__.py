"""``attnkit pairs``: decomposable attention against a BiGRU baseline on real EN/FR
translation pairs (issue 15).

Task (:mod:`attnkit.data.translation.pairs`): given an English gettext message and a French
one, say whether the French is its translation. Positives are the corpus's real pairs; each
English sentence also gets one hard negative, the French side of another pair of the same
split (train/valid/test by the corpus's hash key) with the highest word overlap with the true
French. Classes are balanced.

Models: :class:`attnkit.models.decomposable.DecomposableAttention` (Parikh et al. 2016,
arXiv:1606.01933: attend, compare, aggregate), with and without intra-sentence attention, and
:class:`attnkit.models.bigru_pair.BiGRUPairClassifier` (sentence encoders, no cross
attention). A logistic regression on surface features (length ratios, placeholder and number
match, copied words, end punctuation) shows how far shortcuts go.

Compute: by default every model gets the same training budget (``--minutes`` of process CPU
time per model, ``--clock wall`` for wall time, a ``--max-minutes`` wall cap) and trains
until it is spent (equal compute, not equal epochs); the epochs reached, the CPU and wall
time and the load average of each model's training are reported.

Model selection (the best valid state of each model; the decomposable variant with the best
valid accuracy) uses the valid split only; test accuracy comes with a 95% bootstrap interval
over English sentences. The goal: the decomposable model's test accuracy at least the
baseline's with at most half its parameters.

Commands::

    attnkit pairs                 # the default run: 2.5 CPU minutes per model
    attnkit pairs --quick         # smoke run, seconds
    # fixed work instead of equal compute: 4 epochs per model
    attnkit pairs --models decomposable bigru --epochs 4 --minutes 60 --max-minutes 60
"""

from attnkit.experiments.pairs.config import MODEL_KINDS, PRESETS, PairsConfig, preset

__all__ = ["MODEL_KINDS", "PRESETS", "PairsConfig", "preset"]
