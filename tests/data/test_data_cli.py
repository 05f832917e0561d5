"""``attnkit data ...`` argument handling and the Debian fetch, without network or apt."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from attnkit.cli import _Parser
from attnkit.data import cli as data_cli
from attnkit.data import fetch as fetch_module
from attnkit.data.fetch import (
    DEBIAN_PACKAGES,
    FetchError,
    extract_debs,
    fetch_debian,
    packages_for,
)
from attnkit.data.gettext import write_mo


def parser():
    root = _Parser(prog="attnkit")
    sub = root.add_subparsers(dest="command", required=True, parser_class=_Parser)
    data_cli.add_data_parser(sub)
    return root


def run(argv):
    args = parser().parse_args(argv)
    return args.func(args)


def one_line(text):
    return len(text.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [
    ["data"], ["data", "build"], ["data", "build", "--lang", "es"],
    ["data", "build", "--lang", "fr", "--vocab-size", "10"],
    ["data", "build", "--lang", "fr", "--vocab-size", "many"],
    ["data", "info", "--lang", "fr", "--bogus"], ["data", "fetch"],
])
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert one_line(err) and "error:" in err


def test_help_works(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["data", "fetch", "--help"])
    assert exit_info.value.code == 0 and "--keep-debs" in capsys.readouterr().out


def test_build_errors_print_one_line(tmp_path, capsys):
    code = run(["data", "build", "--lang", "fr", "--roots", str(tmp_path / "nope"),
                "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and one_line(err) and "not a folder" in err
    code = run(["data", "info", "--lang", "de", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and one_line(err) and "attnkit data fetch --lang de" in err


SENTENCES = [
    ("Open the selected file", "Ouvrir le fichier sélectionné"),
    ("Are you sure you want to quit?", "Voulez-vous vraiment quitter ?"),
    ("Delete all selected messages", "Supprimer tous les messages sélectionnés"),
    ("Show hidden files and folders", "Afficher les fichiers et dossiers cachés"),
]


def test_build_then_info(tmp_path, capsys):
    pytest.importorskip("tokenizers")
    write_mo(tmp_path / "roots" / "fr" / "LC_MESSAGES" / "demo.mo",
             [(None, en, None, (fr,)) for en, fr in SENTENCES])
    argv = ["--lang", "fr", "--roots", str(tmp_path / "roots"), "--data-dir",
            str(tmp_path / "data"), "--vocab-size", "300"]
    assert run(["data", "build", *argv]) == 0
    out = capsys.readouterr().out
    assert "tokenizer:" in out and (tmp_path / "data" / "gettext-en-fr" /
                                    "tokenizer.json").is_file()
    assert run(["data", "build", *argv]) == 0
    assert "already built" in capsys.readouterr().out
    assert run(["data", "info", "--lang", "fr", "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "pairs: train" in out and "catalogs: 1 (0 unreadable)" in out and "vocab" in out


# --------------------------------------------------------------------------------- fetch

def test_package_list():
    assert len(DEBIAN_PACKAGES) == 45 == len(set(DEBIAN_PACKAGES))
    fr = packages_for("fr")
    assert "libreoffice-l10n-fr" in fr and "libreoffice-l10n-de" not in fr
    assert len(fr) == 44 and "git" in packages_for("de")
    assert packages_for("de", ["a-l10n-fr", "b"]) == ["b"]


def test_fetch_without_apt_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(fetch_module.shutil, "which", lambda name: None)
    with pytest.raises(FetchError, match="needs apt-get") as info:
        fetch_debian("fr", dest=tmp_path)
    assert isinstance(info.value, RuntimeError)
    code = run(["data", "fetch", "--lang", "fr", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and one_line(err) and "apt-get" in err
    assert [p for p in tmp_path.iterdir()] == []  # the work folder is cleaned up


needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def make_deb(tmp_path, name, version, files):
    """A real .deb (built with dpkg-deb) holding ``files`` ({install path: bytes})."""
    tree = tmp_path / "tree" / name
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@t>\n"
        f"Description: test\n")
    for install_path, data in files.items():
        path = tree / install_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    deb = tmp_path / "debs" / f"{name}_{version.replace(':', '%3a')}_all.deb"
    deb.parent.mkdir(exist_ok=True)
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", "--root-owner-group", str(tree),
                    str(deb)], check=True, capture_output=True)
    return deb


@needs_dpkg
def test_extract_debs_keeps_only_the_language(tmp_path):
    data = write_mo(tmp_path / "c.mo", [(None, SENTENCES[0][0], None,
                                         (SENTENCES[0][1],))]).read_bytes()
    deb = make_deb(tmp_path, "demo-l10n", "1:2.0-1", {
        "/usr/share/locale/fr/LC_MESSAGES/demo.mo": data,
        "/usr/share/locale/de/LC_MESSAGES/demo.mo": data,
        "/usr/share/locale/fr/LC_TIME/demo.mo": data,
        "/usr/share/doc/demo/README": b"not a catalog"})
    roots = extract_debs([deb], tmp_path / "out", "fr")
    assert [(r.package, r.version) for r in roots] == [("demo-l10n", "1:2.0-1")]
    files = sorted(p.relative_to(roots[0].path).as_posix()
                   for p in Path(roots[0].path).rglob("*") if p.is_file())
    assert files == ["usr/share/locale/fr/LC_MESSAGES/demo.mo"]
    with pytest.raises(FetchError, match="no .deb"):
        extract_debs([], tmp_path / "out", "fr")
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"not a deb")
    with pytest.raises(FetchError, match="dpkg-deb -f"):
        extract_debs([bad], tmp_path / "out2", "fr")


@needs_dpkg
def test_fetch_with_fake_apt(tmp_path, monkeypatch, capsys):
    catalog = write_mo(tmp_path / "c.mo", [(None, en, None, (fr,)) for en, fr in SENTENCES])
    deb = make_deb(tmp_path, "demo-l10n-fr", "1.0-1",
                   {"/usr/share/locale/fr/LC_MESSAGES/demo.mo": catalog.read_bytes()})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "apt-cache": "#!/bin/sh\nshift\nfor p in \"$@\"; do echo \"$p:\"; "
                     "if [ \"$p\" = demo-l10n-fr ]; then echo '  Candidate: 1.0-1'; "
                     "else echo '  Candidate: (none)'; fi; done\n",
        "apt-get": f"#!/bin/sh\ncp '{deb}' .\n",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = fetch_debian("fr", ["demo-l10n-fr", "gone-pkg"], tmp_path / "work")
    assert result.missing == ["gone-pkg"] and [d.name for d in result.debs] == [deb.name]
    assert stat.S_IMODE((tmp_path / "work" / "debs").stat().st_mode) == 0o777
    assert [(r.package, r.version) for r in result.roots] == [("demo-l10n-fr", "1.0-1")]
    with pytest.raises(FetchError, match="apt-get update"):
        fetch_debian("fr", ["gone-pkg"], tmp_path / "work2")
