"""``attnkit data build | fetch | info`` end to end on catalogs and packages made here."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from attnkit.data.translation import catalogs as catalogs_module
from attnkit.data.translation.gettext import write_mo

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")

SENTENCES = [
    ("Open the selected file", "Ouvrir le fichier sélectionné"),
    ("Are you sure you want to quit?", "Voulez-vous vraiment quitter ?"),
    ("Delete all selected messages", "Supprimer tous les messages sélectionnés"),
    ("Show hidden files and folders", "Afficher les fichiers et dossiers cachés"),
]
CATALOG = [(None, en, None, (fr,)) for en, fr in SENTENCES]


def one_line(text):
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def test_help_works(attnkit_main, capsys):
    assert attnkit_main(["data", "fetch", "--help"]) == 0
    assert "--keep-debs" in capsys.readouterr().out


def test_build_then_info(attnkit_main, tmp_path, capsys):
    pytest.importorskip("tokenizers")
    write_mo(tmp_path / "roots" / "fr" / "LC_MESSAGES" / "demo.mo", CATALOG)
    argv = ["--lang", "fr", "--roots", str(tmp_path / "roots"), "--data-dir",
            str(tmp_path / "data"), "--vocab-size", "300"]
    assert attnkit_main(["data", "build", *argv]) == 0
    out = capsys.readouterr().out
    assert "tokenizer:" in out and (tmp_path / "data" / "gettext-en-fr" /
                                    "tokenizer-300.json").is_file()
    assert attnkit_main(["data", "build", *argv]) == 0
    assert "already built" in capsys.readouterr().out
    assert attnkit_main(["data", "info", "--lang", "fr", "--data-dir",
                         str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "pairs: train" in out and "catalogs: 1 (0 unreadable)" in out and "vocab" in out


def test_info_without_a_corpus_says_how_to_build_one(attnkit_main, tmp_path, capsys):
    assert attnkit_main(["data", "info", "--lang", "de", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert one_line(err) and "attnkit data fetch --lang de" in err


def test_info_on_a_broken_manifest_is_one_line(attnkit_main, tmp_path, capsys):
    corpus = tmp_path / "gettext-en-fr"
    corpus.mkdir()
    for content in ("{not json", "[]", json.dumps({"format": 1})):
        (corpus / "manifest.json").write_text(content)
        assert attnkit_main(["data", "info", "--lang", "fr", "--data-dir",
                             str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert one_line(err) and "rebuild with --force" in err


def test_info_with_a_broken_tokenizer_reports_it(attnkit_main, tmp_path, capsys):
    pytest.importorskip("tokenizers")
    write_mo(tmp_path / "roots" / "fr" / "LC_MESSAGES" / "demo.mo", CATALOG)
    argv = ["--lang", "fr", "--data-dir", str(tmp_path / "data")]
    assert attnkit_main(["data", "build", *argv, "--roots", str(tmp_path / "roots"),
                         "--vocab-size", "300"]) == 0
    (tmp_path / "data" / "gettext-en-fr" / "tokenizer-300.json").write_text("{broken")
    capsys.readouterr()
    assert attnkit_main(["data", "info", *argv]) == 0
    assert "is not a tokenizer file" in capsys.readouterr().out


def test_non_utf8_catalog_paths_build_and_print(attnkit_main, tmp_path, capsys):
    pytest.importorskip("tokenizers")
    root = Path(os.fsdecode(bytes(tmp_path / "roots") + b"/caf\xe9"))
    write_mo(root / "fr" / "LC_MESSAGES" / "demo.mo", CATALOG)
    (root / "fr" / "LC_MESSAGES" / "bad\xff.mo".encode("latin-1").decode(
        "utf-8", "surrogateescape")).write_bytes(b"junk")
    argv = ["--lang", "fr", "--data-dir", str(tmp_path / "data")]
    assert attnkit_main(["data", "build", *argv, "--roots", str(root),
                         "--vocab-size", "300"]) == 0
    assert attnkit_main(["data", "info", *argv]) == 0
    out = capsys.readouterr().out
    assert "caf\\xe9" in out and "bad\\xff.mo" in out  # the skipped catalog, escaped
    manifest = json.loads((tmp_path / "data" / "gettext-en-fr" / "manifest.json").read_text())
    assert all("\\x" in s["path"] for s in manifest["sources"])


# --------------------------------------------------------------------------------- fetch

def test_fetch_without_apt_is_a_clear_error(attnkit_main, monkeypatch, tmp_path, capsys):
    from attnkit.data.translation import fetch as fetch_module

    monkeypatch.setattr(fetch_module.shutil, "which", lambda name: None)
    code = attnkit_main(["data", "fetch", "--lang", "fr", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and one_line(err) and "apt-get" in err
    assert list(tmp_path.iterdir()) == []  # the work folder is cleaned up


@needs_dpkg
def test_fetch_from_debs_refuses_members_outside_the_target(attnkit_main, make_raw_deb,
                                                            tarball, monkeypatch, tmp_path,
                                                            capsys):
    """The security hole of issue 10: members with absolute names and '..' were written
    where they said, and the command exited 0. Now they are refused and recorded."""
    pytest.importorskip("tokenizers")
    monkeypatch.setattr(catalogs_module, "default_roots", lambda: [])
    outside = tmp_path / "outside"
    good = write_mo(tmp_path / "good.mo", CATALOG).read_bytes()
    make_raw_deb("evil-l10n", [
        tarball.member(f"{outside}/fr/LC_MESSAGES/abs.mo", good),
        tarball.member("./usr/share/locale/../../../../../../../../../../../.."
                       f"{outside}/fr/LC_MESSAGES/dots.mo", good),
        tarball.member("./usr/share/locale/fr/LC_MESSAGES/link.mo", kind=b"2",
                       linkname="/etc/passwd"),
        tarball.member("./usr/share/locale/fr/LC_MESSAGES/good.mo", good),
    ])
    data = tmp_path / "data"
    code = attnkit_main(["data", "fetch", "--lang", "fr", "--debs", str(tmp_path / "raw-debs"),
                         "--data-dir", str(data), "--vocab-size", "300"])
    out = capsys.readouterr().out
    assert code == 0 and not outside.exists()
    assert "evil-l10n: refused 3 members" in out
    manifest = json.loads((data / "gettext-en-fr" / "manifest.json").read_text())
    reasons = {r["member"].rsplit("/", 1)[-1]: r["reason"] for r in manifest["refused_members"]}
    assert reasons["abs.mo"] == "absolute path" and reasons["dots.mo"] == "'..' in the path"
    assert reasons["link.mo"].startswith("symbolic link to '/etc/passwd'")
    assert [s["path"] for s in manifest["sources"]] == [
        "/usr/share/locale/fr/LC_MESSAGES/good.mo"]
    assert [p.name for p in data.iterdir()] == ["gettext-en-fr"]  # work folder removed


@needs_dpkg
def test_fetch_with_fake_apt_keeps_debs(attnkit_main, make_deb, fake_apt, monkeypatch,
                                        tmp_path):
    pytest.importorskip("tokenizers")
    monkeypatch.setattr(catalogs_module, "default_roots", lambda: [])
    catalog = write_mo(tmp_path / "c.mo", CATALOG)
    deb = make_deb("git", "1.0-1",  # one of DEBIAN_PACKAGES
                   {"/usr/share/locale/fr/LC_MESSAGES/demo.mo": catalog.read_bytes()})
    fake_apt(deb, "git")
    data = tmp_path / "data"
    assert attnkit_main(["data", "fetch", "--lang", "fr", "--keep-debs", "--data-dir",
                         str(data), "--vocab-size", "300"]) == 0
    assert (data / "debs" / deb.name).is_file()
    manifest = json.loads((data / "gettext-en-fr" / "manifest.json").read_text())
    assert manifest["sources"][0]["package"] == "git"
