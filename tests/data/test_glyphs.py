"""The Unifont reader (format checks naming the line), the alphabet split (disjoint
alphabets and glyphs), the distortion and the episode sampler (labels, layout, determinism),
on small .hex files the tests write."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pytest
import torch

from attnkit.data.errors import DataError
from attnkit.data.glyphs import (
    BLOCKS,
    IMAGE_SIZE,
    PAD,
    SPLITS,
    Episodes,
    GlyphFormatError,
    distort,
    find_unifont,
    load_glyph_sets,
    read_hex,
    split_blocks,
)


def write_hex(path, per_block: int = 3, seed: int = 0, extra: list[str] = ()):
    """A .hex file with ``per_block`` random glyphs (alternately 16 and 8 wide) in the first
    letters/symbols of every block of BLOCKS, plus ``extra`` lines."""
    rng = np.random.default_rng(seed)
    lines = []
    for _, first, last in BLOCKS:
        codes = [c for c in range(first, last + 1)
                 if unicodedata.category(chr(c))[0] in "LNPS"][:per_block]
        for k, code in enumerate(codes):
            width = 16 if k % 2 == 0 else 8
            bits = (rng.random((16, width)) < 0.35).astype(np.uint8)
            lines.append(f"{code:04X}:{np.packbits(bits, axis=1).tobytes().hex().upper()}")
    path.write_text("\n".join([*lines, *extra]) + "\n", encoding="ascii")
    return path


# ------------------------------------------------------------------ reader


def test_reader_decodes_both_widths_bit_by_bit(tmp_path):
    wide = "8000" + "0001" + "00" * 28  # row 0: leftmost pixel, row 1: rightmost pixel
    narrow = "80" + "01" + "00" * 14  # 8 wide: centred in 16 columns (4 blank each side)
    (tmp_path / "a.hex").write_text(f"0041:{wide}\n\n0042:{narrow}\n")
    first, second = read_hex(tmp_path / "a.hex")
    assert first.code == 0x41 and second.code == 0x42
    assert first.bitmap.shape == second.bitmap.shape == (16, 16)
    assert first.bitmap[0, 0] == 1 and first.bitmap[1, 15] == 1 and first.bitmap.sum() == 2
    assert second.bitmap[0, 4] == 1 and second.bitmap[1, 11] == 1 and second.bitmap.sum() == 2


@pytest.mark.parametrize("line, reason", [
    ("0041:" + "0" * 40, "40 hex digits, expected 32 or 64"),
    ("0041:" + "0" * 63 + "G", "line 2 is not CODEPOINT:HEX"),
    ("0041" + "0" * 64, "line 2 is not CODEPOINT:HEX"),
    ("41:" + "0" * 32, "line 2 is not CODEPOINT:HEX"),
    ("0040:" + "0" * 32, "line 2 repeats U+0040"),
])
def test_reader_names_the_bad_line(tmp_path, line, reason):
    path = tmp_path / "bad.hex"
    path.write_text("0040:" + "0" * 32 + "\n" + line + "\n")
    with pytest.raises(GlyphFormatError, match=re.escape(reason)) as caught:
        read_hex(path)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, DataError)


def test_corrupt_line_inside_a_real_sized_file_is_reported_with_its_number(tmp_path):
    path = write_hex(tmp_path / "u.hex", per_block=2, extra=["FFFD:" + "F" * 31])
    count = len(path.read_text().splitlines())
    with pytest.raises(GlyphFormatError, match=f"line {count} .* 31 hex digits"):
        load_glyph_sets(path)


def test_find_unifont_prefers_the_data_dir_and_explains_a_missing_file(tmp_path, monkeypatch):
    from dataclasses import replace

    from attnkit.data.packaged import PACKAGED

    monkeypatch.setitem(PACKAGED, "glyphs",
                        replace(PACKAGED["glyphs"], system_dir=str(tmp_path / "none")))
    with pytest.raises(DataError, match="attnkit data fetch --glyphs"):
        find_unifont(tmp_path)
    (tmp_path / "unifont").mkdir()
    write_hex(tmp_path / "unifont" / "unifont.hex", per_block=1)
    assert find_unifont(tmp_path) == tmp_path / "unifont" / "unifont.hex"


# ------------------------------------------------------------------ alphabets and splits


def test_alphabets_are_disjoint_and_cover_the_block_table():
    alphabets = split_blocks()
    names = [set(alphabets[s]) for s in SPLITS]
    assert all(names) and not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert set().union(*names) == {name for name, _, _ in BLOCKS}
    for _, first, last in BLOCKS:  # ranges are well formed and never overlap
        assert first <= last
    spans = sorted((first, last) for _, first, last in BLOCKS)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_glyph_sets_follow_the_split_skip_blank_controls_and_duplicates(tmp_path):
    path = write_hex(tmp_path / "u.hex", per_block=3)
    first_bitmap = path.read_text().splitlines()[0].split(":")[1]  # U+0021's
    extra = ["0001:" + "F" * 32,  # a control character: skipped whatever its bitmap
             "22FF:" + "0" * 60 + "000F",  # 4 pixels of ink: too little
             "007E:" + first_bitmap]  # the same bitmap as U+0021, kept before it
    path = write_hex(tmp_path / "u.hex", per_block=3, extra=extra)
    sets = load_glyph_sets(path)
    alphabets = split_blocks()
    codes = {s: set(g.codes) for s, g in sets.items()}
    assert not (codes["train"] & codes["valid"] or codes["train"] & codes["test"]
                or codes["valid"] & codes["test"])
    for split, glyphs in sets.items():
        assert set(glyphs.alphabets) <= set(alphabets[split])
        assert glyphs.images.shape == (len(glyphs), 1, IMAGE_SIZE, IMAGE_SIZE)
        assert glyphs.images[:, :, :PAD].sum() == 0  # the padding is blank
    assert 0x0021 in codes["train"] and 0x2200 in codes["test"]
    assert 0x0001 not in codes["train"] and 0x22FF not in codes["test"]
    assert 0x007E not in codes["train"]  # the same bitmap as a glyph kept before it
    every = torch.cat([g.images for g in sets.values()]).flatten(1)
    assert len({tuple(row.tolist()) for row in every}) == len(every)


# ------------------------------------------------------------------ drawings and episodes


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    return load_glyph_sets(write_hex(tmp_path_factory.mktemp("hex") / "u.hex", per_block=4))


def test_distortion_is_seeded_and_keeps_images_in_range(sets):
    images = sets["train"].images[:6]
    first = distort(images, torch.Generator().manual_seed(3))
    again = distort(images, torch.Generator().manual_seed(3))
    other = distort(images, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == images.shape and first.min() >= 0 and first.max() <= 1
    assert not torch.equal(first, images)
    assert torch.equal(distort(images, torch.Generator(), strength=0.0), images)


def test_episode_layout_and_labels(sets):
    episodes = Episodes(sets["test"], ways=5, shots=3, queries=7, seed=11)
    e = episodes.episode(4)
    assert e["support"].shape == (15, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert e["query"].shape == (7, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert sorted(e["support_labels"].tolist()) == sorted(list(range(5)) * 3)
    assert ((e["query_labels"] >= 0) & (e["query_labels"] < 5)).all()
    assert len(set(e["classes"].tolist())) == 5
    assert int(e["classes"].max()) < 4 * len(sets["test"])
    again = episodes.episode(4)
    assert all(torch.equal(e[key], again[key]) for key in e)
    assert not torch.equal(e["support"], episodes.episode(5)["support"])
    batch = episodes.batch([0, 1, 2])
    assert batch["support"].shape == (3, 15, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert batch["query_labels"].shape == (3, 7)


def test_query_is_a_drawing_of_its_labelled_class(sets):
    """Without distortion, a query equals the support image that carries its label."""
    episodes = Episodes(sets["train"], ways=4, shots=1, queries=6, seed=2, strength=0.0)
    for index in range(5):
        e = episodes.episode(index)
        for image, label in zip(e["query"], e["query_labels"].tolist(), strict=True):
            matches = [int(j) for j, s in zip(e["support_labels"].tolist(), e["support"],
                                              strict=True) if torch.equal(s, image)]
            assert label in matches


def test_rotations_are_extra_classes(sets):
    with_rot = Episodes(sets["valid"], ways=2, shots=1, strength=0.0)
    without = Episodes(sets["valid"], ways=2, shots=1, strength=0.0, rotations=False)
    assert with_rot.num_classes == 4 * without.num_classes
    images = with_rot._class_images(torch.tensor([4, 5, 6, 7]))  # glyph 1, turned 0..3 times
    for turns in range(4):
        assert torch.equal(images[turns], torch.rot90(images[0], turns, dims=(-2, -1)))


def test_episode_arguments_are_checked(sets):
    with pytest.raises(ValueError, match="ways"):
        Episodes(sets["valid"], ways=0, shots=1)
    with pytest.raises(ValueError, match="shots"):
        Episodes(sets["valid"], ways=2, shots=True)
    with pytest.raises(ValueError, match="exceeds"):
        Episodes(sets["valid"], ways=10_000, shots=1)
