"""Helpers shared by the data tests: the ``attnkit data`` command line and .deb builders."""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tarfile

import pytest

from attnkit.data import cli as data_cli
from attnkit.errors import UserError


class _OneLineParser(argparse.ArgumentParser):
    """Stand-in for attnkit.cli's parser class until that package registers `data`."""

    def error(self, message: str):  # noqa: D102 - argparse hook
        self.exit(2, f"{self.prog}: error: {message}\n")


def _registered_main():
    """``attnkit.cli.main`` once the CLI package registers the data command, else None."""
    try:
        from attnkit.cli import COMMANDS, main
    except ImportError:
        return None
    return main if COMMANDS.get("data") == "attnkit.data.cli" else None


def _protocol_main(argv: list[str]) -> int:
    """The command protocol by hand: parse, run, UserError -> one line and exit code 2."""
    parser = _OneLineParser(prog="attnkit")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    data_cli.add_parser(commands)
    args = parser.parse_args(argv)
    try:
        return data_cli.run(args)
    except UserError as exc:
        print(f"attnkit {args.command}: error: {exc}", file=sys.stderr)
        return 2


@pytest.fixture
def attnkit_main():
    """``main(argv) -> exit code`` for ``attnkit data ...`` (SystemExit turned into its code)."""
    entry = _registered_main() or _protocol_main

    def main(argv: list[str]) -> int:
        try:
            return entry(list(argv))
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
    return main


needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


@pytest.fixture
def make_deb(tmp_path):
    """``make_deb(name, version, files)``: a real .deb (dpkg-deb --build) holding ``files``
    ({install path: bytes})."""
    def make(name: str, version: str, files: dict[str, bytes]):
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
    return make


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> bytes:
    """A tar archive of ``(header, data)`` members written as given (names not cleaned)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode, format=tarfile.GNU_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, None if data is None else io.BytesIO(data))
    return buffer.getvalue()


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
           linkname: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


@pytest.fixture
def make_raw_deb(tmp_path):
    """``make_raw_deb(package, members)``: a .deb assembled by hand (ar + tar.gz), so its
    data members may carry names and links that dpkg-deb --build would never write."""
    def make(package: str, members: list[tuple[tarfile.TarInfo, bytes | None]]):
        control = tar_bytes([member("./control", (
            f"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\n"
            f"Description: test\n").encode())], mode="w:gz")
        parts = [("debian-binary", b"2.0\n"), ("control.tar.gz", control),
                 ("data.tar.gz", tar_bytes(members, mode="w:gz"))]
        blob = b"!<arch>\n"
        for name, data in parts:
            blob += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
            blob += data + (b"\n" if len(data) % 2 else b"")
        deb = tmp_path / "raw-debs" / f"{package.replace('/', '_')}.deb"
        deb.parent.mkdir(exist_ok=True)
        deb.write_bytes(blob)
        return deb
    return make


@pytest.fixture
def tarball():
    """``tarball.member(name, data, kind, linkname)`` and ``tarball.build(members, mode)``."""
    import types

    return types.SimpleNamespace(member=member, build=tar_bytes)


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    """``fake_apt(deb)``: put ``apt-cache``/``apt-get`` scripts first on PATH that offer
    ``deb``'s package (named from its file name) and "download" it by copying."""
    import os
    import stat

    def install(deb, package: str):
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        scripts = {
            "apt-cache": "#!/bin/sh\nshift\nfor p in \"$@\"; do echo \"$p:\"; "
                         f"if [ \"$p\" = {package} ]; then echo '  Candidate: 1.0-1'; "
                         "else echo '  Candidate: (none)'; fi; done\n",
            "apt-get": f"#!/bin/sh\ncp '{deb}' .\n",
        }
        for name, body in scripts.items():
            (bin_dir / name).write_text(body)
            (bin_dir / name).chmod(stat.S_IRWXU)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return install
