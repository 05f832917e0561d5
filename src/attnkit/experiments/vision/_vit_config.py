"""Settings of ``attnkit vision vit``: a typed config and its ``--quick`` preset."""

from __future__ import annotations

from dataclasses import dataclass

from attnkit._validate import check_float, check_int
from attnkit.interp.rollout import HEAD_FUSIONS

__all__ = ["VitRunConfig", "PRESETS", "preset", "MAX_MINUTES"]

MAX_MINUTES = 24 * 60.0


@dataclass
class VitRunConfig:
    """One ``attnkit vision vit`` run: a small ViT per seed on Fashion-MNIST."""

    seeds: tuple[int, ...] = (0, 1, 2)   # one model per seed
    train_images: int = 20000     # first images of the train split (55,000 after validation)
    epochs: int = 3               # passes over them
    batch_size: int = 128         # images per update
    lr: float = 4e-3              # AdamW peak (linear warm-up, cosine decay); lr_sweep.json
    weight_decay: float = 0.05    # AdamW
    patch_size: int = 4           # 7 x 7 patches of 4 x 4 pixels
    d_model: int = 64             # token width
    num_layers: int = 3           # encoder layers
    num_heads: int = 4            # heads per layer
    ffn_dim: int = 128            # MLP hidden width
    residual: float = 0.5         # identity weight in the rollout (the paper's 0.5)
    head_fusion: str = "mean"     # rollout's fusion of heads
    maps: int = 8                 # test images drawn with their rollout maps
    eval_images: int | None = None  # score only the first N val/test images (None: all)
    minutes: float = 10.0         # wall-clock cap of all training together
    threads: int | None = None    # torch CPU threads (None: torch's default)
    data_dir: str | None = None   # Fashion-MNIST cache (None: $ATTNKIT_DATA or ~/.cache)
    out: str = "runs/vision-vit"  # report directory
    progress: bool = True         # print progress lines

    def __post_init__(self) -> None:
        who = "VitRunConfig"
        if not self.seeds:
            raise ValueError(f"{who}: seeds must hold at least one seed")
        for seed in self.seeds:
            check_int(seed, "seeds[]", minimum=0, owner=who)
        for name in ("train_images", "epochs", "batch_size", "patch_size", "d_model",
                     "num_layers", "num_heads", "ffn_dim"):
            check_int(getattr(self, name), name, minimum=1, owner=who)
        check_int(self.maps, "maps", minimum=0, owner=who)
        if self.eval_images is not None:
            check_int(self.eval_images, "eval_images", minimum=1, owner=who)
        self.lr = check_float(self.lr, "lr", low=0.0, low_open=True, owner=who)
        self.weight_decay = check_float(self.weight_decay, "weight_decay", low=0.0, owner=who)
        self.residual = check_float(self.residual, "residual", low=0.0, high=1.0, owner=who)
        if self.head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"{who}: head_fusion must be one of {HEAD_FUSIONS}, got "
                             f"{self.head_fusion!r}")
        self.minutes = check_float(self.minutes, "minutes", low=0.0, high=MAX_MINUTES,
                                   low_open=True, owner=who)


PRESETS: dict[str, dict] = {
    "quick": {"seeds": (0,), "train_images": 512, "epochs": 1, "num_layers": 2, "maps": 4,
              "eval_images": 500, "minutes": 2.0, "out": "runs/vision-vit-quick"},
}


def preset(name: str | None) -> dict:
    """The keyword values of preset ``name`` (None: no changes)."""
    if name is None:
        return {}
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return dict(PRESETS[name])
