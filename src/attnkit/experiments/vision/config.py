"""What a run of each ``attnkit vision`` part is: typed configs and their ``--quick`` presets.

Pure data (no torch), so the command line builds its parsers cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from attnkit._validate import check_bool, check_choice, check_float, check_int

__all__ = ["CHANNEL_MODELS", "GLIMPSE_MODELS", "ChannelConfig", "GlimpseConfig", "PRESETS",
           "MAX_MINUTES", "MAX_SEED"]

#: channel part: model name -> gate in every block of the CNN
CHANNEL_MODELS: dict[str, str] = {"cnn": "none", "cnn-se": "Squeeze-and-Excitation",
                                  "cnn-cbam": "CBAM"}
#: glimpse part: model name -> what it is
GLIMPSE_MODELS: dict[str, str] = {
    "cnn": "CNN, global average pooling (the baseline, its own wider trunk)",
    "soft": "CNN trunk, soft spatial attention pooling",
    "ram": "RAM: glimpses, REINFORCE location policy with a baseline",
}
MAX_MINUTES = 1e6
MAX_SEED = 2**31 - 1
TRAIN_IMAGES = 55_000  # Fashion-MNIST's training split (the other 5,000 are validation)


def _check_widths(values: Any, name: str) -> list[int]:
    """A non-empty list of positive ints (channels per block), or a ValueError naming it."""
    if (isinstance(values, str) or not isinstance(values, (list, tuple)) or not values
            or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in values)):
        raise ValueError(f"{name}: expected a non-empty list of positive ints, got {values!r}")
    return [int(w) for w in values]


def _check_common(config: Any, models: dict[str, str]) -> None:
    values = config.models
    if isinstance(values, str) or not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"models: expected a non-empty list from {list(models)}, got "
                         f"{values!r}")
    for value in values:
        check_choice(value, "models[]", list(models))
    if len(set(values)) != len(values):
        raise ValueError(f"models: each may appear once, got {list(values)}")
    config.models = list(values)
    check_int(config.seeds, "seeds", minimum=1, maximum=100)
    check_int(config.seed, "seed", minimum=0, maximum=MAX_SEED)
    check_int(config.epochs, "epochs", minimum=1, maximum=10_000)
    check_int(config.batch_size, "batch_size", minimum=1, maximum=65_536)
    # more than the split holds would silently train on fewer images than asked for
    check_int(config.train_size, "train_size", minimum=1, maximum=TRAIN_IMAGES)
    if config.test_size is not None:
        check_int(config.test_size, "test_size", minimum=1, maximum=10_000)
    check_int(config.val_size, "val_size", minimum=1, maximum=5000)
    config.lr = check_float(config.lr, "lr", low=0.0, low_open=True, high=1.0)
    config.minutes = check_float(config.minutes, "minutes", low=0.0, low_open=True,
                                 high=MAX_MINUTES)
    if config.threads is not None:
        check_int(config.threads, "threads", minimum=1, maximum=4096)
    check_bool(config.progress, "progress")
    if not config.widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                                for w in config.widths):
        raise ValueError(f"widths: expected positive ints, got {config.widths!r}")
    config.widths = [int(w) for w in config.widths]
    for name in ("data_dir", "out"):
        value = getattr(config, name)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name}: expected a path string, got {type(value).__name__}")


@dataclass
class ChannelConfig:
    """``attnkit vision channel``: CNN vs CNN+SE vs CNN+CBAM on Fashion-MNIST, equal epochs."""

    models: list[str] = field(default_factory=lambda: list(CHANNEL_MODELS))
    seeds: int = 3  # runs per model (seeds seed, seed + 1, ...)
    seed: int = 0  # first seed
    epochs: int = 2  # passes over the training images, the same for every model
    train_size: int = 8000  # training images used (the first of the 55,000-image split)
    val_size: int = 5000  # validation images scored after each epoch
    test_size: int | None = None  # test images scored at the end (None: all 10,000)
    batch_size: int = 128
    lr: float = 3e-3  # Adam peak learning rate, cosine decay to 0 over the epochs
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])  # channels per block
    reduction: int = 4  # bottleneck ratio of the SE and CBAM channel MLPs
    minutes: float = 10.0  # cap on the whole part; each run gets an equal share
    threads: int | None = None
    data_dir: str | None = None
    out: str = "runs/vision/channel"
    progress: bool = True

    def __post_init__(self) -> None:
        _check_common(self, CHANNEL_MODELS)
        check_int(self.reduction, "reduction", minimum=1)

    @property
    def report_dir(self) -> Path:
        return Path(self.out).expanduser()


@dataclass
class GlimpseConfig:
    """``attnkit vision glimpse``: CNN vs soft spatial attention vs RAM on cluttered 60x60."""

    models: list[str] = field(default_factory=lambda: list(GLIMPSE_MODELS))
    seeds: int = 3
    seed: int = 0
    epochs: int = 3  # passes for the CNN and the soft-attention model
    ram_epochs: int = 6  # passes for RAM (several times cheaper per image than the CNN)
    train_size: int = 4000  # cluttered training images (from the training split)
    val_size: int = 2000  # cluttered validation images (from the validation split)
    test_size: int | None = 5000  # cluttered test images (the first of the 10,000)
    image_size: int = 60
    fragments: int = 4  # 8x8 clutter fragments per image
    batch_size: int = 64
    lr: float = 2e-3  # Adam peak learning rate of the CNNs, cosine decay
    ram_lr: float = 1e-3  # of RAM
    widths: list[int] = field(default_factory=lambda: [8, 16, 32])  # soft attention's trunk
    # the CNN baseline's own trunk: wider, so that it has at least as many parameters as each
    # attention model (13,726 against soft 11,906 and RAM 10,605 at the defaults)
    cnn_widths: list[int] = field(default_factory=lambda: [12, 24, 48])
    ram_hidden: int = 32  # RAM core width (the paper's 256: 256,781 parameters, 19x the CNN)
    glimpses: int = 8
    minutes: float = 10.0
    threads: int | None = None
    data_dir: str | None = None
    out: str = "runs/vision/glimpse"
    progress: bool = True

    def __post_init__(self) -> None:
        _check_common(self, GLIMPSE_MODELS)
        check_int(self.ram_epochs, "ram_epochs", minimum=1, maximum=10_000)
        check_int(self.image_size, "image_size", minimum=28, maximum=512)
        check_int(self.fragments, "fragments", minimum=0, maximum=100)
        self.cnn_widths = _check_widths(self.cnn_widths, "cnn_widths")
        check_int(self.ram_hidden, "ram_hidden", minimum=2, maximum=65_536)
        check_int(self.glimpses, "glimpses", minimum=1, maximum=100)
        self.ram_lr = check_float(self.ram_lr, "ram_lr", low=0.0, low_open=True, high=1.0)

    @property
    def report_dir(self) -> Path:
        return Path(self.out).expanduser()


#: part -> ``--quick`` overrides (seconds on 2 cores; two seeds so a spread exists)
PRESETS: dict[str, dict[str, Any]] = {
    "channel": {"seeds": 2, "epochs": 1, "batch_size": 32, "train_size": 512, "val_size": 256,
                "test_size": 512, "widths": [8, 16], "out": "runs/vision/channel-quick"},
    "glimpse": {"seeds": 2, "epochs": 1, "ram_epochs": 1, "batch_size": 32, "train_size": 256,
                "val_size": 128, "test_size": 256, "widths": [4, 8, 16],
                "cnn_widths": [8, 16, 32], "ram_hidden": 16,
                "glimpses": 3, "out": "runs/vision/glimpse-quick"},
}


def config_names(config_class: type) -> list[str]:
    """The field names of a config dataclass."""
    return [f.name for f in fields(config_class)]
