"""What a pairs run is: the model kinds, the run config and its presets.

The default run compares the models at equal compute: every model gets the same training
budget, ``minutes`` of CPU time of the process (all its threads; valid checks included), and
trains until it is spent; ``epochs`` is only a cap. CPU time, unlike wall time, barely moves
when other work shares the cores (``clock="wall"`` budgets wall time instead). The rule was
fixed a priori (one epoch of the BiGRU costs about five of the plain decomposable model's),
not read off test numbers; the epochs each model reaches depend on the machine's speed and are
reported. ``max_minutes`` caps each model's wall time so a loaded machine still ends the run
(a model stopped by it got less compute, and the report says so). ``--epochs N --minutes
<large> --max-minutes <large>`` gives the fixed-work comparison (N epochs per model) instead.

Pure data (no torch), so the command line builds its parser from it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnkit._validate import check_bool, check_choice, check_float, check_int

__all__ = ["MODEL_KINDS", "PRESETS", "MAX_MINUTES", "CLOCKS", "PairsConfig", "preset"]

#: model kind -> what it is
MODEL_KINDS: dict[str, str] = {
    "decomposable": "decomposable attention (Parikh et al. 2016): attend, compare, aggregate",
    "decomposable-intra": "decomposable attention with intra-sentence attention and a "
                          "distance bias",
    "bigru": "BiGRU sentence encoders, max-pooled, no cross attention (the baseline)",
}
BASELINE = "bigru"
DEFAULT_MODELS = ("decomposable", "bigru")
#: what the per-model budget counts
CLOCKS = {"cpu": "CPU time of the process (all threads)", "wall": "wall-clock time"}
MAX_MINUTES = 1e6  # about two years: any longer budget is a typo

#: ``--quick``: 400 train pairs, one epoch (or 1 minute) per model, short sentences, small
#: models; seconds on 2 cores
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"train_pairs": 400, "epochs": 1, "minutes": 1.0, "max_len": 24,
              "gru_hidden": 32, "hidden": 16, "embed_dim": 16, "batch_size": 64,
              "heatmaps": 2, "bootstrap": 100, "models": list(MODEL_KINDS)},
}


@dataclass
class PairsConfig:
    """One ``attnkit pairs`` run: every model in ``models`` trained and tested on the task."""

    #: MODEL_KINDS keys. The default leaves decomposable-intra out: it lost to the plain model
    #: on valid accuracy in the equal-budget run (81.3% vs 83.1%; each step costs about twice
    #: as much), and its 2.5 minutes keep the default under 10 minutes; ``--models`` adds it
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    #: at most this many passes over the train examples per model; a cap only in the default
    #: run (the budget ends it), the stop of a fixed-work run (with a large ``minutes``)
    epochs: int = 1000
    #: training budget of EACH model, the same for all (equal compute), in minutes of
    #: ``clock``: training, valid checks included, stops at the first read of the clock after
    #: it is spent. On 2 free cores a process's CPU time runs at least as fast as the wall
    #: clock, so 3 models x 2.5 min plus about a minute of data and testing stay under 10 min
    minutes: float = 2.5
    clock: str = "cpu"  # CLOCKS: "cpu" (process CPU time, all threads) or "wall"
    #: wall-clock cap per model, whatever the clock: a loaded machine still ends the run
    max_minutes: float = 5.0
    train_pairs: int | None = 48_000  # first pairs of the train split (hash order); None: all
    vocab_size: int = 4000  # the corpus's joint BPE tokenizer of this size
    max_len: int = 48  # tokens kept per sentence (longer ones are cut)
    embed_dim: int = 64  # token embedding size, every model
    hidden: int = 64  # width of F, G, H of the decomposable models
    gru_hidden: int = 160  # BiGRU state per direction (and its classifier's width)
    #: every model. 0: without dropout the decomposable model's step costs about 0.6 of its
    #: cost with 0.2 (on CPU, drawing the dropout masks outweighs its small matrix products)
    #: and its valid accuracy after 1 CPU minute was 88.1% against 85.6% (TUNING.md)
    dropout: float = 0.0
    #: every model gets the per-token exact-match feature (the token id occurs in the other
    #: sentence; :func:`attnkit.models.decomposable.exact_match`). On: it raised the
    #: decomposable model's best valid accuracy from 82.3% to 88.0% in the equal-budget
    #: tuning runs (benchmarks/results/pairs/TUNING.md)
    exact_match: bool = True
    aggregate: str = "sum"  # decomposable models: "sum" (the paper) or "sum+max"
    batch_size: int = 128  # examples per update (sorted into similar lengths)
    #: Adam, every model: 3e-3 beat 1e-3 on valid accuracy for decomposable (0.670 vs 0.662)
    #: and bigru (0.702 vs 0.647), not for decomposable-intra (0.634 vs 0.660), in a pilot of
    #: one epoch on 4,096 train pairs
    lr: float = 3e-3
    evals_per_epoch: int = 6  # valid evaluations per epoch; the best one is kept
    heatmaps: int = 4  # test pairs drawn as alignment heatmaps
    bootstrap: int = 1000  # resamples of the test English sentences for the intervals
    seed: int = 0  # model init and batch order
    threads: int | None = None  # torch CPU threads (None: torch's default)
    data_dir: str | None = None  # corpus cache (None: $ATTNKIT_DATA or ~/.cache/attnkit)
    out: str = "runs/pairs"  # report directory
    progress: bool = True  # progress lines

    def __post_init__(self) -> None:
        values = self.models
        if isinstance(values, str) or not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"models: expected a non-empty list from {sorted(MODEL_KINDS)}, "
                             f"got {values!r}")
        for value in values:
            check_choice(value, "models[]", sorted(MODEL_KINDS))
        repeated = sorted({v for v in values if list(values).count(v) > 1})
        if repeated:
            raise ValueError(f"models: each may appear once, got {repeated} twice")
        self.models = list(values)
        self.minutes = check_float(self.minutes, "minutes", low=0.0, low_open=True,
                                   high=MAX_MINUTES)
        self.max_minutes = check_float(self.max_minutes, "max_minutes", low=0.0,
                                       low_open=True, high=MAX_MINUTES)
        check_choice(self.clock, "clock", sorted(CLOCKS))
        if self.clock == "wall" and self.minutes > self.max_minutes:
            # the wall-clock cap would end every model first: the budget asked for is never used
            raise ValueError(f"minutes: a wall-clock budget of {self.minutes:g} exceeds "
                             f"max_minutes {self.max_minutes:g}, the wall-clock cap; raise "
                             f"--max-minutes too")
        if self.train_pairs is not None:
            check_int(self.train_pairs, "train_pairs", minimum=2)
        check_int(self.vocab_size, "vocab_size", minimum=260)
        check_int(self.max_len, "max_len", minimum=1, maximum=4096)
        for name in ("epochs", "embed_dim", "hidden", "gru_hidden", "batch_size",
                     "evals_per_epoch", "bootstrap"):
            check_int(getattr(self, name), name, minimum=1)
        check_int(self.heatmaps, "heatmaps", minimum=0, maximum=32)
        self.dropout = check_float(self.dropout, "dropout", low=0.0, high=1.0, high_open=True)
        check_bool(self.exact_match, "exact_match")
        check_choice(self.aggregate, "aggregate", ["sum", "sum+max"])
        self.lr = check_float(self.lr, "lr", low=0.0, low_open=True, high=1.0)
        check_int(self.seed, "seed", minimum=0, maximum=2**32 - 1)
        if self.threads is not None:
            check_int(self.threads, "threads", minimum=1, maximum=4096)
        check_bool(self.progress, "progress")
        for name in ("data_dir", "out"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name}: expected a path string, got {type(value).__name__}")
        if self.out is None:
            raise TypeError("out: expected a path string, got None")

    @property
    def report_dir(self) -> Path:
        return Path(self.out)


def preset(name: str | None) -> dict[str, Any]:
    """The :class:`PairsConfig` fields of preset ``name`` (None: none, the defaults)."""
    if name is None:
        return {}
    return dict(PRESETS[check_choice(name, "preset", sorted(PRESETS))])
