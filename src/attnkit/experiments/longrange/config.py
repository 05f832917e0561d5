"""What a longrange run is: the model kinds, the tasks, the run config and its presets.

Pure data (no torch), so the command line builds its parser from it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnkit._validate import check_bool, check_choice, check_float, check_int

__all__ = ["MODEL_KINDS", "TASKS", "PRESETS", "MAX_MINUTES", "MAX_LENGTH", "LONG_MIN_LENGTH",
           "LongRangeConfig", "preset"]

#: model kind -> what reads the source (the ``attention`` name of attnkit's seq2seq registry
#: for the recurrent models)
MODEL_KINDS: dict[str, str] = {
    "rnn-none": "none",
    "rnn-attention": "bahdanau",
    "rnn-luong": "luong-general",
    "transformer": "multi-head self/cross attention",
}
TASKS = ("copy", "reverse")
MAX_MINUTES = 1e6  # about two years: any longer budget is a typo
MAX_LENGTH = 1000  # the Transformer's position table and the test set grow with it
#: the issue's goal is stated for source lengths at and above this many tokens
LONG_MIN_LENGTH = 40

#: ``--quick``: short sources, a 15-second budget per model, a small test set, two timing
#: lengths; the whole run (4 models) finishes in about 1.5 minutes on two CPU cores
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"minutes": 0.25, "max_len": 40, "test_per_length": 2, "valid_examples": 32,
              "grad_length": 24, "grad_rows": 48, "timing_lengths": [16, 32],
              "timing_repeats": 2},
}


@dataclass
class LongRangeConfig:
    """One ``attnkit longrange`` run: every model in ``models`` on every task in ``tasks``."""

    models: list[str] = field(default_factory=lambda: list(MODEL_KINDS))  # MODEL_KINDS keys
    tasks: list[str] = field(default_factory=lambda: ["copy"])  # TASKS entries
    minutes: float = 2.0  # training wall-clock budget per model and task
    max_steps: int = 1_000_000  # stop earlier than the budget after this many updates
    min_len: int = 5  # shortest source, in tokens (characters)
    max_len: int = 100  # longest source, in tokens
    max_tokens: int = 1000  # source tokens per training batch (rows = max_tokens // length)
    d_model: int = 64  # Transformer width; the recurrent models' embedding size
    layers: int = 2  # Transformer encoder and decoder layers each (the RNNs have 1 each)
    heads: int = 4  # Transformer attention heads
    lr_transformer: float = 1e-3  # peak learning rate of the Transformer
    # peak learning rate of the recurrent models, chosen on validation at a fixed number of
    # updates (benchmarks/results/longrange/TUNING.md; 3e-3 before)
    lr_rnn: float = 5e-3
    warmup_steps: int = 50  # linear warmup, then a linear decay over the time budget
    max_vocab: int = 96  # most frequent characters kept (the rest become UNK)
    valid_examples: int = 64  # teacher-forced validation accuracy on this many valid windows
    eval_points: int = 4  # validation evaluations over the budget (the learning curve)
    test_per_length: int = 4  # test windows per source length in [min_len, max_len]
    grad_length: int = 60  # source length of the gradient-flow probe
    grad_rows: int = 120  # probe rows (each scores one output position)
    timing_lengths: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    timing_tokens: int = 2048  # source tokens per timed step, the same at every length
    timing_repeats: int = 3  # timed steps per (model, length), after one warm-up step
    seed: int = 0  # model init and batch order
    threads: int | None = None  # torch CPU threads (None: torch's default)
    data_dir: str | None = None  # corpus cache (None: $ATTNKIT_DATA or ~/.cache/attnkit)
    out: str = "runs/longrange"  # report directory
    progress: bool = True  # tqdm bars when stderr is a terminal

    def __post_init__(self) -> None:
        for name, choices in (("models", MODEL_KINDS), ("tasks", TASKS)):
            values = getattr(self, name)
            if isinstance(values, str) or not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"{name}: expected a non-empty list from {sorted(choices)}, "
                                 f"got {values!r}")
            for value in values:
                check_choice(value, f"{name}[]", sorted(choices))
            repeated = sorted({v for v in values if list(values).count(v) > 1})
            if repeated:
                raise ValueError(f"{name}: each may appear once, got {repeated} twice")
            setattr(self, name, list(values))
        self.minutes = check_float(self.minutes, "minutes", low=0.0, low_open=True,
                                   high=MAX_MINUTES)
        check_int(self.min_len, "min_len", minimum=1, maximum=MAX_LENGTH)
        check_int(self.max_len, "max_len", minimum=self.min_len, maximum=MAX_LENGTH)
        check_int(self.max_tokens, "max_tokens", minimum=self.max_len)
        check_int(self.d_model, "d_model", minimum=2)
        check_int(self.heads, "heads", minimum=1)
        if self.d_model % self.heads:
            raise ValueError(f"heads: must divide d_model ({self.d_model}), got {self.heads}")
        for name in ("max_steps", "layers", "eval_points", "test_per_length", "valid_examples",
                     "timing_repeats"):
            check_int(getattr(self, name), name, minimum=1)
        check_int(self.warmup_steps, "warmup_steps", minimum=0)
        check_int(self.max_vocab, "max_vocab", minimum=1)
        check_int(self.grad_length, "grad_length", minimum=2, maximum=MAX_LENGTH)
        check_int(self.grad_rows, "grad_rows", minimum=1)
        check_int(self.seed, "seed", minimum=0, maximum=2**32 - 1)
        if self.threads is not None:
            check_int(self.threads, "threads", minimum=1, maximum=4096)
        for name in ("lr_transformer", "lr_rnn"):
            setattr(self, name, check_float(getattr(self, name), name, low=0.0,
                                            low_open=True, high=1.0))
        if isinstance(self.timing_lengths, (str, int)) or not self.timing_lengths:
            raise ValueError(f"timing_lengths: expected a non-empty list of lengths, got "
                             f"{self.timing_lengths!r}")
        self.timing_lengths = [check_int(v, "timing_lengths[]", minimum=1, maximum=MAX_LENGTH)
                               for v in self.timing_lengths]
        check_int(self.timing_tokens, "timing_tokens", minimum=max(self.timing_lengths))
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

    @property
    def position_limit(self) -> int:
        """Positions the Transformer needs: the longest source, target or greedy output
        (decoding stops 3 tokens past the source length) with room to spare."""
        return max(self.max_len, self.grad_length, max(self.timing_lengths)) + 8

    def lr(self, kind: str) -> float:
        """The peak learning rate of model ``kind``."""
        return self.lr_transformer if kind == "transformer" else self.lr_rnn


def preset(name: str | None) -> dict[str, Any]:
    """The :class:`LongRangeConfig` fields of preset ``name`` (None: none, the defaults)."""
    if name is None:
        return {}
    return dict(PRESETS[check_choice(name, "preset", sorted(PRESETS))])
