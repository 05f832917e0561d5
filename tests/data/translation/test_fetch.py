"""The Debian catalog fetch, without network or apt: package list and .deb extraction."""

from __future__ import annotations

import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from attnkit.data.archive import ArchiveError
from attnkit.data.translation import fetch as fetch_module
from attnkit.data.translation.fetch import (
    DEBIAN_PACKAGES,
    FetchError,
    extract_debs,
    fetch_debian,
    packages_for,
)
from attnkit.data.translation.gettext import write_mo

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
CATALOG = [(None, "Open the selected file", None, ("Ouvrir le fichier sélectionné",))]


def test_package_list():
    assert len(DEBIAN_PACKAGES) == 45 == len(set(DEBIAN_PACKAGES))
    fr = packages_for("fr")
    assert "libreoffice-l10n-fr" in fr and "libreoffice-l10n-de" not in fr
    assert len(fr) == 44 and "git" in packages_for("de")
    assert packages_for("de", ["a-l10n-fr", "b"]) == ["b"]
    with pytest.raises(ValueError, match="lang"):
        packages_for("es")


def test_fetch_without_apt_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(fetch_module.shutil, "which", lambda name: None)
    with pytest.raises(FetchError, match="needs apt-get") as info:
        fetch_debian("fr", dest=tmp_path)
    assert isinstance(info.value, RuntimeError)


@needs_dpkg
def test_extract_debs_keeps_only_the_language(tmp_path, make_deb):
    data = write_mo(tmp_path / "c.mo", CATALOG).read_bytes()
    deb = make_deb("demo-l10n", "1:2.0-1", {
        "/usr/share/locale/fr/LC_MESSAGES/demo.mo": data,
        "/usr/share/locale/de/LC_MESSAGES/demo.mo": data,
        "/usr/share/locale/fr/LC_TIME/demo.mo": data,
        "/usr/share/doc/demo/README": b"not a catalog"})
    roots = extract_debs([deb], tmp_path / "out", "fr")
    assert [(r.package, r.version, r.refused) for r in roots] == [("demo-l10n", "1:2.0-1", ())]
    files = sorted(p.relative_to(roots[0].path).as_posix()
                   for p in Path(roots[0].path).rglob("*") if p.is_file())
    assert files == ["usr/share/locale/fr/LC_MESSAGES/demo.mo"]
    assert (Path(roots[0].path) / files[0]).read_bytes() == data
    with pytest.raises(FetchError, match="no .deb"):
        extract_debs([], tmp_path / "out", "fr")
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"not a deb")
    with pytest.raises(FetchError, match="dpkg-deb -f"):
        extract_debs([bad], tmp_path / "out2", "fr")


@needs_dpkg
def test_members_outside_the_target_are_refused_and_recorded(tmp_path, make_raw_deb,
                                                             tarball):
    outside = tmp_path / "outside"
    make_raw_deb("evil", [
        tarball.member(f"{outside}/fr/LC_MESSAGES/abs.mo", b"x"),
        tarball.member(f"../../../../../../../../..{outside}/fr/LC_MESSAGES/up.mo", b"x"),
        tarball.member("./usr/share/locale/fr/LC_MESSAGES/sym.mo", kind=tarfile.SYMTYPE,
                       linkname=f"{outside}/target.mo"),
        tarball.member("./usr/share/locale/fr/LC_MESSAGES/hard.mo", kind=tarfile.LNKTYPE,
                       linkname="../../../../etc/passwd"),
        tarball.member("./usr/share/locale/fr/LC_MESSAGES/fifo.mo", kind=tarfile.FIFOTYPE),
        tarball.member("./usr/share/locale/fr/LC_MESSAGES/ok.mo", b"catalog"),
    ])
    lines = []
    roots = extract_debs(sorted((tmp_path / "raw-debs").glob("*.deb")), tmp_path / "out",
                         "fr", log=lines.append)
    assert not outside.exists()
    written = [p for p in (tmp_path / "out").rglob("*") if not p.is_dir()]
    assert [p.name for p in written] == ["ok.mo"] and not any(p.is_symlink() for p in written)
    reasons = {Path(m).name: r for m, r in roots[0].refused}
    assert reasons == {
        "abs.mo": "absolute path", "up.mo": "'..' in the path",
        "sym.mo": f"symbolic link to '{outside}/target.mo' (links are not extracted)",
        "hard.mo": "hard link to '../../../../etc/passwd' (links are not extracted)",
        "fifo.mo": "not a regular file"}
    assert any("evil: refused 5 members" in line for line in lines)


@needs_dpkg
def test_package_names_that_are_paths_are_refused(tmp_path, make_raw_deb, tarball,
                                                   monkeypatch):
    """The Package field names the extraction folder, which is emptied first: dpkg-deb
    refuses such names itself, and extract_debs checks them again (dpkg-deb may be old)."""
    deb = make_raw_deb("a/../../escape", [tarball.member("./fr.mo", b"x")])
    with pytest.raises(FetchError, match="package name"):
        extract_debs([deb], tmp_path / "out", "fr")
    monkeypatch.setattr(fetch_module, "_run", lambda command: subprocess.CompletedProcess(
        command, 0, "Package: ../../escape\nVersion: 1\n", ""))
    with pytest.raises(FetchError, match="not a Debian package name"):
        extract_debs([deb], tmp_path / "out", "fr")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out").exists()


@needs_dpkg
def test_size_caps_per_member_and_in_total(tmp_path, make_raw_deb, tarball):
    one = make_raw_deb("one", [tarball.member("./usr/share/locale/fr/LC_MESSAGES/a.mo",
                                              b"x" * 600)])
    two = make_raw_deb("two", [tarball.member("./usr/share/locale/fr/LC_MESSAGES/b.mo",
                                              b"y" * 600)])
    with pytest.raises(ArchiveError, match="over the 500-byte limit for one member"):
        extract_debs([one], tmp_path / "a", "fr", max_member_bytes=500)
    with pytest.raises(ArchiveError, match="1000-byte limit for the extraction"):
        extract_debs([one, two], tmp_path / "b", "fr", max_total_bytes=1000)
    roots = extract_debs([one, two], tmp_path / "c", "fr", max_total_bytes=1200)
    assert [r.package for r in roots] == ["one", "two"]


@needs_dpkg
def test_fetch_with_fake_apt(tmp_path, make_deb, fake_apt):
    catalog = write_mo(tmp_path / "c.mo", CATALOG)
    deb = make_deb("demo-l10n-fr", "1.0-1",
                   {"/usr/share/locale/fr/LC_MESSAGES/demo.mo": catalog.read_bytes()})
    fake_apt(deb, "demo-l10n-fr")
    result = fetch_debian("fr", ["demo-l10n-fr", "gone-pkg"], tmp_path / "work")
    assert result.missing == ["gone-pkg"] and [d.name for d in result.debs] == [deb.name]
    assert stat.S_IMODE((tmp_path / "work" / "debs").stat().st_mode) == 0o777
    assert [(r.package, r.version) for r in result.roots] == [("demo-l10n-fr", "1.0-1")]
    with pytest.raises(FetchError, match="apt-get update"):
        fetch_debian("fr", ["gone-pkg"], tmp_path / "work2")
