"""What a snail run is: the model kinds, the run config and its presets.

Pure data (no torch), so the command line builds its parser from it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnkit._validate import check_bool, check_choice, check_float, check_int

__all__ = ["MODEL_KINDS", "PRESETS", "MAX_MINUTES", "MAX_WAYS", "MAX_SHOTS", "SnailRunConfig",
           "preset"]

#: model kind -> what it is (the SNAIL layouts are attnkit.models.snail.LAYOUTS keys)
MODEL_KINDS: dict[str, str] = {
    "snail": "SNAIL: TC and causal attention blocks interleaved (Mishra et al. 2018)",
    "tc-only": "ablation: the TC blocks only",
    "attention-only": "ablation: the attention blocks only",
    "protonet": "prototypical network (Snell et al. 2017)",
}
MAX_MINUTES = 1e6  # about two years: any longer budget is a typo
MAX_WAYS = 100
MAX_SHOTS = 20

#: ``--quick``: tiny networks, 15 updates, small evaluation sets: seconds on two CPU cores
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"steps": 15, "episodes_per_step": 4, "queries": 2, "channels": 8,
              "width": 0.125, "valid_episodes": 16, "test_episodes": 40, "eval_points": 2,
              "minutes": 2.0},
}


@dataclass
class SnailRunConfig:
    """One ``attnkit snail`` run: every model in ``models`` at every (ways, shots)."""

    models: list[str] = field(default_factory=lambda: list(MODEL_KINDS))  # MODEL_KINDS keys
    ways: list[int] = field(default_factory=lambda: [5])  # N of each setting
    shots: list[int] = field(default_factory=lambda: [1])  # K of each setting (all pairs)
    steps: int = 600  # optimizer updates per model and setting: the equal budget
    minutes: float = 2.25  # wall-clock cap per model and setting (a safety net)
    episodes_per_step: int = 16  # training episodes per update
    queries: int = 4  # query images per episode (each its own SNAIL sequence)
    lr: float = 1e-3  # peak AdamW learning rate (warmup, then cosine decay over `steps`)
    warmup_steps: int = 50  # linear warmup updates
    channels: int = 64  # filters of each embedding CNN block (the paper's 64)
    width: float = 0.5  # SNAIL block sizes relative to the paper's Omniglot model
    rotations: bool = True  # 90/180/270-degree rotations as extra classes
    strength: float = 1.0  # distortion strength of the drawings (attnkit.data.glyphs)
    valid_episodes: int = 300  # validation episodes per evaluation (model selection)
    eval_points: int = 6  # validation evaluations over the run; the best one is tested
    test_episodes: int = 1000  # test episodes per model and setting
    seed: int = 0  # model init and training episodes
    threads: int | None = None  # torch CPU threads (None: torch's default)
    data_dir: str | None = None  # where unifont/unifont.hex is (None: the default data dir)
    out: str = "runs/snail"  # report directory
    progress: bool = True  # tqdm bars when stderr is a terminal

    def __post_init__(self) -> None:
        self.models = self._list("models", self.models, str)
        for kind in self.models:
            check_choice(kind, "models[]", list(MODEL_KINDS))
        self.ways = [check_int(v, "ways[]", minimum=2, maximum=MAX_WAYS)
                     for v in self._list("ways", self.ways, int)]
        self.shots = [check_int(v, "shots[]", minimum=1, maximum=MAX_SHOTS)
                      for v in self._list("shots", self.shots, int)]
        for name in ("steps", "episodes_per_step", "queries", "channels", "valid_episodes",
                     "eval_points", "test_episodes"):
            check_int(getattr(self, name), name, minimum=1)
        check_int(self.warmup_steps, "warmup_steps", minimum=0)
        self.minutes = check_float(self.minutes, "minutes", low=0.0, low_open=True,
                                   high=MAX_MINUTES)
        self.lr = check_float(self.lr, "lr", low=0.0, low_open=True, high=1.0)
        self.width = check_float(self.width, "width", low=0.0, low_open=True, high=4.0)
        self.strength = check_float(self.strength, "strength", low=0.0, high=3.0)
        check_bool(self.rotations, "rotations")
        check_bool(self.progress, "progress")
        check_int(self.seed, "seed", minimum=0, maximum=2**32 - 1)
        if self.threads is not None:
            check_int(self.threads, "threads", minimum=1, maximum=4096)
        for name in ("data_dir", "out"):
            value = getattr(self, name)
            if (value is not None or name == "out") and not isinstance(value, str):
                raise TypeError(f"{name}: expected a path string, got {type(value).__name__}")

    @staticmethod
    def _list(name: str, values: Any, kind: type) -> list:
        if isinstance(values, (str, int)) or not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"{name}: expected a non-empty list, got {values!r}")
        repeated = sorted({v for v in values if list(values).count(v) > 1})
        if repeated:
            raise ValueError(f"{name}: each may appear once, got {repeated} twice")
        return list(values)

    @property
    def report_dir(self) -> Path:
        return Path(self.out)

    @property
    def settings(self) -> list[tuple[int, int]]:
        """Every (ways, shots) pair, in order."""
        return [(n, k) for n in self.ways for k in self.shots]


def preset(name: str | None) -> dict[str, Any]:
    """The :class:`SnailRunConfig` fields of preset ``name`` (None: none, the defaults)."""
    if name is None:
        return {}
    return dict(PRESETS[check_choice(name, "preset", sorted(PRESETS))])
