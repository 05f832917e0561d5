"""What a translate run is: the model kinds, the run configs and the presets.

Pure data (no torch), so the command line can build its parser from it cheaply.

Model kinds (built by :mod:`attnkit.experiments.translate.model`):

- ``transformer``: :class:`attnkit.models.Transformer` (Vaswani et al. 2017,
  arXiv:1706.03762), pre-norm, shared embeddings;
- ``rnn-attention``: bidirectional GRU encoder-decoder with Bahdanau's additive attention
  (Bahdanau et al. 2014, arXiv:1409.0473);
- ``rnn-luong``: the same with Luong's global "general" attention and input feeding
  (Luong et al. 2015, arXiv:1508.04025); ``rnn-local-p``: Luong's predictive local attention;
- ``rnn-none``: the fixed-vector encoder-decoder (Cho et al. 2014, arXiv:1406.1078;
  Sutskever et al. 2014, arXiv:1409.3215), the baseline attention was invented to beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from attnkit._validate import check_bool, check_choice, check_float, check_int

__all__ = ["MODEL_KINDS", "SIZES", "LANGS", "AMP_MODES", "SCHEDULES", "PRESETS", "MIN_VOCAB",
           "MAX_MINUTES", "MAX_BEAM", "MAX_BATCH_TOKENS", "MAX_VOCAB", "MAX_SEED", "MAX_WIDTH",
           "MAX_LAYERS", "MAX_LR", "RESUME_FIXED", "USABLE_EPOCHS", "TranslateConfig",
           "CompareConfig", "preset"]

#: model kind -> the seq2seq attention it uses ("transformer": its own multi-head attention)
MODEL_KINDS: dict[str, str] = {
    "transformer": "multi-head self/cross attention",
    "rnn-attention": "bahdanau",
    "rnn-luong": "luong-general",
    "rnn-local-p": "local-p",
    "rnn-none": "none",
}
SIZES = ("small", "tiny")
LANGS = ("fr", "de")
AMP_MODES = ("auto", "bf16", "off")
SCHEDULES = ("linear", "cosine", "inverse_sqrt")  # see attnkit.train.schedule
MIN_VOCAB = 260  # the byte-level BPE's 4 special tokens + 256 bytes
MAX_MINUTES = 1e6  # about two years: any longer budget is a typo (and overflows seconds)
MAX_BEAM = 64  # beam search keeps beam x vocabulary scores per sentence
MAX_BATCH_TOKENS = 1 << 20  # beyond this the logits alone outgrow any memory (a typo)
MAX_VOCAB = 1_000_000  # the BPE trainer's counts are 32-bit; real vocabularies are far smaller
MAX_SEED = 2**32 - 1
MAX_WIDTH = 1 << 16  # a model wider than this does not fit in memory (a typo)
MAX_LAYERS = 1024
MAX_LR = 1.0  # AdamW's step is about lr per weight: above 1 nothing trains

#: epochs of training below which the main job warns that the model will not be usable (in
#: the default run of benchmarks/results/translate/default/, validation BLEU passed 20 at
#: about 2.2 epochs and stood at 24.6 at 3, against 28.0 at the end, 4.1 epochs)
USABLE_EPOCHS = 3.0

#: fields a resumed run must share with its checkpoint: they define the model, the corpus
#: and the batch stream, so changing them would silently train something else
RESUME_FIXED = ("model", "size", "width", "layers", "lang", "vocab_size", "max_len",
                "max_tokens", "seed", "hold_out_long")

#: ``--quick``: a tiny model, a one-minute budget and a small test set; the whole run
#: (training and evaluation) finishes in under two minutes on two CPU cores
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"size": "tiny", "minutes": 1.0, "vocab_size": 1000, "max_tokens": 1500,
              "warmup_steps": 50, "eval_every": 100, "checkpoint_every": 100, "beam_size": 2,
              "test_limit": 64, "valid_bleu_limit": 32},
}

# Defaults chosen by the sweep of benchmarks/translate_sweep.py (validation BLEU at the
# default budget on a float32-only 2-core CPU); the recurrent models keep 1e-3 and 3000.
_DEFAULT_LR = {"transformer": 2e-3}  # the recurrent models use 1e-3
_DEFAULT_MAX_TOKENS = {"transformer": 1500}  # the recurrent models use 3000


@dataclass
class TranslateConfig:
    """One training run of ``attnkit translate train``."""

    model: str = "transformer"  # one of MODEL_KINDS
    lang: str = "fr"  # target language of the corpus ("fr" or "de")
    minutes: float = 13.0  # training wall-clock budget (evaluation comes after)
    max_steps: int = 200_000  # stop earlier than the budget after this many updates
    size: str = "small"  # "small" (the reported runs) or "tiny" (tests, smoke runs)
    vocab_size: int = 4000  # joint BPE vocabulary, specials included
    max_tokens: int | None = None  # padded tokens per batch (None: 1500 transformer, 3000 RNNs)
    max_len: int = 96  # longest sentence kept for training, in tokens
    width: int | None = None  # model width (None: the size's; see model.py)
    layers: int | None = None  # encoder and decoder layers each (None: the size's)
    dropout: float | None = None  # (None: the size's)
    lr: float | None = None  # peak learning rate (None: 2e-3 transformer, 1e-3 RNNs)
    warmup_steps: int = 100  # linear warmup updates, then the decay over the time budget
    schedule: str = "linear"  # decay after warmup, laid over the wall-clock budget
    label_smoothing: float = 0.1  # on the training loss
    eval_minutes: float = 2.0  # validation loss and greedy BLEU every M minutes (the curve)
    valid_bleu_limit: int = 256  # greedy BLEU of the curve on the first N valid pairs
    eval_every: int = 500  # validation loss every N updates
    checkpoint_every: int = 500  # checkpoint every N updates (and at the end / on Ctrl-C)
    beam_size: int = 4  # test-set decoding (1: greedy)
    length_penalty: float = 0.6  # GNMT length-penalty alpha for beam search
    seed: int = 0  # seeds model init, batch order and dropout
    data_dir: str | None = None  # corpus cache (None: $ATTNKIT_DATA or ~/.cache/attnkit)
    out: str | None = None  # report directory (None: runs/translate-<model>)
    progress: bool = True  # tqdm progress bar when stderr is a terminal
    amp: str = "auto"  # bf16 autocast on CUDA GPUs with bf16; float32 on CPU (see TrainConfig)
    test_limit: int | None = None  # evaluate on the first N test pairs only (None: all)
    # train without the test-long pairs (and their tokenizer), so the run can be scored on
    # test-long too; compare always sets it. False keeps the main job's whole train split.
    hold_out_long: bool = False

    def __post_init__(self) -> None:
        check_choice(self.model, "model", sorted(MODEL_KINDS))
        check_choice(self.lang, "lang", LANGS)
        check_choice(self.size, "size", SIZES)
        check_choice(self.amp, "amp", AMP_MODES)
        check_choice(self.schedule, "schedule", SCHEDULES)
        self.eval_minutes = check_float(self.eval_minutes, "eval_minutes", low=0.0,
                                        high=MAX_MINUTES)
        for name, most in (("width", MAX_WIDTH), ("layers", MAX_LAYERS)):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, minimum=1, maximum=most)
        if self.model == "transformer" and self.width is not None \
                and self.width % max(self.width // 64, 2):
            raise ValueError(f"width: the Transformer splits it into heads of 64 features, "
                             f"so it must be a multiple of 64 (or 32), got {self.width}")
        if self.dropout is not None:
            self.dropout = check_float(self.dropout, "dropout", low=0.0, high=1.0,
                                       high_open=True)
        self.minutes = check_float(self.minutes, "minutes", low=0.0, low_open=True,
                                   high=MAX_MINUTES)
        if self.max_tokens is None:
            self.max_tokens = _DEFAULT_MAX_TOKENS.get(self.model, 3000)
        for name in ("max_steps", "max_len", "eval_every", "checkpoint_every"):
            check_int(getattr(self, name), name, minimum=1)
        check_int(self.max_tokens, "max_tokens", minimum=1, maximum=MAX_BATCH_TOKENS)
        if self.max_tokens < self.max_len:
            raise ValueError(f"max_tokens: expected at least max_len ({self.max_len}) tokens per "
                             f"batch, so the longest sentence fits, got {self.max_tokens}")
        check_int(self.vocab_size, "vocab_size", minimum=MIN_VOCAB, maximum=MAX_VOCAB)
        check_int(self.beam_size, "beam_size", minimum=1, maximum=MAX_BEAM)
        check_int(self.valid_bleu_limit, "valid_bleu_limit", minimum=1)
        check_int(self.warmup_steps, "warmup_steps", minimum=0)
        check_int(self.seed, "seed", minimum=0, maximum=MAX_SEED)
        if self.test_limit is not None:
            check_int(self.test_limit, "test_limit", minimum=1)
        if self.lr is not None:
            self.lr = check_float(self.lr, "lr", low=0.0, low_open=True, high=MAX_LR)
        self.label_smoothing = check_float(self.label_smoothing, "label_smoothing", low=0.0,
                                           high=1.0, high_open=True)
        self.length_penalty = check_float(self.length_penalty, "length_penalty", low=0.0,
                                          high=10.0)  # GNMT used 0.2-1; a huge alpha overflows
        check_bool(self.progress, "progress")
        check_bool(self.hold_out_long, "hold_out_long")
        for name in ("data_dir", "out"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name}: expected a path string or None, got "
                                f"{type(value).__name__}")

    @property
    def report_dir(self) -> Path:
        return Path(self.out if self.out is not None else f"runs/translate-{self.model}")

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else _DEFAULT_LR.get(self.model, 1e-3)

    @classmethod
    def from_dict(cls, stored: dict[str, Any], **overrides: Any) -> TranslateConfig:
        """The config stored in a checkpoint (unknown keys dropped), with ``overrides``
        that are not None applied."""
        if not isinstance(stored, dict):
            raise TypeError(f"stored: expected a dict, got {type(stored).__name__}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in stored.items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class CompareConfig:
    """``attnkit translate compare``: several models, same corpus/tokenizer/budget."""

    models: list[str] = field(default_factory=lambda: ["rnn-none", "rnn-attention",
                                                       "transformer"])
    minutes: float = 10.0  # training budget per model
    out: str = "runs/translate-compare"  # report directory (one subfolder per model)
    base: dict[str, Any] = field(default_factory=dict)  # other TranslateConfig fields

    def __post_init__(self) -> None:
        if isinstance(self.models, str) or not self.models:
            raise ValueError(f"models: expected a non-empty list of names from "
                             f"{sorted(MODEL_KINDS)}, got {self.models!r}")
        for name in self.models:
            check_choice(name, "models[]", sorted(MODEL_KINDS))
        repeated = sorted({name for name in self.models if self.models.count(name) > 1})
        if repeated:
            raise ValueError(f"models: each model may appear once, got {repeated} twice")
        self.minutes = check_float(self.minutes, "minutes", low=0.0, low_open=True,
                                   high=MAX_MINUTES)
        if not isinstance(self.out, str):
            raise TypeError(f"out: expected a path string, got {type(self.out).__name__}")
        overlap = {"model", "minutes", "out", "hold_out_long"} & set(self.base)
        if overlap:
            raise ValueError(f"base: {sorted(overlap)} are set per model by compare "
                             f"(hold_out_long is always True there)")
        for name in self.models:  # validates the shared fields up front, with each model
            # (a width the Transformer refuses is fine for the RNNs)
            TranslateConfig(**self.base, model=name)


def preset(name: str | None) -> dict[str, Any]:
    """The TranslateConfig fields of preset ``name`` (None: no preset, the defaults)."""
    if name is None:
        return {}
    return dict(PRESETS[check_choice(name, "preset", sorted(PRESETS))])
