"""Safe extraction from tar streams: names, links, special files, size caps."""

from __future__ import annotations

import io
import tarfile

import pytest

from attnkit.data.archive import (
    MAX_REFUSED_RECORDED,
    ArchiveError,
    extract_members,
    member_path,
)


@pytest.mark.parametrize("name, expected", [
    ("./usr/share/x.mo", "usr/share/x.mo"), ("usr//share/./x.mo", "usr/share/x.mo"),
    ("x.mo", "x.mo"),
])
def test_member_path_cleans_relative_names(name, expected):
    assert member_path(name).as_posix() == expected


@pytest.mark.parametrize("name, reason", [
    ("/etc/passwd", "absolute path"), ("//etc/x", "absolute path"),
    ("../x.mo", "'..' in the path"), ("a/../../x.mo", "'..' in the path"),
    ("./", "empty name"), ("", "empty name"), ("a\x00b", "NUL byte"),
])
def test_member_path_refuses_unsafe_names(name, reason):
    with pytest.raises(ValueError, match=reason):
        member_path(name)


def extract(tmp_path, tarball, members, **kwargs):
    target = tmp_path / "target"
    target.mkdir(exist_ok=True)
    stream = io.BytesIO(tarball.build(members))
    result = extract_members(stream, target, lambda p: p.name.endswith(".mo"),
                             source="test.tar", **kwargs)
    assert stream.read() == b""  # read to the end
    return target, result


def test_only_wanted_regular_files_are_written(tmp_path, tarball):
    target, (files, size, refused) = extract(tmp_path, tarball, [
        tarball.member("./a/x.mo", b"12345"), tarball.member("./a/readme", b"no"),
        tarball.member("./a", kind=tarfile.DIRTYPE)])
    assert (files, size, refused) == (1, 5, [])
    assert (target / "a" / "x.mo").read_bytes() == b"12345"
    assert not (target / "a" / "readme").exists()


def test_links_and_special_files_are_refused(tmp_path, tarball):
    target, (files, _, refused) = extract(tmp_path, tarball, [
        tarball.member("s.mo", kind=tarfile.SYMTYPE, linkname="/etc/shadow"),
        tarball.member("h.mo", kind=tarfile.LNKTYPE, linkname="s.mo"),
        tarball.member("c.mo", kind=tarfile.CHRTYPE),
        tarball.member("f.mo", kind=tarfile.FIFOTYPE)])
    assert files == 0 and list(target.iterdir()) == []
    assert [name for name, _ in refused] == ["s.mo", "h.mo", "c.mo", "f.mo"]


def test_a_member_never_writes_through_an_existing_link(tmp_path, tarball):
    """A target that already holds a link (made by someone else) is not followed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "sub").symlink_to(outside)
    (target / "leaf.mo").symlink_to(outside / "leaf.mo")
    _, (files, _, refused) = extract(tmp_path, tarball, [
        tarball.member("sub/x.mo", b"x"), tarball.member("leaf.mo", b"y")])
    assert files == 0 and list(outside.iterdir()) == []
    assert refused[0] == ("sub/x.mo", "its folder resolves outside the target")
    assert refused[1][0] == "leaf.mo" and "clashes" in refused[1][1]


def test_clashing_members_are_refused(tmp_path, tarball):
    _, (files, _, refused) = extract(tmp_path, tarball, [
        tarball.member("a.mo", b"x"), tarball.member("a.mo/b.mo", b"y")])
    assert files == 1 and refused[0][0] == "a.mo/b.mo" and "clashes" in refused[0][1]


def test_refusals_are_recorded_up_to_a_limit_then_counted(tmp_path, tarball):
    members = [tarball.member(f"/abs/{i}.mo", b"x") for i in range(MAX_REFUSED_RECORDED + 5)]
    _, (_, _, refused) = extract(tmp_path, tarball, members)
    assert len(refused) == MAX_REFUSED_RECORDED + 1
    assert refused[-1] == ("...", "5 more members refused")


def test_size_caps(tmp_path, tarball):
    with pytest.raises(ArchiveError, match="10 bytes, over the 9-byte limit for one member"):
        extract(tmp_path, tarball, [tarball.member("a.mo", b"x" * 10)], max_member_bytes=9)
    with pytest.raises(ArchiveError, match="pass the 15-byte limit for the extraction"):
        extract(tmp_path, tarball, [tarball.member("a.mo", b"x" * 10),
                                    tarball.member("b.mo", b"x" * 10)], max_total_bytes=15)
    with pytest.raises(ArchiveError, match="15-byte limit"):
        extract(tmp_path, tarball, [tarball.member("c.mo", b"x" * 10)], max_total_bytes=15,
                already_written=6)


def test_garbage_is_an_archive_error(tmp_path):
    with pytest.raises(ArchiveError, match="unreadable archive contents"):
        extract_members(io.BytesIO(b"not a tar" * 100), tmp_path, lambda p: True,
                        source="junk.tar")
