"""Settings of ``attnkit vision caption``: a typed config and its ``--quick`` preset.

The regularizer weights below were chosen on the validation canvases (see
``benchmarks/results/vision/caption/README.md``), never on the test canvases.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from attnkit._validate import check_float, check_int
from attnkit.models.vision.show_attend_tell import ATTENTION_KINDS

__all__ = ["CaptionConfig", "PRESETS", "preset", "MAX_MINUTES"]

MAX_MINUTES = 24 * 60.0


@dataclass
class CaptionConfig:
    """One ``attnkit vision caption`` run: per seed, a CNN encoder pre-trained on single
    Fashion-MNIST items, then one Show-Attend-Tell decoder per attention kind."""

    seeds: tuple[int, ...] = (0, 1, 2)                   # one full run per seed
    attentions: tuple[str, ...] = ATTENTION_KINDS        # decoders trained on each encoder
    train_canvases: int = 6000         # canvases (2 to 4 items) from the train split
    val_canvases: int = 1000           # from the validation split (choosing settings)
    test_canvases: int = 2000          # from the official test split (reported at the end)
    encoder_items: int = 20000         # single train items for pre-training the encoder
    encoder_epochs: int = 2            # passes over them
    epochs: int = 10                   # decoder passes over the train canvases
    batch_size: int = 64               # canvases (and 2x items) per update
    lr: float = 2e-3                   # Adam, for encoder and decoders
    doubly_stochastic: float = 0.0     # lambda of sum_i (1 - sum_t alpha_ti)^2 (soft)
    entropy_weight: float = 0.01       # lambda_e of the entropy bonus (hard)
    hard_reward: str = "sequence"      # REINFORCE reward: "sequence" (the paper) or "step"
    minutes: float = 10.0              # wall-clock cap of all training together
    data_seed: int = 0                 # canvas layouts (the same for every model seed)
    threads: int | None = None         # torch CPU threads (None: torch's default)
    data_dir: str | None = None        # Fashion-MNIST cache (None: $ATTNKIT_DATA or ~/.cache)
    out: str = "runs/vision-caption"   # report directory
    progress: bool = True              # print progress lines
    overlays: int = 4                  # test canvases drawn with per-word attention
    extra: dict = field(default_factory=dict)  # free-form notes copied into metrics.json

    def __post_init__(self) -> None:
        who = "CaptionConfig"
        if not self.seeds:
            raise ValueError(f"{who}: seeds must hold at least one seed")
        for seed in self.seeds:
            check_int(seed, "seeds[]", minimum=0, owner=who)
        if not self.attentions or any(a not in ATTENTION_KINDS for a in self.attentions):
            raise ValueError(f"{who}: attentions must be drawn from {ATTENTION_KINDS}, got "
                             f"{self.attentions!r}")
        for name in ("train_canvases", "val_canvases", "test_canvases", "encoder_items",
                     "encoder_epochs", "epochs", "batch_size"):
            check_int(getattr(self, name), name, minimum=1, owner=who)
        check_int(self.overlays, "overlays", minimum=0, owner=who)
        check_int(self.data_seed, "data_seed", minimum=0, owner=who)
        self.lr = check_float(self.lr, "lr", low=0.0, low_open=True, owner=who)
        for name in ("doubly_stochastic", "entropy_weight"):
            setattr(self, name, check_float(getattr(self, name), name, low=0.0, owner=who))
        if self.hard_reward not in ("sequence", "step"):
            raise ValueError(f"{who}: hard_reward must be 'sequence' or 'step', got "
                             f"{self.hard_reward!r}")
        self.minutes = check_float(self.minutes, "minutes", low=0.0, high=MAX_MINUTES,
                                   low_open=True, owner=who)


PRESETS: dict[str, dict] = {
    "quick": {"seeds": (0,), "train_canvases": 256, "val_canvases": 64, "test_canvases": 64,
              "encoder_items": 1024, "encoder_epochs": 1, "epochs": 1, "minutes": 2.0,
              "overlays": 2, "out": "runs/vision-caption-quick"},
}


def preset(name: str | None) -> dict:
    """The keyword values of preset ``name`` (None: no changes)."""
    if name is None:
        return {}
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return dict(PRESETS[name])


def config_fields() -> tuple[str, ...]:
    """The names of :class:`CaptionConfig`'s fields."""
    return tuple(f.name for f in fields(CaptionConfig))
