"""What an induction run is: the model kinds, the run config and its ``--quick`` preset.

Pure data (no torch), so the command line builds its parser from it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnkit._validate import check_bool, check_choice, check_float, check_int

__all__ = ["MODEL_KINDS", "PRESETS", "MAX_MINUTES", "InductionConfig", "preset"]

#: model kind -> (layers, MLP in every block)
MODEL_KINDS: dict[str, tuple[int, bool]] = {
    "attn-1": (1, False),
    "attn-2": (2, False),
    "mlp-2": (2, True),
}
POSITIONAL = ("learned", "sinusoidal", "rotary")
MAX_MINUTES = 1e6  # about two years: any longer budget is a typo

#: ``--quick``: a slice of the library, a tiny model and a few updates; the whole run takes
#: seconds (a smoke test of the pipeline: no induction head forms in it)
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"minutes": 1.0, "steps": 12, "max_files": 24, "valid_fraction": 0.25,
              "vocab_size": 300, "d_model": 32, "heads": 2, "rows": 2, "warmup_steps": 2,
              "eval_every": 6, "valid_contexts": 4, "probe_len": 24, "probe_rows": 2},
}


@dataclass
class InductionConfig:
    """One ``attnkit induction`` run: every model in ``models``, one after the other."""

    models: list[str] = field(default_factory=lambda: list(MODEL_KINDS))  # MODEL_KINDS keys
    steps: int = 2500  # optimizer updates per model (the schedule's horizon)
    minutes: float = 18.0  # wall-clock cap on all models' training together (equal shares)
    context_len: int = 512  # tokens per training window and validation context
    rows: int = 4  # windows per update
    d_model: int = 128  # model width E
    heads: int = 4  # attention heads per layer
    positional: str = "rotary"  # "learned" | "sinusoidal" | "rotary"
    lr: float = 5e-3  # peak learning rate (AdamW)
    warmup_steps: int = 50  # linear warmup, then a cosine decay to lr / 10 over `steps`
    weight_decay: float = 0.01  # AdamW decay on matrices (not embeddings, norms, biases)
    vocab_size: int = 1024  # byte-level BPE vocabulary (special tokens and bytes included)
    valid_fraction: float = 0.1  # share of files in the validation split (by path hash)
    max_files: int | None = None  # use an evenly spaced subset of the file list (None: all)
    eval_every: int = 50  # updates between measurements (loss, ICL score, head scores)
    valid_contexts: int = 64  # validation contexts for the loss by position and the ICL score
    icl_early: int = 50  # the ICL score is loss(icl_late) - loss(icl_early), Olsson et al.
    icl_late: int = 500
    icl_halfwidth: int = 5  # positions p - w .. p + w are averaged for each (noise)
    probe_len: int = 100  # tokens per copy of the repeated random sequence (prefix matching)
    probe_rows: int = 8  # repeated random sequences
    seed: int = 0  # model init and batch order
    threads: int | None = None  # torch CPU threads (None: torch's default)
    root: str | None = None  # standard library folder (None: the running Python's)
    data_dir: str | None = None  # tokenizer cache (None: $ATTNKIT_DATA or ~/.cache/attnkit)
    out: str = "runs/induction"  # report directory
    progress: bool = True  # tqdm bars when stderr is a terminal
    init_std: float | None = None  # GPT weights' initial std (None: GPT-2's 0.02)

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
        for name in ("steps", "rows", "eval_every", "valid_contexts", "probe_rows"):
            check_int(getattr(self, name), name, minimum=1)
        check_int(self.d_model, "d_model", minimum=2)
        check_int(self.heads, "heads", minimum=1)
        if self.d_model % self.heads:
            raise ValueError(f"heads: must divide d_model ({self.d_model}), got {self.heads}")
        check_choice(self.positional, "positional", POSITIONAL)
        if self.positional == "rotary" and (self.d_model // self.heads) % 2:
            raise ValueError(f"heads: rotary positions need an even head dim, got d_model // "
                             f"heads = {self.d_model // self.heads}")
        self.lr = check_float(self.lr, "lr", low=0.0, low_open=True, high=1.0)
        self.weight_decay = check_float(self.weight_decay, "weight_decay", low=0.0, high=1.0)
        self.valid_fraction = check_float(self.valid_fraction, "valid_fraction", low=0.0,
                                          low_open=True, high=0.5)
        check_int(self.warmup_steps, "warmup_steps", minimum=0)
        check_int(self.vocab_size, "vocab_size", minimum=300, maximum=65536)
        if self.max_files is not None:
            check_int(self.max_files, "max_files", minimum=2)
        check_int(self.icl_halfwidth, "icl_halfwidth", minimum=0)
        check_int(self.icl_early, "icl_early", minimum=self.icl_halfwidth + 1)
        check_int(self.icl_late, "icl_late", minimum=self.icl_early + 2 * self.icl_halfwidth + 1)
        check_int(self.context_len, "context_len", minimum=self.icl_late + self.icl_halfwidth,
                  maximum=8192)
        check_int(self.probe_len, "probe_len", minimum=2,
                  maximum=(self.context_len - 1) // 2)
        check_int(self.seed, "seed", minimum=0, maximum=2**32 - 1)
        if self.threads is not None:
            check_int(self.threads, "threads", minimum=1, maximum=4096)
        check_bool(self.progress, "progress")
        if self.init_std is not None:
            self.init_std = check_float(self.init_std, "init_std", low=0.0, low_open=True,
                                        high=10.0)
        for name in ("root", "data_dir", "out"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name}: expected a path string, got {type(value).__name__}")
        if self.out is None:
            raise TypeError("out: expected a path string, got None")

    @property
    def report_dir(self) -> Path:
        return Path(self.out)

    def budget_s(self) -> float:
        """Each model's wall-clock cap in seconds (an equal share of ``minutes``)."""
        return self.minutes * 60.0 / len(self.models)


def preset(name: str | None) -> dict[str, Any]:
    """The :class:`InductionConfig` fields of preset ``name`` (None: none, the defaults)."""
    if name is None:
        return {}
    return dict(PRESETS[check_choice(name, "preset", sorted(PRESETS))])
