"""Few-shot classification episodes from GNU Unifont's glyph bitmaps (``unifont.hex``).

Unifont (Debian package ``unifont``) draws every Basic Multilingual Plane code point as a
16-row bitmap, 8 or 16 pixels wide. Here it stands in for Omniglot (Lake et al. 2015): a
**Unicode block is an alphabet** and **a glyph is a character class**; training,
validation and test alphabets are disjoint. The usual Omniglot setup of Vinyals et al.
(2016, arXiv:1606.04080), followed by SNAIL (Mishra et al. 2018, arXiv:1707.03141), is kept:
N-way K-shot episodes whose classes are drawn from all characters of a split, and the
rotations by 90, 180 and 270 degrees as extra classes.

Deviations from Omniglot, forced by the data:

* Omniglot has 20 drawings of each character by different people; Unifont has **one**
  bitmap per glyph. The drawings of a class are made here by a random affine distortion of
  that bitmap (rotation, scale, shear, shift) plus a few flipped pixels, seeded, so a query
  is never a pixel copy of its support image.
* Blocks are not in ``unifont.hex``: :data:`BLOCKS` lists the ones used, with their ranges
  from the Unicode Character Database's ``Blocks.txt``. Alphabets go to the splits by their
  position in that table (every fifth block to validation, the one after it to test).

Kept glyphs: a code point inside a listed block whose Unicode general category (Python's
:mod:`unicodedata`) is a letter, number, punctuation or symbol (controls, format
characters, combining marks and separators are skipped), with at least
:data:`MIN_INK` set pixels; a bitmap equal to one already kept (in code point order) is
skipped too, so no two classes look the same.

Shapes: images are ``(1, S, S)`` float32 in [0, 1] with ``S = 16 + 2 * PAD``; an 8-pixel
wide glyph is centred in 16 columns.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attnkit.data.errors import DataError

__all__ = ["BLOCKS", "SPLITS", "PAD", "IMAGE_SIZE", "MIN_INK", "GlyphFormatError", "Glyph",
           "GlyphSet", "Episodes", "find_unifont", "read_hex", "load_glyph_sets",
           "split_blocks", "distort"]

#: (name, first, last) code point of the Unicode blocks used as alphabets (Blocks.txt);
#: CJK ideographs, Hangul syllables and Yi are left out (thousands of classes each)
BLOCKS: tuple[tuple[str, int, int], ...] = (
    ("Basic Latin", 0x0000, 0x007F),
    ("Latin-1 Supplement", 0x0080, 0x00FF),
    ("Latin Extended-A", 0x0100, 0x017F),
    ("Latin Extended-B", 0x0180, 0x024F),
    ("IPA Extensions", 0x0250, 0x02AF),
    ("Greek and Coptic", 0x0370, 0x03FF),
    ("Cyrillic", 0x0400, 0x04FF),
    ("Armenian", 0x0530, 0x058F),
    ("Hebrew", 0x0590, 0x05FF),
    ("Arabic", 0x0600, 0x06FF),
    ("Syriac", 0x0700, 0x074F),
    ("Thaana", 0x0780, 0x07BF),
    ("NKo", 0x07C0, 0x07FF),
    ("Samaritan", 0x0800, 0x083F),
    ("Devanagari", 0x0900, 0x097F),
    ("Bengali", 0x0980, 0x09FF),
    ("Gurmukhi", 0x0A00, 0x0A7F),
    ("Gujarati", 0x0A80, 0x0AFF),
    ("Oriya", 0x0B00, 0x0B7F),
    ("Tamil", 0x0B80, 0x0BFF),
    ("Telugu", 0x0C00, 0x0C7F),
    ("Kannada", 0x0C80, 0x0CFF),
    ("Malayalam", 0x0D00, 0x0D7F),
    ("Sinhala", 0x0D80, 0x0DFF),
    ("Thai", 0x0E00, 0x0E7F),
    ("Lao", 0x0E80, 0x0EFF),
    ("Tibetan", 0x0F00, 0x0FFF),
    ("Myanmar", 0x1000, 0x109F),
    ("Georgian", 0x10A0, 0x10FF),
    ("Ethiopic", 0x1200, 0x137F),
    ("Cherokee", 0x13A0, 0x13FF),
    ("Unified Canadian Aboriginal Syllabics", 0x1400, 0x167F),
    ("Ogham", 0x1680, 0x169F),
    ("Runic", 0x16A0, 0x16FF),
    ("Khmer", 0x1780, 0x17FF),
    ("Mongolian", 0x1800, 0x18AF),
    ("Limbu", 0x1900, 0x194F),
    ("Tai Le", 0x1950, 0x197F),
    ("New Tai Lue", 0x1980, 0x19DF),
    ("Balinese", 0x1B00, 0x1B7F),
    ("Sundanese", 0x1B80, 0x1BBF),
    ("Lepcha", 0x1C00, 0x1C4F),
    ("Ol Chiki", 0x1C50, 0x1C7F),
    ("Arrows", 0x2190, 0x21FF),
    ("Mathematical Operators", 0x2200, 0x22FF),
    ("Miscellaneous Technical", 0x2300, 0x23FF),
    ("Geometric Shapes", 0x25A0, 0x25FF),
    ("Dingbats", 0x2700, 0x27BF),
    ("Glagolitic", 0x2C00, 0x2C5F),
    ("Coptic", 0x2C80, 0x2CFF),
    ("Tifinagh", 0x2D30, 0x2D7F),
    ("Hiragana", 0x3040, 0x309F),
    ("Katakana", 0x30A0, 0x30FF),
    ("Bopomofo", 0x3100, 0x312F),
    ("Vai", 0xA500, 0xA63F),
    ("Bamum", 0xA6A0, 0xA6FF),
    ("Phags-pa", 0xA840, 0xA87F),
    ("Saurashtra", 0xA880, 0xA8DF),
    ("Kayah Li", 0xA900, 0xA92F),
    ("Javanese", 0xA980, 0xA9DF),
    ("Cham", 0xAA00, 0xAA5F),
)
SPLITS = ("train", "valid", "test")
PAD = 2  # blank pixels around the 16 x 16 glyph, room for the distortion's shifts
IMAGE_SIZE = 16 + 2 * PAD
MIN_INK = 6  # glyphs with fewer set pixels (dots, blanks) are skipped
_KEPT_CATEGORIES = ("L", "N", "P", "S")  # first letter of the Unicode general category
_LINE = re.compile(r"([0-9A-Fa-f]{4,6}):([0-9A-Fa-f]*)")


class GlyphFormatError(DataError, ValueError):
    """A line of a ``.hex`` file that is not ``CODEPOINT:BITMAP``."""


@dataclass(frozen=True)
class Glyph:
    """One glyph: ``code`` point and ``bitmap`` ``(16, 16)`` uint8 0/1 (8-wide glyphs
    centred)."""

    code: int
    bitmap: np.ndarray


def find_unifont(data_dir: str | os.PathLike | None = None) -> Path:
    """``<data_dir>/unifont/unifont.hex`` (default data dir: ``$ATTNKIT_DATA`` or
    ``~/.cache/attnkit``), else the installed package's ``/usr/share/unifont/unifont.hex``
    (:func:`attnkit.data.packaged.packaged_dir`).

    Raises:
        DataError: neither exists (says how to fetch it).
    """
    from attnkit.data.packaged import packaged_dir

    return packaged_dir("glyphs", data_dir) / "unifont.hex"


def _bitmap(digits: str) -> np.ndarray:
    """``(16, 16)`` 0/1 bitmap of 32 (8 x 16) or 64 (16 x 16) hex digits."""
    width = len(digits) // 4  # 16 rows of width/4 hex digits each
    raw = np.frombuffer(bytes.fromhex(digits), dtype=np.uint8).reshape(16, width // 8)
    bits = np.unpackbits(raw, axis=1)  # (16, width), most significant bit leftmost
    if width == 8:
        bits = np.pad(bits, ((0, 0), (4, 4)))
    return bits


def read_hex(path: str | os.PathLike) -> list[Glyph]:
    """Every glyph of a ``.hex`` file, in file order.

    Each line must be ``XXXX:HEX``: a code point of 4 to 6 hex digits, then 32 (8 x 16) or
    64 (16 x 16) hex digits, one row after the other. Empty lines are skipped.

    Raises:
        GlyphFormatError: a malformed line (its 1-based number and what is wrong) or a code
            point seen twice.
    """
    glyphs, seen = [], set()
    with open(path, encoding="ascii", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            match = _LINE.fullmatch(text)
            if match is None:
                raise GlyphFormatError(f"{path}: line {number} is not CODEPOINT:HEX with a "
                                       f"4-6 digit hex code point: {text[:40]!r}")
            code, digits = int(match.group(1), 16), match.group(2)
            if len(digits) not in (32, 64):
                raise GlyphFormatError(f"{path}: line {number} (U+{code:04X}) has "
                                       f"{len(digits)} hex digits, expected 32 or 64")
            if code in seen:
                raise GlyphFormatError(f"{path}: line {number} repeats U+{code:04X}")
            seen.add(code)
            glyphs.append(Glyph(code, _bitmap(digits)))
    return glyphs


def _block_of(code: int) -> int | None:
    for index, (_, first, last) in enumerate(BLOCKS):
        if first <= code <= last:
            return index
    return None


def split_blocks() -> dict[str, list[str]]:
    """The alphabets (block names) of each split: block ``i`` of :data:`BLOCKS` goes to
    validation when ``i % 5 == 3``, to test when ``i % 5 == 4``, else to training."""
    out: dict[str, list[str]] = {split: [] for split in SPLITS}
    for index, (name, _, _) in enumerate(BLOCKS):
        out[_split_of(index)].append(name)
    return out


def _split_of(index: int) -> str:
    return SPLITS[{3: 1, 4: 2}.get(index % 5, 0)]


@dataclass
class GlyphSet:
    """The kept glyphs of one split: ``images`` ``(C, 1, S, S)`` float32 (padded, not
    distorted), ``codes`` and ``alphabets`` (block name) per glyph."""

    split: str
    images: torch.Tensor
    codes: list[int]
    alphabets: list[str]

    def __len__(self) -> int:
        return len(self.codes)


def load_glyph_sets(path: str | os.PathLike) -> dict[str, GlyphSet]:
    """The kept glyphs of every split (keys :data:`SPLITS`) from the ``.hex`` file at
    ``path``, read once.

    Raises:
        GlyphFormatError: a malformed line.
        DataError: a split without any glyph.
    """
    owner = {name: _split_of(i) for i, (name, _, _) in enumerate(BLOCKS)}
    kept: dict[str, tuple[list, list, list]] = {split: ([], [], []) for split in SPLITS}
    seen: set[bytes] = set()
    for glyph in sorted(read_hex(path), key=lambda g: g.code):
        block = _block_of(glyph.code)
        if block is None:
            continue
        category = unicodedata.category(chr(glyph.code))
        if category[0] not in _KEPT_CATEGORIES or int(glyph.bitmap.sum()) < MIN_INK:
            continue
        digest = hashlib.sha1(glyph.bitmap.tobytes()).digest()
        if digest in seen:  # dedup over all splits: no class appears in two splits
            continue
        seen.add(digest)
        name = BLOCKS[block][0]
        bitmaps, codes, alphabets = kept[owner[name]]
        bitmaps.append(glyph.bitmap)
        codes.append(glyph.code)
        alphabets.append(name)
    out = {}
    for split, (bitmaps, codes, alphabets) in kept.items():
        if not bitmaps:
            raise DataError(f"{path}: no glyph of the {split} alphabets")
        images = torch.from_numpy(np.stack(bitmaps)).float()[:, None]  # (C, 1, 16, 16)
        out[split] = GlyphSet(split, F.pad(images, (PAD, PAD, PAD, PAD)), codes, alphabets)
    return out


def distort(images: torch.Tensor, generator: torch.Generator, *, strength: float = 1.0
            ) -> torch.Tensor:
    """A random affine distortion of each image plus flipped pixels: a new "drawing".

    Args:
        images: ``(M, 1, S, S)`` float in [0, 1].
        generator: the random source (CPU).
        strength: scales every distortion range (0: the images unchanged).

    Returns:
        ``(M, 1, S, S)`` float in [0, 1]: rotation up to +-10 degrees, scale 0.9-1.1, shear
        up to +-0.15, shift up to +-1.5 pixels, then 1% of the pixels flipped.
    """
    if strength == 0:
        return images
    count, size = images.shape[0], images.shape[-1]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, generator=generator)

    angle = uniform(-10.0, 10.0) * strength * torch.pi / 180.0
    scale = 1.0 + uniform(-0.1, 0.1) * strength
    shear = uniform(-0.15, 0.15) * strength
    shift = torch.stack([uniform(-1.5, 1.5), uniform(-1.5, 1.5)], 1) * strength * 2 / size
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin + shear, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)  # (M, 2, 3)
    theta[:, :, :2] /= scale[:, None, None]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid.to(images.dtype), align_corners=False)
    flips = torch.rand(out.shape, generator=generator) < 0.01 * strength
    return torch.where(flips, 1.0 - out, out)


class Episodes:
    """N-way K-shot episodes of one :class:`GlyphSet`, deterministic in ``(seed, index)``.

    The classes are the glyphs, times 4 with ``rotations`` (class ``c * 4 + r`` is glyph
    ``c`` turned by ``r * 90`` degrees). An episode draws ``ways`` classes among all classes
    of the split, assigns them the labels ``0..ways-1`` in random order, and ``shots``
    distorted drawings of each for the support set, shuffled, and ``queries`` query drawings
    whose labels are drawn uniformly from the ``ways`` (each query a fresh drawing).

    Args:
        glyphs: the split's glyphs.
        ways, shots, queries: N, K and the queries per episode.
        rotations: add the 90/180/270-degree rotations as classes.
        seed: episode ``i`` depends only on ``(seed, i)``.
        strength: distortion strength (see :func:`distort`).
    """

    def __init__(self, glyphs: GlyphSet, *, ways: int, shots: int, queries: int = 1,
                 rotations: bool = True, seed: int = 0, strength: float = 1.0) -> None:
        for name, value in (("ways", ways), ("shots", shots), ("queries", queries)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.glyphs, self.ways, self.shots, self.queries = glyphs, ways, shots, queries
        self.rotations, self.seed, self.strength = rotations, seed, strength
        self.num_classes = len(glyphs) * (4 if rotations else 1)
        if ways > self.num_classes:
            raise ValueError(f"ways ({ways}) exceeds the {self.num_classes} classes of the "
                             f"{glyphs.split} split")

    def _class_images(self, classes: torch.Tensor) -> torch.Tensor:
        """``(M, 1, S, S)`` undistorted images of the class ids ``classes (M,)``."""
        per = 4 if self.rotations else 1
        base = self.glyphs.images[classes // per]
        turns = classes % per
        out = base.clone()
        for quarter in range(1, per):
            rows = turns == quarter
            if rows.any():
                out[rows] = torch.rot90(base[rows], quarter, dims=(-2, -1))
        return out

    def episode(self, index: int) -> dict[str, torch.Tensor]:
        """Episode ``index``: ``support`` ``(N*K, 1, S, S)``, ``support_labels`` ``(N*K,)``
        int64, ``query`` ``(Q, 1, S, S)``, ``query_labels`` ``(Q,)``, ``classes`` ``(N,)``
        (the class id of label ``j`` at position ``j``)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(index))
        classes = torch.randperm(self.num_classes, generator=generator)[:self.ways]
        support_labels = torch.arange(self.ways).repeat_interleave(self.shots)
        support_labels = support_labels[torch.randperm(len(support_labels),
                                                       generator=generator)]
        query_labels = torch.randint(self.ways, (self.queries,), generator=generator)
        labels = torch.cat([support_labels, query_labels])
        images = distort(self._class_images(classes[labels]), generator,
                         strength=self.strength)
        cut = len(support_labels)
        return {"support": images[:cut], "support_labels": support_labels,
                "query": images[cut:], "query_labels": query_labels, "classes": classes}

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Episodes ``indices`` stacked: every tensor gains a leading ``(E,)`` dim."""
        episodes = [self.episode(i) for i in indices]
        return {key: torch.stack([e[key] for e in episodes]) for key in episodes[0]}
