"""Fashion-MNIST: 70,000 real 28x28 grayscale photos of clothing in 10 classes.

Xiao, Rasul & Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms", 2017, arXiv:1708.07747. Debian's ``dataset-fashion-mnist`` package
ships the four gzipped IDX files; ``attnkit data fetch --images`` puts them under
``<data_dir>/fashion-mnist/`` (the system folder ``/usr/share/datasets/fashion-mnist/`` is
used when present).

Splits: ``"test"`` is the official 10,000 test images. The official 60,000 training images
are divided once, by a fixed permutation (``split_seed``), into ``"train"`` (60,000 -
``val_size``) and ``"val"`` (``val_size``, 5,000 by default), so hyperparameters are chosen
without looking at the test images. ``"train-full"`` is all 60,000.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from attnkit.data.errors import DataError
from attnkit.data.images.idx import IdxError, read_idx
from attnkit.data.paths import default_data_dir, display_path

__all__ = ["CLASS_NAMES", "SPLITS", "SYSTEM_DIR", "FILES", "ImageSet", "find_fashion_mnist",
           "load_fashion_mnist", "load_raw"]

#: label -> class name, as in the dataset's documentation
CLASS_NAMES: tuple[str, ...] = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SPLITS = ("train", "val", "test", "train-full")
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
#: official part -> (images file stem, labels file stem, number of images)
FILES: dict[str, tuple[str, str, int]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}
IMAGE_SIZE = 28


@dataclass(frozen=True)
class ImageSet:
    """Images and their labels.

    Attributes:
        images: ``(N, H, W)`` uint8, 0 = background.
        labels: ``(N,)`` int64 class indices into :data:`CLASS_NAMES`.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"ImageSet: images must be (N, H, W) and labels (N,), got "
                             f"{self.images.shape} and {self.labels.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, count: int) -> ImageSet:
        """The first ``count`` images (all when ``count`` exceeds the size)."""
        return ImageSet(self.images[:count], self.labels[:count])


def _file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the four Fashion-MNIST files: ``<data_dir>/fashion-mnist`` (data_dir
    defaults to ``$ATTNKIT_DATA`` or ``~/.cache/attnkit``), else :data:`SYSTEM_DIR`.

    Raises:
        DataError: neither holds all four files; the message says how to fetch them.
    """
    base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    candidates = [base / "fashion-mnist", SYSTEM_DIR]
    for folder in candidates:
        if all(_file(folder, stem) for images, labels, _ in FILES.values()
               for stem in (images, labels)):
            return folder
    raise DataError(f"Fashion-MNIST not found in {display_path(candidates[0])} nor "
                    f"{candidates[1]}: run `attnkit data fetch --images` (it extracts Debian's "
                    f"dataset-fashion-mnist package)")


@lru_cache(maxsize=4)
def _load_part(folder: str, part: str) -> ImageSet:
    images_stem, labels_stem, count = FILES[part]
    root = Path(folder)
    images = read_idx(_file(root, images_stem) or root / images_stem, ndim=3, dtype=np.uint8)
    labels = read_idx(_file(root, labels_stem) or root / labels_stem, ndim=1, dtype=np.uint8)
    if images.shape != (count, IMAGE_SIZE, IMAGE_SIZE):
        raise IdxError(f"{display_path(root / images_stem)}: expected {count} images of "
                       f"{IMAGE_SIZE}x{IMAGE_SIZE}, got shape {images.shape}")
    if labels.shape != (count,):
        raise IdxError(f"{display_path(root / labels_stem)}: expected {count} labels, got "
                       f"{labels.shape[0]}")
    if labels.max() >= len(CLASS_NAMES):
        raise IdxError(f"{display_path(root / labels_stem)}: label {int(labels.max())} is "
                       f"outside 0..{len(CLASS_NAMES) - 1}")
    images.setflags(write=False)
    return ImageSet(images, labels.astype(np.int64))


def load_raw(part: str, data_dir: str | os.PathLike | None = None) -> ImageSet:
    """The official ``"train"`` (60,000) or ``"t10k"`` (10,000) part, unsplit, read-only."""
    if part not in FILES:
        raise ValueError(f"part must be one of {sorted(FILES)}, got {part!r}")
    return _load_part(str(find_fashion_mnist(data_dir)), part)


def load_fashion_mnist(split: str, data_dir: str | os.PathLike | None = None, *,
                       val_size: int = 5000, split_seed: int = 0) -> ImageSet:
    """One split of Fashion-MNIST (see the module docstring).

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` or ``"train-full"``.
        data_dir: the data directory (None: ``$ATTNKIT_DATA`` or ``~/.cache/attnkit``).
        val_size: images carved out of the 60,000 training images for validation.
        split_seed: the permutation that carves them (keep it fixed across runs).

    Returns:
        an :class:`ImageSet` with ``images (N, 28, 28)`` uint8 and ``labels (N,)`` int64.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if isinstance(val_size, bool) or not isinstance(val_size, int) or \
            not 0 < val_size < FILES["train"][2]:
        raise ValueError(f"val_size must be an int in [1, {FILES['train'][2] - 1}], got "
                         f"{val_size!r}")
    if split == "test":
        return load_raw("t10k", data_dir)
    full = load_raw("train", data_dir)
    if split == "train-full":
        return full
    order = np.random.default_rng(split_seed).permutation(len(full))
    chosen = np.sort(order[:val_size] if split == "val" else order[val_size:])
    return ImageSet(full.images[chosen], full.labels[chosen])
