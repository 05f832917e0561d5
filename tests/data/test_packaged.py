"""``attnkit data fetch --images/--glyphs`` and :mod:`attnkit.data.packaged` on .debs made here."""

from __future__ import annotations

import shutil
import tarfile

import pytest

from attnkit.data.errors import DataError
from attnkit.data.packaged import PACKAGED, fetch_packaged, packaged_dir

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")

HEX = b"0041:0000000018242442427E424242420000\n"


def one_line(text):
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def unifont_files(data=HEX, extra=None):
    files = {"/usr/share/unifont/unifont.hex": data,
             "/usr/share/unifont/unifont.bmp.gz": b"not wanted",
             "/usr/share/doc/unifont/copyright": b"not wanted"}
    files.update(extra or {})
    return files


@needs_dpkg
def test_fetch_takes_only_the_named_files(make_deb, tmp_path):
    deb = make_deb("unifont", "1:15.0", unifont_files())
    folder = fetch_packaged("glyphs", tmp_path / "data", deb=deb)
    assert folder == tmp_path / "data" / "unifont"
    assert sorted(p.name for p in folder.iterdir()) == ["unifont.hex"]
    assert (folder / "unifont.hex").read_bytes() == HEX
    assert packaged_dir("glyphs", tmp_path / "data") == folder
    # no work folder is left behind
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["unifont"]


@needs_dpkg
def test_refetch_replaces_and_a_failed_fetch_keeps_the_old_copy(make_deb, tmp_path):
    data = tmp_path / "data"
    fetch_packaged("glyphs", data, deb=make_deb("unifont", "1", unifont_files()))
    newer = HEX + b"0042:00000000" + b"0" * 24 + b"\n"
    shutil.rmtree(tmp_path / "tree")  # make_deb builds each package in tree/<name>
    fetch_packaged("glyphs", data, deb=make_deb("unifont", "2", unifont_files(newer)))
    assert (data / "unifont" / "unifont.hex").read_bytes() == newer
    shutil.rmtree(tmp_path / "tree")
    broken = make_deb("unifont", "3", {"/usr/share/unifont/other.txt": b"x"})
    with pytest.raises(DataError, match="holds no unifont.hex"):
        fetch_packaged("glyphs", data, deb=broken)
    assert (data / "unifont" / "unifont.hex").read_bytes() == newer


@needs_dpkg
def test_a_package_of_another_name_is_refused(make_deb, tmp_path):
    deb = make_deb("dataset-fashion-mnist", "1", unifont_files())
    with pytest.raises(DataError, match="expected 'unifont'"):
        fetch_packaged("glyphs", tmp_path / "data", deb=deb)
    assert not (tmp_path / "data" / "unifont").exists()


@needs_dpkg
def test_members_outside_the_wanted_paths_are_never_written(make_raw_deb, tarball, tmp_path):
    member = tarball.member
    deb = make_raw_deb("unifont", [
        member("./usr/share/unifont/unifont.hex", HEX),
        member("../../escape.hex", b"evil"),
        member("./usr/share/unifont/link", kind=tarfile.SYMTYPE, linkname="/etc/passwd"),
    ])
    folder = fetch_packaged("glyphs", tmp_path / "data", deb=deb)
    assert sorted(p.name for p in folder.iterdir()) == ["unifont.hex"]
    assert not any(p.name == "escape.hex" for p in tmp_path.rglob("*"))


@needs_dpkg
def test_an_oversized_member_is_an_error(make_deb, tmp_path, monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(PACKAGED, "glyphs", replace(PACKAGED["glyphs"], max_bytes=16))
    deb = make_deb("unifont", "1", unifont_files())
    with pytest.raises(DataError, match="limit"):
        fetch_packaged("glyphs", tmp_path / "data", deb=deb)


def test_missing_dataset_names_the_fetch_command(tmp_path, monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(PACKAGED, "images", replace(PACKAGED["images"],
                                                    system_dir=str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match="attnkit data fetch --images"):
        packaged_dir("images", tmp_path / "empty")


def test_unknown_name_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="name"):
        packaged_dir("sounds", tmp_path)


@needs_dpkg
def test_cli_fetch_glyphs_from_a_deb(attnkit_main, make_deb, tmp_path, capsys):
    deb = make_deb("unifont", "1", unifont_files())
    code = attnkit_main(["data", "fetch", "--glyphs", "--deb", str(deb), "--data-dir",
                         str(tmp_path / "data")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "data" / "unifont" / "unifont.hex").read_bytes() == HEX


@pytest.mark.parametrize("argv, needle", [
    (["--images", "--lang", "fr"], "not allowed with"),
    (["--glyphs", "--vocab-size", "300"], "--vocab-size applies to a corpus"),
    (["--images", "--keep-debs"], "--keep-debs applies to a corpus"),
    (["--lang", "fr", "--deb", "x.deb"], "--deb applies to --images or --glyphs"),
    (["--glyphs", "--deb", "missing.deb"], "is not a file"),
    ([], "one of the arguments --lang --images --glyphs is required"),
])
def test_cli_bad_combinations_exit_2(attnkit_main, tmp_path, capsys, argv, needle):
    code = attnkit_main(["data", "fetch", *argv, "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and one_line(err)
